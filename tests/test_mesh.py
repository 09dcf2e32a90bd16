"""Mesh texturing: loading, cameras and rasterization, the ``mesh_uv`` space, the app end to end."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from syncframe.cli import main
from syncframe.config import resolve
from syncframe.pipeline import generate_from_config
from syncframe.errors import ConfigError
from syncframe.geometry.meshes import LoadedMesh, load_mesh
from syncframe.geometry.raster import (OrbitCamera, camera_rays, control_depth, cross2, fit_frame, rasterize,
                                       rig_from_config, uv_area, uv_coverage)
from syncframe.geometry.texels import apply_fill, surface_fill, texel_surface
from syncframe.geometry.unwrap import split_faces
from syncframe.messages import collecting
from syncframe.spaces.base import nearest_source, repeated_reads
from syncframe.spaces.mesh_uv import MeshUVSpace, texel_index
from conftest import need_gpu, need_module

ASSETS = Path(__file__).resolve().parents[1] / "assets"
RIG = [{"elevation": 0, "count": 8}, {"elevation": 30, "azimuths": [0, 180]}]
FAST = ["app=mesh", "model=tiny", "steps=2", "progress=false"]


@pytest.fixture(scope="module")
def vase():
    return load_mesh(ASSETS / "vase.obj")


def plane() -> LoadedMesh:
    """The square z = 0, |x|, |y| <= 1, facing +z, with uv = ((x + 1) / 2, (y + 1) / 2)."""
    xy = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    return LoadedMesh(np.c_[xy, np.zeros(4)], np.array([[0, 1, 2], [0, 2, 3]]), (xy + 1) / 2, [])


def checker(uv: np.ndarray, cells: int = 8) -> np.ndarray:
    """Closed-form checker colours ``[..., 3]`` in {-1, 1} (the third channel is the inverse)."""
    parity = (np.floor(uv[..., 0] * cells) + np.floor(uv[..., 1] * cells)) % 2
    first = parity * 2 - 1
    return np.stack([first, np.where(np.floor(uv[..., 0] * cells) % 2 == 0, 1.0, -1.0), -first], -1)


# -- cameras and rasterization ------------------------------------------------------------------
def test_orthographic_front_view_of_a_plane_is_closed_form():
    mesh, cam = plane(), OrbitCamera(0, 0)
    frame = fit_frame(mesh.vertices, [cam], "orthographic", margin=1.0)
    r = rasterize(mesh, [cam], frame, 32)
    assert r.mask.all()
    t = (torch.arange(32) + 0.5) / 32
    assert torch.allclose(r.uv[0, ..., 0], t.expand(32, 32), atol=1e-5)  # u grows to the right
    assert torch.allclose(r.uv[0, ..., 1], (1 - t)[:, None].expand(32, 32), atol=1e-5)  # v grows upwards
    assert torch.allclose(r.depth, torch.full_like(r.depth, 2 * math.sqrt(2)), atol=1e-5)  # camera at 2x radius
    assert torch.allclose(r.cosine, torch.ones_like(r.cosine), atol=1e-6)
    assert torch.allclose(r.normal[0], torch.tensor([0.0, 0.0, 1.0]).expand(32, 32, 3), atol=1e-6)


def test_perspective_view_of_a_plane_is_closed_form():
    mesh, cam = plane(), OrbitCamera(0, 0)
    frame = fit_frame(mesh.vertices, [cam], "perspective", fov=60, margin=1.0)
    r = rasterize(mesh, [cam], frame, 32)
    t = ((torch.arange(32) + 0.5) / 32 * 2 - 1).double()
    x = t * math.tan(math.radians(30)) * frame.distance  # where each pixel's ray meets z = 0
    inside = (x.abs() < 1 - 1e-3)
    expect = inside[:, None] & inside[None, :]
    assert torch.equal(r.mask[0], expect)
    u = ((x + 1) / 2).float()
    assert torch.allclose(r.uv[0, expect][:, 0], u.expand(32, 32)[expect], atol=1e-5)
    assert torch.allclose(r.depth[0, expect], torch.full_like(r.depth[0, expect], frame.distance), atol=1e-5)


def test_cameras_orbit_the_up_axis_and_frame_the_whole_object(vase):
    cams = rig_from_config(RIG)
    assert [(c.azimuth, c.elevation) for c in cams][:3] == [(0, 0), (45, 0), (90, 0)] and len(cams) == 10
    right, up, back = OrbitCamera(90, 0).basis()
    assert np.allclose(back, [1, 0, 0]) and np.allclose(up, [0, 1, 0]) and np.allclose(right, [0, 0, -1])
    right, up, back = OrbitCamera(30, 90).basis()  # straight down: still a right-handed frame
    assert np.allclose(back, [0, 1, 0]) and np.allclose(np.cross(right, up), back)
    frame = fit_frame(vase.vertices, cams)
    r = rasterize(vase, cams, frame, 64)
    assert not r.mask[:, [0, -1], :].any() and not r.mask[:, :, [0, -1]].any()  # margin: borders stay empty
    assert (r.mask.flatten(1).float().mean(1) > 0.2).all()  # and the object is not tiny


@pytest.mark.parametrize("ring, message", [
    ("{count: 8}", "app.views[0].elevation is missing: give a number in [-90, 90]"),
    ("{elevation: 0, count: 4, azimuths: [0]}", "needs either count (+ optional azimuth_offset) or a list of azimuths"),
    ("{elevation: 95, count: 4}", "app.views[0].elevation=95: expected a number in [-90, 90]"),
    ("{elevation: 0, count: 0}", "app.views[0].count=0: expected an integer >= 1, or null"),
])
def test_bad_rigs_are_clear_errors(ring, message):
    with pytest.raises(ConfigError) as error:
        resolve([*FAST, f"app.views=[{ring}]"])
    assert message in str(error.value)


def test_checker_rendered_through_project_matches_a_direct_ray_cast_lookup(vase):
    """The space's lookup (ray-cast UV maps -> texel gather) against trimesh's own ray/location
    query, barycentrics and the closed-form checker at the hit UVs."""
    size, cells, views = 128, 8, rig_from_config(RIG)
    frame = fit_frame(vase.vertices, views)
    r = rasterize(vase, views, frame, 96)
    texel_uv = (np.stack(np.meshgrid(np.arange(size), np.arange(size)[::-1], indexing="xy"), -1) + 0.5) / size
    texture = torch.from_numpy(checker(texel_uv, cells)).permute(2, 0, 1).float()  # row 0 is v = 1
    space = MeshUVSpace(r.uv, r.mask, r.cosine, size, channels=3, background=0.5)
    rendered = space.project(texture)
    tm = trimesh.Trimesh(vase.vertices, vase.faces, process=False)
    for i, cam in enumerate(views):
        origins, directions = (a.reshape(-1, 3) for a in camera_rays(cam, frame, 96))
        hits, rays, tris = tm.ray.intersects_location(origins, directions, multiple_hits=False)
        hit_mask = np.zeros(96 * 96, dtype=bool)
        hit_mask[rays] = True
        assert np.array_equal(hit_mask, r.mask[i].reshape(-1).numpy())
        bary = trimesh.triangles.points_to_barycentric(tm.triangles[tris], hits)
        uv = np.einsum("rk,rkc->rc", bary, vase.uv[vase.faces[tris]])
        cell = uv * cells
        clear = (np.abs(cell - np.round(cell)) * size / cells > 1.0).all(1)  # > 1 texel from a cell edge
        got = rendered[i].reshape(3, -1)[:, rays].T.numpy()
        assert clear.mean() > 0.6
        np.testing.assert_array_equal(got[clear], checker(uv[clear], cells))
        assert (rendered[i].reshape(3, -1)[:, ~hit_mask] == 0.5).all()  # the fixed background


# -- the mesh_uv space --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def latent_space(vase):
    views = rig_from_config(RIG)
    r = rasterize(vase, views, fit_frame(vase.vertices, views), 64)
    return MeshUVSpace(r.uv, r.mask, r.cosine, 128, channels=4, cosine_power=2.0)


def test_unproject_of_project_recovers_every_seen_texel_and_fills_the_rest(latent_space):
    space = latent_space
    z = torch.randn(space.canonical_shape, generator=torch.Generator().manual_seed(0))
    back = space.unproject(space.project(z))
    seen = space.seen
    assert 0.2 < seen.float().mean() < 0.9  # some texels no view reaches (the vase's floor and inside)
    assert torch.allclose(back[:, seen], z[:, seen], atol=1e-6)
    source = nearest_source(seen).reshape(-1)
    assert torch.allclose(back.reshape(4, -1), z.reshape(4, -1)[:, source], atol=1e-6)  # unseen: nearest seen value


def test_nearest_source_is_the_nearest_seen_texel():
    seen = torch.rand(40, 50, generator=torch.Generator().manual_seed(1)) < 0.05
    source = nearest_source(seen).reshape(-1)
    rows, cols = torch.meshgrid(torch.arange(40), torch.arange(50), indexing="ij")
    points = torch.stack([rows.reshape(-1), cols.reshape(-1)], 1).float()
    distance = torch.cdist(points, points[seen.reshape(-1)]).min(1).values
    assert torch.allclose((points - points[source]).norm(dim=1), distance)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_project_adjoint_is_the_transpose_of_project(latent_space, mode):
    s = latent_space
    space = MeshUVSpace(s.uv, s.mask, s.weights, 96, channels=2, mode=mode)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(space.canonical_shape, generator=g, dtype=torch.float64)
    x = torch.randn(space.num_views, *space.view_shape, generator=g, dtype=torch.float64)
    lookup = space.project(z) * space.mask[:, None]  # the background constant is not part of the linear map
    assert torch.allclose((lookup * x).sum(), (z * space.project_adjoint(x)).sum())


def test_unproject_weights_frontal_pixels_by_their_cosine(vase):
    """Two views see one texel: the result is their cosine-weighted mean."""
    uv = torch.full((2, 1, 1, 2), 0.3)
    mask = torch.ones(2, 1, 1, dtype=torch.bool)
    cosine = torch.tensor([0.9, 0.3]).reshape(2, 1, 1)
    x = torch.tensor([1.0, 5.0]).reshape(2, 1, 1, 1)
    for power in (1.0, 3.0):
        z = MeshUVSpace(uv, mask, cosine, 4, channels=1, cosine_power=power).unproject(x)
        w = cosine.reshape(2) ** power
        assert torch.allclose(z, ((w * x.reshape(2)).sum() / w.sum()).expand_as(z))  # filled everywhere


def test_sync_keeps_pixels_without_surface_and_is_idempotent(latent_space):
    x = torch.randn(latent_space.num_views, *latent_space.view_shape, generator=torch.Generator().manual_seed(3))
    synced = latent_space.sync(x)
    background = ~latent_space.mask[:, None].expand_as(x)
    assert torch.equal(synced[background], x[background])
    assert torch.allclose(latent_space.sync(synced), synced, atol=1e-6)


def test_noise_is_unit_variance_per_view_and_shared_where_views_meet(latent_space):
    space = latent_space
    z, x = space.sample_noise(torch.Generator().manual_seed(4))
    assert abs(x.mean()) < 0.02 and abs(x.std() - 1) < 0.02
    first = ~repeated_reads(space.noise_keys()) & space.mask  # pixels that read the canonical noise
    a, b = first[0].reshape(-1), first[1].reshape(-1)
    ia, ib = space.index[0].reshape(-1)[a], space.index[1].reshape(-1)[b]
    common = np.intersect1d(ia.numpy(), ib.numpy())
    assert len(common) > 20  # neighbouring views overlap...
    pick = lambda i, idx, sel: x[i].reshape(4, -1)[:, sel][:, torch.isin(idx, torch.from_numpy(common))]  # noqa
    va = pick(0, ia, a)[:, torch.argsort(ia[torch.isin(ia, torch.from_numpy(common))])]
    vb = pick(1, ib, b)[:, torch.argsort(ib[torch.isin(ib, torch.from_numpy(common))])]
    assert torch.equal(va, vb)  # ...and read the same noise there


def test_texel_index_uses_the_texture_row_convention():
    uv = torch.tensor([[0.0, 1.0], [0.999, 0.0], [1.0, 0.5], [1.25, -0.25]])
    assert texel_index(uv, 4).tolist() == [0, 15, 11, 5]  # row 0 is v = 1; outside [0, 1] repeats


def test_depth_control_is_brightest_nearest_and_black_off_the_object():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    mesh = LoadedMesh(sphere.vertices, sphere.faces, np.zeros((len(sphere.vertices), 2)), [])
    cam = OrbitCamera(0, 0)
    r = rasterize(mesh, [cam], fit_frame(mesh.vertices, [cam]), 64)
    depth = control_depth(r.depth, r.mask)
    assert depth.shape == (1, 3, 64, 64) and (depth[:, 0] == depth[:, 2]).all()
    row = depth[0, 0, 32]
    centre = row[32]
    assert (depth[0, 0][~r.mask[0]] == 0).all() and centre > 0.95
    inside = row[r.mask[0, 32]]
    half = len(inside) // 2
    assert (inside[:half].diff() >= -1e-6).all() and (inside[half:].diff() <= 1e-6).all()  # falls off to the rim
    assert inside.min() >= 0.2


# -- loading ------------------------------------------------------------------------------------
def test_assets_load_with_their_own_uvs():
    for name in ("vase", "figure"):
        mesh = load_mesh(ASSETS / f"{name}.obj")
        assert mesh.notes == [] and mesh.uv.shape == (len(mesh.vertices), 2)
        assert 0 <= mesh.uv.min() and mesh.uv.max() <= 1
        assert 0.4 < uv_area(mesh) <= 1.0


def test_a_mesh_without_uvs_is_unwrapped(tmp_path):
    trimesh.creation.icosphere(subdivisions=2).export(tmp_path / "ball.ply")
    mesh = load_mesh(tmp_path / "ball.ply")
    assert mesh.notes == ["unwrapped with xatlas"]
    assert mesh.uv.shape == (len(mesh.vertices), 2) and 0 <= mesh.uv.min() and mesh.uv.max() <= 1
    a, b, c = (mesh.uv[mesh.faces[:, k]] for k in range(3))
    assert (np.abs(cross2(b - a, c - a)) > 0).all()  # every face gets UV area
    assert uv_area(mesh) <= 1.0 and uv_coverage(mesh, 256).float().mean() > 0.3  # charts do not overlap
    # xatlas splits vertices on seams only: positions stay on the sphere
    assert np.allclose(np.linalg.norm(mesh.vertices, axis=1), 1, atol=1e-6)


def test_a_multi_part_scene_is_merged_or_rejected(tmp_path):
    parts = [trimesh.creation.box(), trimesh.creation.icosphere().apply_translation([3, 0, 0])]
    trimesh.Scene(parts).export(tmp_path / "two.glb")
    with collecting() as notes:
        mesh = load_mesh(tmp_path / "two.glb")
    assert any("scene of 2 parts: merged into one mesh" in n for n in notes)
    assert mesh.notes == ["merged 2 parts into one mesh", "unwrapped with xatlas"]
    assert len(mesh.faces) == sum(len(p.faces) for p in parts)
    with pytest.raises(ConfigError, match="scene of 2 parts and app.merge_parts=false rejects it"):
        load_mesh(tmp_path / "two.glb", merge_parts=False)


# -- the app end to end -------------------------------------------------------------------------
def test_view_prompts_name_the_side_each_camera_sees():
    from syncframe.pipeline import prepare

    app = prepare(resolve([*FAST, f"mesh={ASSETS / 'vase.obj'}", "prompt=a vase"])).app
    prompts, index = app.prompts()
    assert prompts == ["a vase, back view", "a vase, front view", "a vase, side view"]
    labels = [prompts[i].split(", ")[1] for i in index]
    # azimuths 0, 45, ..., 315 at elevation 0, then 0 and 180 at elevation 30
    assert labels == ["front view", "front view", "side view", "back view", "back view", "back view", "side view",
                      "front view", "front view", "back view"]
    app = prepare(resolve([*FAST, f"mesh={ASSETS / 'vase.obj'}", "app.view_prompts=false"])).app
    assert len(app.prompts()[0]) == 1


def test_end_to_end_glb_reloads_with_its_texture_and_uvs(tmp_path):
    out = tmp_path / "run"
    assert main(["run", *FAST, f"mesh={ASSETS / 'figure.obj'}", "sync=synctweedies", f"out={out}"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "heldout", "mesh.glb", "renders.png", "run.json",
                                                     "texture.png", "viewer.html", "views.png"]
    assert sorted(p.name for p in (out / "heldout").iterdir()) == [f"novel_{k}.png" for k in range(4)]
    assert "syncframeMeshViewer" in (out / "viewer.html").read_text()
    source = load_mesh(ASSETS / "figure.obj")
    texture = np.array(Image.open(out / "texture.png"))
    meta = json.loads((out / "run.json").read_text())
    size = meta["metrics"]["texture_size"]
    assert texture.shape == (size, size, 3) and size == 8 * meta["metrics"]["latent_texture_size"]
    scene = trimesh.load(out / "mesh.glb")
    (glb,) = scene.geometry.values()
    assert glb.vertices.shape == source.vertices.shape and np.array_equal(glb.faces, source.faces)
    assert np.allclose(glb.visual.uv, source.uv, atol=1e-6)
    assert np.array_equal(np.array(glb.visual.material.baseColorTexture.convert("RGB")), texture)
    assert Image.open(out / "renders.png").size == (5 * 256, 2 * 256)
    assert 0.3 < meta["metrics"]["island_texels_seen"] <= 1 and meta["timings_s"]["build_space"] > 0
    # every texel has a colour: the fill and the dilation leave no black holes
    assert (texture.reshape(-1, 3).max(1) > 0).mean() > 0.999


def test_a_z_up_mesh_is_seen_as_its_y_up_twin(tmp_path):
    vase = load_mesh(ASSETS / "vase.obj")
    x, y, z = vase.vertices.T
    LoadedMesh(np.stack([x, -z, y], 1), vase.faces, vase.uv, []).trimesh().export(tmp_path / "z_up.glb")
    from syncframe.pipeline import prepare

    apps = [prepare(resolve([*FAST, f"mesh={m}", *extra])).app
            for m, extra in ((ASSETS / "vase.obj", []), (tmp_path / "z_up.glb", ["app.up=z"]))]
    assert torch.equal(apps[0].latent_raster.mask, apps[1].latent_raster.mask)
    assert torch.allclose(apps[0].latent_raster.uv, apps[1].latent_raster.uv, atol=1e-5)
    assert np.allclose(apps[1].mesh.vertices[:, 2], y)  # the output keeps the input's frame


def test_a_glb_with_uvs_is_textured_in_place(tmp_path):
    """Our own GLB output as input: its UVs are kept (no unwrap), the rig sees it as before."""
    first = load_mesh(ASSETS / "vase.obj")
    (tmp_path / "vase.glb").write_bytes(first.trimesh(Image.new("RGB", (8, 8))).export(file_type="glb"))
    again = load_mesh(tmp_path / "vase.glb")
    assert again.notes == [] and np.allclose(again.uv, first.uv, atol=1e-6)


@pytest.mark.parametrize("sync, agree", [("none", False), ("multidiffusion", True), ("canonical-x0", True),
                                         ("syncdiffusion", True), ("synctweedies", True)])
def test_every_synchronizer_runs_and_syncs_make_the_views_agree(sync, agree, tmp_path):
    extra = ["sync.weight=1", "sync.loss_resolution=64", "sync.grad_through_unet=false"] if sync == "syncdiffusion" else []
    out = tmp_path / sync
    assert main(["run", *FAST, f"mesh={ASSETS / 'vase.obj'}", f"sync={sync}", *extra, f"out={out}",
                 "app.views=[{elevation: 0, count: 4}, {elevation: 30, count: 2}]"]) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["num_views"] == 6
    disagreement = meta["metrics"]["latent_disagreement"]
    assert disagreement < 0.01 if agree else disagreement > 0.1


def test_depth_controlnet_gets_the_rendered_depth(tmp_path):
    from syncframe.pipeline import prepare

    cfg = resolve([*FAST, f"mesh={ASSETS / 'vase.obj'}", "controlnet=tiny"])
    app = prepare(cfg).app
    control = app.control_images()
    assert control.shape == (10, 3, 512, 512) and torch.equal(control[:, 0] > 0, app.rgb_raster.mask)
    rig = "app.views=[{elevation: 0, count: 3}]"
    with_depth = generate_from_config(resolve([*FAST, f"mesh={ASSETS / 'vase.obj'}", rig, "controlnet=tiny"]))
    without = generate_from_config(resolve([*FAST, f"mesh={ASSETS / 'vase.obj'}", rig]))
    assert (with_depth.views - without.views).abs().mean() > 1e-2  # the depth reaches the UNet


@pytest.mark.gpu
def test_nvdiffrast_uv_maps_agree_with_ray_casting(vase):
    need_gpu("nvdiffrast")
    need_module("nvdiffrast.torch", "nvdiffrast, an optional GPU extra")
    views = rig_from_config(RIG)
    for projection in ("orthographic", "perspective"):
        frame = fit_frame(vase.vertices, views, projection)
        cpu = rasterize(vase, views, frame, 256, "embree")
        gpu = rasterize(vase, views, frame, 256, "nvdiffrast")
        both = cpu.mask & gpu.mask
        assert (cpu.mask != gpu.mask).float().mean() < 0.01  # silhouettes differ by edge pixels only
        same_face = both & (cpu.face == gpu.face)
        assert same_face.float().sum() / both.float().sum() > 0.97
        assert (cpu.uv[same_face] - gpu.uv[same_face]).abs().max() < 1e-3
        assert torch.allclose(cpu.depth[same_face], gpu.depth[same_face], atol=1e-3 * frame.radius)


def test_synchronized_views_match_the_texture_they_paint(tmp_path):
    """On the closed-form mixture prior (structured images, no weights), SyncTweedies' decoded
    views agree with renders of the texture they produce; independent views do not."""
    errors = {}
    for sync in ("none", "synctweedies", "multidiffusion"):
        out = tmp_path / sync
        assert main(["run", "app=mesh", "model=gaussian-mixture", "steps=20", "progress=false", "prompt=sunset",
                     f"mesh={ASSETS / 'vase.obj'}", f"sync={sync}", f"out={out}"]) == 0
        errors[sync] = json.loads((out / "run.json").read_text())["metrics"]["reprojection_error"]
    assert errors["synctweedies"] < errors["none"] / 4 and errors["multidiffusion"] < errors["none"] / 4, errors


# -- ordinary meshes that crashed the process, and the unseen-texel fill ------------------------
def test_an_82k_face_icosphere_that_crashed_xatlas_runs(tmp_path):
    """xatlas 0.0.11 segfaults on this mesh in one piece; unwrapped in pieces in a child process
    it takes under a second (a 1.3 M-face icosphere with app.max_faces=2000000: 128 pieces, the
    whole run 29 s and 1.4 GB on 2 cores, measured by hand)."""
    trimesh.creation.icosphere(subdivisions=6).export(tmp_path / "ico.ply")
    out = tmp_path / "run"
    assert main(["run", *FAST, f"mesh={tmp_path / 'ico.ply'}", f"out={out}"]) == 0
    meta = json.loads((out / "run.json").read_text())["metrics"]["mesh"]
    assert meta["faces"] == 81920 and meta["notes"] == ["unwrapped with xatlas in 8 pieces"]


def test_faces_split_into_compact_pieces_of_bounded_size():
    centres = np.random.default_rng(0).random((1000, 3)) * [10, 1, 1]
    pieces = split_faces(centres, 128)
    assert all(len(p) <= 128 for p in pieces) and len(pieces) == 8
    assert np.array_equal(np.sort(np.concatenate(pieces)), np.arange(1000))
    # median cuts along the long axis: the pieces are slabs in x that do not interleave
    spans = sorted((centres[p, 0].min(), centres[p, 0].max()) for p in pieces)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_texel_surface_of_a_plane_is_its_closed_form_point():
    points, covered = texel_surface(plane(), 16)
    assert covered.all()
    centre = (np.arange(16) + 0.5) / 16 * 2 - 1  # texel centres in x and (flipped) y
    assert np.allclose(points[..., 0], centre[None, :]) and np.allclose(points[..., 1], -centre[:, None])
    assert np.allclose(points[..., 2], 0)


def test_unseen_texels_are_filled_from_the_surface_in_front_not_from_uv_neighbours():
    """Two parallel squares 0.01 apart, side by side in UV: only the front one is seen. Each
    unseen texel of the back square takes the colour of the front texel right before it; a fill
    in UV space would smear the front square's last column across the whole back square."""
    xy = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    vertices = np.concatenate([np.c_[xy, np.zeros(4)], np.c_[xy, np.full(4, -0.01)]])
    uv = np.concatenate([(xy + 1) / 4, (xy + 1) / 4 + [0.5, 0]])  # front: left half, back: right half
    square = LoadedMesh(vertices, np.array([[0, 1, 2], [0, 2, 3], [4, 6, 5], [4, 7, 6]]), uv, [])
    points, covered = texel_surface(square, 32)
    seen = np.zeros((32, 32), bool)
    seen[:, :16] = covered[:, :16]  # the front square is seen, the back one is not
    colour = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    filled = apply_fill(colour, surface_fill(points, covered, seen))
    back = covered[:, 16:] & ~seen[:, 16:]
    assert back.sum() > 100
    # the back texel at (r, 16 + c) lies behind the front texel at (r, c)
    behind = filled[:, :, 16:][:, torch.from_numpy(back)] - colour[:, :, :16][:, torch.from_numpy(back)]
    # the texel right in front is 0.01 away, its neighbours 0.125: it carries ~99% of the weight
    assert behind.abs().max() < 0.05  # measured 0.016 (uniform noise colours; a wrong source is ~0.33 off)
    assert torch.equal(filled[:, torch.from_numpy(seen)], colour[:, torch.from_numpy(seen)])


def test_renders_are_shaded_so_faces_at_other_angles_differ(tmp_path):
    """A box seen from above its edge: a uniform texture renders as two brightnesses."""
    trimesh.creation.box().export(tmp_path / "box.obj")
    out = tmp_path / "run"
    views = "app.views=[{elevation: 60, azimuths: [0]}]"  # |cos| 0.87 on the top face, 0.5 on the front one
    assert main(["run", *FAST, f"mesh={tmp_path / 'box.obj'}", views, "app.view_prompts=false", f"out={out}",
                 "model=gaussian"]) == 0
    sheet = np.asarray(Image.open(out / "renders.png").convert("L"), dtype=float)
    values = sheet[sheet < 250]  # the box, not the white background
    top, sides = np.percentile(values, 90), np.percentile(values, 10)
    assert top - sides > 20  # the top face and the side faces are lit differently
