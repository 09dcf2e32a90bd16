"""360°x180° equirectangular canonical space seen through perspective cameras.

Conventions (the same as py360convert's ``e2p``): a camera looks at longitude ``yaw`` and
latitude ``pitch`` (degrees, +yaw to the right, +pitch up); equirect column 0 is longitude
−180°, row 0 latitude +90°; pixel centres sit at half-pixel offsets in both images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import CanonicalSpace, Canvas, fill_nearest, gather_views, repeated_reads, scatter_views, window_weights


@dataclass(frozen=True)
class Camera:
    yaw: float
    pitch: float
    fov: float  # horizontal = vertical field of view, degrees

    def __post_init__(self):
        if not 0 < self.fov < 180:
            raise ConfigError(f"camera fov={self.fov} must be in (0, 180) degrees (a perspective view)")
        if not -90 <= self.pitch <= 90:
            raise ConfigError(f"camera pitch={self.pitch} must be in [-90, 90] degrees")


def rig_from_rings(rings: list) -> list[Camera]:
    """``[{pitch, count, fov, yaw_offset}]`` (the app's validated rings, or plain mappings) -> cameras,
    ``count`` evenly spaced in yaw per ring."""
    cameras = []
    for ring in rings:
        ring = ring if isinstance(ring, dict) else ring.model_dump()
        step = 360.0 / ring["count"]
        cameras += [Camera(ring.get("yaw_offset", 0.0) + k * step, ring["pitch"], ring["fov"])
                    for k in range(ring["count"])]
    return cameras


def camera_rotation(camera: Camera) -> torch.Tensor:
    """``[3, 3]`` M with world = camera @ M for row vectors (camera: x right, y up, z forward)."""
    p, q = math.radians(camera.pitch), math.radians(camera.yaw)
    # Row vectors: d @ M maps the camera's axes to the rows of M.
    tilt = torch.tensor([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]],
                        dtype=torch.float64)  # forward turns towards +y (up) for pitch > 0
    turn = torch.tensor([[math.cos(q), 0, -math.sin(q)], [0, 1, 0], [math.sin(q), 0, math.cos(q)]],
                        dtype=torch.float64)  # z turns towards +x (right) for yaw > 0
    return tilt @ turn


def view_directions(camera: Camera, size: int) -> torch.Tensor:
    """Unit ray directions ``[size, size, 3]`` (x right, y up, z at longitude 0) of a camera's pixels."""
    half = math.tan(math.radians(camera.fov) / 2)
    t = ((torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1) * half
    y, x = torch.meshgrid(-t, t, indexing="ij")
    d = torch.stack([x, y, torch.ones_like(x)], dim=-1) @ camera_rotation(camera)
    return d / d.norm(dim=-1, keepdim=True)


def equirect_directions(height: int, width: int) -> torch.Tensor:
    """Unit directions ``[height, width, 3]`` of equirect pixel centres."""
    lon = ((torch.arange(width, dtype=torch.float64) + 0.5) / width - 0.5) * 2 * math.pi
    lat = (0.5 - (torch.arange(height, dtype=torch.float64) + 0.5) / height) * math.pi
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    return torch.stack([torch.cos(lat) * torch.sin(lon), torch.sin(lat), torch.cos(lat) * torch.cos(lon)], dim=-1)


def blend_views(images: torch.Tensor, cameras: list[Camera], height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Perspective ``images: [N, C, s, s]`` -> equirect ``[C, height, width]`` and its coverage ``[height, width]``.

    Every output pixel looks itself up in each camera (bilinear) and averages the cameras that
    see it, weighted by distance to the view border so overlaps blend without seams; sampling
    backwards leaves no holes, unlike splatting near the poles. Uncovered pixels stay 0.
    """
    dirs = equirect_directions(height, width).to(images.device)
    num = torch.zeros(images.shape[1], height, width, dtype=images.dtype, device=images.device)
    den = torch.zeros(height, width, dtype=images.dtype, device=images.device)
    for image, cam in zip(images, cameras):
        local = dirs @ camera_rotation(cam).to(dirs.device).T  # world -> camera
        half = math.tan(math.radians(cam.fov) / 2)
        front = local[..., 2] > 1e-6
        z = local[..., 2].clamp_min(1e-6)
        u, v = local[..., 0] / z / half, -local[..., 1] / z / half  # [-1, 1] across the view
        weight = (1 - torch.maximum(u.abs(), v.abs())).clamp_min(0) * front
        grid = torch.stack([u, v], dim=-1).to(images.dtype)[None]
        sample = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        w = weight.to(images.dtype)
        num += sample * w
        den += w
    return torch.where(den > 0, num / den.clamp_min(1e-12), num), den > 0


def place_photo(photo: torch.Tensor, yaw: float, pitch: float, fov: float, height: int,
                width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A perspective ``photo: [C, h, w]`` seen from the map's centre looking at ``yaw``, ``pitch`` with a
    horizontal field of view ``fov`` (degrees; the vertical one follows the photo's aspect), splatted
    into an equirect map ``[C, height, width]`` by the inverse of the views' projection (every map pixel
    looks itself up in the photo, bilinear), and the map pixels it covers ``[height, width]`` (bool).
    Pixels it does not cover hold the photo's mean colour."""
    channels, h, w = photo.shape
    half_x = math.tan(math.radians(fov) / 2)
    half_y = half_x * h / w
    local = equirect_directions(height, width) @ camera_rotation(Camera(yaw, pitch, fov)).T  # world -> camera
    z = local[..., 2].clamp_min(1e-9)
    u, v = local[..., 0] / z / half_x, -local[..., 1] / z / half_y  # [-1, 1] across the photo
    covered = (local[..., 2] > 1e-9) & (u.abs() <= 1) & (v.abs() <= 1)
    grid = torch.stack([u, v], dim=-1).clamp(-1, 1).to(photo.dtype)[None]
    sample = F.grid_sample(photo[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    mean = photo.mean(dim=(1, 2))[:, None, None].expand(-1, height, width)
    return torch.where(covered, sample, mean), covered


def equirect_coords(directions: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous (row, col) of directions ``[..., 3]`` in an equirect image; centres at +0.5."""
    x, y, z = directions.unbind(-1)
    lon = torch.atan2(x, z)
    lat = torch.atan2(y, torch.hypot(x, z))
    col = (lon / (2 * math.pi) + 0.5) * width - 0.5
    row = (0.5 - lat / math.pi) * height - 0.5
    return row, col


class EquirectSpace(CanonicalSpace):
    """Canonical ``[C, height, width]`` equirect map; view i is ``cameras[i]`` at ``view_size``².

    ``mode="nearest"`` (default): each view pixel reads one texel, so ``project`` is a gather,
    its adjoint a scatter-add, and ``unproject(project(z)) == z`` on every seen texel.
    ``mode="bilinear"``: ``grid_sample`` on the map padded by one wrapped column per side; the
    adjoint is the vector-Jacobian product of that (linear) map.
    """

    def __init__(self, height: int, width: int, cameras: list[Camera], view_size: int = 64,
                 channels: int = 4, mode: str = "nearest", weights: str = "fading", sigma: float = 0.1):
        if width != 2 * height:
            raise ConfigError(f"an equirect map is 2:1; got {width}x{height} (width x height)")
        if mode not in ("nearest", "bilinear"):
            raise ConfigError(f"equirect mode={mode!r} must be nearest or bilinear")
        if not cameras:
            raise ConfigError("the camera rig has no views")
        self.cameras, self.mode, self.view_size, self.weights = list(cameras), mode, view_size, weights
        self.sigma = sigma
        self.canonical_shape = (channels, height, width)
        self.view_shape = (channels, view_size, view_size)
        self.num_views = len(cameras)
        dirs = torch.stack([view_directions(c, view_size) for c in cameras])  # [N, s, s, 3]
        self.rows, self.cols = (v.float() for v in equirect_coords(dirs, height, width))
        # Nearest texel per view pixel, as flat indices [N, s, s].
        r = self.rows.round().clamp(0, height - 1).long()
        c = self.cols.round().long() % width
        self.index = r * width + c
        self.repeated_reads = repeated_reads(self.index)  # [N, s, s], for sample_noise

    # -- projection -----------------------------------------------------------------------
    def project(self, z: torch.Tensor) -> torch.Tensor:
        c, h, w = z.shape
        if self.mode == "nearest":
            return gather_views(z, self.index)
        padded = torch.cat([z[:, :, -1:], z, z[:, :, :1]], dim=2)  # wrap one column each side
        gx = (self.cols + 1.5) / (w + 2) * 2 - 1
        gy = (self.rows + 0.5) / h * 2 - 1
        grid = torch.stack([gx, gy], dim=-1).to(z.device, z.dtype)
        source = padded.unsqueeze(0).expand(self.num_views, -1, -1, -1)
        return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def project_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if self.mode == "nearest":
            return scatter_views(x, self.index, self.canonical_shape)
        z = torch.zeros(c, *self.canonical_shape[1:], dtype=x.dtype, device=x.device, requires_grad=True)
        with torch.enable_grad():
            (adjoint,) = torch.autograd.grad(self.project(z), z, grad_outputs=x)
        return adjoint

    def view_weights(self, like: torch.Tensor) -> torch.Tensor:
        """``[N, 1, s, s]``: each view's pixels count less towards its border (a tent falling to
        1/s at the edge), so a view's contribution to the average fades out instead of stopping;
        with uniform weights every view border is a step in the synchronized views. ``weights=uniform``:
        a plain count average (StochSync's official 360 fit); ``gaussian``: Mixture of Diffusers' weights."""
        return window_weights(self.weights, self.view_size, self.num_views, like, self.sigma)

    def capabilities(self) -> dict[str, object]:
        """The default ones, and the equirect map as a :class:`~syncframe.spaces.base.Canvas`: a grid of
        latents whose columns (longitude) wrap around."""
        return {**super().capabilities(), "canvas": Canvas(False, True)}

    # -- coverage, filling and noise ------------------------------------------------------
    def seen(self, device="cpu") -> torch.Tensor:
        """``[H, W]`` bool: texels at least one view pixel reads (with non-zero weight)."""
        ones = torch.ones(self.num_views, 1, self.view_size, self.view_size, device=device)
        return self.project_adjoint(ones)[0] > 0

    def unproject_filled(self, x: torch.Tensor) -> torch.Tensor:
        """``unproject`` with texels no view sees filled from their nearest seen texel."""
        return fill_nearest(self.unproject(x), self.seen(x.device), wrap=True)  # wrapped at 0°/360°

    def sample_noise(self, generator: torch.Generator, dtype=torch.float32, device="cpu"):
        """Canonical white noise; each view reads it at its nearest texels, and a pixel that reads
        a texel another pixel of the same view already read gets fresh noise instead, so every
        view's noise is i.i.d. N(0, 1) (bilinear reads of noise would not be)."""
        z = torch.randn(self.canonical_shape, generator=generator, dtype=dtype, device=device)
        x = torch.randn((self.num_views, *self.view_shape), generator=generator, dtype=dtype, device=device)
        x = torch.where(self.repeated_reads.to(device)[:, None], x, gather_views(z, self.index))
        return z, x
