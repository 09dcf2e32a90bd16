"""StochSync (Yeo et al., ICLR 2025): synchronization with maximal stochasticity and multi-step x0.

The state is a clean canonical estimate ``z0``. Each outer step k takes one set of views, renders
them from ``z0``, noises them to the step's level ``t_k`` with fresh noise (no noise is carried
from one step to the next: the "maximal stochasticity" of the paper), runs the deterministic DDIM
trajectory from ``t_k`` down to 0 on each view on its own (several model calls: the multi-step x0
prediction), and fits ``z0`` to the results of that set (the closed-form average; texels none of
them sees keep their value). The levels fall linearly from ``t_max`` to ``t_min``; the first
``warmup`` steps start from pure noise; view sets alternate, so a set's view borders lie inside
the other set's views; the last ``seam_removal`` steps double the level and keep each view's
borders on the rendered canvas, releasing them to the trajectory from the centre outwards
(edge-preserving sampling), which removes the seams the sets leave.

The apps' registrations give their settings (``sync_defaults``); options left null on an app
that gives none take the wide panorama's. The official code samples the non-seam trajectories
with a faster solver on the same grid where the prior has one; this one uses DDIM throughout
(docs/design.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import model_validator

from ..errors import ConfigError
from ..methods import Trajectory
from ..options import Options, option
from ..registry import register_sync
from ..samplers import DPMSolverPP2M, Step, from_sigma, vp

dpm_update = DPMSolverPP2M.update_views

TRAIN_STEPS = 1000  # the schema's bound on levels; a run uses its model's own ᾱ table
# What null options become on an app whose registration gives no settings: the wide panorama's.
GENERIC = dict(warmup=2, ode_steps=25, seam_removal=2, seam_mask="horizontal")


class StochSyncOptions(Options):
    t_max: int = option(999, "noise level (training timestep) of the first step", ge=1, le=TRAIN_STEPS - 1)
    t_min: int = option(270, "noise level the levels fall to, linearly, over the run's steps", ge=1,
                        le=TRAIN_STEPS - 1)
    warmup: int | None = option(None, "first steps started from pure noise (t = 999): each view set paints its "
                                      "views once; null = the app's (4 mesh, 2 otherwise)", ge=0)
    ode_steps: int | None = option(None, "grid of each multi-step x0 prediction: DDIM over linspace(999, 0, "
                                         "ode_steps), from the step's level down; null = the app's (20 mesh, 25 "
                                         "otherwise)", ge=2, le=1000)
    seam_removal: int | None = option(None, "last steps that double the level and keep view borders (edge-"
                                            "preserving); null = the app's (4 mesh, 2 otherwise)", ge=0)
    seam_ode_steps: int = option(50, "the grid of the seam-removal steps' trajectories", ge=2, le=1000)
    seam_mask: Literal["horizontal", "vertical", "both"] | None = option(
        None, "which view borders seam removal keeps first: left/right, top/bottom, or both; null = the app's "
              "(horizontal for the wide panorama, both for the 360 app's and a mesh's perspective views)")
    view_sets: int = option(2, "view i belongs to set i mod view_sets; the sets take turns, one per step", ge=1)
    solver: Literal["ddim", "dpmpp"] = option(
        "ddim", "the multi-step x0 outside seam removal: DDIM, or DPM-Solver++ 2M on the same levels, ending on x0 "
                "(the official code's try_fast_sampling)")
    landing: Literal["x0", "alpha0"] = option(
        "x0", "where a DDIM trajectory's last move lands: on x0 itself, or on the ᾱ₀ level (the official code's: its "
              "t = 0 is the first noise level)")
    top_noise: Literal["warmup", "any"] = option(
        "warmup", "which steps start from pure noise: the warm-up steps, or any step at the table's top level (the "
                  "official code: a doubled level capped at 999 too)")
    start: Literal["zeros", "black"] = option(
        "zeros", "the canonical estimate before the first step: zeros, or black (-1: for an RGB canonical, "
                 "app.domain=rgb, the official panorama's)")

    @model_validator(mode="after")
    def _levels_fall(self):
        if self.t_min > self.t_max:
            raise ValueError(f"sync.t_min={self.t_min} is above sync.t_max={self.t_max}; the levels fall from t_max "
                             "to t_min")
        return self

    def settle(self, facts) -> dict:
        """Options the app's registration left null: the wide panorama's (``GENERIC``)."""
        return {key: value for key, value in GENERIC.items() if getattr(self, key) is None}


def annealed_level(index: int, steps: int, t_max: int, t_min: int, table: int = TRAIN_STEPS) -> int:
    """The official linear annealing: int(t_max + (t_min − t_max) · index / steps), clamped to the table."""
    return max(0, min(table - 1, int(t_max + (t_min - t_max) * index / steps)))


def trajectory_levels(start: int, grid: int, table: int = TRAIN_STEPS) -> list[int]:
    """The levels of a trajectory from ``start`` down to 0: ``start``, then the points of
    linspace(table − 1, 0, grid) (truncated to integers) strictly between, then 0 (the clean latent)."""
    raw = torch.linspace(table - 1, 0, grid).long().tolist()
    return [start, *[t for t in raw if 0 < t < start], 0] if start > 0 else [0]


def edge_mask(width: int, scale: int, mode: str) -> torch.Tensor:
    """``[w, w]`` in [0, 1]: the official tent, 0 at a view's left and right border and 1 at its
    centre, made at pixel resolution (``width · scale``) and min-pooled to latents; ``vertical``
    its transpose, ``both`` their minimum."""
    half = torch.linspace(0, 1, width * scale // 2)
    tent = torch.cat([half, half.flip(0)]).reshape(width, scale).amin(1)
    horizontal = tent[None, :].expand(width, width)
    if mode == "horizontal":
        return horizontal
    if mode == "vertical":
        return horizontal.T
    return torch.minimum(horizontal, horizontal.T)


@dataclass
class StochState:
    """The clean canonical estimate ``z0`` and each view's last own background (the official "cache")."""

    z0: torch.Tensor
    background: torch.Tensor


class StochSync(Trajectory):
    """See the module docstring. Each :meth:`step` renders the step's view set from ``z0``, noises it
    afresh to the step's level, runs the DDIM trajectory to 0 on each of its views and fits ``z0`` to
    the results; :meth:`views` renders every view from ``z0``."""

    def __init__(self, options: StochSyncOptions):
        self.options = options

    def bind(self, ctx) -> None:
        self.space, self.generator = ctx.space, ctx.generator
        self.alphas = ctx.sampler.alphas_cumprod
        self.table = len(self.alphas)
        self.fit = ctx.space.capability("views_fit")
        self.mask = edge_mask(ctx.space.view_shape[-1], ctx.model.latent_scale,
                              self.options.seam_mask).to(ctx.model.device)
        owned = ctx.space.owned()
        self.owned = None if owned is None else owned.to(ctx.model.device)[:, None]

    def schedule(self, steps: list[Step]) -> list[Step]:
        """One step per outer iteration at its annealed level (doubled, up to the table's end, in seam
        removal); each ends on the clean estimate (a_prev = 1, s_prev = 0)."""
        o, n, top = self.options, len(steps), self.table - 1
        levels = []
        for k in range(n):
            t = annealed_level(k, n, o.t_max, o.t_min, self.table)
            if k >= n - o.seam_removal:
                t = min(2 * t, top)
            levels.append(top if k < o.warmup else t)
        return [Step(k, t, *self.coefficients(t), 1.0, 0.0, 0.0, n) for k, t in enumerate(levels)]

    def coefficients(self, t: int) -> tuple[float, float]:
        return vp(self.alphas[t])

    def init(self, z_T, x_T) -> StochState:
        # the canonical's own shape (an RGB canonical under app.domain=rgb, whose noise is the latent's)
        z0 = torch.zeros(self.space.canonical_shape, dtype=x_T.dtype, device=x_T.device)
        return StochState(z0 - 1 if self.options.start == "black" else z0, torch.zeros_like(x_T))

    def active(self, step: Step) -> torch.Tensor:
        """``[N]`` bool: the views of this step's set."""
        sets = self.options.view_sets
        return torch.arange(self.space.num_views) % sets == step.index % sets

    def views(self, state: StochState) -> torch.Tensor:
        views = self.space.project(state.z0)
        return views if self.owned is None else torch.where(self.owned, views, state.background)

    def fresh_noise(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.generator, dtype=like.dtype).to(like.device)

    def step(self, state: StochState, step: Step, model) -> StochState:
        clean = self.views(state)
        noise = self.fresh_noise(clean)
        top = self.options.top_noise == "any" and int(step.t) == self.table - 1
        x_t = noise if step.index < self.options.warmup or top else step.a * clean + step.s * noise
        active = self.active(step)
        with torch.no_grad():
            x0 = self.trajectory(x_t, clean, step, model, active)
        z0 = self.fit(x0, active, state.z0)
        background = state.background
        if self.owned is not None:
            background = torch.where(active.to(x0.device).reshape(-1, 1, 1, 1), x0, background)
        return StochState(z0, background)

    def trajectory(self, x_t: torch.Tensor, clean: torch.Tensor, step: Step, model, active: torch.Tensor):
        """The multi-step x0 of the views ``active``: DDIM from the step's level down to 0; in seam
        removal the borders are held on the rendered canvas, released from the centre outwards."""
        o = self.options
        seam = step.index >= step.num_steps - o.seam_removal
        levels = trajectory_levels(int(step.t), o.seam_ode_steps if seam else o.ode_steps, self.table)
        if o.solver == "dpmpp" and not seam:
            return self.dpm_trajectory(x_t, levels, model, active)
        clean_noise = self.fresh_noise(x_t) if seam else None
        x = x_t
        # The official edge mask counts the trajectory's levels, not its steps (N = len(levels)).
        for i, (t, t_next) in enumerate(zip(levels[:-1], levels[1:])):
            land = t_next == 0 and o.landing == "x0"  # on x0 itself, or on the ᾱ₀ level
            after = (1.0, 0.0) if land else self.coefficients(t_next)
            sub = Step(i, t, *self.coefficients(t), *after, 0.0, len(levels) - 1)
            x0, eps = model(x, sub, views=active)
            x = sub.a_prev * x0 + sub.s_prev * eps
            if seam:
                keep = (self.mask >= 1 - i / len(levels)).to(x.dtype)
                x = x * keep + (sub.a_prev * clean + sub.s_prev * clean_noise) * (1 - keep)
        return x

    def dpm_trajectory(self, x: torch.Tensor, levels: list[int], model, active: torch.Tensor) -> torch.Tensor:
        """DPM-Solver++ 2M from ``levels[0]`` through ``levels[1:-1]`` to x0 (σ = 0), as diffusers'
        ``DPMSolverMultistepScheduler`` steps on those timesteps: second order but on the first and the
        last step."""
        sigmas = [((1 - self.alphas[t]) / self.alphas[t]) ** 0.5 for t in levels[:-1]] + [0.0]
        memory: dict = {}
        n = len(levels) - 1
        for i, t in enumerate(levels[:-1]):
            a_prev, s_prev = from_sigma(sigmas[i + 1]) if sigmas[i + 1] > 0 else (1.0, 0.0)
            sub = Step(i, t, *self.coefficients(t), a_prev, s_prev, 0.0, n)
            x0, eps = model(x, sub, views=active)
            x = dpm_update(x, x0, sub, memory)
        return x


@register_sync("stochsync", options=StochSyncOptions, common=dict(steps=25),
               summary="StochSync: fresh noise each step, multi-step x0, alternating view sets (Yeo et al. 2025)")
def make_stochsync(options: StochSyncOptions, facts) -> StochSync:
    space = facts.space
    if facts.sampler.alphas_cumprod is None:
        raise ConfigError(f"sync=stochsync runs DDIM trajectories on the model's ᾱ table and re-noises views "
                          f"between them; sampler={facts.sampler.name} keeps none: use sampler=ddim (SD 1.x/2.x, "
                          "SDXL; rectified-flow models, SD3 and FLUX, are not supported by sync=stochsync)")
    if space.capability("views_fit") is None:
        raise ConfigError(f"sync=stochsync fits the canonical to some views at a time; the views of "
                          f"{facts.app_label()} cannot be fitted that way: use another sync")
    if options.view_sets > space.num_views:
        raise ConfigError(f"sync.view_sets={options.view_sets} is more than this run's {space.num_views} views; "
                          f"use sync.view_sets<={space.num_views}")
    if options.view_sets > 1 and space.capability("neighbours") is None:
        raise ConfigError(f"sync.view_sets={options.view_sets}: every view of {facts.app_label()} covers the whole "
                          "canvas, so each set would overwrite the other's: use sync.view_sets=1")
    if options.warmup + options.seam_removal > facts.steps:
        raise ConfigError(f"sync.warmup={options.warmup} plus sync.seam_removal={options.seam_removal} is more "
                          f"than steps={facts.steps}; lower them or raise steps")
    return StochSync(options)
