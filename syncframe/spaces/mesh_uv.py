"""UV texture of a mesh seen from cameras around it (SyncMVD's / SyncTweedies' mesh setting).

The geometry is fixed, so each view is a fixed lookup into the texture: a rasterization gives
every pixel the UV it sees (or no surface). Texture row 0 is ``v = 1`` (trimesh's convention).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..geometry.texels import apply_fill, surface_fill
from .base import CanonicalSpace, gather_texels, gather_views, nearest_source, repeated_reads, scatter_views


def texel_index(uv: torch.Tensor, size: int) -> torch.Tensor:
    """UVs ``[..., 2]`` -> flat index of the texel containing each, in a ``size``² texture
    (UVs outside [0, 1] repeat, as glTF's default sampler does)."""
    u, v = uv.unbind(-1)
    wrap = lambda t: torch.where((t < 0) | (t > 1), t - t.floor(), t)  # noqa: E731  (keep 1.0 in the last texel)
    col = (wrap(u) * size).long().clamp(0, size - 1)
    row = ((1 - wrap(v)) * size).long().clamp(0, size - 1)
    return row * size + col


class MeshUVSpace(CanonicalSpace):
    """Canonical ``[C, size, size]`` texture; view i reads it where ``mask[i]`` sees the surface.

    - ``project``: texture lookup at each pixel's UV (``mode="nearest"``, a gather, or
      ``"bilinear"``), ``background`` where no surface.
    - ``unproject``: the normalised adjoint with per-pixel weight ``cosine ** cosine_power``
      (frontal pixels count most), then the texels no pixel reaches are filled: given the
      ``surface`` (each texel's 3-D point, :func:`syncframe.geometry.texels.texel_surface`), from
      the reached texels nearest on the surface (:func:`~syncframe.geometry.texels.surface_fill`);
      what is left (gutters, texels off the surface) from the nearest filled texel in the
      texture (Voronoi).
    - ``sync``: pixels without surface belong to no texel, so they keep their own value.
    """

    def __init__(self, uv: torch.Tensor, mask: torch.Tensor, cosine: torch.Tensor, size: int, channels: int = 4,
                 background: float = 0.0, cosine_power: float = 1.0, mode: str = "nearest", surface=None):
        if mode not in ("nearest", "bilinear"):
            raise ConfigError(f"mesh_uv mode={mode!r} must be nearest or bilinear")
        if size < 1:
            raise ConfigError(f"texture size={size} must be positive")
        if cosine_power < 0:
            raise ConfigError(f"app.cosine_power={cosine_power} must be >= 0")
        if not mask.any():
            raise ConfigError("no view sees the mesh; check the camera rig (app.views) and app.margin")
        n, h, w = mask.shape
        self.num_views, self.mode, self.background = n, mode, background
        self.canonical_shape = (channels, size, size)
        self.view_shape = (channels, h, w)
        self.uv, self.mask = uv.float(), mask
        self.index = torch.where(mask, texel_index(uv, size), torch.zeros_like(mask, dtype=torch.long))
        # Grazing pixels keep a tiny weight so every texel a view reads is reached by its unproject.
        self.weights = torch.where(mask, cosine.float().clamp_min(1e-3) ** cosine_power, torch.zeros_like(cosine))
        self.seen = self.project_adjoint(self.weights[:, None])[0] > 0
        # The fills, found once: along the surface first, then Voronoi in the texture.
        self.surface_fill = surface_fill(*surface, self.seen.numpy()) if surface is not None else None
        filled = self.seen.clone().reshape(-1)
        if self.surface_fill is not None:
            filled[self.surface_fill[0]] = True
        self.fill_source = nearest_source(filled.reshape(self.seen.shape))

    # -- projection -----------------------------------------------------------------------
    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """Texture values at every pixel's UV, ``[N, C, h, w]`` (garbage where no surface)."""
        if self.mode == "nearest":
            return gather_views(z, self.index)
        u, v = self.uv.to(z.device, z.dtype).unbind(-1)
        grid = torch.stack([u * 2 - 1, (1 - v) * 2 - 1], dim=-1)
        source = z.unsqueeze(0).expand(self.num_views, -1, -1, -1)
        return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        mask = self.mask.to(z.device)[:, None]
        return torch.where(mask, self.lookup(z), torch.full_like(mask, self.background, dtype=z.dtype))

    def project_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.mask.to(x.device)[:, None]
        if self.mode == "nearest":
            return scatter_views(x, self.index, (x.shape[1], *self.canonical_shape[1:]))
        z = torch.zeros(x.shape[1], *self.canonical_shape[1:], dtype=x.dtype, device=x.device, requires_grad=True)
        with torch.enable_grad():
            (adjoint,) = torch.autograd.grad(self.lookup(z), z, grad_outputs=x)
        return adjoint

    def view_weights(self, like: torch.Tensor) -> torch.Tensor:
        return self.weights.to(like.device, like.dtype)[:, None]

    def fill(self, z: torch.Tensor) -> torch.Tensor:
        if self.surface_fill is not None:
            z = apply_fill(z, self.surface_fill)
        return gather_texels(z, self.fill_source)

    def owned(self) -> torch.Tensor:
        return self.mask

    def noise_keys(self) -> torch.Tensor:
        """The texel index of surface pixels, a distinct negative key elsewhere (so a background
        pixel never counts as an earlier read of texel 0)."""
        distinct = -1 - torch.arange(self.mask.numel()).reshape(self.mask.shape)
        return torch.where(self.mask, self.index, distinct)

    def sample_noise(self, generator: torch.Generator, dtype=torch.float32, device="cpu"):
        """Texture white noise read at the nearest texels; a pixel without surface, or one that
        reads a texel an earlier pixel of its view read, gets its own noise, so every view's noise
        is i.i.d. N(0, 1)."""
        z = torch.randn(self.canonical_shape, generator=generator, dtype=dtype, device=device)
        x = torch.randn((self.num_views, *self.view_shape), generator=generator, dtype=dtype, device=device)
        own = repeated_reads(self.noise_keys()) | ~self.mask
        x = torch.where(own.to(device)[:, None], x, gather_views(z, self.index.to(device)))
        return z, x
