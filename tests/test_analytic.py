"""Closed-form priors: the denoiser is exact, so the sampler's output law is known.

Statistical tolerances: every test below is a family of z- or χ²-tests with a Bonferroni
correction so that the whole family fails by chance with probability ≤ 1e-6 (per test function
and parameter), whatever the seed; the seeds are fixed anyway, so the outcome is repeatable.
"""
import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

from syncframe.models.analytic import SCENES, AnalyticDenoiser, GaussianMixturePrior, scene_mean, scene_spectrum
from syncframe.config import resolve
from syncframe.errors import ConfigError
from syncframe.pipeline import load_denoiser
from syncframe.loop import ViewModel, sample
from syncframe.methods import Synchronizer
from syncframe.models.offline import FLOW_SCHEDULE, SD_SCHEDULE
from syncframe.samplers import DDIM, DPMSolverPP2M, Euler, FlowEuler, Step
from syncframe.spaces import CanonicalSpace

FAMILY_FALSE_FAILURE = 1e-6
DRAWS = 2000
VIEW = 16  # latents per side of the test view: 768 numbers per draw
# Short correlation length: ~37 effectively independent frequencies per channel, so the
# pixel-averaged variance is known to ±0.5% from 2000 draws.
TEXTURED = dataclasses.replace(SCENES["night"], top=(-0.4, 0.2, 0.5), bottom=(0.3, -0.2, -0.5))


class Draws(CanonicalSpace):
    """N independent copies of one view: canonical = views, project = identity (no sync)."""

    def __init__(self, n, shape):
        self.num_views, self.view_shape, self.canonical_shape = n, shape, (n, *shape)

    def project(self, z):
        return z

    def project_adjoint(self, x):
        return x


def scheduler(**changes):
    from diffusers import DDIMScheduler

    return DDIMScheduler(**{**SD_SCHEDULE, **changes})


def draws(scene, sampler, seed=0):
    model = AnalyticDenoiser([scene], scheduler(), guidance=1.0)
    cond = model.encode_prompts([""], "", [0] * DRAWS)
    gen = torch.Generator().manual_seed(seed)
    space = Draws(DRAWS, (3, VIEW, VIEW))
    return sample(space, ViewModel(model, cond, space.num_views), Synchronizer(), sampler, gen, progress=False)


def ddim(sched, steps, eta):
    return DDIM(sched.config, steps, eta)


def exact_law(scene, sched, steps, eta):
    """Mean ``[3, h, w]`` and per-pixel variance ``[3]`` of DDIM's output with the exact ε.

    Per DFT frequency the chain is linear: with d = X_t − √ᾱ_t M (M the DFT of μ),
    x̂0 = μ + G d, G = √ᾱ λ / (ᾱλ + 1 − ᾱ), and the DDIM update gives
    d' = K d + σ z, K = √ᾱ' G + √(1−ᾱ'−σ²)(1 − √ᾱ G)/√(1−ᾱ). x_T ~ N(0, I): d_T has mean −√ᾱ_T M.
    """
    lam = scene_spectrum(scene, VIEW, VIEW).double()
    mu = scene_mean(scene, VIEW, VIEW).double()
    m = torch.fft.fft2(mu, norm="ortho")
    mean_d, var_d = None, torch.ones_like(lam)
    for st in ddim(sched, steps, eta).steps:
        a, ap, s, sig = st.a, st.a_prev, st.s, st.noise
        if mean_d is None:
            mean_d = -a * m
        gain = a * lam / (a * a * lam + s**2)
        k = ap * gain + (1 - ap * ap - sig**2) ** 0.5 * (1 - a * gain) / s
        mean_d, var_d = k * mean_d, k**2 * var_d + sig**2
    mean = ap * mu + torch.fft.ifft2(mean_d, norm="ortho").real
    # Circulant covariance: the per-pixel variance is the mean eigenvalue.
    return mean.float(), var_d.mean(dim=(1, 2)).float(), var_d


def sampler_law(scene, sampler, scheduler_name: str, config: dict):
    """Mean and per-pixel variance of a deterministic sampler's output with the exact x0, computed
    with diffusers' scheduler ``scheduler_name`` (an implementation independent of ours).

    Every quantity of the chain stays affine in the initial noise n: in the orthonormal DFT, x_t
    = c_f N_f + D (a per-frequency gain c and a pixel-space offset d). The posterior mean is
    x0 = μ + F⁻¹[G F(x − aμ)], G = aλ / (a²λ + s²), and a deterministic scheduler's step is linear
    without a constant, so ``scheduler.step`` run on the gains and on the offsets (one scheduler
    each: its multistep history is part of the chain) gives the law exactly. The samplers' own
    timesteps and (a, s) come from our class; the update is diffusers'."""
    from test_sampler import diffusers_scheduler

    lam = scene_spectrum(scene, VIEW, VIEW).double()
    mu = scene_mean(scene, VIEW, VIEW).double()
    name = scheduler_name.removesuffix("-karras")
    schedulers = [diffusers_scheduler(name, config, karras=scheduler_name.endswith("karras")) for _ in range(2)]
    for sched in schedulers:
        sched.set_timesteps(len(sampler.steps))
    sigma_space, flow = name == "euler", name == "flow-euler"
    gains, offset = torch.full_like(lam, sampler.initial_scale), torch.zeros_like(mu)
    for i, st in enumerate(sampler.steps):
        g = st.a * lam / (st.a**2 * lam + st.s**2)
        x0_gains = g * gains
        x0_offset = mu + torch.fft.ifft2(g * torch.fft.fft2(offset - st.a * mu, norm="ortho"), norm="ortho").real
        states = []
        for sched, x, x0 in zip(schedulers, (gains, offset), (x0_gains, x0_offset)):
            eps = (x - st.a * x0) / st.s
            output = eps - x0 if flow else eps  # FLUX/SD3 schedulers take the velocity ε − x0
            sample_in = x / st.a if sigma_space else x  # Euler steps x̃ = x / a (σ-space)
            out = sched.step(output, sched.timesteps[i], sample_in, return_dict=False)[0]
            states.append(out * st.a_prev if sigma_space else out)
        gains, offset = states
    var = gains**2
    return offset.float(), var.mean(dim=(1, 2)).float(), var


def assert_law(x, mean, var, spectrum, label):
    """Per-pixel mean (z) and variance (χ²) tests, Bonferroni over pixels, plus the
    pixel-averaged variance (z, using Var Σ_p x_p² = 2 Σ_f V_f² for a stationary Gaussian
    whose covariance has eigenvalues ``spectrum: [3, h, w]``)."""
    n, pixels = x.shape[0], x[0].numel()
    alpha = FAMILY_FALSE_FAILURE / (3 * pixels + 3)  # mean + variance per pixel, 3 channel sums
    z_crit = stats.norm.isf(alpha / 2)
    z = (x.mean(0) - mean) / (var[:, None, None] / n).sqrt()
    assert z.abs().max() < z_crit, f"{label}: mean off by {z.abs().max():.1f} standard errors (limit {z_crit:.1f})"
    chi2 = (n - 1) * x.var(0) / var[:, None, None]
    lo, hi = stats.chi2.ppf(alpha / 2, n - 1), stats.chi2.isf(alpha / 2, n - 1)
    assert lo < chi2.min() and chi2.max() < hi, (
        f"{label}: per-pixel variance ratio in [{chi2.min() / (n - 1):.3f}, {chi2.max() / (n - 1):.3f}], "
        f"allowed [{lo / (n - 1):.3f}, {hi / (n - 1):.3f}]")
    # Pixel-averaged second moment about the mean: much tighter than any single pixel.
    spec = spectrum.double()
    moment = ((x - mean) ** 2).double().mean(dim=(0, 2, 3))  # [3]
    sd = (2 * (spec**2).sum(dim=(1, 2)) / n).sqrt() / pixels * 3
    z_avg = (moment - var.double()) / sd
    assert z_avg.abs().max() < z_crit, f"{label}: mean variance ratio {(moment / var).tolist()} ({z_avg.tolist()} sd)"


def test_posterior_mean_equals_dense_linear_algebra():
    """FFT posterior mean and log-likelihood == μ + aΣ(a²Σ+s²I)⁻¹(x−aμ) and the dense Gaussian density."""
    h = w = 6
    scenes = [SCENES["day"], SCENES["sunset"]]
    prior = GaussianMixturePrior(scenes)
    dft = torch.fft.fft2(torch.eye(h * w, dtype=torch.complex128).reshape(h * w, h, w), norm="ortho").reshape(h * w, -1)
    alpha = torch.tensor(0.3)
    a, s = alpha.sqrt().item(), (1 - alpha).sqrt().item()
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    log_prior = torch.log(torch.tensor([[0.3, 0.7], [0.5, 0.5]]))
    means, logls = [], []
    for scene in scenes:
        lam = scene_spectrum(scene, h, w).double().reshape(3, -1)
        mu = scene_mean(scene, h, w).double().reshape(3, -1)
        cov = torch.stack([(dft.conj().T @ torch.diag(lc.to(dft.dtype)) @ dft).real for lc in lam])  # [3, hw, hw]
        assert torch.allclose(torch.diagonal(cov, dim1=1, dim2=2), torch.tensor(scene.std).double()[:, None] ** 2)
        marginal = alpha * cov + (1 - alpha) * torch.eye(h * w, dtype=torch.float64)
        resid = x.double().reshape(2, 3, -1) - alpha.sqrt() * mu
        solved = torch.linalg.solve(marginal, resid.transpose(0, 1).transpose(1, 2)).transpose(1, 2).transpose(0, 1)
        means.append(mu + alpha.sqrt() * torch.einsum("cij,bcj->bci", cov, solved))
        logls.append(torch.distributions.MultivariateNormal(alpha.sqrt() * mu, marginal).log_prob(
            x.double().reshape(2, 3, -1)).sum(dim=1))
    logl = torch.stack(logls, dim=1)
    assert torch.allclose(prior.log_likelihoods(x, a, s).double(), logl, rtol=1e-4)
    weights = torch.softmax(log_prior.double() + logl, dim=1)
    dense = (weights[:, :, None, None] * torch.stack(means, dim=1)).sum(dim=1).reshape(2, 3, h, w)
    assert torch.allclose(prior.posterior_mean(x, a, s, log_prior).double(), dense, atol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_output_has_the_exact_law_of_the_discrete_chain(eta):
    """Stable Diffusion's schedule, 50 DDIM steps: the empirical law of 2000 draws equals the
    closed-form law of the chain (which is *not* the prior: see the next test and docs)."""
    scene, sched = TEXTURED, scheduler()
    x = draws(scene, ddim(sched, 50, eta))
    mean, var, spectrum = exact_law(scene, sched, 50, eta)
    assert_law(x, mean, var, spectrum, f"eta={eta}")
    if eta == 0:  # the generic law of deterministic samplers agrees with DDIM's closed form
        g_mean, g_var, _ = sampler_law(scene, ddim(sched, 50, 0.0), "ddim", sched.config)
        assert torch.allclose(g_mean, mean, atol=1e-5) and torch.allclose(g_var, var, rtol=1e-5)


@pytest.mark.parametrize("name", ["dpmpp-2m", "dpmpp-2m-karras", "euler", "flow-euler"])
def test_fast_samplers_have_the_exact_law_of_their_chain(name):
    """DPM-Solver++ 2M (a multistep solver: its history is part of the chain), Euler and the
    rectified-flow Euler, 20 steps: 2000 draws against the chain's closed-form law."""
    config = FLOW_SCHEDULE if name == "flow-euler" else scheduler().config
    sampler = {"dpmpp-2m": lambda: DPMSolverPP2M(config, 20), "dpmpp-2m-karras": lambda: DPMSolverPP2M(config, 20, True),
               "euler": lambda: Euler(config, 20), "flow-euler": lambda: FlowEuler(config, 20)}[name]()
    x = draws(TEXTURED, sampler, seed=2)
    mean, var, spectrum = sampler_law(TEXTURED, sampler, name, config)
    assert_law(x, mean, var, spectrum, name)


def test_flow_euler_with_many_steps_reproduces_the_prior():
    """Rectified flow starts at pure noise (σ = 1) and ends at σ = 0: with many steps the chain's
    law is the prior's (no terminal-SNR bias, unlike SD's DDIM schedule below)."""
    config = {**FLOW_SCHEDULE, "shift": 1.0}
    mean, var, _ = sampler_law(TEXTURED, FlowEuler(config, 500), "flow-euler", config)
    prior_mean, prior_var = scene_mean(TEXTURED, VIEW, VIEW), torch.tensor(TEXTURED.std) ** 2
    assert ((mean - prior_mean).abs() / prior_var.sqrt()[:, None, None]).max() < 0.01
    assert ((var / prior_var - 1).abs() < 0.02).all()


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_reproduces_the_prior(eta):
    """With (near-)zero terminal SNR and enough steps, DDIM's draws have the prior's mean and
    per-pixel variance. The chain's own closed-form bias is first shown to be below the tolerance."""
    scene = TEXTURED
    sched = scheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)  # DDPM's: ᾱ_T ≈ 4e-5
    steps = 999
    prior_mean = scene_mean(scene, VIEW, VIEW)
    prior_var = torch.tensor(scene.std) ** 2
    law_mean, law_var, _ = exact_law(scene, sched, steps, eta)
    assert ((law_mean - prior_mean).abs() / prior_var.sqrt()[:, None, None]).max() < 0.02
    assert ((law_var / prior_var - 1).abs() < 0.03).all()
    x = draws(scene, ddim(sched, steps, eta), seed=1)
    n, pixels = DRAWS, 3 * VIEW * VIEW
    z_crit = stats.norm.isf(FAMILY_FALSE_FAILURE / (2 * 2 * pixels))
    z = (x.mean(0) - prior_mean) / (prior_var[:, None, None] / n).sqrt()
    assert z.abs().max() < z_crit
    ratio = x.var(0) / prior_var[:, None, None]
    lo, hi = (stats.chi2.ppf(p, n - 1) / (n - 1) for p in (FAMILY_FALSE_FAILURE / (4 * pixels),
                                                            1 - FAMILY_FALSE_FAILURE / (4 * pixels)))
    # The chain's closed-form variance bias (< 3%, asserted above) widens the band by that much.
    bias = (law_var / prior_var - 1).abs().max().item()
    assert lo - bias < ratio.min() and ratio.max() < hi + bias, (ratio.min(), ratio.max(), lo, hi, bias)


def test_sd_schedule_biases_the_mean_at_eta_zero():
    """Documented limitation, in closed form: SD's schedule ends at ᾱ_T ≈ 0.0047, not 0, so DDIM
    (η=0) started from N(0, I) misses the prior mean of smooth scenes by a large fraction of σ."""
    scene = SCENES["day"]
    mean, _, _ = exact_law(scene, scheduler(), 50, 0.0)
    bias = ((mean - scene_mean(scene, VIEW, VIEW)).abs() / torch.tensor(scene.std)[:, None, None]).max()
    assert 0.2 < bias < 0.6


def step_at(alpha: float) -> Step:
    return Step(0, 500, alpha**0.5, (1 - alpha) ** 0.5, 1.0, 0.0, 0.0, 1)


def test_the_model_predicts_the_posterior_mean_and_the_matching_eps():
    model = load_denoiser(resolve(["model=gaussian-mixture", "guidance=1.0"]))
    cond = model.encode_prompts(["a night sky"], "", [0, 0])
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    step = step_at(float(model.scheduler.alphas_cumprod[500]))
    log_pi = cond.tensors["log_prior"][cond.view_prompt, 1]
    x0, eps = model.predict(x, step, cond)
    assert torch.allclose(x0, model.prior.posterior_mean(x, step.a, step.s, log_pi), atol=1e-5)
    assert torch.allclose(step.a * x0 + step.s * eps, x, atol=1e-5)


def test_prompts_weight_scenes_and_cfg_extrapolates():
    model = load_denoiser(resolve(["model=gaussian-mixture"]))
    names = [s.name for s in model.prior.scenes]
    night = model.prompt_log_weights("a calm NIGHT over the sea").exp()
    assert night[names.index("night")] == pytest.approx(0.9)
    assert night.sum() == pytest.approx(1.0)
    assert torch.allclose(model.prompt_log_weights("a mountain").exp(), torch.full((3,), 1 / 3))
    # CFG: ε = ε_u + g (ε_c − ε_u), with ε_u from the negative prompt.
    cond = model.encode_prompts(["night"], "", [0])
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    step = step_at(float(model.scheduler.alphas_cumprod[400]))
    model.guidance = 1.0
    eps_c = model.predict(x, step, cond)[1]
    eps_u = model.predict(x, step, model.encode_prompts([""], "", [0]))[1]
    model.guidance = 3.0
    assert torch.allclose(model.predict(x, step, cond)[1], eps_u + 3.0 * (eps_c - eps_u), atol=1e-5)


def test_analytic_model_is_differentiable_and_runs_end_to_end(tmp_path):
    from syncframe.pipeline import generate

    model = load_denoiser(resolve(["model=gaussian"]))
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    cond = model.encode_prompts([""], "", [0, 0])
    model.predict(x, step_at(0.5), cond)[1].square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    result = generate(model="gaussian", app="panorama", width=1024, steps=10, progress=False)
    assert result.metadata["family"] == "analytic" and result.metadata["sampler"] == "ddim"
    image = result.images["panorama.png"]
    assert image.size == (1024, 512)
    # The sample looks like the day scene: bluish top, greener bottom (the scene's mean).
    pixels = torch.from_numpy(np.array(image)).float()
    top, bottom = pixels[:64].mean(dim=(0, 1)), pixels[-64:].mean(dim=(0, 1))
    assert top[2] > top[0] + 60 and bottom[1] > bottom[2] + 60


def test_bad_scene_and_too_many_steps_are_clear_errors():
    with pytest.raises(ConfigError, match="model.scenes"):
        load_denoiser(resolve(["model=gaussian", "model.scenes=[noon]"]))
    model = load_denoiser(resolve(["model=gaussian"]))
    with pytest.raises(ConfigError, match="steps=1000"):
        DDIM(model.scheduler.config, 1000)
