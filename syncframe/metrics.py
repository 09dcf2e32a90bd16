"""Coherence and seam metrics, usable as library functions and reported by benchmarks."""
from __future__ import annotations

import itertools

import torch


def crops(canvas: torch.Tensor, size: int) -> torch.Tensor:
    """Non-overlapping ``size``-wide crops of ``canvas: [C, H, W]`` along the width -> ``[M, C, H, size]``.

    A remainder narrower than ``size`` at the right is dropped.
    """
    count = canvas.shape[-1] // size
    return torch.stack([canvas[..., i * size:(i + 1) * size] for i in range(count)])


def scene_incoherence(labels: torch.Tensor) -> float:
    """Fraction of windows whose label (e.g. most likely mixture component) differs from the
    majority label. 0 = one coherent scene; ties pick the smallest label as majority."""
    majority = torch.mode(labels).values
    return (labels != majority).float().mean().item()


@torch.no_grad()
def intra_lpips(image: torch.Tensor, lpips: torch.nn.Module, size: int = 512) -> float:
    """Mean LPIPS over all pairs of non-overlapping ``size``-wide crops of ``image: [3, H, W]`` in
    [-1, 1] (SyncDiffusion's Intra-LPIPS): low when the panorama is one coherent scene."""
    parts = crops(image, size)
    pairs = list(itertools.combinations(range(len(parts)), 2))
    if not pairs:
        raise ValueError(f"image of width {image.shape[-1]} has fewer than two {size}-px crops")
    first = parts[[i for i, _ in pairs]]
    second = parts[[j for _, j in pairs]]
    return lpips(first, second).mean().item()
