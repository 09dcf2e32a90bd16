"""Tiled VAE decoding (and, below, encoding) of latent canvases: memory bounded by the tile batch, not the canvas."""
from __future__ import annotations

import torch

from .spaces.base import gather_views
from .spaces.panorama import PanoramaSpace


def ramp(size: int, overlap: int) -> torch.Tensor:
    """1-D blending weights: linear over ``overlap`` at both ends, 1 inside, never 0."""
    i = torch.arange(size, dtype=torch.float32) + 0.5
    return torch.clamp(torch.minimum(i, size - i) / max(overlap, 1), max=1.0)


def decode_batched(latents: torch.Tensor, decode, batch_size: int, progress: bool = False) -> torch.Tensor:
    """``latents: [N, C, h, w]`` -> float32 images, ``batch_size`` per decoder call (a bar with
    ``progress``: decoding a few hundred views is a phase of its own)."""
    from tqdm.auto import tqdm

    starts = range(0, len(latents), batch_size)
    return torch.cat([decode(latents[i:i + batch_size]).float()
                      for i in tqdm(starts, desc="decode views", unit="batch", leave=False,
                                    disable=not progress or len(starts) < 2)])


def encode_batched(images: torch.Tensor, encode, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``images: [N, 3, H, W]`` -> float32 latents, ``batch_size`` per encoder call (``generator``: the
    VAE posterior's draws, as diffusers' img2img pipelines take them)."""
    return torch.cat([encode(images[i:i + batch_size], generator).float() for i in range(0, len(images), batch_size)])


def tile_batches(count: int, batch_size: int, progress: bool, desc: str):
    """The first tile of each batch, with a bar when ``progress`` and there are many (a 150-MP
    canvas is thousands of tiles: minutes on a CPU)."""
    from tqdm.auto import tqdm

    starts = range(0, count, batch_size)
    return tqdm(starts, desc=desc, unit="batch", leave=False, disable=not progress or len(starts) < 8)


def decode_tiled(latent: torch.Tensor, decode, tile: int = 64, overlap: int = 16, wrap: bool = False,
                 batch_size: int = 4, scale: int = 8, progress: bool = False) -> torch.Tensor:
    """``latent: [C, h, w]`` -> image ``[3, scale·h, scale·w]`` (float32, unclamped).

    Tiles of ``tile`` latents overlap by ``overlap`` and are blended with linear ramps; with
    ``wrap`` tiles run across the right edge so a looping panorama is decoded seamlessly. Each
    batch of decoded tiles is added into the canvas at once, so only ``batch_size`` tiles are
    held in memory.
    """
    c, h, w = latent.shape
    tile = min(tile, h, w)
    overlap = min(overlap, tile - 1)
    tiles = PanoramaSpace(h, w, window=tile, stride=tile - overlap, loop=wrap, channels=c, vae_scale=1)
    r = ramp(tile * scale, overlap * scale).to(latent.device)
    weight = r[:, None] * r[None, :]
    num = torch.zeros(3, h * scale, w * scale, device=latent.device)
    den = torch.zeros(1, h * scale, w * scale, device=latent.device)
    offsets = torch.arange(tile * scale, device=latent.device)
    for start in tile_batches(tiles.num_views, batch_size, progress, "decode tiles"):
        index = tiles.index[start:start + batch_size]
        images = decode(gather_views(latent, index)).float()
        for (top, left), image in zip(tiles.windows[start:start + batch_size], images):
            rows = slice(top * scale, (top + tile) * scale)
            cols = (offsets + left * scale) % (w * scale)
            num[:, rows].index_add_(2, cols, weight * image)
            den[:, rows].index_add_(2, cols, weight[None])
    return num / den


def encode_tiled(image: torch.Tensor, encode, tile: int = 64, overlap: int = 16, batch_size: int = 4,
                 scale: int = 8, generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """``image: [3, H, W]`` in [-1, 1] (H, W multiples of ``scale``) -> latent ``[C, H/scale, W/scale]``.

    The counterpart of :func:`decode_tiled`: pixel tiles of ``tile`` latents overlapping by
    ``overlap`` are encoded ``batch_size`` at a time (``encode(images, generator)``) and blended
    with linear ramps, so memory is bounded by the batch of tiles. A canvas of one tile is encoded
    exactly as a whole-frame call would."""
    _, height, width = image.shape
    h, w = height // scale, width // scale
    tile = min(tile, h, w)
    overlap = min(overlap, tile - 1)
    tiles = PanoramaSpace(h, w, window=tile, stride=tile - overlap, channels=1, vae_scale=1)
    r = ramp(tile, overlap).to(image.device)
    weight = r[:, None] * r[None, :]
    num = den = None
    for start in tile_batches(tiles.num_views, batch_size, progress, "encode tiles"):
        windows = tiles.windows[start:start + batch_size]
        crops = torch.stack([image[:, top * scale:(top + tile) * scale, left * scale:(left + tile) * scale]
                             for top, left in windows])
        latents = encode(crops, generator).float()
        if num is None:
            num = torch.zeros(latents.shape[1], h, w, device=latents.device)
            den = torch.zeros(1, h, w, device=latents.device)
        for (top, left), latent in zip(windows, latents):
            num[:, top:top + tile, left:left + tile] += weight.to(num.device) * latent
            den[:, top:top + tile, left:left + tile] += weight.to(num.device)
    return num / den
