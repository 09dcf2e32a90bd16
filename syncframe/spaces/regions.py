"""Views per (view, region) pair: prompts per region on any space whose canonical tensor is a pixel grid.

Given region masks on the canonical grid (``[R + 1, H, W]``; region 0 is the background, the main
``prompt=``, weight 1 − Σ other masks; made by :mod:`syncframe.regions` from a layout),
:class:`RegionSpace` makes one view of every (base view, region) pair whose mask is non-empty in
that view, with the region's prompt, weighted per pixel by its mask; the canonical average then
mixes the regions by their masks. It wraps the panorama canvas, the equirect map, the UV texture,
the anagram's image. :class:`Bootstrap` is MultiDiffusion's bootstrapping of its region views.
"""
from __future__ import annotations

from functools import partial

import torch

from ..errors import ConfigError
from ..methods import Synchronizer
from .base import CanonicalSpace, fit_views


class RegionSpace(CanonicalSpace):
    """The views of ``base`` times the regions: view v is base view ``base_index[v]`` with the
    prompt of region ``region[v]``, weighted by that region's mask (``masks: [R+1, H, W]`` on
    ``base``'s canonical grid, region 0 the background)."""

    def __init__(self, base: CanonicalSpace, masks: torch.Tensor):
        self.base, self.masks = base, masks
        projected = base.project(masks)  # the regions as channels: [N_base, R+1, h, w]
        owned = base.owned()
        if owned is not None:
            projected = projected * owned[:, None]
        present = projected.flatten(2).amax(-1) > 1e-3  # [N_base, R+1]
        pairs = present.nonzero().tolist()
        pairs.sort(key=lambda p: (p[1], p[0]))  # region by region, base views in order
        self.base_index = torch.tensor([j for j, _ in pairs], dtype=torch.long)
        self.region = torch.tensor([r for _, r in pairs], dtype=torch.long)
        self.mask_views = projected[self.base_index, self.region][:, None]  # [N, 1, h, w]
        self.num_views, self.view_shape, self.canonical_shape = len(pairs), base.view_shape, base.canonical_shape

    def project(self, z):
        return self.base.project(z)[self.base_index.to(z.device)]

    def project_adjoint(self, x):
        per_base = torch.zeros(self.base.num_views, *x.shape[1:], dtype=x.dtype, device=x.device)
        per_base.index_add_(0, self.base_index.to(x.device), x)
        return self.base.project_adjoint(per_base)

    def view_weights(self, like):
        base_like = like.new_zeros(self.base.num_views, *like.shape[1:])
        weights = self.base.view_weights(base_like)[self.base_index.to(like.device)]
        return weights * self.mask_views.to(like.device, like.dtype)

    def fill(self, z):
        return self.base.fill(z)

    def owned(self):
        owned = self.base.owned()
        return None if owned is None else owned[self.base_index]

    def sample_noise(self, generator, dtype=torch.float32, device="cpu"):
        z, x = self.base.sample_noise(generator, dtype, device)
        return z, x[self.base_index.to(x.device)]  # a window's duplicates share its noise

    def capabilities(self) -> dict[str, object]:
        """``views_fit`` and its own ``anchors`` (one group per region); no ``neighbours`` (the views of
        one window per region share all of it: not SyncTweedies' notion) and no ``canvas``."""
        return {"views_fit": partial(fit_views, self), "anchors": self.anchor_groups}

    def to_base(self, views: torch.Tensor) -> torch.Tensor:
        """The base views of the synchronized result (the regions mixed by their masks)."""
        return self.base.project(self.unproject(views))

    def anchor_groups(self, anchor: int | None = None) -> list[tuple[int, list[int]]]:
        """SyncDiffusion per region: (anchor view, the views pulled to it), one group per region,
        each anchored at its centre view."""
        if anchor is not None:
            raise ConfigError(f"sync.anchor={anchor}: with regions= every region is pulled to its own centre view; "
                              "use sync.anchor=center")
        groups = []
        for r in self.region.unique().tolist():
            members = (self.region == r).nonzero().flatten().tolist()
            groups.append((members[len(members) // 2], members))
        return groups


class Bootstrapped(Synchronizer):
    """A per-view method with MultiDiffusion's bootstrapping (Bar-Tal et al. 2023, Sec. 4.2) in front
    of its own :meth:`before_model`: for the first ``fraction`` of the steps every view of a region
    (not the background) sees, outside its mask, a random constant colour noised to the step's level
    instead of its surroundings, so the region's content forms inside its mask first. Every other
    hook is the wrapped method's."""

    def __init__(self, inner: Synchronizer, seed: int, fraction: float, window_px: int):
        self.inner, self.seed, self.fraction, self.window_px = inner, seed, fraction, window_px

    def bind(self, ctx) -> None:
        self.inner.bind(ctx)
        self.bootstrap = Bootstrap(ctx.space, ctx.model, self.seed, self.fraction, self.window_px)

    def patches(self, model):
        return self.inner.patches(model)

    def before_model(self, x_t, step):
        return self.inner.before_model(self.bootstrap(x_t, step), step)

    def after_prediction(self, x_t, x0, eps, step):
        return self.inner.after_prediction(x_t, x0, eps, step)

    def after_step(self, x_t, x_prev, step):
        return self.inner.after_step(x_t, x_prev, step)


class Bootstrap:
    """The bootstrapping of :class:`Bootstrapped`. The colours come from a palette encoded once; the
    random numbers from their own generator, so the run's noise is the same with bootstrapping on or
    off. ``model``: the run's model (its VAE encodes the palette)."""

    def __init__(self, space: RegionSpace, model, seed: int, fraction: float, window_px: int, colours: int = 8):
        generator = torch.Generator().manual_seed(seed + 1)
        rgb = torch.rand(colours, 3, generator=generator) * 2 - 1
        with torch.no_grad():
            self.palette = model.encode(rgb[:, :, None, None].expand(-1, -1, window_px, window_px).contiguous()).float()
        self.noise = torch.randn((space.num_views, *space.view_shape), generator=generator)
        self.keep = torch.where((space.region > 0)[:, None, None, None], space.mask_views, torch.ones_like(space.mask_views))
        self.fraction, self.generator = fraction, generator

    def __call__(self, x: torch.Tensor, step) -> torch.Tensor:
        if step.fraction() >= self.fraction:
            return x
        pick = torch.randint(len(self.palette), (x.shape[0],), generator=self.generator)
        background = step.a * self.palette[pick].to(x) + step.s * self.noise.to(x)
        keep = self.keep.to(x)
        return x * keep + background * (1 - keep)
