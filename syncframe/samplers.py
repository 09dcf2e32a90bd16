"""Samplers: the timesteps of a diffusers scheduler and its update, written from (x_t, x0, ε).

Every schedule here is a path ``x_t = a_t x0 + s_t ε``:

- variance preserving (Stable Diffusion 1/2, SDXL): ``a = √ᾱ``, ``s = √(1 − ᾱ)``; schedulers
  that work in σ-space (Euler, DPM-Solver) have ``σ = s / a``, and the loop's state is the
  variance-preserving ``x_t = x̃ / √(1 + σ²)`` (what the UNet is fed);
- rectified flow (SD3, FLUX): ``a = 1 − σ``, ``s = σ``.

Writing each update from (x_t, x0, ε) lets the synchronizers change x0 or ε in between (the
design's hook points) and keeps one formula per sampler. Timesteps, ᾱ and σ come from the diffusers
scheduler itself (``from_config`` of the model's own scheduler config), so a repository's schedule
(betas, spacing, offsets, Karras sigmas, shift) is used as is; tests check every sampler against
its diffusers scheduler's ``step`` and pipeline.

Multistep samplers (DPM-Solver++ 2M) keep the x0 of the previous step in a ``memory`` dict the
caller owns: the loop keeps one for the views (holding the x0 each view stepped from: the
synchronized one under x0-averaging) and canonical-state synchronizers one for ``z``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import ConfigError
from .options import Options, option
from .registry import register_sampler

from .models.families import FLOW, VP  # noqa: F401  (the schedule kinds, re-exported)


@dataclass
class Step:
    """Step ``index`` of ``num_steps``: model timestep ``t``; path coefficients now (``a``, ``s``)
    and after the step (``a_prev``, ``s_prev``); ``noise`` the std of the fresh noise the update
    adds (0 for deterministic samplers)."""

    index: int
    t: float
    a: float
    s: float
    a_prev: float
    s_prev: float
    noise: float
    num_steps: int

    def fraction(self) -> float:
        """How far along the trajectory this step is, in [0, 1)."""
        return self.index / self.num_steps


def tweedie(x_t: torch.Tensor, eps: torch.Tensor, step: Step) -> torch.Tensor:
    """E[x0 | x_t] = (x_t − s ε) / a."""
    return (x_t - step.s * eps) / step.a


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, step: Step) -> torch.Tensor:
    """The ε that makes ``x0`` the prediction of ``x_t``: (x_t − a x0) / s."""
    return (x_t - step.a * x0) / step.s


class Sampler:
    """Timesteps and coefficients of one scheduler, and the update ``x_prev = f(x_t, x0, ε)``."""

    name = ""
    kinds = (VP,)  # the schedules it is sound for
    stochastic = False
    alphas_cumprod: list[float] | None = None  # ᾱ per training timestep, for samplers that keep the table

    def __init__(self, steps: list[Step], initial_scale: float = 1.0):
        self.steps = steps
        self.initial_scale = initial_scale  # x_T = initial_scale · N(0, I) in the loop's state

    @classmethod
    def build(cls, options: dict, spec, steps: int) -> "Sampler":
        """The sampler for ``options`` (its ``sampler.*`` section), the model's ``spec`` and ``steps``."""
        raise NotImplementedError

    def steps_from(self, strength: float) -> list[Step]:
        """The steps left when starting part-way (SDEdit), as diffusers' img2img pipelines pick them:
        the last ``int(n · strength)`` of the n steps; none for strength 0, all for 1."""
        n = len(self.steps)
        return self.steps[max(n - min(int(n * strength), n), 0):]

    def update(self, x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, step: Step,
               noise: torch.Tensor | None = None, memory: dict | None = None) -> torch.Tensor:
        """Deterministic samplers: the point of the path at the next noise level through (x0, ε)."""
        return step.a_prev * x0 + step.s_prev * eps


def vp(alpha_cumprod: float) -> tuple[float, float]:
    return math.sqrt(alpha_cumprod), math.sqrt(1 - alpha_cumprod)


def from_sigma(sigma: float) -> tuple[float, float]:
    """(a, s) of the variance-preserving state for a σ-space noise level."""
    a = 1 / math.sqrt(1 + sigma * sigma)
    return a, sigma * a


class DDIM(Sampler):
    """DDIM (Song et al. 2021, eq. 12) with η; the papers' sampler."""

    name = "ddim"
    stochastic = True  # when eta > 0

    def __init__(self, config, num_steps: int, eta: float = 0.0):
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(config)
        scheduler.set_timesteps(num_steps)
        alphas = scheduler.alphas_cumprod.double()
        self.alphas_cumprod = alphas.tolist()
        timesteps = [int(t) for t in scheduler.timesteps]
        check_range(timesteps, len(alphas), num_steps)
        stride = scheduler.config.num_train_timesteps // num_steps
        final = float(scheduler.final_alpha_cumprod)
        steps = []
        for i, t in enumerate(timesteps):
            alpha, prev = float(alphas[t]), float(alphas[t - stride]) if t - stride >= 0 else final
            sigma = eta * math.sqrt((1 - prev) / (1 - alpha) * (1 - alpha / prev))
            steps.append(Step(i, t, *vp(alpha), *vp(prev), sigma, num_steps))
        self.stochastic = eta > 0
        super().__init__(steps)

    @classmethod
    def build(cls, options, spec, steps):
        return cls(spec.scheduler_config, steps, options.eta)

    def update(self, x_t, x0, eps, step, noise=None, memory=None):
        x_prev = step.a_prev * x0 + math.sqrt(max(step.s_prev**2 - step.noise**2, 0.0)) * eps
        return x_prev if noise is None or step.noise == 0 else x_prev + step.noise * noise


class DDPM(DDIM):
    """DDPM's ancestral sampler (Ho et al. 2020) on a ``DDPMScheduler``'s timesteps: the posterior
    mean plus noise of the posterior's variance, which is DDIM with η = 1 written from (x0, ε)."""

    name = "ddpm"

    def __init__(self, config, num_steps: int):
        from diffusers import DDPMScheduler

        scheduler = DDPMScheduler.from_config(config)
        scheduler.set_timesteps(num_steps)
        alphas = scheduler.alphas_cumprod.double()
        self.alphas_cumprod = alphas.tolist()
        timesteps = [int(t) for t in scheduler.timesteps]
        check_range(timesteps, len(alphas), num_steps)
        steps = []
        for i, t in enumerate(timesteps):
            p = int(scheduler.previous_timestep(t))
            alpha, prev = float(alphas[t]), float(alphas[p]) if p >= 0 else 1.0
            variance = max((1 - prev) / (1 - alpha) * (1 - alpha / prev), 1e-20) if p >= 0 else 0.0
            steps.append(Step(i, t, *vp(alpha), *vp(prev), math.sqrt(variance), num_steps))
        self.stochastic = True
        Sampler.__init__(self, steps)

    @classmethod
    def build(cls, options, spec, steps):
        return cls(spec.scheduler_config, steps)


class Euler(Sampler):
    """Euler's method on the probability-flow ODE in σ-space (Karras et al. 2022; diffusers'
    ``EulerDiscreteScheduler`` without churn): x̃' = x̃ + (σ' − σ)(x̃ − x0)/σ, i.e. x̃' = x0 + σ' ε."""

    name = "euler"

    def __init__(self, config, num_steps: int):
        from diffusers import EulerDiscreteScheduler

        scheduler = EulerDiscreteScheduler.from_config(config)
        scheduler.set_timesteps(num_steps)
        sigmas = [float(s) for s in scheduler.sigmas]
        steps = [Step(i, float(t), *from_sigma(sigmas[i]), *from_sigma(sigmas[i + 1]), 0.0, num_steps)
                 for i, t in enumerate(scheduler.timesteps)]
        # diffusers starts from N(0, I) · init_noise_sigma in σ-space; in the state: times a_0.
        super().__init__(steps, float(scheduler.init_noise_sigma) * steps[0].a)

    @classmethod
    def build(cls, options, spec, steps):
        return cls(spec.scheduler_config, steps)


class DPMSolverPP2M(Sampler):
    """DPM-Solver++ 2M (Lu et al. 2022), diffusers' ``DPMSolverMultistepScheduler`` with its
    defaults (midpoint, first order on the first and last step), optionally on Karras sigmas.

    With λ = log(a/s) and h = λ' − λ: x' = (s'/s) x + (a' − a s'/s) D, where D is the step's x0
    (first order) or x0 + (x0 − x0_prev) h / (2 h_prev) (second order).
    """

    name = "dpmpp-2m"

    def __init__(self, config, num_steps: int, karras: bool = False):
        from diffusers import DPMSolverMultistepScheduler

        scheduler = DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2,
                                                             use_karras_sigmas=karras)
        scheduler.set_timesteps(num_steps)
        sigmas = [float(s) for s in scheduler.sigmas]
        steps = [Step(i, int(t), *from_sigma(sigmas[i]), *from_sigma(sigmas[i + 1]), 0.0, len(scheduler.timesteps))
                 for i, t in enumerate(scheduler.timesteps)]
        super().__init__(steps)

    @classmethod
    def build(cls, options, spec, steps):
        return cls(spec.scheduler_config, steps, options.karras)

    def update(self, x_t, x0, eps, step, noise=None, memory=None):
        return self.update_views(x_t, x0, step, {} if memory is None else memory)

    @staticmethod
    def update_views(x_t, x0, step, memory: dict):
        """The update of ``x_t`` from its ``x0`` (``memory``: the previous step's x0 and λ, updated)."""
        lam = math.log(step.a / step.s)
        data = x0
        last = step.index == step.num_steps - 1
        if "x0" in memory and not last:
            h = math.log(step.a_prev / step.s_prev) - lam
            h_prev = lam - memory["lambda"]
            data = x0 + (x0 - memory["x0"]) * (h / (2 * h_prev))
        memory.update(x0=x0, **{"lambda": lam})
        ratio = step.s_prev / step.s
        return ratio * x_t + (step.a_prev - step.a * ratio) * data


class FlowEuler(Sampler):
    """Euler on the rectified-flow ODE (diffusers' ``FlowMatchEulerDiscreteScheduler``):
    x' = x + (σ' − σ) v, i.e. x' = (1 − σ') x0 + σ' ε with x0 = x − σ v, ε = x + (1 − σ) v."""

    name = "flow-euler"
    kinds = (FLOW,)

    def __init__(self, config, num_steps: int, mu: float | None = None, sigmas: list[float] | None = None):
        from diffusers import FlowMatchEulerDiscreteScheduler

        scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
        kwargs = {"mu": mu} if scheduler.config.get("use_dynamic_shifting") else {}
        if sigmas is not None:
            scheduler.set_timesteps(sigmas=sigmas, **kwargs)
        else:
            scheduler.set_timesteps(num_steps, **kwargs)
        sig = [float(s) for s in scheduler.sigmas]
        steps = [Step(i, float(t), 1 - sig[i], sig[i], 1 - sig[i + 1], sig[i + 1], 0.0, len(scheduler.timesteps))
                 for i, t in enumerate(scheduler.timesteps)]
        super().__init__(steps)

    @classmethod
    def build(cls, options, spec, steps):
        return cls(spec.scheduler_config, steps, flow_shift(spec),
                   linspace_sigmas(steps) if spec.flow_sigmas == "linspace" else None)


def check_range(timesteps: list[int], table: int, num_steps: int) -> None:
    if max(timesteps) >= table:
        # diffusers' "leading" spacing plus steps_offset can step past the last trained timestep.
        raise ConfigError(f"steps={num_steps} is more than this model's schedule allows "
                          f"(timestep {max(timesteps)} of {table}); use fewer steps")


# -- the sampler= group ------------------------------------------------------------------------
class DDIMOptions(Options):
    eta: float = option(0.0, "DDIM stochasticity: 0 deterministic (the papers'), 1 as DDPM", ge=0, le=1)


class DPMOptions(Options):
    karras: bool = option(False, "Karras et al.'s sigma spacing instead of the scheduler's")


class NoOptions(Options):
    pass


def flow_shift(spec) -> float | None:
    """FLUX's resolution-dependent shift μ (``use_dynamic_shifting``) for the model's view."""
    c = spec.scheduler_config
    if not c.get("use_dynamic_shifting"):
        return None
    tokens = (spec.window // 2) ** 2  # FLUX's 2x2 packing and SD3's 2x2 patches alike
    slope = (c.get("max_shift", 1.15) - c.get("base_shift", 0.5)) / (c.get("max_image_seq_len", 4096)
                                                                     - c.get("base_image_seq_len", 256))
    return c.get("base_shift", 0.5) + slope * (tokens - c.get("base_image_seq_len", 256))


register_sampler("auto", options=NoOptions, summary="the model family's: ddim (SD 1/2, SDXL), flow-euler (SD3, FLUX)")(
    None)
# Each entry's factory is the sampler class: the registry is the one list of samplers (each class
# says which schedules it fits, ``kinds``, and builds itself from its options, ``build``).
register_sampler("ddim", options=DDIMOptions, summary="DDIM with η (the papers' sampler)")(DDIM)
register_sampler("ddpm", options=NoOptions, summary="DDPM's ancestral sampler")(DDPM)
register_sampler("dpmpp-2m", options=DPMOptions, summary="DPM-Solver++ 2M (20-30 steps), Karras sigmas optional")(
    DPMSolverPP2M)
register_sampler("euler", options=NoOptions, summary="Euler on the probability-flow ODE (σ-space)")(Euler)
register_sampler("flow-euler", options=NoOptions, summary="Euler on the rectified flow (SD3, FLUX)")(FlowEuler)


def linspace_sigmas(steps: int) -> list[float]:
    """FluxPipeline's sigmas: linspace(1, 1/n, n), before the scheduler's shift."""
    import numpy as np

    return list(np.linspace(1.0, 1 / steps, steps))


def build_sampler(plan, spec) -> Sampler:
    """The run's sampler on the model's schedule, or a ConfigError for a pair that does not fit
    (``plan``: the run's :class:`~syncframe.plan.Plan`, its sampler already settled)."""
    from .registry import SAMPLERS

    name = plan.names["sampler"]
    samplers = {n: SAMPLERS.get(n) for n in SAMPLERS.names() if SAMPLERS.get(n) is not None}  # all but auto
    if spec.schedule not in samplers[name].kinds:
        fits = [n for n, cls in samplers.items() if spec.schedule in cls.kinds]
        raise ConfigError(f"sampler={name} does not fit model={plan.names['model']} ({spec.family}, a "
                          f"{'rectified-flow' if spec.schedule == FLOW else 'variance-preserving'} model); "
                          f"use sampler={' or sampler='.join(fits)}")
    return samplers[name].build(plan.sampler, spec, plan.run.steps)
