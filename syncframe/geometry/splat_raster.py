"""Rendering fixed Gaussian splats as a linear map of their colours: ``render(c) = W c + (1 − A) bg``.

The geometry (means, scales, rotations, opacities) never changes during a run, so every view's
render is linear in the splat colours; ``W: [H·W, N]`` holds the compositing weights α_i T_i of
every (pixel, splat) pair, built once per view as a sparse matrix, and the adjoint is ``Wᵀ``.
The weights follow gsplat's rasterizer (``gsplat.rasterization``, the EWA splatting of 3DGS):

- camera in the OpenCV convention (x right, y down, z forward), pinhole intrinsics ``K``; splats
  with depth below ``NEAR`` are culled; the Jacobian's x/z, y/z are clamped to 1.3× the half-FOV;
- 2-D covariance ``J R Σ Rᵀ Jᵀ + eps2d·I`` (``eps2d`` = 0.3 px², gsplat's default blur);
- α = min(0.999, o · exp(−½ dᵀ Σ₂⁻¹ d)) at pixel centres (j + ½, i + ½), skipped below 1/255;
  the footprint (3.33σ, shrunk for faint splats to where α reaches 1/255) keeps exactly those;
- front to back by camera depth; a pixel stops before the splat that would bring T to ≤ 1e-4.

Pure torch: the same code runs on CUDA tensors. Row sums of W are the pixel's alpha A = 1 − T.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

ALPHA_MIN = 1 / 255
ALPHA_MAX = 0.999
T_MIN = 1e-4
EPS2D = 0.3
EXTENT = 3.33
NEAR = 0.01
PAIRS_PER_CHUNK = 8_000_000  # (splat, pixel) candidates evaluated at once


@dataclass(frozen=True)
class PinholeCamera:
    """``viewmat [4, 4]`` world -> camera (OpenCV axes), ``K [3, 3]`` intrinsics, image size in pixels."""

    viewmat: torch.Tensor
    K: torch.Tensor
    width: int
    height: int


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` w x y z (any norm) -> rotation matrices ``[N, 3, 3]``."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


@dataclass
class Projected:
    """Splats on one view's image plane (only those that can touch it)."""

    ids: torch.Tensor  # [M] splat indices
    means2d: torch.Tensor  # [M, 2] pixels
    conics: torch.Tensor  # [M, 3] the inverse 2-D covariance (a, b, c) of a x² + 2 b x y + c y²
    opacities: torch.Tensor  # [M]
    depths: torch.Tensor  # [M]
    radii: torch.Tensor  # [M, 2] footprint half-sizes in pixels (x, y)


def project(means, quats, scales, opacities, camera: PinholeCamera, eps2d: float = EPS2D) -> Projected:
    """EWA projection of splats ``means [N, 3]``, ``quats [N, 4]``, ``scales [N, 3]``,
    ``opacities [N]`` (all float64 here for a stable reference) into ``camera``."""
    viewmat, K = camera.viewmat.to(means), camera.K.to(means)
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    p = means @ R.T + t
    x, y, z = p.unbind(-1)
    rot = R @ quat_to_rotmat(quats)
    M = rot * scales[:, None, :]
    cov = M @ M.transpose(1, 2)  # R_cam Σ R_camᵀ
    tan_x, tan_y = 0.5 * camera.width / fx, 0.5 * camera.height / fy
    safe_z = z.clamp_min(NEAR)
    tx = safe_z * torch.clamp(x / safe_z, -(cx / fx + 0.3 * tan_x), (camera.width - cx) / fx + 0.3 * tan_x)
    ty = safe_z * torch.clamp(y / safe_z, -(cy / fy + 0.3 * tan_y), (camera.height - cy) / fy + 0.3 * tan_y)
    J = torch.zeros(len(z), 2, 3, dtype=means.dtype, device=means.device)
    J[:, 0, 0], J[:, 0, 2] = fx / safe_z, -fx * tx / safe_z**2
    J[:, 1, 1], J[:, 1, 2] = fy / safe_z, -fy * ty / safe_z**2
    cov2d = J @ cov @ J.transpose(1, 2)
    a, b, c = cov2d[:, 0, 0] + eps2d, cov2d[:, 0, 1], cov2d[:, 1, 1] + eps2d
    det = a * c - b * b
    extent = torch.sqrt(2 * torch.log((opacities / ALPHA_MIN).clamp_min(1))).clamp_max(EXTENT)
    radii = torch.stack([torch.ceil(extent * a.clamp_min(0).sqrt()), torch.ceil(extent * c.clamp_min(0).sqrt())], -1)
    mean2d = torch.stack([fx * x / safe_z + cx, fy * y / safe_z + cy], -1)
    visible = ((z > NEAR) & (det > 0) & (opacities >= ALPHA_MIN) & (radii > 0).all(-1)
               & (mean2d[:, 0] + radii[:, 0] > 0) & (mean2d[:, 0] - radii[:, 0] < camera.width)
               & (mean2d[:, 1] + radii[:, 1] > 0) & (mean2d[:, 1] - radii[:, 1] < camera.height))
    ids = visible.nonzero().flatten()
    safe_det = det[ids]
    conics = torch.stack([c[ids] / safe_det, -b[ids] / safe_det, a[ids] / safe_det], -1)
    return Projected(ids, mean2d[ids], conics, opacities[ids], z[ids], radii[ids].long())


def pixel_pairs(proj: Projected, width: int, height: int):
    """The (splat, pixel) pairs inside each footprint with their α, in chunks: yields
    (index into ``proj`` ``[n]``, flat pixel ``[n]``, α ``[n]``) for α ≥ 1/255."""
    low = torch.stack([(proj.means2d[:, 0] - proj.radii[:, 0]).floor().clamp(0, width - 1),
                       (proj.means2d[:, 1] - proj.radii[:, 1]).floor().clamp(0, height - 1)], -1).long()
    high = torch.stack([(proj.means2d[:, 0] + proj.radii[:, 0]).ceil().clamp(0, width - 1),
                        (proj.means2d[:, 1] + proj.radii[:, 1]).ceil().clamp(0, height - 1)], -1).long()
    extent = high - low + 1
    counts = extent[:, 0] * extent[:, 1]
    done = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    start = 0
    while start < len(counts):
        stop = max(start + 1, int(torch.searchsorted(done, done[start] + PAIRS_PER_CHUNK, right=True)) - 1)
        ids = torch.arange(start, min(stop, len(counts)), device=counts.device)
        start = int(ids[-1]) + 1
        splat = torch.repeat_interleave(ids, counts[ids])
        # each candidate's place inside its splat's footprint (the chunk starts at done[ids[0]])
        local = (torch.arange(len(splat), device=counts.device) + done[ids[0]]
                 - torch.repeat_interleave(done[ids], counts[ids]))
        px = low[splat, 0] + local % extent[splat, 0]
        py = low[splat, 1] + local // extent[splat, 0]
        dx = proj.means2d[splat, 0] - (px + 0.5)
        dy = proj.means2d[splat, 1] - (py + 0.5)
        a, b, c = proj.conics[splat].unbind(-1)
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = (proj.opacities[splat] * torch.exp(-sigma)).clamp_max(ALPHA_MAX)
        keep = (sigma >= 0) & (alpha >= ALPHA_MIN)
        yield splat[keep], (py * width + px)[keep], alpha[keep]


def compositing_weights(means, quats, scales, opacities, camera: PinholeCamera,
                        eps2d: float = EPS2D) -> torch.Tensor:
    """``W: [H·W, N]`` sparse (COO, coalesced): α_i T_i of splat i at every pixel, front to back."""
    n = len(means)
    proj = project(means, quats, scales, opacities, camera, eps2d)
    parts = list(pixel_pairs(proj, camera.width, camera.height))
    splat = torch.cat([p[0] for p in parts]) if parts else means.new_zeros(0, dtype=torch.long)
    pixel = torch.cat([p[1] for p in parts]) if parts else splat
    alpha = torch.cat([p[2] for p in parts]) if parts else means.new_zeros(0)
    # front to back per pixel: sort by (pixel, depth rank); ties in depth keep splat order
    rank = torch.empty_like(proj.ids)
    rank[torch.sort(proj.depths, stable=True).indices] = torch.arange(len(proj.ids), device=rank.device)
    order = torch.argsort(pixel * max(1, len(proj.ids)) + rank[splat], stable=True)
    splat, pixel, alpha = splat[order], pixel[order], alpha[order].double()
    # T before each splat: exp of the per-pixel exclusive cumulative sum of log(1 − α)
    log_keep = torch.log1p(-alpha)
    before = log_keep.cumsum(0) - log_keep
    first = torch.ones_like(pixel, dtype=torch.bool)
    first[1:] = pixel[1:] != pixel[:-1]
    segment = first.long().cumsum(0) - 1
    transmittance = torch.exp(before - before[first][segment])
    used = transmittance * (1 - alpha) > T_MIN  # monotone along a pixel: stops at the first that fails
    weights = (alpha * transmittance)[used].to(means.dtype)
    index = torch.stack([pixel[used], proj.ids[splat[used]]])
    return torch.sparse_coo_tensor(index, weights, (camera.height * camera.width, n), check_invariants=True).coalesce()


def pixel_alpha(W: torch.Tensor) -> torch.Tensor:
    """The row sums of ``W [H·W, N]``: each pixel's alpha A = 1 − T, ``[H·W]``."""
    if not W._nnz():  # a view that sees no splat
        return torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)
    return torch.sparse.sum(W, dim=1).to_dense()


def render(W: torch.Tensor, colours: torch.Tensor, background: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``colours [N, C]`` -> image ``[C, height, width]``: ``W c + (1 − A) bg``."""
    alpha = pixel_alpha(W)
    image = torch.sparse.mm(W, colours) + (1 - alpha)[:, None] * background[None]
    return image.T.reshape(-1, height, width)


def look_at_camera(eye, target, up, fov_degrees: float, size: int, dtype=torch.float64) -> PinholeCamera:
    """A square pinhole camera at ``eye`` looking at ``target`` (OpenCV axes; ``up`` is world up)."""
    eye, target, up = (torch.as_tensor(v, dtype=dtype) for v in (eye, target, up))
    forward = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up), dim=0)
    down = torch.linalg.cross(forward, right)
    R = torch.stack([right, down, forward])
    viewmat = torch.eye(4, dtype=dtype)
    viewmat[:3, :3], viewmat[:3, 3] = R, -R @ eye
    f = 0.5 * size / math.tan(math.radians(fov_degrees) / 2)
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], dtype=dtype)
    return PinholeCamera(viewmat, K, size, size)


class SparseRenderer:
    """Colours of fixed splats rendered in V views of ``height x width`` pixels through their
    stacked weights ``W: [V·h·w, N]`` (CSR, float64, with ``Wᵀ`` kept for the adjoint).

    ``render`` is the premultiplied ``W c`` (no background), ``alpha [V, h, w]`` the row sums A,
    ``depth [V, h, w]`` the expected camera depth ``W d / A`` (0 where A = 0)."""

    def __init__(self, means, quats, scales, opacities, cameras: list[PinholeCamera], progress: bool = False):
        from tqdm.auto import tqdm

        self.num_views, self.height, self.width = len(cameras), cameras[0].height, cameras[0].width
        self.num_splats = len(means)
        blocks, alphas, depths = [], [], []
        for camera in tqdm(cameras, desc="splat weights", disable=not progress):
            W = compositing_weights(means, quats, scales, opacities, camera)
            camera_depth = means @ camera.viewmat[2, :3].to(means) + camera.viewmat[2, 3].to(means)
            alpha = pixel_alpha(W)
            depth = torch.sparse.mm(W, camera_depth[:, None])[:, 0]
            blocks.append(W)  # float64: least squares over these products is ill-conditioned in float32
            alphas.append(alpha.reshape(self.height, self.width).float())
            depths.append(torch.where(alpha > 0, depth / alpha.clamp_min(1e-12), torch.zeros_like(depth))
                          .reshape(self.height, self.width).float())
        stacked = torch.cat(blocks).coalesce()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": matrix products are all we use
            warnings.simplefilter("ignore", UserWarning)
            self.W = stacked.to_sparse_csr()
            self.Wt = stacked.t().coalesce().to_sparse_csr()
        self.alpha, self.depth = torch.stack(alphas), torch.stack(depths)

    @property
    def nnz(self) -> int:
        return int(self.W.values().numel())

    def render(self, colours: torch.Tensor) -> torch.Tensor:
        """``colours [N, C]`` -> ``[V, C, h, w]`` = W c (computed in float64, returned as ``colours``)."""
        flat = (self.W.to(colours.device) @ colours.double()).to(colours.dtype)
        return flat.reshape(self.num_views, self.height, self.width, -1).permute(0, 3, 1, 2)

    def adjoint(self, views: torch.Tensor) -> torch.Tensor:
        """``views [V, C, h, w]`` -> ``[N, C]`` = Wᵀ x (computed in float64, returned as ``views``)."""
        flat = views.permute(0, 2, 3, 1).reshape(-1, views.shape[1])
        return (self.Wt.to(views.device) @ flat.double()).to(views.dtype)
