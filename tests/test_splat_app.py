"""app=splats: the splat space (project / unproject / noise), its cameras, the RGB domain on every
space, the outputs, and runs of every synchronizer; GPU-only checks against gsplat."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from syncframe.cli import main
from syncframe.config import resolve
from syncframe.errors import ConfigError
from syncframe.geometry.cameras import orbit_pinhole, read_transforms
from syncframe.geometry.raster import OrbitCamera, fit_frame
from syncframe.geometry.splat_raster import SparseRenderer, compositing_weights, look_at_camera
from syncframe.geometry.splats import Splats, read_ply, splats_on_surface
from scripts.shapes import vase
from syncframe.pipeline import generate_from_config, prepare
from syncframe.spaces.splats import SplatSpace
from conftest import need_gpu, need_module

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SCENE = f"splats={ASSETS / 'vase_splats.ply'}"
# Three overlapping views (16² latents): independent views disagree where they share splats.
FAST = ["app=splats", SCENE, "model=tiny", "steps=2", "width=128", "height=128", "progress=false",
        "app.views=[{elevation: 0, azimuths: [0, 30, 60]}]", "app.novel_views=1", "app.viewer=false"]


def geometry(splats: Splats):
    t = (lambda a: torch.from_numpy(np.asarray(a, np.float64)))
    return t(splats.means), t(splats.quats), t(splats.scales()), t(splats.opacities())


def grid_scene(count: int = 6, spacing: float = 0.5, sigma: float = 0.12) -> Splats:
    """``count``² opaque, round, flat splats on the z = 0 plane, facing +z."""
    xs = (np.arange(count) - (count - 1) / 2) * spacing
    means = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    n = len(means)
    return Splats(means=np.concatenate([means, np.zeros((n, 1))], 1).astype(np.float32),
                  quats=np.tile([1.0, 0, 0, 0], (n, 1)).astype(np.float32),
                  log_scales=np.log(np.tile([sigma, sigma, sigma / 10], (n, 1))).astype(np.float32),
                  opacity_logits=np.full(n, 4.0, np.float32), sh_dc=np.zeros((n, 3), np.float32),
                  sh_rest=np.zeros((n, 0, 3), np.float32))


@pytest.fixture(scope="module")
def vase_space():
    splats = read_ply(ASSETS / "vase_splats.ply")
    mesh = vase()
    rig = [OrbitCamera(a, e) for a, e in ((0, 0), (90, 0), (180, 0), (270, 0), (0, 40))]
    frame = fit_frame(mesh.vertices, rig, "perspective", 50, 1.1)
    renderer = SparseRenderer(*geometry(splats), [orbit_pinhole(c, frame, 32) for c in rig])
    return SplatSpace(renderer, geometry(splats)[0], channels=4)


# -- the space -------------------------------------------------------------------------------------
def test_project_adjoint_is_the_transpose_of_project(vase_space):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(vase_space.canonical_shape, generator=g)
    x = torch.randn(vase_space.num_views, *vase_space.view_shape, generator=g)
    left = (vase_space.project(z) * x).sum()
    right = (z * vase_space.project_adjoint(x)).sum()
    assert torch.allclose(left, right, rtol=1e-5)


def test_stacked_views_equal_each_views_own_weights(vase_space):
    splats = read_ply(ASSETS / "vase_splats.ply")
    camera = look_at_camera([0.2, 1.0, 3.0], [0, 0.9, 0], [0, 1, 0], 50, 24)
    renderer = SparseRenderer(*geometry(splats), [camera, camera])
    colours = torch.rand(len(splats), 3, dtype=torch.float32)
    W = compositing_weights(*geometry(splats), camera).float()
    expected = (W @ colours).T.reshape(3, 24, 24)
    rendered = renderer.render(colours)
    assert torch.allclose(rendered[0], expected, atol=1e-5) and torch.equal(rendered[0], rendered[1])
    assert torch.allclose(renderer.alpha[0], torch.sparse.sum(W, 1).to_dense().reshape(24, 24), atol=1e-6)


def test_a_colour_the_views_agree_on_is_unprojected_exactly(vase_space):
    colour = torch.tensor([0.3, -0.7, 0.1, 0.9])[:, None].expand(vase_space.canonical_shape)
    views = vase_space.project(colour) / vase_space.alpha[:, None].clamp_min(1e-12)  # un-premultiplied
    back = vase_space.unproject(views)
    assert torch.allclose(back, colour, atol=1e-4)
    # sync keeps it: the splats' share is the colour, the rest is the view's own (the same colour here)
    owned = vase_space.alpha[:, None].expand_as(views) > 0.01
    assert torch.allclose(vase_space.sync(views)[owned], views[owned], atol=1e-4)


def test_least_squares_recovers_any_colours_of_seen_splats():
    scene = grid_scene()
    cameras = [look_at_camera([x, y, 3.0], [0, 0, 0], [0, 1, 0], 45, 48) for x, y in ((0, 0), (0.8, 0.3), (-0.6, -0.5))]
    renderer = SparseRenderer(*geometry(scene), cameras)
    lsq = SplatSpace(renderer, geometry(scene)[0], channels=3, unproject="lsq", lsq_iterations=200, lsq_damping=1e-9)
    adjoint = SplatSpace(renderer, geometry(scene)[0], channels=3)
    z = torch.randn(3, len(scene), generator=torch.Generator().manual_seed(1))
    views = lsq.project(z) / lsq.alpha[:, None].clamp_min(1e-12)
    assert lsq.seen.all()
    lsq_error = (lsq.unproject(views) - z).abs().max()
    adjoint_error = (adjoint.unproject(views) - z).abs().max()
    assert lsq_error < 1e-3 < adjoint_error, (lsq_error, adjoint_error)  # the adjoint blurs neighbours together


def test_splats_no_view_sees_take_the_colour_of_the_nearest_seen_one():
    scene = grid_scene(count=4)
    camera = look_at_camera([-0.5, 0, 1.2], [-0.5, 0, 0], [0, 1, 0], 40, 32)  # sees the left columns only
    renderer = SparseRenderer(*geometry(scene), [camera])
    space = SplatSpace(renderer, geometry(scene)[0], channels=1)
    assert 0 < space.seen.sum() < len(scene)
    z = space.unproject(torch.ones(1, 1, 32, 32) * torch.linspace(-1, 1, 32))  # a left-right ramp
    means = scene.means
    seen = space.seen.numpy()
    for i in np.flatnonzero(~seen):
        distances = np.linalg.norm(means[seen] - means[i], axis=1)
        nearest = np.flatnonzero(seen)[distances.argmin()]
        assert z[0, i] == z[0, nearest]


def test_noise_has_unit_variance_per_pixel_and_is_shared_between_views(vase_space):
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([vase_space.sample_noise(g)[1] for _ in range(300)])  # [D, V, C, h, w]
    variance = draws.var(0)
    covered = (vase_space.alpha > 0.99)[:, None].expand_as(variance)
    assert abs(float(variance.mean()) - 1) < 0.03 and abs(float(variance[covered].mean()) - 1) < 0.03
    # the plain render W z of white noise is far below unit variance where splats blend
    plain = torch.stack([vase_space.project(torch.randn(vase_space.canonical_shape, generator=g)) for _ in range(100)])
    assert float(plain.var(0)[covered].mean()) < 0.5
    # views share noise: the front (0) and the raised front (4) view see the same splats
    front, raised = draws[:, 0].flatten(1), draws[:, 4].flatten(1)
    correlation = torch.corrcoef(torch.cat([front, raised], 1).T)[: front.shape[1], front.shape[1]:]
    assert float(correlation.max()) > 0.5


# -- cameras ---------------------------------------------------------------------------------------
def test_orbit_cameras_see_what_the_mesh_rasterizer_sees():
    """A point above the frame's centre is above the image centre; the front view looks down −z."""
    frame = fit_frame(np.array([[-1.0, -1, -1], [1, 1, 1]]), [OrbitCamera(0, 0)], "perspective", 50, 1.1)
    camera = orbit_pinhole(OrbitCamera(0, 0), frame, 64)
    points = torch.tensor([[0.0, 0, 0], [0, 0.5, 0], [0.5, 0, 0]], dtype=torch.float64)
    p = points @ camera.viewmat[:3, :3].T + camera.viewmat[:3, 3]
    pixels = (p @ camera.K.T)[:, :2] / p[:, 2:]
    assert torch.allclose(pixels[0], torch.tensor([32.0, 32.0], dtype=torch.float64))
    assert pixels[1, 1] < 32 and pixels[2, 0] > 32  # up is up, +x is right (azimuth 0 sits on +z)
    assert torch.allclose(p[0, 2], torch.tensor(frame.distance, dtype=torch.float64))


def test_transforms_json_cameras_are_turned_from_opengl_to_opencv(tmp_path):
    """A Blender camera at +z with the identity rotation looks down −z with +y up."""
    matrix = np.eye(4)
    matrix[2, 3] = 4.0
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps({"camera_angle_x": math.radians(60), "frames": [{"transform_matrix": matrix.tolist()}]}))
    app = prepare(resolve(["app=splats", SCENE, "model=tiny", "width=128", "height=128", f"app.cameras={path}"])).app
    (camera,) = app.cameras(64)  # the app's own path: read_transforms, then a pinhole of 64² pixels
    points = torch.tensor([[0.0, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=torch.float64)
    p = points @ camera.viewmat[:3, :3].T + camera.viewmat[:3, 3]
    pixels = (p @ camera.K.T)[:, :2] / p[:, 2:]
    assert torch.allclose(p[:, 2], torch.full((3,), 4.0, dtype=torch.float64))  # in front, 4 away
    assert torch.allclose(pixels[0], torch.tensor([32.0, 32.0], dtype=torch.float64))
    assert pixels[1, 1] < 32 and pixels[2, 0] > 32
    f = 32 / math.tan(math.radians(30))
    assert torch.allclose(pixels[2, 0], torch.tensor(32 + f / 4, dtype=torch.float64))


@pytest.mark.parametrize("text, message", [
    ("not json", "is not readable JSON"),
    ('{"frames": []}', "needs camera_angle_x"),
    ('{"camera_angle_x": 0.7, "frames": [{"transform_matrix": [[1, 0], [0, 1]]}]}', "not a finite invertible 4x4"),
])
def test_bad_transforms_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "transforms.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_transforms(path, 10)


def test_a_run_with_transforms_json_cameras(tmp_path):
    frames = []
    for azimuth in (0, 90, 180):
        a = math.radians(azimuth)
        eye = np.array([4 * math.sin(a), 0.9, 4 * math.cos(a)])
        back = eye - np.array([0, 0.9, 0])
        back /= np.linalg.norm(back)
        right = np.cross([0, 1, 0], back)
        right /= np.linalg.norm(right)
        matrix = np.eye(4)
        matrix[:3, :3] = np.stack([right, np.cross(back, right), back], 1)  # OpenGL: x right, y up, z back
        matrix[:3, 3] = eye
        frames.append({"file_path": f"r_{azimuth}", "transform_matrix": matrix.tolist()})
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    out = tmp_path / "run"
    assert main(["run", *FAST, f"app.cameras={path}", f"out={out}"]) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["num_views"] == 3 and meta["metrics"]["splats_seen"] > 0.5


def test_a_z_up_scene_is_seen_as_its_y_up_twin(tmp_path):
    splats = read_ply(ASSETS / "vase_splats.ply")
    turned = splats_on_surface(np.stack([vase().vertices[:, 0], -vase().vertices[:, 2], vase().vertices[:, 1]], 1),
                               vase().faces, 4000)  # the y-up vase as Blender (z-up) would hold it
    from syncframe.geometry.splats import ply_bytes

    path = tmp_path / "z_up.ply"
    path.write_bytes(ply_bytes(turned))
    y = prepare(resolve(FAST)).app.base_space
    z = prepare(resolve([*[a for a in FAST if not a.startswith("splats=")], f"splats={path}", "app.up=z"])).app.base_space
    assert len(splats) == len(turned)
    assert (y.alpha - z.alpha).abs().mean() < 0.02


# -- whole runs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sync, domain, agree", [
    ("none", "latent", False), ("multidiffusion", "latent", True), ("synctweedies", "latent", True),
    ("eps-averaging", "latent", None), ("canonical-x0", "latent", True), ("canonical-eps", "latent", True),
    ("syncdiffusion", "latent", True), ("synctweedies", "rgb", None), ("eps-averaging", "rgb", None),
    ("none", "rgb", None)])
def test_every_synchronizer_runs_in_both_domains(sync, domain, agree, tmp_path):
    extra = ["sync.weight=1", "sync.loss_resolution=64", "sync.grad_through_unet=false"] if sync == "syncdiffusion" else []
    out = tmp_path / "run"
    assert main(["run", *FAST, f"sync={sync}", f"app.domain={domain}", *extra, f"out={out}"]) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["num_views"] == 3 and meta["metrics"]["splats"] == 4000
    if agree is not None:
        disagreement = meta["metrics"]["latent_disagreement"]
        assert disagreement < 0.02 if agree else disagreement > 0.03, disagreement


def test_outputs_keep_the_scene_and_set_its_colours(tmp_path):
    out = tmp_path / "run"
    assert main(["run", *FAST, "app.viewer=true", "app.unproject=lsq", f"out={out}"]) == 0
    source, written = read_ply(ASSETS / "vase_splats.ply"), read_ply(out / "splats.ply")
    for name in ("means", "quats", "log_scales", "opacity_logits", "normals"):
        assert np.array_equal(getattr(source, name), getattr(written, name)), name
    assert written.sh_rest.shape == source.sh_rest.shape and not written.sh_rest.any()
    assert written.sh_dc.std() > 0.05  # coloured, no longer the input's grey
    from PIL import Image

    renders = Image.open(out / "renders.png")
    assert renders.size == (4 * 256, 256)  # 3 rig views + 1 novel view
    html = (out / "viewer.html").read_text()
    assert "syncframeSplatViewer" in html and "<script src" not in html
    meta = json.loads((out / "run.json").read_text())
    assert {"latent_disagreement", "reprojection_error", "splats_seen"} <= set(meta["metrics"])


def test_synchronized_splat_colours_reproduce_the_views_on_the_mixture_prior(tmp_path):
    """On the closed-form mixture prior, the colours fitted to synchronized views render back to
    those views; independent views cannot all be fitted by one colour per splat."""
    errors = {}
    for sync in ("none", "synctweedies", "multidiffusion"):
        out = tmp_path / sync
        assert main(["run", "app=splats", SCENE, "model=gaussian-mixture", "steps=20", "progress=false",
                     "width=128", "height=128", "prompt=sunset", "app.viewer=false", "app.novel_views=0",
                     f"sync={sync}", f"out={out}"]) == 0
        errors[sync] = json.loads((out / "run.json").read_text())["metrics"]["reprojection_error"]
    assert errors["synctweedies"] < errors["none"] / 4 and errors["multidiffusion"] < errors["none"] / 4, errors


def test_depth_controlnet_gets_the_rendered_depth(tmp_path):
    app = prepare(resolve([*FAST, "controlnet=tiny"])).app
    control = app.control_images()
    renderer = app.rgb_space().renderer
    assert control.shape == (3, 3, 128, 128)
    small = torch.nn.functional.interpolate(control, size=renderer.height)[:, 0]
    owned = renderer.alpha > 0.5
    assert (small[~owned] < 0.05).float().mean() > 0.95 and (small[owned] >= 0.15).float().mean() > 0.95
    with_depth = generate_from_config(resolve([*FAST, "controlnet=tiny"]))
    without = generate_from_config(resolve(FAST))
    assert (with_depth.views - without.views).abs().mean() > 1e-2  # the depth reaches the UNet


# -- the RGB domain on the other spaces ------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["app=mesh", f"mesh={ASSETS / 'vase.obj'}", "app.views=[{elevation: 0, count: 4}, {elevation: 30, count: 2}]"],
    ["app=panorama360", "width=512", "height=256",
     "app.rings=[{pitch: 0, count: 6, fov: 90}, {pitch: 60, count: 3, fov: 90}, {pitch: -60, count: 3, fov: 90}]"],
])
def test_the_rgb_domain_makes_the_decoded_views_of_mesh_and_360_agree(args):
    """On the closed-form mixture prior (structured images): the decoded final views, synchronized
    through the app's RGB space (app.domain=rgb, SyncTweedies' x0), nearly agree where they meet;
    independent views do not (measured: 0.012 vs 0.19 on the vase, 0.045 vs 0.60 on the 360)."""
    gaps = {}
    for sync, domain in (("none", "latent"), ("synctweedies", "rgb")):
        cfg = resolve(["model=gaussian-mixture", "prompt=sunset", "steps=10", "progress=false", "app.viewer=false",
                       *args, f"sync={sync}", f"app.domain={domain}"])
        result = generate_from_config(cfg)
        rgb = torch.nn.functional.interpolate(result.views, scale_factor=8, mode="bilinear").clamp(-1, 1)  # its decoder
        space = prepare(cfg).app.rgb_space()
        gaps[sync] = ((space.sync(rgb) - rgb).abs().mean() / rgb.abs().mean()).item()
    assert gaps["synctweedies"] < gaps["none"] / 5, gaps


@pytest.mark.parametrize("sync", ["multidiffusion", "syncdiffusion", "canonical-x0"])
def test_the_rgb_domain_refuses_averaging_noisy_states(sync, tmp_path):
    with pytest.raises(ConfigError, match=f"sync={sync} with app.domain=rgb.*synctweedies.*eps-averaging"):
        prepare(resolve([*FAST, f"sync={sync}", "app.domain=rgb"]))


# -- GPU only: gsplat --------------------------------------------------------------------------------
def need_gsplat():
    need_gpu("gsplat's rasterizer")
    need_module("gsplat", "gsplat, an optional GPU extra (pip install gsplat)")


@pytest.mark.gpu
def test_the_torch_renderer_equals_gsplat():
    need_gsplat()
    from syncframe.geometry.splat_gsplat import GsplatRenderer

    splats = read_ply(ASSETS / "vase_splats.ply")
    cameras = [look_at_camera([0.3, 1.0, 3.0], [0, 0.9, 0], [0, 1, 0], 50, 128),
               look_at_camera([-2.5, 1.5, 1.0], [0, 0.9, 0], [0, 1, 0], 50, 128)]
    torch_renderer = SparseRenderer(*[t.cuda() for t in geometry(splats)], cameras=[
        type(c)(c.viewmat.cuda(), c.K.cuda(), c.width, c.height) for c in cameras])
    gsplat_renderer = GsplatRenderer(*geometry(splats), cameras)
    colours = torch.rand(len(splats), 3, device="cuda")
    assert (torch_renderer.render(colours) - gsplat_renderer.render(colours)).abs().max() < 1e-4
    assert (torch_renderer.alpha.cpu() - gsplat_renderer.alpha).abs().max() < 1e-4
    x = torch.randn(2, 3, 128, 128, device="cuda")
    assert (torch_renderer.adjoint(x) - gsplat_renderer.adjoint(x)).abs().max() < 1e-3


def test_the_demo_splats_cover_the_vase_without_holes_and_match_its_silhouette():
    """The mesh rasterizer and the splat renderer, same orbit cameras: the splats made from the
    vase cover every pixel of its surface and little else (this also checks that the two agree
    on the cameras)."""
    from scipy.ndimage import distance_transform_edt

    from syncframe.geometry.raster import rasterize

    mesh, splats = vase(), read_ply(ASSETS / "vase_splats.ply")
    rig = [OrbitCamera(a, e) for a, e in ((0, 0), (135, 0), (60, 40))]
    frame = fit_frame(mesh.vertices, rig, "perspective", 50, 1.1)
    for size in (64, 256):
        surface = rasterize(mesh, rig, frame, size).mask
        alpha = SparseRenderer(*geometry(splats), [orbit_pinhole(c, frame, size) for c in rig]).alpha
        assert (alpha[surface] > 0.5).float().mean() > 0.99  # no holes
        # the silhouette is the mesh's, give or take a splat's radius at the rim (σ ≈ 3.5% of the view)
        for view in range(len(rig)):
            beyond = distance_transform_edt(~surface[view].numpy())[(alpha[view] > 0.5).numpy()]
            assert beyond.max() <= 0.035 * size, (size, view, beyond.max())
