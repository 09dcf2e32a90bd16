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

Settings are those of the official configurations (panorama: 25 steps, 2 warm-up, 25-step
trajectories, 2 seam-removal steps, t from 999 to 270; mesh: 4 warm-up, 20-step trajectories, 4
seam-removal steps). The official code samples the non-seam trajectories with a faster solver on
the same grid where the prior has one; this one uses DDIM throughout (docs/design.md).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import model_validator

from ..errors import ConfigError
from ..loop import SampleContext, Synchronizer, ViewModel
from ..options import Options, option
from ..registry import register_sync
from ..samplers import Step, eps_from_x0, vp

TRAIN_STEPS = 1000
# The official configurations' settings, per app (null options take them); the seam mask of views
# with borders on four sides is ours: measured on the 360 app (docs/benchmarks.md).
APP_SETTINGS = {"panorama": dict(warmup=2, ode_steps=25, seam_removal=2, seam_mask="horizontal"),
                "panorama360": dict(warmup=2, ode_steps=25, seam_removal=2, seam_mask="both"),
                "mesh": dict(warmup=4, ode_steps=20, seam_removal=4, seam_mask="both")}
APP_SETTINGS["splats"] = APP_SETTINGS["mesh"]  # the same orbit of perspective views


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

    @model_validator(mode="after")
    def _levels_fall(self):
        if self.t_min > self.t_max:
            raise ValueError(f"sync.t_min={self.t_min} is above sync.t_max={self.t_max}; the levels fall from t_max "
                             "to t_min")
        return self


def annealed_level(index: int, steps: int, t_max: int, t_min: int) -> int:
    """The official linear annealing: int(t_max + (t_min − t_max) · index / steps), clamped to the table."""
    return max(0, min(TRAIN_STEPS - 1, int(t_max + (t_min - t_max) * index / steps)))


def trajectory_levels(start: int, grid: int) -> list[int]:
    """The levels of a trajectory from ``start`` down to 0: ``start``, then the points of
    linspace(999, 0, grid) (truncated to integers) strictly between, then 0 (the clean latent)."""
    raw = torch.linspace(TRAIN_STEPS - 1, 0, grid).long().tolist()
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


class StochSync(Synchronizer):
    """See the module docstring. Hooks: :meth:`schedule` (the annealed levels), :meth:`before_model`
    (views of the current set rendered from ``z0`` and noised afresh), :meth:`predict` (the DDIM
    trajectory to 0), :meth:`after_prediction` (``z0`` fitted to the set), :meth:`after_step`
    (every view rendered from ``z0``: the loop's result after the last step)."""

    def __init__(self, options: dict, settled: dict | None = None):
        self.options = dict(options)
        self.settled = settled or {}

    def resolved(self) -> dict:
        return {f"sync.{key}": value for key, value in self.settled.items()}

    def check_sampler(self, sampler) -> None:
        if sampler.alphas_cumprod is None:
            raise ConfigError(f"sync=stochsync runs DDIM trajectories on the model's ᾱ table and re-noises views "
                              f"between them; sampler={sampler.name} keeps none: use sampler=ddim (SD 1.x/2.x, SDXL; "
                              "rectified-flow models, SD3 and FLUX, are not supported by sync=stochsync)")

    def bind(self, ctx: SampleContext) -> None:
        self.ctx = ctx
        views = ctx.space.view_shape[-1]
        self.mask = edge_mask(views, int(ctx.denoiser.latent_scale), self.options["seam_mask"]).to(ctx.denoiser.device)

    def schedule(self, steps: list[Step], sampler) -> list[Step]:
        """One step per outer iteration at its annealed level (doubled, up to 999, in seam removal);
        each ends on the clean estimate (a_prev = 1, s_prev = 0)."""
        o, n = self.options, len(steps)
        self.alphas = sampler.alphas_cumprod
        levels = []
        for k in range(n):
            t = annealed_level(k, n, o["t_max"], o["t_min"])
            if k >= n - o["seam_removal"]:
                t = min(2 * t, TRAIN_STEPS - 1)
            levels.append(TRAIN_STEPS - 1 if k < o["warmup"] else t)
        return [Step(k, t, *self.coefficients(t), 1.0, 0.0, 0.0, n) for k, t in enumerate(levels)]

    def coefficients(self, t: int) -> tuple[float, float]:
        return vp(self.alphas[t])

    def start(self, space, z_T, x_T, sampler):
        self.space = space
        self.z0 = torch.zeros_like(z_T)  # the official panorama starts black ("initialization: zero")
        owned = space.owned()
        self.owned = None if owned is None else owned.to(x_T.device)[:, None]
        self.background = torch.zeros_like(x_T)  # each view's last own background (the official "cache")
        return x_T

    def active(self, step: Step) -> torch.Tensor:
        """``[N]`` bool: the views of this step's set."""
        sets = self.options["view_sets"]
        return torch.arange(self.space.num_views) % sets == step.index % sets

    def rendered(self) -> torch.Tensor:
        views = self.space.project(self.z0)
        return views if self.owned is None else torch.where(self.owned, views, self.background)

    def fresh_noise(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.ctx.generator, dtype=like.dtype).to(like.device)

    def before_model(self, x_t, step):
        self.clean = self.rendered()
        noise = self.fresh_noise(self.clean)
        warm = step.index < self.options["warmup"]
        return noise if warm else step.a * self.clean + step.s * noise

    def predict(self, x_t, step, model: ViewModel):
        o = self.options
        seam = step.index >= step.num_steps - o["seam_removal"]
        levels = trajectory_levels(int(step.t), o["seam_ode_steps"] if seam else o["ode_steps"])
        active = self.active(step)
        clean_noise = self.fresh_noise(x_t) if seam else None
        x = x_t
        # The official edge mask counts the trajectory's levels, not its steps (N = len(levels)).
        for i, (t, t_next) in enumerate(zip(levels[:-1], levels[1:])):
            after = (1.0, 0.0) if t_next == 0 else self.coefficients(t_next)  # the last step lands on x0 itself
            sub = Step(i, t, *self.coefficients(t), *after, 0.0, len(levels) - 1)
            x0, eps = model(x, sub, views=active)
            x = sub.a_prev * x0 + sub.s_prev * eps
            if seam:  # keep the borders on the rendered canvas, released from the centre outwards
                keep = (self.mask >= 1 - i / len(levels)).to(x.dtype)
                x = x * keep + (sub.a_prev * self.clean + sub.s_prev * clean_noise) * (1 - keep)
        return x, eps_from_x0(x_t, x, step) if step.s > 0 else torch.zeros_like(x)

    def after_prediction(self, x_t, x0, eps, step):
        active = self.active(step)
        self.z0 = self.space.unproject_views(x0, active, self.z0)
        if self.owned is not None:
            rows = active.to(x0.device).reshape(-1, 1, 1, 1)
            self.background = torch.where(rows, x0, self.background)
        return x0, eps

    def after_step(self, x_prev, step, noise):
        return self.rendered()


@register_sync("stochsync", options=StochSyncOptions, common=dict(steps=25),
               summary="StochSync: fresh noise each step, multi-step x0, alternating view sets (Yeo et al. 2025)")
def make_stochsync(cfg, space) -> StochSync:
    if cfg["sync"]["view_sets"] > space.num_views:
        raise ConfigError(f"sync.view_sets={cfg['sync']['view_sets']} is more than this run's {space.num_views} views; "
                          f"use sync.view_sets<={space.num_views}")
    if cfg["sync"]["view_sets"] > 1 and space.neighbours() is None:
        raise ConfigError(f"sync.view_sets={cfg['sync']['view_sets']}: every view of app={cfg['app']['name']}"
                          f"{' with regions=' if cfg['regions']['name'] != 'none' else ''} covers the whole canvas, so "
                          "each set would overwrite the other's: use sync.view_sets=1")
    options = dict(cfg["sync"])
    published = APP_SETTINGS.get(cfg["app"]["name"], APP_SETTINGS["panorama"])
    settled = {key: value for key, value in published.items() if options[key] is None}
    options.update(settled)
    if options["warmup"] + options["seam_removal"] > cfg["steps"]:
        raise ConfigError(f"sync.warmup={options['warmup']} plus sync.seam_removal={options['seam_removal']} is more "
                          f"than steps={cfg['steps']}; lower them or raise steps")
    return StochSync(options, settled)
