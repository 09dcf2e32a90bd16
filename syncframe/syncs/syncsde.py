"""SyncSDE (Lee et al., CVPR 2025): per-view DDIM trajectories, each view after the first pulled
towards the views before it by a correction derived from the correlation of their SDEs.

After every step, view ``j``'s new state is corrected by its disagreement, at the step's start, with
what the views before it say about the pixels it shares with them:

    x_{t-1}^j -= λ⁻¹ · γ_t · (t / T) · m_j ⊙ (x_t^j − P_j(U_{R_j}(x_t)))

with ``γ_t = a_{t-1}/a_t − s_{t-1}/s_t`` (``√(ᾱ_{t-1}/ᾱ_t) − √((1−ᾱ_{t-1})/(1−ᾱ_t))``), ``U_{R_j}`` the
canonical fitted to the reference views ``R_j`` alone, ``m_j`` the pixels of view ``j`` those views see,
``λ⁻¹`` the official ``--inv_lambda``. The official code takes ``R_j`` = the one view before (wide
images: ``patch_mapping`` of view ``j − 1``) or every view before (mesh texturing: the texture baked from
views ``0..j−1``), and ``T`` = the run's first timestep (wide) or the training timesteps (mesh); both are
options, the apps' registrations choose the official ones. View 0 is never corrected; the views keep
their own trajectories (nothing is averaged), and the app's result is the space's average of them.
"""
from __future__ import annotations

from typing import Literal

import torch

from ..errors import ConfigError
from ..methods import Synchronizer
from ..options import Options, option
from ..registry import register_sync
from ..samplers import FLOW, Step


class SyncSDEOptions(Options):
    inv_lambda: float = option(5.0, "λ⁻¹, the strength of the pull towards the views before (the official "
                                    "--inv_lambda, 5 in its wide-image and mesh scripts); 0 = independent views",
                               ge=0, le=1e3)
    reference: Literal["preceding", "previous"] = option(
        "preceding", "which views a view is pulled towards: preceding = every view before it (the official mesh "
                     "code), previous = the one just before it (the official wide-image code)")
    t_scale: Literal["train", "first"] = option(
        "train", "T of the correction's t / T: train = the model's training timesteps (the official mesh code), "
                 "first = the run's first timestep (the official wide-image code)")


def reference_views(num_views: int, reference: str) -> torch.Tensor:
    """``[N, N]`` bool: row ``j`` marks the views view ``j`` is pulled towards (none for view 0)."""
    before = torch.ones(num_views, num_views, dtype=torch.bool).tril(-1)
    if reference == "previous":
        return before & ~torch.ones_like(before).tril(-2)
    return before


def correction_scale(step: Step, inv_lambda: float, t_total: float) -> float:
    """``λ⁻¹ γ_t t / T`` of one step (``γ_t`` from the step's path coefficients, DDIM's)."""
    gamma = step.a_prev / step.a - step.s_prev / step.s
    return inv_lambda * gamma * step.t / t_total


class SyncSDE(Synchronizer):
    def __init__(self, inv_lambda: float, reference: str, t_total: float | None):
        self.inv_lambda, self.reference, self.t_total = inv_lambda, reference, t_total

    def bind(self, ctx) -> None:
        self.space = ctx.space
        self.fit = ctx.space.capability("views_fit")
        self.T = self.t_total or ctx.sampler.steps[0].t
        self.references = reference_views(ctx.space.num_views, self.reference)
        self.seen = self.seen_by_references()

    def seen_by_references(self) -> torch.Tensor:
        """``[N, 1, h, w]``, 1 or 0: the pixels of each view its reference views see (its own pixels only: a
        mesh view's background is no one's). Fixed by the space, so found once, when the run binds."""
        ones = torch.ones(self.space.num_views, *self.space.view_shape)
        zero = torch.zeros(self.space.canonical_shape)
        seen = torch.zeros_like(ones[:, :1])
        for j in range(1, self.space.num_views):
            seen[j] = self.space.project(self.fit(ones, self.references[j], zero))[j, :1] > 0.5
        owned = self.space.owned()
        return seen if owned is None else seen * owned.to(seen.dtype).cpu()[:, None]

    def targets(self, x_t: torch.Tensor) -> torch.Tensor:
        """What its reference views say of each view, ``[N, C, h, w]``."""
        target = torch.zeros_like(x_t)
        zero = torch.zeros(self.space.canonical_shape, dtype=x_t.dtype, device=x_t.device)
        for j in range(1, x_t.shape[0]):
            target[j] = self.space.project(self.fit(x_t, self.references[j], zero))[j]
        return target

    def after_step(self, x_t, x_prev, step):
        scale = correction_scale(step, self.inv_lambda, self.T)
        if scale == 0:
            return x_prev
        seen = self.seen.to(x_t.device, x_t.dtype)
        return x_prev - scale * seen * (x_t - self.targets(x_t))


@register_sync("syncsde", options=SyncSDEOptions,
               summary="each view pulled towards the views before it by the SDEs' correlation (Lee et al. 2025)")
def make_syncsde(options: SyncSDEOptions, facts) -> SyncSDE:
    if facts.spec.schedule == FLOW:
        raise ConfigError("sync=syncsde's correction is derived for DDIM on a variance-preserving schedule, and "
                          f"{facts.family.name} is a rectified-flow model: use sync=synctweedies or sync=multidiffusion")
    if facts.space.capability("views_fit") is None:
        raise ConfigError(f"sync=syncsde fits the canonical to some views at a time; the space of {facts.app_label()} "
                          "cannot: use another sync")
    t_total = None if options.t_scale == "first" else float(facts.spec.scheduler_config.get("num_train_timesteps", 1000))
    return SyncSDE(options.inv_lambda, options.reference, t_total)
