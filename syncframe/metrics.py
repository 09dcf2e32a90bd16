"""Coherence and seam metrics, usable as library functions and reported by benchmarks."""
from __future__ import annotations

import itertools
import math

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


def to_height(image: torch.Tensor, size: int) -> torch.Tensor:
    """``image: [C, H, W]`` resized (antialiased) to ``size`` rows, keeping its aspect and at least
    ``size`` columns; returned as it is when it has ``size`` rows already."""
    if image.shape[1] == size:
        return image
    width = max(size, round(image.shape[2] * size / image.shape[1]))
    return torch.nn.functional.interpolate(image[None], size=(size, width), mode="bilinear", align_corners=False,
                                           antialias=True)[0]


def pair_indices(count: int) -> tuple[list[int], list[int]]:
    """Every unordered pair of ``count`` windows (15 for SyncDiffusion's 6): ``(firsts, seconds)``."""
    pairs = list(itertools.combinations(range(count), 2))
    if not pairs:
        raise ValueError("fewer than two windows")
    return [i for i, _ in pairs], [j for _, j in pairs]


@torch.no_grad()
def intra_lpips(image: torch.Tensor, lpips: torch.nn.Module, size: int = 512) -> float:
    """Mean LPIPS over all pairs of non-overlapping ``size``-wide crops of ``image: [3, H, W]`` in
    [-1, 1] (SyncDiffusion's Intra-LPIPS): low when the panorama is one coherent scene. The trunk
    runs once per crop; the pairs are formed on its activations."""
    parts = crops(image, size)
    if len(parts) < 2:
        raise ValueError(f"image of width {image.shape[-1]} has fewer than two {size}-px crops")
    first, second = pair_indices(len(parts))
    feats = lpips.features(parts)
    return lpips.distance([f[first] for f in feats], [f[second] for f in feats]).mean().item()


def panorama_coherence(canvas: torch.Tensor, image: torch.Tensor, classify, lpips=None,
                       window: int = 64, scale: int = 8) -> dict:
    """Coherence of a panorama from an analytic model (``classify``: views -> scene indices).

    ``canvas: [C, h, w]`` latent, ``image: [3, 8h, 8w]``; returns the scene incoherence of its
    non-overlapping windows, the scene labels, and Intra-LPIPS when ``lpips`` is given.
    """
    labels = classify(crops(canvas, window))
    out = {"scene_incoherence": scene_incoherence(labels), "scenes": labels.tolist()}
    if lpips is not None:
        out["intra_lpips"] = intra_lpips(image, lpips, window * scale)
    return out


def worst_column_step(image: torch.Tensor) -> float:
    """The largest mean step across one column boundary of ``image: [C, H, W]`` over the mean step
    across all of them: a seam anywhere (fixed window borders or not) makes one column stand out.
    ≈ a few for a smooth image, large for a visible vertical seam."""
    steps = (image.float()[:, :, 1:] - image.float()[:, :, :-1]).abs().mean(dim=(0, 1))  # [W-1]
    return (steps.max() / steps.mean().clamp_min(1e-12)).item()


def equirect_seam(image: torch.Tensor, band: int = 4) -> float:
    """Discontinuity across the 0°/360° junction of an equirect ``image: [C, H, W]``: the mean
    step between the last and first columns relative to the mean step between neighbouring
    columns within ``band`` columns on either side, minus 1. ≈0 when the junction is as smooth
    as its surroundings, large for a visible seam."""
    image = image.float()
    junction = (image[..., 0] - image[..., -1]).abs().mean()
    near = torch.cat([image[..., -band - 1:], image[..., :band + 1]], dim=-1)
    steps = (near[..., 1:] - near[..., :-1]).abs()
    interior = torch.cat([steps[..., :band], steps[..., band + 1:]], dim=-1).mean()
    return (junction / interior.clamp_min(1e-12) - 1).item()


def pole_spread(image: torch.Tensor) -> float:
    """Spread of the top and bottom rows of an equirect ``image: [C, H, W]`` (each row is one
    point of the sphere, so a consistent panorama has near-constant rows), relative to the
    image's overall standard deviation: 0 = consistent poles."""
    image = image.float()
    rows = torch.stack([image[:, 0].std(dim=-1).mean(), image[:, -1].std(dim=-1).mean()])
    return (rows.mean() / image.std().clamp_min(1e-12)).item()


def view_borders(cameras, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the borders of the views cross an equirect image: bool ``[H, W]`` for the pair of a
    pixel and its right neighbour (wrapping at 360°), and ``[H-1, W]`` for a pixel and the one below."""
    from .spaces.equirect import camera_rotation, equirect_directions

    dirs = equirect_directions(height, width)
    across_h = torch.zeros(height, width, dtype=torch.bool)
    across_v = torch.zeros(height - 1, width, dtype=torch.bool)
    for cam in cameras:
        local = dirs @ camera_rotation(cam).T
        half = math.tan(math.radians(cam.fov) / 2)
        z = local[..., 2].clamp_min(1e-9)
        inside = (local[..., 2] > 0) & (local[..., 0].abs() / z < half) & (local[..., 1].abs() / z < half)
        across_h |= inside != inside.roll(-1, dims=1)
        across_v |= inside[1:] != inside[:-1]
    return across_h, across_v


def view_border_seam(image: torch.Tensor, cameras) -> float:
    """How much harder an equirect ``image: [C, H, W]`` steps across the borders of the views
    than anywhere: the mean step between neighbouring pixels on a view border over the mean step
    between all neighbouring pixels. ≈1 when the view borders are invisible."""
    image = image.float()
    step_h = (image - image.roll(-1, dims=2)).abs().mean(0)
    step_v = (image[:, 1:] - image[:, :-1]).abs().mean(0)
    across_h, across_v = view_borders(cameras, image.shape[1], image.shape[2])
    border = torch.cat([step_h[across_h], step_v[across_v]])
    everywhere = torch.cat([step_h.flatten(), step_v.flatten()])
    return (border.mean() / everywhere.mean().clamp_min(1e-12)).item()


def window_border_seam(image: torch.Tensor, windows: list[tuple[int, int]], window: int) -> float:
    """How much harder ``image: [C, H, W]`` steps across the borders of the square ``window``-pixel
    windows at ``windows`` ((top, left) in pixels) than anywhere: the mean step between the two
    pixels either side of an inner window border (rows and columns inside the image) over the mean
    step between all neighbouring pixels. ≈1 when the window borders are invisible."""
    image = image.float()
    _, height, width = image.shape
    step_v = (image[:, 1:] - image[:, :-1]).abs().mean(0)  # [H-1, W]: between row r and r+1
    step_h = (image[:, :, 1:] - image[:, :, :-1]).abs().mean(0)  # [H, W-1]
    rows = {edge - 1 for top, _ in windows for edge in (top, top + window) if 0 < edge < height}
    cols = {edge - 1 for _, left in windows for edge in (left, left + window) if 0 < edge < width}
    border = torch.cat([step_v[sorted(rows)].flatten(), step_h[:, sorted(cols)].flatten()])
    if not border.numel():
        return 1.0  # one window: no inner border
    everywhere = torch.cat([step_v.flatten(), step_h.flatten()])
    return (border.mean() / everywhere.mean().clamp_min(1e-12)).item()


def keep_border_seam(image: torch.Tensor, kept: torch.Tensor) -> float:
    """How much harder ``image: [C, H, W]`` steps across the border of what ``keep=`` kept (``kept:
    [H, W]`` bool) than anywhere: the mean step between neighbouring pixels one of which is kept and
    the other not, over the mean step between all neighbouring pixels. ≈1 when nobody can see where
    the kept region ends."""
    image = image.float()
    step_h = (image[:, :, 1:] - image[:, :, :-1]).abs().mean(0)
    step_v = (image[:, 1:] - image[:, :-1]).abs().mean(0)
    across_h, across_v = kept[:, 1:] != kept[:, :-1], kept[1:] != kept[:-1]
    border = torch.cat([step_h[across_h], step_v[across_v]])
    if not border.numel():
        return 1.0  # nothing or everything kept: no border
    everywhere = torch.cat([step_h.flatten(), step_v.flatten()])
    return (border.mean() / everywhere.mean().clamp_min(1e-12)).item()
