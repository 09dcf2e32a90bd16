"""SpotDiffusion (Frolov et al., WACV 2025): non-overlapping windows shifted at random every step.

One canonical state ``z_t`` on the space's latent grid (:meth:`~syncframe.spaces.base.CanonicalSpace.canvas`:
the panorama canvas, the equirect map, the upscale canvas). Every step cuts it into tiles of the
model's window at a fresh random offset; each texel is denoised by exactly one tile, so a step
costs one model call per tile — about width/window calls instead of MultiDiffusion's
(width − window)/stride + 1 — and the tiles' borders move from step to step, so no border stays
in one place long enough to become a seam.

Along an axis that wraps (a loop panorama's columns, the equirect map's longitude) the tiles wrap
around, as the official code does for every panorama. Along one that does not, the cells of the
shifted partition are cut at the canvas border and the window of a cell cut there is the full
window flush with the border (it denoises more than its cell; only its cell is kept). The official
code wraps every panorama (a non-looping one becomes a loop); here wrapping follows ``app.loop``.

Against the official code, with ``app.loop=true sync.blend_steps=0 sync.shifts=official``: the
official code rolls its canvas by each step's shift (none at the first) and leaves it rolled; here
the windows move by the same shifts and the canvas keeps its frame, so the output is the official
one turned back by the sum of the shifts, the same panorama (tests/test_spotdiffusion.py runs both
on the same latents and shifts). ``sync.shifts=independent`` (the default) draws every step's
offset afresh, the first step's included.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigError
from ..methods import Trajectory
from ..options import Options, option
from ..registry import register_sync


class SpotOptions(Options):
    shifts: Literal["independent", "official"] = option(
        "independent", "independent: every step cuts the canvas at a fresh random offset; official: the official "
                       "code's, none at the first step, then each step's random shift added to the last (it rolls its "
                       "canvas by each shift and keeps it rolled)")
    blend_steps: int = option(3, "the last steps also denoise a second partition, shifted by half a window, and "
                                 "blend the two with tent weights (no texel near a border of both): removes the "
                                 "seams the last steps' borders leave, at twice the calls in those steps; 0 = the "
                                 "paper's method", ge=0)


def cells(size: int, window: int, offset: int, wrap: bool) -> list[tuple[int, int, int]]:
    """The shifted partition of one axis: ``(cell start, cell length, window start)`` for each cell.
    ``offset`` in [0, window). Wrapping: cells start at ``offset + k · window`` (mod ``size``).
    Not wrapping: cell edges at 0, every ``offset + k · window`` inside, and ``size``; a cell's
    window is the full window containing it (flush with the border at the ends)."""
    if size == window:
        return [(0, size, 0)]
    if wrap:
        count = math.ceil(size / window)
        return [((offset + k * window) % size, min(window, size - k * window), (offset + k * window) % size)
                for k in range(count)]
    edges = sorted({0, size, *[offset + k * window for k in range(-1, size // window + 2) if 0 < offset + k * window < size]})
    return [(a, b - a, min(a, size - window)) for a, b in zip(edges[:-1], edges[1:])]


def tiles(height: int, width: int, window: int, offsets: tuple[int, int], wrap: tuple[bool, bool]):
    """``(index [T, w, w], own [T, w, w])``: the flat canvas index of every tile pixel and whether
    the tile owns it (every canvas texel is owned by exactly one tile)."""
    rows = cells(height, window, offsets[0], wrap[0])
    cols = cells(width, window, offsets[1], wrap[1])
    steps = torch.arange(window)
    index, own = [], []
    for cell_top, cell_rows, top in rows:
        r = (top + steps) % height
        r_own = ((steps + top - cell_top) % height) < cell_rows
        for cell_left, cell_cols, left in cols:
            c = (left + steps) % width
            c_own = ((steps + left - cell_left) % width) < cell_cols
            index.append(r[:, None] * width + c[None, :])
            own.append(r_own[:, None] & c_own[None, :])
    return torch.stack(index), torch.stack(own)


@dataclass
class CanvasState:
    """The canvas ``z_t``, the sampler's multistep history of it, and (``sync.shifts=official``) how far
    the official code's canvas has turned so far: the sum of the shifts drawn."""

    z: torch.Tensor
    memory: dict
    rolled: tuple[int, int] = (0, 0)


class SpotDiffusion(Trajectory):
    """Each :meth:`step` cuts the canvas into the model's windows at a fresh random offset (plus the
    half-shifted partition in the last ``blend_steps``), pastes the windows' predictions back, and
    steps the canvas with the sampler."""

    def __init__(self, wrap: tuple[bool, bool], window: int, blend_steps: int = 0, shifts: str = "independent"):
        self.wrap, self.window, self.blend_steps, self.shifts = wrap, window, blend_steps, shifts
        half = torch.arange(window) + 0.5
        tent = torch.minimum(half, window - half) / (window / 2)  # (0, 1]: small at a window's border
        self.tent = tent[:, None] * tent[None, :]

    def bind(self, ctx) -> None:
        self.space, self.sampler, self.generator = ctx.space, ctx.sampler, ctx.generator

    def init(self, z_T, x_T) -> CanvasState:
        return CanvasState(z_T, {})

    def views(self, state: CanvasState) -> torch.Tensor:
        return self.space.project(state.z)

    def draw(self, z: torch.Tensor) -> tuple[int, int]:
        """A random shift of the partition (none along a side only one window long)."""
        _, height, width = z.shape
        draw = torch.randint(0, self.window, (2,), generator=self.generator).tolist()
        return (0 if height == self.window else draw[0]), (0 if width == self.window else draw[1])

    def step(self, state: CanvasState, step, model) -> CanvasState:
        rolled = state.rolled
        if self.shifts == "official":  # none at the first step, then each shift added to the last
            rolled = (0, 0) if step.index == 0 else tuple(r + d for r, d in zip(rolled, self.draw(state.z)))
            offset = (rolled[0] % self.window, rolled[1] % self.window)
        else:
            offset = self.draw(state.z)
        z0, zeps = self.predict(state.z, step, model, offset)
        noise = self.space.sample_noise(self.generator)[0].to(z0.device) if self.sampler.stochastic else None
        return CanvasState(self.sampler.update(state.z, z0, zeps, step, noise, state.memory), state.memory, rolled)

    def predict(self, z: torch.Tensor, step, model, offset: tuple[int, int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0, ε)`` of the whole canvas ``z``: the tiles of the partition at ``offset`` (a fresh random
        one when not given) and their predictions pasted back."""
        channels, height, width = z.shape
        offsets = [self.draw(z) if offset is None else offset]
        if step.index >= step.num_steps - self.blend_steps:  # and the partition half a window away
            half = self.window // 2
            offsets.append(tuple(0 if size == self.window else (o + half) % self.window
                                 for o, size in zip(offsets[0], (height, width))))
        flat = z.reshape(channels, -1)
        sums = torch.zeros(2 * channels + 1, flat.shape[1], dtype=flat.dtype, device=flat.device)  # x0, ε, weight
        with torch.no_grad():
            for offset in offsets:
                self.paste(sums, flat, offset, step, model, weighted=len(offsets) > 1)
        return tuple((part / sums[-1:]).reshape(z.shape) for part in (sums[:channels], sums[channels:-1]))

    def paste(self, sums: torch.Tensor, flat: torch.Tensor, offset, step, model, weighted: bool) -> None:
        """Add the tiles of the partition at ``offset`` to ``sums`` (``[2C + 1, H·W]``: x0, ε and the
        weight of each texel): each tile where it owns, tent-weighted when blending."""
        channels = flat.shape[0]
        height, width = self.space.canonical_shape[1:]
        index, own = tiles(height, width, self.window, offset, self.wrap)
        ids = index.to(flat.device)
        weight = own.to(flat.device, flat.dtype)[:, None]  # [T, 1, w, w]
        if weighted:
            weight = weight * self.tent.to(flat.device, flat.dtype)
        windows = flat[:, ids.reshape(-1)].reshape(channels, len(index), self.window, self.window).transpose(0, 1)
        x0, eps = model.windows(windows, step)
        for rows, pred in ((slice(0, channels), x0), (slice(channels, 2 * channels), eps),
                           (slice(2 * channels, None), torch.ones_like(x0[:, :1]))):
            sums[rows].index_add_(1, ids.reshape(-1), (pred * weight).transpose(0, 1).reshape(pred.shape[1], -1))


@register_sync("spotdiffusion", options=SpotOptions,
               summary="SpotDiffusion: one canvas, non-overlapping windows shifted at random each step (Frolov et al. "
                       "2025)")
def make_spotdiffusion(options: SpotOptions, facts) -> SpotDiffusion:
    if facts.domain == "rgb":  # before the canvas: the RGB domain's space has none
        raise ConfigError("sync=spotdiffusion denoises one noisy canvas, which cannot go through a decoder; "
                          "use app.domain=latent")
    space = facts.space
    canvas = space.capability("canvas")
    if canvas is None:
        raise ConfigError(f"sync=spotdiffusion cuts windows out of a canvas of latents (app=panorama, panorama360, "
                          f"upscale, without regions=); {facts.app_label()} has none: use another sync")
    _, height, width = space.canonical_shape
    window = space.view_shape[-1]
    if min(height, width) < window:
        raise ConfigError(f"sync=spotdiffusion needs a canvas of at least one window ({window} latents) each way; this "
                          f"one is {width}x{height} latents: make it bigger (app.latent_width for app=panorama360)")
    if facts.controlnet:
        raise ConfigError("sync=spotdiffusion moves its windows every step, and the ControlNet images are per view: "
                          "drop controlnet= or use sync=multidiffusion")
    return SpotDiffusion((canvas.wrap_rows, canvas.wrap_cols), window, options.blend_steps, options.shifts)
