"""3D Gaussian splats in the INRIA 3DGS PLY layout: read (checked), hold as arrays, write.

One ``vertex`` element, one row per splat: ``x y z`` (mean), optional ``nx ny nz``, ``f_dc_0..2``
(degree-0 SH), ``f_rest_0..`` (higher SH degrees, channel-major: all of red's coefficients, then
green's, then blue's), ``opacity`` (a logit), ``scale_0..2`` (logs), ``rot_0..3`` (a quaternion,
w x y z, not necessarily normalised).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError

SH_C0 = 0.28209479177387814  # the degree-0 SH basis: colour = 0.5 + SH_C0 · f_dc
REST_PER_DEGREE = {0: 0, 1: 3, 2: 8, 3: 15}  # higher-order SH coefficients per channel
REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3")
ALPHA_MIN = 1 / 255  # a splat below this opacity never contributes to a pixel


@dataclass
class Splats:
    """A 3DGS scene; shapes in the names' comments (N splats, K higher SH coefficients per channel)."""

    means: np.ndarray  # [N, 3]
    quats: np.ndarray  # [N, 4] w x y z
    log_scales: np.ndarray  # [N, 3]
    opacity_logits: np.ndarray  # [N]
    sh_dc: np.ndarray  # [N, 3]
    sh_rest: np.ndarray  # [N, K, 3]
    normals: np.ndarray | None = None  # [N, 3] when the file has them
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # other per-splat properties, kept on write

    def __len__(self) -> int:
        return len(self.means)

    @property
    def sh_degree(self) -> int:
        return {v: k for k, v in REST_PER_DEGREE.items()}[self.sh_rest.shape[1]]

    def opacities(self) -> np.ndarray:
        return 1 / (1 + np.exp(-self.opacity_logits))

    def scales(self) -> np.ndarray:
        return np.exp(self.log_scales)

    def rgb(self) -> np.ndarray:
        """The view-independent colour ``[N, 3]`` in [0, 1] (degree 0 only, clamped)."""
        return np.clip(0.5 + SH_C0 * self.sh_dc, 0, 1)

    def with_rgb(self, rgb: np.ndarray) -> Splats:
        """These splats with colour ``rgb: [N, 3]`` in [0, 1] as their DC term and higher SH zeroed."""
        return replace(self, sh_dc=((rgb - 0.5) / SH_C0).astype(np.float32), sh_rest=np.zeros_like(self.sh_rest))


def read_ply(path: str | Path, max_splats: int = 2_000_000, key: str = "splats") -> Splats:
    """A 3DGS PLY -> :class:`Splats`, or ``ConfigError`` naming what is wrong and what to do."""
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}={str(path)!r} does not exist; give a 3D Gaussian Splatting PLY file")
    try:
        ply = PlyData.read(str(path))
    except Exception as exc:  # plyfile raises several types for files that are not PLY
        raise ConfigError(f"{key}={str(path)!r} is not a PLY file ({exc}); give a 3DGS PLY") from None
    if "vertex" not in [e.name for e in ply.elements]:
        raise ConfigError(f"{key}={str(path)!r} has no vertex element; give a 3DGS PLY")
    vertex = ply["vertex"]
    names = [p.name for p in vertex.properties]
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        kind = "a mesh" if "face" in [e.name for e in ply.elements] else "a point cloud"
        raise ConfigError(f"{key}={str(path)!r} is {kind} PLY, not 3D Gaussian splats (it lacks {', '.join(missing[:4])}"
                          f"{'...' if len(missing) > 4 else ''}); texture a mesh with app=mesh mesh=<file>")
    count = len(vertex.data)
    if count == 0:
        raise ConfigError(f"{key}={str(path)!r} has zero splats")
    if count > max_splats:
        raise ConfigError(f"{key}={str(path)!r} has {count} splats, above app.max_splats={max_splats}; prune the "
                          "scene or raise app.max_splats")
    rest_names = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
    per_channel = len(rest_names) // 3
    if len(rest_names) % 3 or per_channel not in REST_PER_DEGREE.values():
        raise ConfigError(f"{key}={str(path)!r} has {len(rest_names)} f_rest properties; 3DGS files have 0, 9, 24 or "
                          "45 (SH degree 0-3)")

    def columns(*wanted) -> np.ndarray:
        return np.stack([np.asarray(vertex[n], dtype=np.float32) for n in wanted], axis=1) if wanted \
            else np.zeros((count, 0), np.float32)

    rest = columns(*rest_names).reshape(count, 3, per_channel).transpose(0, 2, 1)
    known = set(REQUIRED) | set(rest_names) | {"nx", "ny", "nz"}
    splats = Splats(means=columns("x", "y", "z"), quats=columns("rot_0", "rot_1", "rot_2", "rot_3"),
                    log_scales=columns("scale_0", "scale_1", "scale_2"),
                    opacity_logits=columns("opacity")[:, 0], sh_dc=columns("f_dc_0", "f_dc_1", "f_dc_2"),
                    sh_rest=np.ascontiguousarray(rest),
                    normals=columns("nx", "ny", "nz") if {"nx", "ny", "nz"} <= set(names) else None,
                    extra={n: np.asarray(vertex[n]) for n in names if n not in known})
    check_values(splats, f"{key}={str(path)!r}")
    return splats


def check_values(splats: Splats, label: str) -> None:
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest"):
        values = getattr(splats, name)
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            raise ConfigError(f"{label} has {int(bad.sum())} splats with NaN or infinite {name}; repair or prune them")
    if (np.linalg.norm(splats.quats, axis=1) == 0).any():
        raise ConfigError(f"{label} has splats whose rotation quaternion is zero; repair or prune them")
    if (splats.opacities() < ALPHA_MIN).all():
        raise ConfigError(f"{label}: every splat is transparent (opacity below 1/255), so nothing renders")


def ply_bytes(splats: Splats) -> bytes:
    """:class:`Splats` as a binary little-endian 3DGS PLY (the input's layout: normals, SH degree
    and extra properties kept)."""
    import io

    from plyfile import PlyData, PlyElement

    n, k = len(splats), splats.sh_rest.shape[1]
    columns = {"x": splats.means[:, 0], "y": splats.means[:, 1], "z": splats.means[:, 2]}
    if splats.normals is not None:
        columns.update(nx=splats.normals[:, 0], ny=splats.normals[:, 1], nz=splats.normals[:, 2])
    columns.update({f"f_dc_{i}": splats.sh_dc[:, i] for i in range(3)})
    rest = splats.sh_rest.transpose(0, 2, 1).reshape(n, 3 * k)  # channel-major, as 3DGS writes it
    columns.update({f"f_rest_{i}": rest[:, i] for i in range(3 * k)})
    columns["opacity"] = splats.opacity_logits
    columns.update({f"scale_{i}": splats.log_scales[:, i] for i in range(3)})
    columns.update({f"rot_{i}": splats.quats[:, i] for i in range(4)})
    table = np.empty(n, dtype=[(name, "f4") for name in columns] + [(k_, v.dtype) for k_, v in splats.extra.items()])
    for name, values in {**columns, **splats.extra}.items():
        table[name] = values
    buffer = io.BytesIO()
    PlyData([PlyElement.describe(table, "vertex")], text=False).write(buffer)
    return buffer.getvalue()


def splats_on_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0,
                      opacity: float = 0.95, overlap: float = 0.75, flatness: float = 0.1) -> Splats:
    """A 3DGS scene made from a mesh: ``count`` splats spread evenly over its surface (area-weighted
    samples thinned to a blue-noise spacing d), each a disc in the surface's tangent plane with
    σ = ``overlap`` · d along it and ``flatness`` · σ along the face normal, grey, opacity ``opacity``.

    σ ≥ 0.7 d makes neighbouring discs overlap at well over half their peak, so the silhouette
    and the surface show no holes at any distance (``tests/test_splat_app.py`` checks the coverage).
    """
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    rng_seed = np.random.default_rng(seed).integers(2**31)
    points, face = trimesh.sample.sample_surface_even(mesh, count, seed=int(rng_seed))
    spacing = float(np.sqrt(mesh.area / max(len(points), 1)))
    normals = mesh.face_normals[face]
    sigma = overlap * spacing
    n = len(points)
    return Splats(means=points.astype(np.float32), quats=quat_from_z(normals).astype(np.float32),
                  log_scales=np.log(np.tile([sigma, sigma, flatness * sigma], (n, 1))).astype(np.float32),
                  opacity_logits=np.full(n, np.log(opacity / (1 - opacity)), np.float32),
                  sh_dc=np.zeros((n, 3), np.float32), sh_rest=np.zeros((n, 0, 3), np.float32),
                  normals=normals.astype(np.float32))


def quat_from_z(directions: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[N, 4]`` (w x y z) of the shortest rotations taking +z to ``directions [N, 3]``."""
    d = directions / np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
    w = 1 + d[:, 2]
    q = np.stack([w, -d[:, 1], d[:, 0], np.zeros(len(d))], axis=1)  # (1 + z·d, z × d)
    opposite = w < 1e-8  # d = −z: half a turn about x
    q[opposite] = [0.0, 1.0, 0.0, 0.0]
    return q / np.linalg.norm(q, axis=1, keepdims=True)
