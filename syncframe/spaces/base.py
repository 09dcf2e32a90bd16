"""The canonical-space interface every app builds on.

Shapes: a canonical tensor ``z`` has the space's own ``canonical_shape``; the views of
one step are ``x: [N, C, h, w]`` (N = ``num_views``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class Canvas:
    """A canonical tensor that is a grid of latents ``[C, H, W]`` windows can be cut from directly,
    and whether it wraps around along its rows and its columns."""

    wrap_rows: bool
    wrap_cols: bool


class CanonicalSpace:
    """Subclasses implement ``project`` and ``project_adjoint``; every other method is a hook with a
    default (docs/plugins.md lists them and when the loop calls each).

    ``project`` must be linear in ``z`` for the default ``unproject`` (the normalised
    adjoint) to be the weighted average that best agrees with all views.
    """

    num_views: int
    view_shape: tuple[int, int, int]
    canonical_shape: tuple[int, ...]
    # A distributed run (syncframe/distributed.py): the views this process denoises, and the group
    # the sums over views are completed across. None and None in one process.
    local: torch.Tensor | None = None
    group = None

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """canonical ``z`` -> views ``[N, C, h, w]``."""
        raise NotImplementedError

    def project_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        """``Pᵀ x``: views ``[N, C, h, w]`` -> canonical, the un-normalised adjoint of ``project``."""
        raise NotImplementedError

    def view_weights(self, like: torch.Tensor) -> torch.Tensor:
        """Per-pixel weight ``w_i`` of each view, ``[N, 1, h, w]``; uniform by default."""
        n, _, h, w = like.shape
        return torch.ones(n, 1, h, w, dtype=like.dtype, device=like.device)

    def unproject(self, x: torch.Tensor) -> torch.Tensor:
        """``z = Σ P_iᵀ(w_i x_i) / Σ P_iᵀ(w_i)``, then :meth:`fill` (entries no view sees stay 0 by default)."""
        w = self.view_weights(x)
        num = self.view_sum(w * x)
        return self.fill(weighted_mean(num, self.view_sum(w.expand_as(x)), num))

    def capabilities(self) -> dict[str, object]:
        """What this space offers beyond the core, by name, for the methods that ask for it
        (:meth:`capability`); a method that needs one the space lacks refuses the run in one line.
        By default:

        - ``views_fit``: ``fit(x, views, z)``, the canonical fitted to the views ``views`` (``[N]``
          bool) of ``x`` alone, ``z`` kept where none of them sees (StochSync's alternating sets);
        - ``anchors``: ``groups(anchor)``, SyncDiffusion's ``(anchor view, the views pulled to it)``
          groups: one of all views, anchored at ``anchor`` (None: the centre view);
        - ``neighbours``: ``lists()``, each view's neighbours, itself included (SyncTweedies'
          cross-view attention): the two views that share the most canonical entries with it.

        A space whose canonical tensor is a latent grid that windows of the model's size can be cut
        from adds ``canvas`` (a :class:`Canvas`: SpotDiffusion's shifted tiles). A space that wraps
        another (regions, the RGB domain) lists the ones it keeps."""
        return {"views_fit": partial(fit_views, self), "anchors": partial(centre_anchor, self),
                "neighbours": partial(overlap_neighbours, self)}

    def capability(self, name: str):
        """The capability ``name`` of :meth:`capabilities`, or None."""
        return self.capabilities().get(name)

    def view_sum(self, x: torch.Tensor) -> torch.Tensor:
        """``Σ_i P_iᵀ x_i`` over every view of the run: the one seam of a distributed run. In one
        process it is ``project_adjoint``; across processes each sums the views it denoises (the
        others' rows of ``x`` are not its to read) and the sums are all-reduced. A space that
        overrides :meth:`unproject` and sums over views there calls this, not ``project_adjoint``."""
        if self.local is None:
            return self.project_adjoint(x)
        mine = self.local.to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
        summed = self.project_adjoint(torch.where(mine, x, torch.zeros_like(x)))
        return self.group.all_reduce(summed)

    def view_costs(self) -> list[float]:
        """What denoising each view costs, relative to one window (a distributed run balances its
        ranks by it); one each by default: every view is one model call."""
        return [1.0] * self.num_views

    def distribute(self, local: torch.Tensor | None, group) -> None:
        """Denoise only the views ``local`` (``[N]`` bool) here, completing sums over views across
        ``group`` (None, None: one process again). Spaces that wrap others pass it on."""
        self.local, self.group = local, group

    def fill(self, z: torch.Tensor) -> torch.Tensor:
        """Give canonical entries no view sees a value (identity by default)."""
        return z

    def owned(self) -> torch.Tensor | None:
        """``[N, h, w]`` bool: view pixels that read the canonical space (None: all of them). Others
        (a mesh view's background) keep their own value under :meth:`sync`."""
        return None

    def sync(self, x: torch.Tensor) -> torch.Tensor:
        """``P(U(x))``: the views made consistent through the canonical space."""
        synced = self.project(self.unproject(x))
        owned = self.owned()
        return synced if owned is None else torch.where(owned.to(x.device)[:, None], synced, x)

    def bind(self, denoiser) -> None:
        """Called once before the first step with the run's denoiser (a space that decodes and
        encodes its views, ``app.domain=rgb``, needs the VAE); nothing by default."""

    def sample_noise(self, generator: torch.Generator, dtype=torch.float32, device="cpu"):
        """Canonical noise ``z`` and unit-variance per-view noise ``x`` derived from it."""
        z = torch.randn(self.canonical_shape, generator=generator, dtype=dtype, device=device)
        return z, self.project(z)


WINDOW_WEIGHTS = ("uniform", "fading", "gaussian")


def fading_weights(size: int, num_views: int, like: torch.Tensor) -> torch.Tensor:
    """``[num_views, 1, size, size]``: a tent, 1 at the centre of a view falling to 1/size at its edge
    (in the max norm), so a view's contribution to an average fades out towards its border instead
    of stopping there; with uniform weights every view border is a step wherever views disagree."""
    t = (torch.arange(size, dtype=like.dtype, device=like.device) + 0.5) / size * 2 - 1
    tent = 1 - torch.maximum(t.abs()[:, None], t.abs()[None, :])
    return tent.expand(num_views, 1, -1, -1)


def gaussian_weights(size: int, num_views: int, like: torch.Tensor, sigma: float = 0.1) -> torch.Tensor:
    """``[num_views, 1, size, size]``: Mixture of Diffusers' tile weights (Jiménez 2023), a separable
    Gaussian centred on the view with standard deviation ``sigma`` times its side (their variance
    0.01: sigma 0.1); computed in float64 as theirs and cast. Their rows are centred at ``size / 2``,
    half a latent below the centre their columns use; here both axes use ``(size - 1) / 2`` (on a canvas
    of one row of windows the row factor cancels out of the average either way)."""
    x = torch.arange(size, dtype=torch.float64)
    g = torch.exp(-((x - (size - 1) / 2) / size) ** 2 / (2 * sigma**2))
    return (g[:, None] * g[None, :]).to(like.device, like.dtype).expand(num_views, 1, -1, -1)


def window_weights(kind: str, size: int, num_views: int, like: torch.Tensor, sigma: float = 0.1) -> torch.Tensor:
    """The per-pixel weights ``[num_views, 1, size, size]`` of square views averaged into a canvas:
    ``uniform`` (MultiDiffusion's plain mean), ``fading`` (:func:`fading_weights`) or ``gaussian``
    (:func:`gaussian_weights`, with ``sigma``)."""
    if kind == "uniform":
        return torch.ones(num_views, 1, size, size, dtype=like.dtype, device=like.device)
    if kind == "fading":
        return fading_weights(size, num_views, like)
    if kind == "gaussian":
        return gaussian_weights(size, num_views, like, sigma)
    raise ConfigError(f"weights={kind!r} must be one of {', '.join(WINDOW_WEIGHTS)}")


def gather_views(z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Views that read one canonical texel per pixel: ``z: [C, H, W]``, ``index: [N, h, w]`` flat
    texel indices -> ``[N, C, h, w]`` (one gather)."""
    c = z.shape[0]
    n, h, w = index.shape
    flat = z.reshape(c, -1)[:, index.to(z.device).reshape(-1)]
    return flat.reshape(c, n, h, w).transpose(0, 1)


def scatter_views(x: torch.Tensor, index: torch.Tensor, canonical_shape: tuple[int, int, int]) -> torch.Tensor:
    """The adjoint of :func:`gather_views`: views ``[N, C, h, w]`` summed into ``canonical_shape``
    (one ``index_add_``)."""
    c = x.shape[1]
    out = torch.zeros(c, canonical_shape[1] * canonical_shape[2], dtype=x.dtype, device=x.device)
    out.index_add_(1, index.to(x.device).reshape(-1), x.transpose(0, 1).reshape(c, -1))
    return out.reshape(c, *canonical_shape[1:])


def nearest_source(source: torch.Tensor, wrap: bool = False) -> torch.Tensor:
    """``source: [H, W]`` bool -> flat index ``[H, W]`` of the nearest ``source`` texel of every
    texel (itself where it is one); ``wrap`` measures distance across the left/right edge."""
    from scipy.ndimage import distance_transform_edt

    h, w = source.shape
    holes = ~source.cpu().numpy()
    if not wrap:
        _, (rows, cols) = distance_transform_edt(holes, return_indices=True)
    else:  # left copy | image | right copy
        _, (rows, cols) = distance_transform_edt(np.tile(holes, 3), return_indices=True)
        rows, cols = rows[:, w:2 * w], cols[:, w:2 * w] % w
    return torch.from_numpy(rows * w + cols).to(source.device)


def fill_nearest(z: torch.Tensor, source: torch.Tensor, wrap: bool = False) -> torch.Tensor:
    """Copy every texel of ``z: [C, H, W]`` outside ``source: [H, W]`` from its nearest
    ``source`` texel (a Voronoi fill); ``z`` unchanged when ``source`` is all or nothing."""
    if source.all() or not source.any():
        return z
    return gather_texels(z, nearest_source(source, wrap))


def gather_texels(z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``z: [C, H, W]`` with every texel replaced by the texel at flat ``index`` (``[H, W]``)."""
    return z.reshape(z.shape[0], -1)[:, index.to(z.device).reshape(-1)].reshape(z.shape)


def repeated_reads(index: torch.Tensor) -> torch.Tensor:
    """``index: [N, h, w]`` -> bool ``[N, h, w]``: the pixel reads a texel that an earlier pixel
    of its own view already read."""
    flat = index.reshape(index.shape[0], -1)
    order = torch.argsort(flat, dim=1, stable=True)
    ranked = torch.gather(flat, 1, order)
    repeat_sorted = torch.zeros_like(ranked, dtype=torch.bool)
    repeat_sorted[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    repeat = torch.zeros_like(repeat_sorted)
    repeat.scatter_(1, order, repeat_sorted)
    return repeat.reshape(index.shape)


def weighted_mean(num: torch.Tensor, den: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, ``unseen`` elsewhere: the normalised adjoint's last step."""
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), unseen)


def fit_views(space: CanonicalSpace, x: torch.Tensor, views: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The ``views_fit`` capability's default: the weighted average of the views ``views`` alone,
    ``z`` where none of them sees."""
    w = space.view_weights(x) * views.to(x.device, x.dtype).reshape(-1, 1, 1, 1)
    return weighted_mean(space.view_sum(w * x), space.view_sum(w.expand_as(x)), z.to(x.dtype))


def centre_anchor(space: CanonicalSpace, anchor: int | None = None) -> list[tuple[int, list[int]]]:
    """The ``anchors`` capability's default: one group of every view, anchored at ``anchor`` (None:
    the centre view)."""
    index = space.num_views // 2 if anchor is None else anchor
    if not 0 <= index < space.num_views:
        raise ConfigError(f"sync.anchor={anchor} is not a view index of this run (0..{space.num_views - 1}); "
                          "use sync.anchor=center or an index in range")
    return [(index, list(range(space.num_views)))]


def overlap_neighbours(space: CanonicalSpace) -> list[list[int]]:
    """The ``neighbours`` capability's default: each view and the two views that share the most
    canonical entries with it (those sharing none are not neighbours)."""
    seen = []
    for v in range(space.num_views):
        one = torch.zeros(space.num_views, 1, *space.view_shape[1:])
        one[v] = 1
        seen.append(space.project_adjoint(one)[0].flatten() > 0)
    shared = torch.stack(seen).float() @ torch.stack(seen).float().T  # [N, N] entries in common
    lists = []
    for v in range(space.num_views):
        shared[v, v] = -1
        order = sorted(range(space.num_views), key=lambda u: (-float(shared[v, u]), u))
        lists.append(sorted([v, *[u for u in order[:2] if shared[v, u] > 0]]))
    return lists
