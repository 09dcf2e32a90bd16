"""The joint loop and its samplers against diffusers and against closed-form equivalences."""

import pytest
import torch

from syncframe.loop import ViewModel, sample
from syncframe.models.denoiser import ViewDenoiser
from syncframe.models.offline import FLOW_SCHEDULE, SD_SCHEDULE
from syncframe.pipeline import generate_from_config, prepare
from benchmarks.reference import diffusers_panorama_pipeline
from syncframe.samplers import DDIM, DDPM, DPMSolverPP2M, Euler, FlowEuler

VP_SAMPLERS = ["ddim", "ddpm", "dpmpp-2m", "euler"]


def run_canvas(cfg, denoiser):
    return generate_from_config(cfg, denoiser).canonical


def diffusers_scheduler(name, config, **options):
    from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                           FlowMatchEulerDiscreteScheduler)

    if name == "dpmpp-2m":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2,
                                                       use_karras_sigmas=options.get("karras", False))
    return {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "euler": EulerDiscreteScheduler,
            "flow-euler": FlowMatchEulerDiscreteScheduler}[name].from_config(config)


def diffusers_panorama(d, cfg, loop, scheduler=None):
    cfg = prepare(cfg).cfg  # steps and guidance settled as the run settles them
    pipe = diffusers_panorama_pipeline(d)
    if scheduler is not None:
        pipe.scheduler = scheduler
    out = pipe(cfg["prompt"], height=cfg["height"], width=cfg["width"], num_inference_steps=cfg["steps"],
               guidance_scale=cfg["guidance"], view_batch_size=3, circular_padding=loop,
               generator=torch.Generator().manual_seed(cfg["seed"]), output_type="latent")
    return out.images[0]


@pytest.mark.parametrize("loop", [False, True])
def test_multidiffusion_equals_diffusers_panorama_pipeline(tiny_denoiser, small_cfg, loop):
    cfg = small_cfg("sync=multidiffusion", "seed=3", f"app.loop={str(loop).lower()}")
    ours = run_canvas(cfg, tiny_denoiser)
    reference = diffusers_panorama(tiny_denoiser, cfg, loop)
    assert ours.shape == reference.shape == (4, 64, 96)
    assert torch.allclose(ours, reference, atol=1e-4, rtol=1e-4), (ours - reference).abs().max()
    assert ours.std() > 0.1  # a real sample, not zeros


@pytest.mark.parametrize("name", ["dpmpp-2m", "euler"])
def test_multidiffusion_with_fast_samplers_equals_diffusers_panorama_pipeline(tiny_denoiser, small_cfg, name):
    """The panorama pipeline keeps one scheduler state per view (its multistep history of own x0s)
    and averages x_{t-1}: MultiDiffusion under any sampler, which ours equals."""
    cfg = small_cfg("sync=multidiffusion", "seed=4", f"sampler={name}", "steps=6")
    ours = run_canvas(cfg, tiny_denoiser)
    reference = diffusers_panorama(tiny_denoiser, cfg, False, diffusers_scheduler(name, tiny_denoiser.scheduler.config))
    assert torch.allclose(ours, reference, atol=1e-4, rtol=1e-4), (ours - reference).abs().max()


def views_after_each_step(cfg, denoiser):
    prepared = prepare(cfg)
    app = prepared.app
    prompts, view_prompt = app.prompts()
    cond = denoiser.encode_prompts(prompts, "", view_prompt)
    seen = []
    sample(app.space, ViewModel(denoiser, cond, app.space.num_views), prepared.sync, prepared.sampler,
           torch.Generator().manual_seed(0), progress=False, callback=lambda step, x, total: seen.append(x.clone()))
    return app.space, seen


@pytest.mark.parametrize("sampler", [*VP_SAMPLERS, "dpmpp-2m sampler.karras=true"])
@pytest.mark.parametrize("sync", ["multidiffusion", "synctweedies", "canonical-x0"])
def test_overlapping_windows_agree_after_every_step(tiny_denoiser, small_cfg, sync, sampler):
    sampler, *options = sampler.split()
    space, seen = views_after_each_step(small_cfg(f"sync={sync}", "app.stride=16", f"sampler={sampler}", *options),
                                        tiny_denoiser)
    assert len(seen) == 4
    for x in seen:
        # x is consistent iff it is the projection of one canvas: P(U(x)) == x.
        assert torch.allclose(space.sync(x), x, atol=1e-4), (space.sync(x) - x).abs().max()
    independent = views_after_each_step(small_cfg("sync=none", "app.stride=16", f"sampler={sampler}", *options),
                                        tiny_denoiser)[1]
    assert not torch.allclose(space.sync(independent[-1]), independent[-1], atol=1e-2)


@pytest.mark.parametrize("sync", ["synctweedies", "multidiffusion", "eps-averaging"])
def test_sync_until_stops_synchronizing_exactly_at_its_boundary(tiny_denoiser, small_cfg, sync):
    """until=0.5 of 4 steps: steps 0 and 1 (fractions 0 and 0.25) are synchronized, step 2 (0.5)
    and after are not: the boundary step itself is checked on both sides."""
    space, seen = views_after_each_step(small_cfg(f"sync={sync}", "sync.until=0.5"), tiny_denoiser)
    for index in (0, 1):
        assert torch.allclose(space.sync(seen[index]), seen[index], atol=1e-5), index
    for index in (2, 3):
        assert not torch.allclose(space.sync(seen[index]), seen[index], atol=1e-3), index


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp-2m", "euler"])
@pytest.mark.parametrize("sync", ["synctweedies", "eps-averaging", "canonical-x0", "canonical-eps"])
def test_averaging_cases_coincide_for_exact_crops(tiny_denoiser, small_cfg, sync, sampler):
    """For crops (P U P = P) every deterministic update here is linear in (x_t, x0) or (x_t, ε)
    (DPM++ 2M also in its previous x0, which is the synchronized one), so averaging ε, x0 or
    x_{t-1} gives the same canvas (SyncTweedies, Sec. 4) — a closed-form check of every case."""
    reference = run_canvas(small_cfg("sync=multidiffusion", f"sampler={sampler}"), tiny_denoiser)
    # the averaging alone: SyncTweedies' cross-view attention changes the model's predictions
    ours = run_canvas(small_cfg(f"sync={sync}", f"sampler={sampler}", "sync.cross_view=none"), tiny_denoiser)
    assert torch.allclose(ours, reference, atol=1e-4), (ours - reference).abs().max()


def junction_ratio(canvas):
    """Mean |first column − last column| over the mean difference of neighbouring columns."""
    interior = (canvas[:, :, 1:] - canvas[:, :, :-1]).abs().mean()
    return ((canvas[:, :, 0] - canvas[:, :, -1]).abs().mean() / interior).item()


def test_loop_junction_is_as_continuous_as_interior(smooth_denoiser, small_cfg):
    looped = run_canvas(small_cfg("app.loop=true", "steps=10", "guidance=1"), smooth_denoiser)
    open_ended = run_canvas(small_cfg("app.loop=false", "steps=10", "guidance=1"), smooth_denoiser)
    assert junction_ratio(looped) < 1.2
    assert junction_ratio(open_ended) > 2.0  # the metric does see a seam where there is one


def test_same_seed_is_bit_identical_and_seed_matters(tiny_denoiser, small_cfg):
    a = generate_from_config(small_cfg("seed=7"), tiny_denoiser)
    b = generate_from_config(small_cfg("seed=7"), tiny_denoiser)
    c = generate_from_config(small_cfg("seed=8"), tiny_denoiser)
    assert torch.equal(a.canonical, b.canonical)
    assert a.images["panorama.png"].tobytes() == b.images["panorama.png"].tobytes()
    assert not torch.equal(a.canonical, c.canonical)


# -- each sampler's update is its diffusers scheduler's step ------------------------------------
class Split(ViewDenoiser):
    """Only the prediction-type arithmetic of a denoiser."""

    def __init__(self, prediction_type):
        super().__init__()
        self.prediction_type = prediction_type


def ours_vs_diffusers(sampler, scheduler, prediction_type, steps, seed=0, sigma_space=False):
    """Feed the same model outputs to our update and to ``scheduler.step`` along a whole trajectory;
    returns the largest difference of the states (ours in the variance-preserving convention)."""
    g = torch.Generator().manual_seed(seed)
    shape = (2, 4, 8, 8)
    outputs = [torch.randn(shape, generator=g) for _ in sampler.steps]
    ours = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1)) * sampler.initial_scale
    scheduler.set_timesteps(steps)
    theirs = ours / sampler.steps[0].a if sigma_space else ours.clone()
    split, memory, worst = Split(prediction_type), {}, 0.0
    noise_ours, noise_theirs = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    for step, out, t in zip(sampler.steps, outputs, scheduler.timesteps):
        x0, eps = split.split(ours, out, step)
        noise = torch.randn(shape, generator=noise_ours) if sampler.stochastic and step.noise > 0 else None
        ours = sampler.update(ours, x0, eps, step, noise, memory)
        theirs = scheduler.step(out, t, theirs, generator=noise_theirs, return_dict=False)[0]
        compare = theirs * step.a_prev if sigma_space else theirs
        worst = max(worst, (ours - compare).abs().max().item())
    return worst


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", ["ddim", "ddpm", "dpmpp-2m", "dpmpp-2m-karras", "euler"])
def test_every_vp_sampler_steps_like_its_diffusers_scheduler(name, prediction_type):
    config = {**SD_SCHEDULE, "prediction_type": prediction_type}
    steps = 12
    sampler = {"ddim": lambda: DDIM(config, steps), "ddpm": lambda: DDPM(config, steps),
               "dpmpp-2m": lambda: DPMSolverPP2M(config, steps), "dpmpp-2m-karras": lambda: DPMSolverPP2M(config, steps, True),
               "euler": lambda: Euler(config, steps)}[name]()
    scheduler = diffusers_scheduler(name.removesuffix("-karras"), config, karras=name.endswith("karras"))
    assert ours_vs_diffusers(sampler, scheduler, prediction_type, steps, sigma_space=name == "euler") < 1e-4


def test_ddim_with_eta_steps_like_diffusers():
    config, steps = SD_SCHEDULE, 10
    from diffusers import DDIMScheduler

    class WithEta(DDIMScheduler):
        def step(self, *args, **kwargs):
            return super().step(*args, eta=1.0, **kwargs)

    assert ours_vs_diffusers(DDIM(config, steps, 1.0), WithEta.from_config(config), "epsilon", steps) < 1e-4


@pytest.mark.parametrize("config", [FLOW_SCHEDULE, {**FLOW_SCHEDULE, "shift": 1.0}])
def test_flow_euler_steps_like_diffusers(config):
    assert ours_vs_diffusers(FlowEuler(config, 8), diffusers_scheduler("flow-euler", config), "flow", 8) < 1e-5


def test_v_prediction_model_runs(small_cfg):
    from syncframe.pipeline import load_denoiser
    cfg = small_cfg("model.prediction_type=v_prediction", "steps=2")
    d = load_denoiser(cfg)
    assert d.prediction_type == "v_prediction"
    assert torch.isfinite(generate_from_config(cfg, d).canonical).all()


