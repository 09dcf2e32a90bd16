"""The averaging family of the SyncTweedies analysis: which quantity is averaged through the
canonical space (ε, x0 or x_{t-1}) and where the state lives (per-view x_t or canonical z_t).

MultiDiffusion, SyncTweedies and the ε-averaging / canonical-denoising cases are presets of one
schema: per-view states are :class:`Averaging` (hooks on the views' trajectories), a canonical
state is :class:`CanonicalDenoising` (a method that owns its one ``z_t``). SyncTweedies' cross-view
attention (``sync.cross_view``: each view's self-attention also reads its neighbours) is this
family's model patch (:meth:`Averaging.patches`, syncframe/models/cross_view.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import model_validator

from ..errors import ConfigError
from ..methods import Synchronizer, Trajectory
from ..models.cross_view import CrossViewPlan, cross_view_attention, ring
from ..options import Options, option
from ..registry import register_sync
from ..samplers import FLOW, Step, eps_from_x0, tweedie
from ..spaces.rgb_domain import check_rgb_sync


class AveragingOptions(Options):
    aggregate: Literal["eps", "x0", "x_prev"] = option("x0", "what is averaged through the canonical space")
    state: Literal["instance", "canonical"] = option("instance", "per-view x_t (instance) or one canonical z_t")
    until: float = option(1.0, "fraction of the trajectory that is synchronized (SyncTweedies' mvd_end)", ge=0, le=1)
    cross_view: Literal["auto", "neighbours", "none"] = option(
        "none", "each view's self-attention also reads its neighbour views' tokens (SyncTweedies' official code); "
                "auto = neighbours where the run can (a UNet, one process, every view in one model call, views "
                "with neighbours), none otherwise; the apps where the official code runs it set auto for "
                "sync=synctweedies")
    reference_until: float = option(0.2, "with cross_view: while t > 1000 (1 - this), views also attend to the centre "
                                         "view (the official ref_attention_end); 0 = never", ge=0, le=1)
    wrap: Literal["auto", "always"] = option(
        "auto", "with cross_view, who neighbours whom: auto = the space says (a loop's ends are neighbours, a plain "
                "panorama's are not); always = the views before and after in order, last and first included (the "
                "official code)")

    @model_validator(mode="after")
    def _canonical_runs_to_the_end(self):
        if self.state == "canonical" and self.until != 1.0:
            raise ValueError("sync.until applies to per-view (state=instance) denoising only; canonical "
                             "denoising has one state and runs to the end: set sync.until=1.0")
        return self

    def settle(self, facts) -> dict:
        """``cross_view=auto``: neighbours where the run can, else none (:func:`cross_view_problems`)."""
        if self.cross_view != "auto":
            return {}
        ok = not cross_view_problems(self, facts) and facts.space.num_views > 1
        return {"cross_view": "neighbours" if ok else "none"}


def cross_view_problems(options: AveragingOptions, facts) -> list[str]:
    """Why cross-view attention cannot run here (nothing when it can)."""
    problems = []
    if not facts.family.has_unet:
        problems.append(f"the model is {facts.family.name}, and it is a UNet's self-attention that reads the "
                        "neighbours: use an SD 1.x/2.x or SDXL model")
    if facts.distributed:
        problems.append("this run is split over processes, and a view's neighbours may be in another: run it in one "
                        "process")
    num_views = facts.space.num_views
    if facts.view_batch_size and facts.view_batch_size < num_views:
        problems.append(f"view_batch_size={facts.view_batch_size} splits the {num_views} views into several model "
                        "calls, and neighbours must share one: drop view_batch_size")
    if options.wrap != "always" and facts.space.capability("neighbours") is None:
        problems.append(f"the views of {facts.app_label()} have no neighbours (each sees the whole canvas): use "
                        "sync.wrap=always for the official ring, or sync.cross_view=none")
    return problems


class Averaging(Synchronizer):
    """Per-view states: average ``aggregate`` through the canonical space during the first ``until`` of
    the trajectory; with ``cross_view`` the views' self-attention reads their neighbours."""

    def __init__(self, aggregate: str, until: float = 1.0, cross_view: CrossViewPlan | None = None):
        self.aggregate, self.until, self.cross_view = aggregate, until, cross_view

    def bind(self, ctx) -> None:
        self.space = ctx.space

    def patches(self, model):
        return cross_view_attention(model, self.cross_view)

    def active(self, step: Step) -> bool:
        return step.fraction() < self.until

    def after_prediction(self, x_t, x0, eps, step):
        if self.aggregate == "x_prev" or not self.active(step):
            return x0, eps
        if self.aggregate == "x0":
            x0 = self.space.sync(x0)  # SyncTweedies: each view steps from the synchronized x0
            return x0, eps_from_x0(x_t, x0, step)
        eps = self.space.sync(eps)
        return tweedie(x_t, eps, step), eps

    def after_step(self, x_t, x_prev, step):
        if self.aggregate == "x_prev" and self.active(step):
            return self.space.sync(x_prev)  # MultiDiffusion, eq. 5
        return x_prev


@dataclass
class CanonicalState:
    """One canonical ``z_t``, its views ``x_t`` (the space's view-consistent noise at the start,
    ``P(z_t)`` after), and the sampler's multistep history."""

    z: torch.Tensor
    x: torch.Tensor
    memory: dict


class CanonicalDenoising(Trajectory):
    """One canonical state ``z_t``: each step the model sees its views; the views' ``x0`` (or ε) is
    brought back to the canonical space and ``z`` steps there (``aggregate=x_prev``: the views step
    and their average is the new ``z``)."""

    def __init__(self, aggregate: str):
        self.aggregate = aggregate

    def bind(self, ctx) -> None:
        self.space, self.sampler, self.generator = ctx.space, ctx.sampler, ctx.generator

    def init(self, z_T, x_T) -> CanonicalState:
        return CanonicalState(z_T, x_T, {})

    def step(self, state: CanonicalState, step: Step, model) -> CanonicalState:
        with torch.no_grad():
            x0, eps = model(state.x, step)
        noise = self.space.sample_noise(self.generator) if self.sampler.stochastic else None
        if self.aggregate == "x_prev":
            x_prev = self.sampler.update(state.x, x0, eps, step, None if noise is None else noise[1].to(x0.device),
                                         state.memory)
            z = self.space.unproject(x_prev)
        else:
            if self.aggregate == "x0":
                z0 = self.space.unproject(x0)
                zeps = eps_from_x0(state.z, z0, step)
            else:
                zeps = self.space.unproject(eps)
                z0 = tweedie(state.z, zeps, step)
            z = self.sampler.update(state.z, z0, zeps, step, None if noise is None else noise[0].to(z0.device),
                                    state.memory)
        return CanonicalState(z, self.space.project(z), state.memory)

    def views(self, state: CanonicalState) -> torch.Tensor:
        return state.x


def check_averaging(name: str, options: AveragingOptions, facts) -> None:
    """What the family cannot do, refused before anything loads."""
    if facts.domain == "rgb":  # the RGB domain decodes what is synchronized: only a clean quantity survives
        check_rgb_sync(name, options.aggregate, options.state)
    if options.aggregate == "eps" and facts.spec.schedule == FLOW:
        raise ConfigError("sync.aggregate=eps averages the noise estimate, which leaves x0 undefined at σ = 1, "
                          "where rectified-flow schedules (SD3, FLUX) start; use sync=synctweedies (x0) or "
                          "sync=multidiffusion (x_prev)")
    if options.cross_view == "neighbours":
        if options.state == "canonical":
            raise ConfigError(f"sync.cross_view=neighbours needs per-view states; sync={name} denoises one canonical "
                              "state: use sync.cross_view=none")
        problems = cross_view_problems(options, facts)
        if problems:
            raise ConfigError(f"sync.cross_view=neighbours: {problems[0]}")


def cross_view_plan(options: AveragingOptions, facts) -> CrossViewPlan | None:
    """The run's cross-view attention (None for ``cross_view=none``)."""
    if options.cross_view != "neighbours":
        return None
    space = facts.space
    neighbours = ring(space.num_views) if options.wrap == "always" else space.capability("neighbours")()
    return CrossViewPlan(neighbours, [space.num_views // 2], options.reference_until,
                         int(facts.spec.scheduler_config.get("num_train_timesteps", 1000)))


def make_averaging(options: AveragingOptions, facts):
    """A per-view :class:`Averaging` or a :class:`CanonicalDenoising`, by ``sync.state``."""
    check_averaging(facts.sync, options, facts)
    if options.state == "canonical":
        return CanonicalDenoising(options.aggregate)
    return Averaging(options.aggregate, options.until, cross_view_plan(options, facts))


class NoOptions(Options):
    pass


@register_sync("none", options=NoOptions, summary="independent views, no synchronization (the seam baseline)")
def make_none(options, facts) -> Synchronizer:
    return Synchronizer()


PRESETS = {
    "multidiffusion": (dict(aggregate="x_prev"), "average x_{t-1} of all views after every step (Bar-Tal et al. 2023)"),
    "synctweedies": (dict(aggregate="x0"), "average the Tweedie x0 predictions; every view steps from them "
                                           "(Kim et al. 2024)"),
    "eps-averaging": (dict(aggregate="eps"), "average the predicted noise ε (SyncTweedies' analysis)"),
    "canonical-x0": (dict(aggregate="x0", state="canonical"), "denoise one canonical z_t, x0 = U(x0 of the views)"),
    "canonical-eps": (dict(aggregate="eps", state="canonical"), "denoise one canonical z_t, ε = U(ε of the views)"),
}
for _name, (_preset, _summary) in PRESETS.items():
    register_sync(_name, options=AveragingOptions, preset=_preset, summary=_summary)(make_averaging)
