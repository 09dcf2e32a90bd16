"""Gaussian splats: the 3DGS PLY layout in and out, and the sparse linear renderer W."""
import math

import numpy as np
import pytest
import torch

from syncframe.errors import ConfigError
from syncframe.geometry.splat_raster import (ALPHA_MAX, ALPHA_MIN, EPS2D, T_MIN, compositing_weights, look_at_camera,
                                             quat_to_rotmat, render, SparseRenderer)
from syncframe.geometry.splats import SH_C0, Splats, ply_bytes, read_ply


def random_splats(n: int, seed: int = 0, degree: int = 0) -> Splats:
    g = np.random.default_rng(seed)
    k = {0: 0, 1: 3, 2: 8, 3: 15}[degree]
    return Splats(means=g.uniform(-1, 1, (n, 3)).astype(np.float32), quats=g.normal(size=(n, 4)).astype(np.float32),
                  log_scales=np.log(g.uniform(0.05, 0.3, (n, 3))).astype(np.float32),
                  opacity_logits=g.normal(1, 1.5, n).astype(np.float32), sh_dc=g.normal(size=(n, 3)).astype(np.float32),
                  sh_rest=g.normal(size=(n, k, 3)).astype(np.float32))


def tensors(s: Splats):
    t = (lambda a: torch.from_numpy(np.asarray(a, np.float64)))
    return t(s.means), t(s.quats), t(s.scales()), t(s.opacities())


CAMERA = look_at_camera([0.3, -0.4, 4.0], [0, 0, 0], [0, -1, 0], fov_degrees=45, size=24)


def brute_force(means, quats, scales, opacities, camera) -> torch.Tensor:
    """Per pixel, splat by splat front to back, with the textbook EWA formulas: dense ``[H·W, N]``."""
    R, t = camera.viewmat[:3, :3], camera.viewmat[:3, 3]
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    splats = []
    for i in range(len(means)):
        x, y, z = (R @ means[i] + t).tolist()
        rot = quat_to_rotmat(quats[i:i + 1])[0]
        sigma = rot @ torch.diag(scales[i] ** 2) @ rot.T
        J = torch.tensor([[fx / z, 0, -fx * x / z**2], [0, fy / z, -fy * y / z**2]], dtype=torch.float64)
        cov2d = J @ R @ sigma @ R.T @ J.T + EPS2D * torch.eye(2, dtype=torch.float64)
        splats.append((z, i, torch.tensor([fx * x / z + cx, fy * y / z + cy]), torch.linalg.inv(cov2d)))
    splats.sort(key=lambda s: (s[0], s[1]))
    W = torch.zeros(camera.height * camera.width, len(means), dtype=torch.float64)
    for row in range(camera.height):
        for col in range(camera.width):
            T = 1.0
            for _, i, centre, inverse in splats:
                d = centre - torch.tensor([col + 0.5, row + 0.5], dtype=torch.float64)
                alpha = min(ALPHA_MAX, float(opacities[i]) * math.exp(-0.5 * float(d @ inverse @ d)))
                if alpha < ALPHA_MIN:
                    continue
                if T * (1 - alpha) <= T_MIN:
                    break
                W[row * camera.width + col, i] = alpha * T
                T *= 1 - alpha
    return W


def test_the_vectorised_weights_equal_a_per_pixel_compositing_loop():
    scene = tensors(random_splats(30, seed=1))
    W = compositing_weights(*scene, CAMERA).to_dense()
    reference = brute_force(*scene, CAMERA)
    assert (reference > 0).sum() > 200  # the scene covers the view
    assert torch.allclose(W, reference, atol=1e-9)


def test_row_sums_are_alpha_and_a_constant_colour_renders_to_itself():
    scene = tensors(random_splats(40, seed=2))
    W = compositing_weights(*scene, CAMERA)
    alpha = torch.sparse.sum(W, dim=1).to_dense()
    assert 0.05 < alpha.mean() < 1 and alpha.max() <= 1 - T_MIN + 1e-12
    colour = torch.tensor([0.2, -0.5, 0.9], dtype=torch.float64)
    image = render(W, colour.expand(40, 3), colour, 24, 24)
    assert torch.allclose(image, colour[:, None, None].expand(3, 24, 24), atol=1e-12)


def test_render_and_its_adjoint():
    scene = tensors(random_splats(25, seed=3))
    W = compositing_weights(*scene, CAMERA)
    c, x = torch.randn(25, 4, dtype=torch.float64), torch.randn(24 * 24, 4, dtype=torch.float64)
    assert torch.allclose((torch.sparse.mm(W, c) * x).sum(), (c * torch.sparse.mm(W.t(), x)).sum())


def test_an_opaque_quad_in_front_hides_the_one_behind():
    """Flat square grids of splats facing the camera: a front quad of two layers (opaque: T falls
    below 1e-4 through it) covers the middle of a bigger back quad."""
    g = torch.linspace(-0.6, 0.6, 7, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    layer = (lambda xy, z: torch.cat([xy, torch.full((len(xy), 1), z, dtype=torch.float64)], 1))
    means = torch.cat([layer(grid, 1.0), layer(grid, 1.05), layer(grid * 3, -1.0)])  # front: splats 0..97
    n = len(means)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64).expand(n, 4)
    scales = torch.tensor([[0.25, 0.25, 1e-3]], dtype=torch.float64).expand(n, 3)
    opacities = torch.full((n,), 0.99, dtype=torch.float64)
    camera = look_at_camera([0, 0, 5.0], [0, 0, 0], [0, -1, 0], fov_degrees=30, size=32)
    W = compositing_weights(means, quats, scales, opacities, camera).to_dense().reshape(32, 32, n)
    centre = W[12:20, 12:20]
    assert (centre[..., 98:] == 0).all()  # nothing of the back quad shows through the front one
    assert (centre.sum(-1) > 0.99).all()  # opaque (compositing stops before T would reach 1e-4)
    assert (W[..., 98:].sum(-1) > 0.5).any()  # the back quad is bigger: seen around the front one


def test_splats_behind_the_camera_or_off_screen_get_no_weight():
    means = torch.tensor([[0, 0, 0.0], [0, 0, 10.0], [50, 0, 0.0]], dtype=torch.float64)  # in view, behind, far right
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64).expand(3, 4)
    scales = torch.full((3, 3), 0.2, dtype=torch.float64)
    camera = look_at_camera([0, 0, 5.0], [0, 0, 0], [0, -1, 0], fov_degrees=40, size=16)
    W = compositing_weights(means, quats, scales, torch.full((3,), 0.9, dtype=torch.float64), camera).to_dense()
    assert W[:, 0].sum() > 1 and W[:, 1].sum() == 0 and W[:, 2].sum() == 0


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_round_trip_keeps_every_property(tmp_path, degree):
    splats = random_splats(50, seed=degree, degree=degree)
    splats.normals = np.zeros((50, 3), np.float32)
    path = tmp_path / "scene.ply"
    path.write_bytes(ply_bytes(splats))
    back = read_ply(path)
    assert back.sh_degree == degree
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest", "normals"):
        assert np.array_equal(getattr(back, name), getattr(splats, name)), name
    recoloured = back.with_rgb(np.full((50, 3), 0.25))
    assert np.allclose(recoloured.rgb(), 0.25) and not recoloured.sh_rest.any()
    assert np.allclose(0.5 + SH_C0 * recoloured.sh_dc, 0.25)


def write_vertices(path, columns: dict, faces: bool = False):
    from plyfile import PlyData, PlyElement

    n = len(next(iter(columns.values())))
    table = np.empty(n, dtype=[(k, "f4") for k in columns])
    for k, v in columns.items():
        table[k] = v
    elements = [PlyElement.describe(table, "vertex")]
    if faces:
        face = np.empty(1, dtype=[("vertex_indices", "i4", (3,))])
        face["vertex_indices"] = [[0, 1, 2]]
        elements.append(PlyElement.describe(face, "face"))
    PlyData(elements).write(str(path))
    return path


def scene_columns(splats: Splats) -> dict:
    import io

    from plyfile import PlyData

    data = PlyData.read(io.BytesIO(ply_bytes(splats)))["vertex"].data
    return {name: np.array(data[name]) for name in data.dtype.names}


@pytest.mark.parametrize("make, message", [
    (lambda p: (p / "x.ply").write_text("hello") and p / "x.ply", "is not a PLY file"),
    (lambda p: write_vertices(p / "m.ply", {"x": [0, 1, 0], "y": [0, 0, 1], "z": [0, 0, 0]}, faces=True),
     "is a mesh PLY, not 3D Gaussian splats"),
    (lambda p: write_vertices(p / "c.ply", {"x": [0, 1], "y": [0, 0], "z": [0, 0]}), "is a point cloud PLY"),
    (lambda p: write_vertices(p / "e.ply", {k: v[:0] for k, v in scene_columns(random_splats(3)).items()}),
     "has zero splats"),
    (lambda p: write_vertices(p / "n.ply", {**scene_columns(random_splats(3)), "x": [0, float("nan"), 0]}),
     "1 splats with NaN or infinite means"),
    (lambda p: write_vertices(p / "t.ply", {**scene_columns(random_splats(3)), "opacity": [-20.0] * 3}),
     "every splat is transparent"),
    (lambda p: write_vertices(p / "r.ply", {**scene_columns(random_splats(3)), "f_rest_0": [0.0] * 3}),
     "has 1 f_rest properties"),
    (lambda p: p / "missing.ply", "does not exist"),
])
def test_bad_splat_files_are_one_clear_error(tmp_path, make, message):
    with pytest.raises(ConfigError, match=None) as error:
        read_ply(make(tmp_path))
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_more_splats_than_the_limit_is_refused(tmp_path):
    path = tmp_path / "big.ply"
    path.write_bytes(ply_bytes(random_splats(20)))
    with pytest.raises(ConfigError, match="above app.max_splats=10"):
        read_ply(path, max_splats=10)


def test_weights_built_in_several_chunks_equal_one_chunk(monkeypatch):
    """A view with more (splat, pixel) candidates than one chunk holds (big splats, big views) is
    built in pieces; every piece must find its pixels (an offset bug once sent them to negative rows)."""
    import syncframe.geometry.splat_raster as raster

    s = random_splats(40, seed=3)
    camera = look_at_camera([0.0, 0.0, 3.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], 50.0, 24)
    whole = compositing_weights(*tensors(s), camera).to_dense()
    monkeypatch.setattr(raster, "PAIRS_PER_CHUNK", 50)
    assert torch.equal(compositing_weights(*tensors(s), camera).to_dense(), whole)
    assert whole.abs().sum() > 0


def test_a_view_that_sees_no_splat_has_zero_alpha():
    s = random_splats(10)
    away = look_at_camera([0.0, 0.0, 3.0], [0.0, 0.0, 6.0], [0.0, 1.0, 0.0], 50.0, 16)
    renderer = SparseRenderer(*tensors(s), [away])
    assert renderer.alpha.shape == (1, 16, 16) and renderer.alpha.abs().sum() == 0
