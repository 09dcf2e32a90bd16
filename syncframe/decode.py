"""Decode a latent canvas tile by tile, so memory is bounded by the tile, not the canvas."""
from __future__ import annotations

import torch

from .spaces.panorama import PanoramaSpace


def ramp(size: int, overlap: int) -> torch.Tensor:
    """1-D blending weights: linear over ``overlap`` at both ends, 1 inside, never 0."""
    i = torch.arange(size, dtype=torch.float32) + 0.5
    return torch.clamp(torch.minimum(i, size - i) / max(overlap, 1), max=1.0)


def decode_batched(latents: torch.Tensor, decode, batch_size: int) -> torch.Tensor:
    """``latents: [N, C, h, w]`` -> float32 images, ``batch_size`` per decoder call."""
    return torch.cat([decode(latents[i:i + batch_size]).float() for i in range(0, len(latents), batch_size)])


def decode_tiled(latent: torch.Tensor, decode, tile: int = 64, overlap: int = 16, wrap: bool = False,
                 batch_size: int = 4, scale: int = 8) -> torch.Tensor:
    """``latent: [C, h, w]`` -> image ``[3, scale·h, scale·w]`` (float32, unclamped).

    Tiles of ``tile`` latents overlap by ``overlap`` and are blended with linear ramps; with
    ``wrap`` tiles run across the right edge so a looping panorama is decoded seamlessly.
    """
    c, h, w = latent.shape
    tile = min(tile, h, w)
    overlap = min(overlap, tile - 1)
    tiles = PanoramaSpace(h, w, window=tile, stride=tile - overlap, loop=wrap, channels=c, vae_scale=1)
    pixels = PanoramaSpace(h * scale, w * scale, window=tile * scale, stride=(tile - overlap) * scale,
                           loop=wrap, channels=3, vae_scale=1)
    decoded = decode_batched(tiles.project(latent), decode, batch_size)
    r = ramp(tile * scale, overlap * scale).to(decoded.device)
    weight = (r[:, None] * r[None, :]).expand(len(decoded), 1, -1, -1)
    num = pixels.project_adjoint(weight * decoded)
    den = pixels.project_adjoint(weight.expand_as(decoded).contiguous())
    return num / den
