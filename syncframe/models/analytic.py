"""Denoisers whose data distribution is known in closed form (``model=gaussian``, ``model=gaussian-mixture``).

The "latent" of a view is a small RGB image ``[3, h, w]`` in [-1, 1] at 1/8 of the output
resolution, so every app keeps Stable Diffusion's geometry (64x64 latents per 512x512 view).
Decoding is bilinear 8x upsampling: differentiable, and what you see is the sample itself.

Each scene is a Gaussian ``x0 ~ N(μ, Σ)``: ``μ`` a vertical colour gradient, ``Σ`` stationary
(circulant over the view) with a Gaussian power spectrum of correlation length ``length``
latents, per channel. In the orthonormal 2-D DFT, ``Σ`` is diagonal (eigenvalues ``λ_f``), so
with ``x_t = a x0 + s n`` (a = √ᾱ, s = √(1−ᾱ)) everything is exact and per frequency:

    E[x0 | x_t]      = μ + F⁻¹[ a λ_f / (a² λ_f + s²) · F(x_t − a μ) ]
    log p(x_t | k)   = −½ Σ_f |F(x_t − a μ_k)|² / v_f − ½ Σ_f log(2π v_f),  v_f = a² λ_f + s²

A mixture's posterior mean weights each scene's by its posterior probability. Prompts that
name a scene ("night") put ``prompt_weight`` of the prior on it, so classifier-free guidance
has a meaning: the negative prompt (or "") gives the unconditional weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .denoiser import Conditioning, ViewDenoiser
from ..errors import ConfigError

SCALE = 8  # pixels per latent, as Stable Diffusion's VAE


@dataclass(frozen=True)
class Scene:
    """One Gaussian component: colours at the top and bottom of a view, per-channel std, texture."""

    name: str
    top: tuple[float, float, float]
    bottom: tuple[float, float, float]
    std: tuple[float, float, float]
    length: float  # correlation length in latents
    nugget: float = 0.02  # fraction of the variance that is white, so Σ is well conditioned


# Colours are chosen with about the same mean squared norm (≈0.6 per pixel): DDIM starts
# from N(0, I), not from the true x_T marginal N(√ᾱ_T μ_k, ·), and that mismatch favours the
# scene whose mean is nearest 0, so equal norms keep the first choice of scene fair.
SCENES = {
    "day": Scene("day", top=(-0.45, 0.1, 0.75), bottom=(-0.3, 0.4, -0.45), std=(0.25, 0.25, 0.25), length=6.0),
    "night": Scene("night", top=(-0.55, -0.55, -0.2), bottom=(-0.5, -0.45, -0.55), std=(0.12, 0.12, 0.18),
                   length=1.5),
    "sunset": Scene("sunset", top=(0.7, 0.1, -0.3), bottom=(0.2, -0.5, -0.45), std=(0.22, 0.2, 0.2), length=12.0),
}


def scene_mean(scene: Scene, height: int, width: int) -> torch.Tensor:
    """μ: ``[3, height, width]``, a linear blend from the top colour to the bottom colour."""
    v = (torch.arange(height, dtype=torch.float64) + 0.5) / height
    top, bottom = torch.tensor(scene.top, dtype=torch.float64), torch.tensor(scene.bottom, dtype=torch.float64)
    column = top[:, None] * (1 - v) + bottom[:, None] * v  # [3, height]
    return column[:, :, None].expand(3, height, width).float().contiguous()


def scene_spectrum(scene: Scene, height: int, width: int) -> torch.Tensor:
    """λ_f: ``[3, height, width]``, the eigenvalues of Σ in the orthonormal DFT.

    Their mean over frequencies is the per-pixel variance ``std²`` (diag of a circulant Σ).
    """
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64)[None, :]
    shape = torch.exp(-2 * math.pi**2 * scene.length**2 * (fx**2 + fy**2))
    shape = (1 - scene.nugget) * shape / shape.mean() + scene.nugget
    std = torch.tensor(scene.std, dtype=torch.float64)
    return (std[:, None, None] ** 2 * shape).float()


class GaussianMixturePrior(nn.Module):
    """p(x0) = Σ_k π_k N(μ_k, Σ_k) over one view, with exact posterior quantities."""

    def __init__(self, scenes: list[Scene]):
        super().__init__()
        if not scenes:
            raise ConfigError("an analytic model needs at least one scene")
        self.scenes = scenes
        self._cache: dict = {}

    def tables(self, height: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ ``[K, 3, h, w]``, λ ``[K, 3, h, w]``) for views of this size, cached."""
        key = (height, width, str(device))
        if key not in self._cache:
            mu = torch.stack([scene_mean(s, height, width) for s in self.scenes]).to(device)
            lam = torch.stack([scene_spectrum(s, height, width) for s in self.scenes]).to(device)
            self._cache[key] = (mu, lam)
        return self._cache[key]

    def residuals(self, x: torch.Tensor, a: float, s: float):
        """(μ, λ, F(x − a μ_k) ``[B, K, 3, h, w]``, v = a²λ + s²) for ``x = a x0 + s ε: [B, 3, h, w]``."""
        mu, lam = self.tables(x.shape[-2], x.shape[-1], x.device)
        residual = torch.fft.fft2(x[:, None] - a * mu, norm="ortho")
        return mu, lam, residual, a * a * lam + s * s

    def log_likelihoods(self, x: torch.Tensor, a: float, s: float) -> torch.Tensor:
        """log N(x; a μ_k, a² Σ_k + s² I) for ``x: [B, 3, h, w]`` -> ``[B, K]``."""
        _, _, residual, v = self.residuals(x, a, s)
        return gaussian_log_density(residual, v)

    def posterior(self, x: torch.Tensor, a: float, s: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per scene: E[x0 | x_t = x, k] ``[B, K, 3, h, w]`` and log p(x_t = x | k) ``[B, K]``
        (one FFT pair for both)."""
        mu, lam, residual, v = self.residuals(x, a, s)
        means = mu + torch.fft.ifft2(a * lam / v * residual, norm="ortho").real
        return means, gaussian_log_density(residual, v)

    @staticmethod
    def mix(means: torch.Tensor, log_likelihoods: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
        """E[x0 | x_t] of the mixture with per-view log π ``[B, K]``, from :meth:`posterior`."""
        if means.shape[1] == 1:
            return means[:, 0]
        weights = torch.softmax(log_prior + log_likelihoods, dim=1)
        return (weights[:, :, None, None, None] * means).sum(dim=1)

    def posterior_mean(self, x: torch.Tensor, a: float, s: float, log_prior: torch.Tensor) -> torch.Tensor:
        """E[x0 | x_t = x] for ``x: [B, 3, h, w]`` and per-view log π ``[B, K]``."""
        return self.mix(*self.posterior(x, a, s), log_prior)


def gaussian_log_density(residual: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Σ over the last three dims of log N(residual; 0, v), with ``residual`` an orthonormal DFT."""
    return -0.5 * (residual.abs() ** 2 / v + torch.log(2 * math.pi * v)).sum(dim=(-3, -2, -1))


class AnalyticDenoiser(ViewDenoiser):
    """The denoiser interface of :class:`syncframe.models.denoiser.ViewDenoiser` over a closed-form prior.

    Batched over views, differentiable (SyncDiffusion's gradient flows through it), any view size.
    """

    latent_channels = 3
    latent_scale = SCALE
    prediction_type = "sample"  # the exact posterior mean x0 (well defined at σ = 1 too)
    dtype = torch.float32

    def __init__(self, scenes: list[Scene], scheduler, guidance: float = 7.5, prompt_weight: float = 0.9,
                 name: str = "analytic", view_batch_size: int | None = None):
        super().__init__()
        if not 0 < prompt_weight < 1:
            raise ConfigError(f"model.prompt_weight={prompt_weight} must be in (0, 1)")
        self.prior = GaussianMixturePrior(scenes)
        self.scheduler, self.guidance, self.prompt_weight, self.name = scheduler, guidance, prompt_weight, name
        self.view_batch_size = view_batch_size
        self.controlnet = None  # closed-form priors take no control images
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # follows .to(device)

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    def prompt_log_weights(self, text: str) -> torch.Tensor:
        """log π for one prompt: ``prompt_weight`` shared by the scenes it names, the rest spread."""
        names = [s.name for s in self.prior.scenes]
        named = [i for i, n in enumerate(names) if n in text.lower()]
        k = len(names)
        if not named or len(named) == k:
            return torch.full((k,), -math.log(k))
        p = torch.full((k,), (1 - self.prompt_weight) / (k - len(named)))
        p[named] = self.prompt_weight / len(named)
        return p.log()

    def encode_prompts(self, prompts: list[str], negative_prompt: str, view_prompt) -> Conditioning:
        """embeds ``[P, 2, 1, K]``: (negative, positive) log prior weights of the scenes."""
        uncond = self.prompt_log_weights(negative_prompt)
        embeds = torch.stack([torch.stack([uncond, self.prompt_log_weights(p)]) for p in prompts])
        return Conditioning({"log_prior": embeds.to(self.device)}, torch.as_tensor(view_prompt, dtype=torch.long))

    def resolve_batch_size(self, num_views: int) -> int:
        return max(1, min(self.view_batch_size or num_views, num_views))

    def model_output(self, x: torch.Tensor, step, states: dict, control=None, extra=None) -> torch.Tensor:
        """The exact x0 = E[x0 | x_t] for ``x: [B, 3, h, w]`` and ``states["log_prior"]: [B, 2, K]``
        (negative, positive), with CFG (on x0, the same as on ε at a fixed x_t)."""
        if control is not None:
            raise ConfigError("analytic models take no ControlNet conditioning")
        log_prior = states["log_prior"]
        means, log_likelihoods = self.prior.posterior(x, step.a, step.s)  # shared by both CFG halves
        cond = self.prior.mix(means, log_likelihoods, log_prior[:, 1])
        if self.guidance == 1.0 or torch.equal(log_prior[:, 0], log_prior[:, 1]):
            return cond
        uncond = self.prior.mix(means, log_likelihoods, log_prior[:, 0])
        return uncond + self.guidance * (cond - uncond)

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B, 3, 8h, 8w]`` -> ``[B, 3, h, w]``: the mean of each 8x8 block (decoding upsamples)."""
        return F.avg_pool2d(images.to(self.device), SCALE)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, 3, h, w]`` -> ``[B, 3, 8h, 8w]``: the sample itself, upsampled."""
        return F.interpolate(latents, scale_factor=SCALE, mode="bilinear", align_corners=False)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most likely scene of each final view ``x: [B, 3, h, w]`` (the loop's output, at the
        schedule's last noise level ᾱ_final) -> ``[B]`` scene indices."""
        alpha = float(self.scheduler.final_alpha_cumprod)
        return self.prior.log_likelihoods(x, alpha**0.5, (1 - alpha) ** 0.5).argmax(dim=1)


def build_analytic(options, name: str, guidance: float, view_batch_size=None) -> AnalyticDenoiser:
    """From its model section: ``scenes`` (names of :data:`SCENES`) and ``prompt_weight``."""
    from diffusers import DDIMScheduler

    from .offline import SD_SCHEDULE

    names = options.scenes or []
    unknown = [n for n in names if n not in SCENES]
    if unknown or not names:
        raise ConfigError(f"model.scenes={names!r}: choose one or more of {', '.join(SCENES)}")
    return AnalyticDenoiser([SCENES[n] for n in names], DDIMScheduler(**SD_SCHEDULE), guidance=guidance,
                            prompt_weight=float(options.prompt_weight), name=name,
                            view_batch_size=view_batch_size)
