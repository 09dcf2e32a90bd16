"""The one joint sampling loop every app shares (see DESIGN.md).

Shapes: views ``x: [N, C, h, w]``; ``alpha`` is ᾱ_t (``alphas_cumprod``) as a 0-d tensor.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .models.denoiser import Conditioning, Denoiser
from .errors import ConfigError
from .spaces import CanonicalSpace


def tweedie(x_t: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """E[x0 | x_t] = (x_t − √(1−ᾱ) ε) / √ᾱ."""
    return (x_t - (1 - alpha).sqrt() * eps) / alpha.sqrt()


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The ε that makes ``x0`` the Tweedie prediction of ``x_t``."""
    return (x_t - alpha.sqrt() * x0) / (1 - alpha).sqrt()


@dataclass
class Step:
    """Everything a hook needs to know about step ``index`` (timestep ``t``)."""

    index: int
    t: int
    alpha: torch.Tensor
    alpha_prev: torch.Tensor
    sigma: torch.Tensor  # DDIM's σ_t (0 for η = 0)
    num_steps: int

    def fraction(self) -> float:
        """How far along the trajectory this step is, in [0, 1)."""
        return self.index / self.num_steps


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, step: Step, noise: torch.Tensor | None) -> torch.Tensor:
    """x_{t-1} = √ᾱ_prev x0 + √(1−ᾱ_prev−σ²) ε + σ z (Song et al. 2021, eq. 12)."""
    x_prev = step.alpha_prev.sqrt() * x0 + (1 - step.alpha_prev - step.sigma**2).sqrt() * eps
    if noise is not None:
        x_prev = x_prev + step.sigma * noise
    return x_prev


class DDIM:
    """DDIM timesteps and coefficients, taken from a diffusers ``DDIMScheduler``."""

    def __init__(self, scheduler, num_steps: int, eta: float = 0.0):
        scheduler.set_timesteps(num_steps)
        self.timesteps = [int(t) for t in scheduler.timesteps]
        self.alphas = scheduler.alphas_cumprod.float()
        if max(self.timesteps) >= len(self.alphas):
            # diffusers' "leading" spacing plus steps_offset can step past the last trained timestep.
            raise ConfigError(f"steps={num_steps} is more than this model's schedule allows "
                              f"(timestep {max(self.timesteps)} of {len(self.alphas)}); use fewer steps")
        self.final_alpha = scheduler.final_alpha_cumprod.float()
        self.stride = scheduler.config.num_train_timesteps // num_steps
        self.eta = eta

    def steps(self):
        for i, t in enumerate(self.timesteps):
            alpha = self.alphas[t]
            prev = t - self.stride
            alpha_prev = self.alphas[prev] if prev >= 0 else self.final_alpha
            sigma = self.eta * ((1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev)).sqrt()
            yield Step(i, t, alpha, alpha_prev, sigma, len(self.timesteps))


class Synchronizer:
    """Hooks of the joint loop; the base class leaves the views independent (``sync=none``)."""

    def start(self, space: CanonicalSpace, z_T: torch.Tensor, x_T: torch.Tensor) -> torch.Tensor:
        return x_T

    def before_model(self, x_t: torch.Tensor, step: Step) -> torch.Tensor:
        return x_t

    def after_prediction(self, x_t, x0, eps, step: Step):
        return x0, eps

    def after_step(self, x_prev: torch.Tensor, step: Step, noise) -> torch.Tensor:
        return x_prev


@dataclass
class SampleContext:
    """What synchronizers that call the model themselves (SyncDiffusion) need."""

    denoiser: Denoiser
    cond: Conditioning
    space: CanonicalSpace
    batch_size: int


def sample(space: CanonicalSpace, denoiser: Denoiser, sync: Synchronizer, cond: Conditioning,
           num_steps: int, generator: torch.Generator, eta: float = 0.0,
           progress: bool = True, callback=None) -> torch.Tensor:
    """Run the joint loop; returns the final views ``x_0: [N, C, h, w]`` (float32)."""
    device = denoiser.device
    batch_size = denoiser.resolve_batch_size(space.num_views)
    if hasattr(sync, "bind"):
        sync.bind(SampleContext(denoiser, cond, space, batch_size))
    ddim = DDIM(denoiser.scheduler, num_steps, eta)
    z_T, x_T = space.sample_noise(generator)
    x = sync.start(space, z_T.to(device), x_T.to(device))
    for step in tqdm(list(ddim.steps()), desc="denoising", disable=not progress):
        step.alpha, step.alpha_prev, step.sigma = (v.to(device) for v in (step.alpha, step.alpha_prev, step.sigma))
        x = sync.before_model(x, step)
        with torch.no_grad():
            eps = denoiser.eps(x, step.t, cond, batch_size=batch_size)
        x0 = tweedie(x, eps, step.alpha)
        x0, eps = sync.after_prediction(x, x0, eps, step)
        noise = None
        if eta > 0:
            z_noise, x_noise = space.sample_noise(generator)
            noise = (z_noise.to(device), x_noise.to(device))
        x = sync.after_step(ddim_step(x0, eps, step, None if noise is None else noise[1]), step, noise)
        if callback is not None:
            callback(step, x)
    return x
