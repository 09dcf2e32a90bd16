"""The averaging family of the SyncTweedies analysis: which quantity is averaged through the
canonical space (ε, x0 or x_{t-1}) and where the state lives (per-view x_t or canonical z_t).

MultiDiffusion, SyncTweedies and the ε-averaging / canonical-denoising cases are configurations
of this one class (``configs/sync/*.yaml``), not separate code paths.
"""
from __future__ import annotations

from ..errors import ConfigError
from ..registry import register_sync
from ..sampler import Step, Synchronizer, ddim_step, eps_from_x0, tweedie

AGGREGATES = ("eps", "x0", "x_prev")
STATES = ("instance", "canonical")


class AveragingSync(Synchronizer):
    def __init__(self, aggregate: str, state: str = "instance", until: float = 1.0):
        if aggregate not in AGGREGATES:
            raise ConfigError(f"sync.aggregate={aggregate!r} is not one of {', '.join(AGGREGATES)}")
        if state not in STATES:
            raise ConfigError(f"sync.state={state!r} is not one of {', '.join(STATES)}")
        if not 0.0 <= until <= 1.0:
            raise ConfigError(f"sync.until={until} must be a fraction of the trajectory in [0, 1]")
        if state == "canonical" and until != 1.0:
            raise ConfigError("sync.until applies to per-view (state=instance) denoising only; "
                              "canonical denoising has one state and runs to the end: set sync.until=1.0")
        self.aggregate, self.state, self.until = aggregate, state, until

    def active(self, step: Step) -> bool:
        return step.fraction() < self.until

    def start(self, space, z_T, x_T):
        self.space, self.z = space, z_T
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
                self.zeps = eps_from_x0(self.z, self.z0, step.alpha)
            else:
                self.zeps = self.space.unproject(eps)
                self.z0 = tweedie(self.z, self.zeps, step.alpha)
            return self.space.project(self.z0), self.space.project(self.zeps)
        if self.aggregate == "x0":
            x0 = self.space.sync(x0)  # SyncTweedies: each view steps from the synchronized x0
            return x0, eps_from_x0(x_t, x0, step.alpha)
        eps = self.space.sync(eps)
        return tweedie(x_t, eps, step.alpha), eps

    def after_step(self, x_prev, step, noise):
        if self.state == "canonical":
            if self.aggregate == "x_prev":
                self.z = self.space.unproject(x_prev)
            else:
                self.z = ddim_step(self.z0, self.zeps, step, None if noise is None else noise[0])
            return self.space.project(self.z)
        if self.aggregate == "x_prev" and self.active(step):
            return self.space.sync(x_prev)  # MultiDiffusion, eq. 5
        return x_prev


def averaging_from_config(options) -> AveragingSync:
    return AveragingSync(options["aggregate"], options.get("state", "instance"), float(options.get("until", 1.0)))


@register_sync("none")
def make_none(cfg) -> Synchronizer:
    """Independent windows: no synchronization at all."""
    return Synchronizer()


for _name in ("multidiffusion", "synctweedies", "eps-averaging", "canonical-x0", "canonical-eps"):
    register_sync(_name)(lambda cfg: averaging_from_config(cfg["sync"]))
