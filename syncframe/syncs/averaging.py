"""The averaging family of the SyncTweedies analysis: which quantity is averaged through the
canonical space (ε, x0 or x_{t-1}) and where the state lives (per-view x_t or canonical z_t).

MultiDiffusion, SyncTweedies and the ε-averaging / canonical-denoising cases are presets of this
one class and its one schema, not separate code paths.
"""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from ..options import Options, option
from ..spaces.rgb_domain import check_rgb_sync
from ..registry import register_sync
from ..errors import ConfigError
from ..loop import Synchronizer
from ..samplers import Step, eps_from_x0, tweedie


class AveragingOptions(Options):
    aggregate: Literal["eps", "x0", "x_prev"] = option("x0", "what is averaged through the canonical space")
    state: Literal["instance", "canonical"] = option("instance", "per-view x_t (instance) or one canonical z_t")
    until: float = option(1.0, "fraction of the trajectory that is synchronized (SyncTweedies' mvd_end)", ge=0, le=1)

    @model_validator(mode="after")
    def _canonical_runs_to_the_end(self):
        if self.state == "canonical" and self.until != 1.0:
            raise ValueError("sync.until applies to per-view (state=instance) denoising only; canonical "
                             "denoising has one state and runs to the end: set sync.until=1.0")
        return self


class AveragingSync(Synchronizer):
    def __init__(self, aggregate: str, state: str = "instance", until: float = 1.0, name: str = "synctweedies"):
        self.aggregate, self.state, self.until, self.name = aggregate, state, until, name

    def check_domain(self, domain: str) -> None:
        """The RGB domain decodes what is synchronized: a clean quantity of each view on its own (x0,
        or ε) survives that; noisy x_t / x_{t-1}, or one canonical state, does not."""
        if domain == "rgb":
            check_rgb_sync(self.name, self.aggregate, self.state)

    def check_sampler(self, sampler) -> None:
        """ε-averaging recovers x0 = (x_t − s ε) / a, undefined where a schedule starts at a = 0 (σ = 1,
        rectified flow: SD3, FLUX); refuse it there instead of dividing by zero."""
        if self.aggregate == "eps" and any(step.a < 1e-6 for step in sampler.steps):
            raise ConfigError("sync.aggregate=eps averages the noise estimate, which leaves x0 undefined at σ = 1, "
                              "where rectified-flow schedules (SD3, FLUX) start; use sync=synctweedies (x0) or "
                              "sync=multidiffusion (x_prev)")

    def active(self, step: Step) -> bool:
        return step.fraction() < self.until

    def start(self, space, z_T, x_T, sampler):
        self.space, self.z, self.sampler = space, z_T, sampler
        self.memory: dict = {}  # the canonical state's multistep history
        return x_T

    def before_model(self, x_t, step):
        # Canonical denoising: the views are always the projection of the one state z_t.
        return self.space.project(self.z) if self.state == "canonical" and step.index > 0 else x_t

    def after_prediction(self, x_t, x0, eps, step):
        if self.aggregate == "x_prev" or not self.active(step):
            return x0, eps
        if self.state == "canonical":
            if self.aggregate == "x0":
                self.z0 = self.space.unproject(x0)
                self.zeps = eps_from_x0(self.z, self.z0, step)
            else:
                self.zeps = self.space.unproject(eps)
                self.z0 = tweedie(self.z, self.zeps, step)
            return self.space.project(self.z0), self.space.project(self.zeps)
        if self.aggregate == "x0":
            x0 = self.space.sync(x0)  # SyncTweedies: each view steps from the synchronized x0
            return x0, eps_from_x0(x_t, x0, step)
        eps = self.space.sync(eps)
        return tweedie(x_t, eps, step), eps

    def after_step(self, x_prev, step, noise):
        if self.state == "canonical":
            if self.aggregate == "x_prev":
                self.z = self.space.unproject(x_prev)
            else:
                self.z = self.sampler.update(self.z, self.z0, self.zeps, step, None if noise is None else noise[0],
                                             self.memory)
            return self.space.project(self.z)
        if self.aggregate == "x_prev" and self.active(step):
            return self.space.sync(x_prev)  # MultiDiffusion, eq. 5
        return x_prev


def averaging_from_config(options) -> AveragingSync:
    return AveragingSync(options["aggregate"], options["state"], options["until"], options["name"])


class NoOptions(Options):
    pass


@register_sync("none", options=NoOptions, summary="independent views, no synchronization (the seam baseline)")
def make_none(cfg, space) -> Synchronizer:
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
    register_sync(_name, options=AveragingOptions, preset=_preset, summary=_summary)(
        lambda cfg, space: averaging_from_config(cfg["sync"]))
