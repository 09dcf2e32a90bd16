"""Where every texel of a UV texture lies on the mesh surface, and a fill of unseen texels along it.

A texel no view sees must still get a colour. Copying the nearest seen texel *in the texture*
(a Voronoi fill in UV space) paints long streaks across large unseen islands (the inside of a
vase), because UV neighbours of an island border are not surface neighbours. Instead each unseen
texel takes an inverse-distance-weighted mean of the seen texels nearest to it *on the surface*
(in 3-D), so it blends the colours of the surface around it.
"""
from __future__ import annotations

import numpy as np
import torch

from .meshes import LoadedMesh

CANDIDATES_PER_CHUNK = 4_000_000  # texel-in-triangle tests held in memory at once


def texel_hits(mesh: LoadedMesh, size: int):
    """The texels whose centre lies inside a UV triangle, in chunks of about
    ``CANDIDATES_PER_CHUNK`` candidates: yields (face ``[n]``, x ``[n]``, y ``[n]``, barycentric
    ``[n, 3]``). Texture row 0 is ``v = 1``; UVs outside [0, 1] are not drawn."""
    corners = mesh.uv[mesh.faces] * [size, -size] + [0, size]  # [F, 3, 2] texel units, x right, y down
    low = np.clip(np.floor(corners.min(1) - 0.5), 0, size - 1).astype(np.int64)
    high = np.clip(np.ceil(corners.max(1) - 0.5), 0, size - 1).astype(np.int64)
    extent = high - low + 1
    counts = extent[:, 0] * extent[:, 1]
    done = np.concatenate([[0], np.cumsum(counts)])  # candidates before each face
    start = 0
    while start < len(counts):
        stop = max(start + 1, int(np.searchsorted(done, done[start] + CANDIDATES_PER_CHUNK, side="right")) - 1)
        ids = np.arange(start, min(stop, len(counts)))
        start = ids[-1] + 1
        face = np.repeat(ids, counts[ids])
        local = np.arange(len(face)) - np.repeat(np.cumsum(counts[ids]) - counts[ids], counts[ids])
        x = low[face, 0] + local % extent[face, 0]
        y = low[face, 1] + local // extent[face, 0]
        bary = barycentric(corners[face], np.stack([x + 0.5, y + 0.5], -1))
        inside = (bary >= -1e-9).all(1)
        yield face[inside], x[inside], y[inside], bary[inside]


def texel_surface(mesh: LoadedMesh, size: int) -> tuple[np.ndarray, np.ndarray]:
    """3-D points ``[size, size, 3]`` of the texels inside a UV triangle, and that mask ``[size, size]``."""
    points = np.zeros((size, size, 3))
    covered = np.zeros((size, size), bool)
    for face, x, y, bary in texel_hits(mesh, size):
        points[y, x] = np.einsum("nk,nkc->nc", bary, mesh.vertices[mesh.faces[face]])
        covered[y, x] = True
    return points, covered


def texel_faces(mesh: LoadedMesh, size: int) -> np.ndarray:
    """The face under every texel ``[size, size]`` (int64, −1 where no UV triangle is)."""
    faces = np.full((size, size), -1, np.int64)
    for face, x, y, _ in texel_hits(mesh, size):
        faces[y, x] = face
    return faces


def barycentric(triangles: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Barycentric coordinates ``[N, 3]`` of 2-D points ``p: [N, 2]`` in ``triangles: [N, 3, 2]``
    (all −1 for degenerate triangles, so no point is inside them)."""
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    v0, v1, v2 = b - a, c - a, p - a
    det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    safe = np.where(np.abs(det) > 1e-12, det, 1.0)
    beta = (v2[:, 0] * v1[:, 1] - v2[:, 1] * v1[:, 0]) / safe
    gamma = (v0[:, 0] * v2[:, 1] - v0[:, 1] * v2[:, 0]) / safe
    out = np.stack([1 - beta - gamma, beta, gamma], 1)
    return np.where((np.abs(det) > 1e-12)[:, None], out, -1.0)


def surface_fill(points: np.ndarray, covered: np.ndarray, seen: np.ndarray, neighbours: int = 4,
                 cells: int = 96) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every texel on the surface (``covered``) that no view ``seen``: ``neighbours`` seen
    texels near it in 3-D and inverse-squared-distance weights.

    The seen texels are thinned to one per cell of a ``cells``³ grid over their extent, and the
    neighbours are approximate (within twice the true distance): a fill needs the colours around
    a texel, not the exact nearest ones, and exact queries on the regular grids of texel points
    (a box) cost minutes. Returns (target flat indices ``[M]``, source flat indices ``[M, k]``,
    weights ``[M, k]``), empty when nothing is seen or nothing needs filling.
    """
    from scipy.spatial import cKDTree

    seen, covered = np.asarray(seen, bool).reshape(-1), np.asarray(covered, bool).reshape(-1)
    sources = np.flatnonzero(seen & covered)
    targets = np.flatnonzero(covered & ~seen)
    if len(sources) == 0 or len(targets) == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, 1)
    flat = points.reshape(-1, 3)
    source_points = flat[sources]
    low, extent = source_points.min(0), max(float(np.ptp(source_points, 0).max()), 1e-12)
    cell = np.minimum(((source_points - low) / extent * cells).astype(np.int64), cells - 1)
    _, first = np.unique((cell[:, 0] * cells + cell[:, 1]) * cells + cell[:, 2], return_index=True)
    sources = sources[first]
    k = min(neighbours, len(sources))
    distance, nearest = cKDTree(flat[sources]).query(flat[targets], k=k, eps=1.0, workers=-1)
    distance, nearest = distance.reshape(len(targets), k), nearest.reshape(len(targets), k)
    weight = 1 / (distance**2 + (1e-6 * extent) ** 2)
    weight /= weight.sum(1, keepdims=True)
    return torch.from_numpy(targets), torch.from_numpy(sources[nearest]), torch.from_numpy(weight).float()


def apply_fill(z: torch.Tensor, fill: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
               chunk: int = 1 << 18) -> torch.Tensor:
    """``z: [C, H, W]`` with the :func:`surface_fill` targets replaced by their weighted sources."""
    targets, sources, weights = fill
    if len(targets) == 0:
        return z
    flat = z.reshape(z.shape[0], -1).clone()
    for i in range(0, len(targets), chunk):
        src = sources[i:i + chunk].to(z.device)
        w = weights[i:i + chunk].to(z.device, z.dtype)
        flat[:, targets[i:i + chunk].to(z.device)] = (flat[:, src] * w).sum(-1)
    return flat.reshape(z.shape)
