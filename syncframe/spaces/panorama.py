"""Wide panorama: a latent canvas seen through square windows (MultiDiffusion's setting)."""
from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from .base import WINDOW_WEIGHTS, CanonicalSpace, Canvas, gather_views, scatter_views, window_weights


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride``, the last window flush with the border."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def window_count(height: int, width: int, window: int, stride: int, loop: bool = False) -> int:
    """How many views :class:`PanoramaSpace` makes of a ``height``×``width`` latent canvas, counted
    without building it (the size check before a run); a loop starts a column every ``stride``."""
    def along(size: int) -> int:
        return 0 if size < window else math.ceil((size - window) / stride) + 1

    return along(height) * (-(-width // stride) if loop else along(width))


class PanoramaSpace(CanonicalSpace):
    """Latent canvas ``[C, H/8, W/8]``; view i is the window at ``(top_i, left_i)``.

    With ``loop=True`` windows start every ``stride`` latents over the whole width and wrap
    around the right edge, so the left and right borders are generated as neighbours.
    """

    def __init__(self, height: int, width: int, window: int = 64, stride: int = 8,
                 loop: bool = False, channels: int = 4, vae_scale: int = 8, weights: str = "uniform",
                 sigma: float = 0.1):
        for name, value in (("height", height), ("width", width)):
            if value % vae_scale:
                raise ConfigError(f"{name}={value} is not a multiple of {vae_scale}; "
                                  f"use e.g. {name}={value // vae_scale * vae_scale}")
            if value < window * vae_scale:
                raise ConfigError(f"{name}={value} is smaller than one window "
                                  f"({window * vae_scale} px); use {name}>={window * vae_scale}")
        if not 0 < stride < window:
            raise ConfigError(f"stride={stride} must be in 1..{window - 1} latents "
                              f"(smaller than the {window}-latent window) so that windows overlap")
        if weights not in WINDOW_WEIGHTS:
            raise ConfigError(f"weights={weights!r} must be one of {', '.join(WINDOW_WEIGHTS)}")
        self.height, self.width, self.window, self.stride, self.loop = height, width, window, stride, loop
        self.weights, self.sigma = weights, sigma
        h, w = height // vae_scale, width // vae_scale
        self.canonical_shape = (channels, h, w)
        self.view_shape = (channels, window, window)
        tops = window_starts(h, window, stride)
        lefts = list(range(0, w, stride)) if loop else window_starts(w, window, stride)
        self.windows = [(t, l) for t in tops for l in lefts]
        self.num_views = len(self.windows)
        offsets = torch.arange(window)
        rows = torch.tensor([t for t, _ in self.windows])[:, None] + offsets  # [N, window]
        cols = (torch.tensor([l for _, l in self.windows])[:, None] + offsets) % w
        # Flat canvas index of every view pixel [N, window, window]: project is one gather.
        self.index = rows[:, :, None] * w + cols[:, None, :]

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return gather_views(z, self.index)

    def project_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        return scatter_views(x, self.index, self.canonical_shape)

    def view_weights(self, like: torch.Tensor) -> torch.Tensor:
        """Uniform (MultiDiffusion's, as diffusers' panorama pipeline), ``fading`` towards each window's
        border (:func:`~syncframe.spaces.base.fading_weights`) or ``gaussian`` (Mixture of Diffusers'):
        a window's prediction near its own border disagrees with its neighbours' most."""
        return window_weights(self.weights, self.window, self.num_views, like, self.sigma)

    def capabilities(self) -> dict[str, object]:
        """The default ones, with the windows beside each window as its neighbours, and the latent
        canvas itself as a :class:`~syncframe.spaces.base.Canvas` (its columns wrap around in a loop)."""
        return {**super().capabilities(), "neighbours": self.neighbours, "canvas": Canvas(False, self.loop)}

    def neighbours(self) -> list[list[int]]:
        """The windows beside each window: left and right in its row (around the seam of a loop),
        above and below in its column."""
        where = {window: i for i, window in enumerate(self.windows)}
        tops = sorted({t for t, _ in self.windows})
        lefts = sorted({l for _, l in self.windows})
        lists = []
        for top, left in self.windows:
            row, col = tops.index(top), lefts.index(left)
            near = {(top, left)}
            for c in (col - 1, col + 1):
                if 0 <= c < len(lefts) or (self.loop and len(lefts) > 2):
                    near.add((top, lefts[c % len(lefts)]))
            for r in (row - 1, row + 1):
                if 0 <= r < len(tops):
                    near.add((tops[r], left))
            lists.append(sorted(where[w] for w in near))
        return lists
