"""StochSync: the official schedule and trajectories, the fit to alternating view sets, edge-
preserving seam removal, the published settings per app, and refusals where it is unsound."""
import pytest
import torch

from syncframe.config import resolve
from syncframe.errors import ConfigError
from syncframe.methods import MethodContext
from syncframe.pipeline import generate_from_config, prepare
from syncframe.samplers import Step
from syncframe.spaces.panorama import PanoramaSpace
from syncframe.syncs.stochsync import StochSync, StochSyncOptions, annealed_level, edge_mask, trajectory_levels


CPU_MODEL = type("M", (), {"latent_scale": 8, "device": torch.device("cpu")})()  # what bind reads of the model


def stochsync(space, **options):
    defaults = dict(t_max=999, t_min=270, warmup=2, ode_steps=25, seam_removal=2, seam_ode_steps=50,
                    seam_mask="horizontal", view_sets=2)
    return StochSync(StochSyncOptions(**{**defaults, **options}))


def test_the_levels_fall_linearly_after_warm_up_and_double_in_seam_removal():
    from syncframe.samplers import DDIM
    from syncframe.models.offline import SD_SCHEDULE

    sampler = DDIM(SD_SCHEDULE, 25)
    sync = stochsync(PanoramaSpace(512, 1024))
    sync.bind(MethodContext(sync_space := PanoramaSpace(512, 1024), CPU_MODEL, sampler, torch.Generator()))
    steps = sync.schedule(sampler.steps)
    assert sync_space.num_views > 1
    levels = [s.t for s in steps]
    expected = [int(999 + (270 - 999) * k / 25) for k in range(25)]
    expected[:2] = [999, 999]
    expected[-2:] = [min(2 * t, 999) for t in expected[-2:]]
    assert levels == expected and levels[-1] == 2 * 299
    # every step ends on the clean estimate, at the table's coefficients of its own level
    ac = sampler.alphas_cumprod
    assert all(s.a_prev == 1.0 and s.s_prev == 0.0 and abs(s.a ** 2 - ac[int(s.t)]) < 1e-12 for s in steps)


def test_a_trajectory_runs_the_official_grid_below_its_start():
    grid = torch.linspace(999, 0, 25).long().tolist()
    assert trajectory_levels(600, 25) == [600, *[t for t in grid if 0 < t < 600], 0]
    assert trajectory_levels(999, 25)[:2] == [999, 957] and trajectory_levels(0, 25) == [0]


def test_the_edge_mask_is_zero_at_the_borders_and_one_in_the_middle():
    mask = edge_mask(64, 8, "horizontal")
    assert mask.shape == (64, 64) and mask[:, 0].eq(0).all() and mask[:, -1].eq(0).all()
    assert mask[:, 31].min() > 0.95 and torch.equal(mask, mask.flip(1))
    assert torch.equal(edge_mask(64, 8, "vertical"), mask.T)
    assert torch.equal(edge_mask(64, 8, "both"), torch.minimum(mask, mask.T))


class ExactPrior:
    """A stand-in ViewModel whose data is one known latent ``c`` (x0 = c exactly): every DDIM
    trajectory must end on ``c``, whatever its noise. Records the views and levels it is called at."""

    def __init__(self, space, c):
        self.views_of_c, self.calls = space.project(c), []

    def __call__(self, x, step, views=None):
        self.calls.append((None if views is None else views.clone(), step.t))
        x0 = self.views_of_c.expand_as(x)
        return x0, (x - step.a * x0) / step.s


def test_one_step_fits_the_canonical_to_its_view_set_and_keeps_the_rest():
    space = PanoramaSpace(512, 1024, window=64, stride=16)  # 5 windows over 128 latents
    c = torch.randn(4, 64, 128, generator=torch.Generator().manual_seed(0))
    sync = stochsync(space, warmup=0, seam_removal=0, ode_steps=5)
    from syncframe.samplers import DDIM
    from syncframe.models.offline import SD_SCHEDULE

    sampler = DDIM(SD_SCHEDULE, 4)
    z_T = torch.randn(4, 64, 128)
    sync.bind(MethodContext(space, CPU_MODEL, sampler, torch.Generator().manual_seed(1)))
    steps = sync.schedule(sampler.steps)
    state = sync.init(z_T, space.project(z_T))
    prior = ExactPrior(space, c)
    state = sync.step(state, steps[0], prior)
    # set 0 = views 0, 2, 4 (latents 0-64, 32-96, 64-128): they see everything, so z0 = c
    assert all(torch.equal(v, torch.tensor([True, False, True, False, True])) for v, _ in prior.calls)
    assert [t for _, t in prior.calls] == trajectory_levels(int(steps[0].t), 5)[:-1]
    assert torch.allclose(state.z0, c, atol=1e-4)
    # a set that sees only part of the canvas keeps the rest: views 1, 3 cover latents 16-112
    state.z0 = torch.full_like(c, 5.0)
    state = sync.step(state, steps[1], prior)
    assert torch.allclose(state.z0[..., 16:112], c[..., 16:112], atol=1e-4)
    assert state.z0[..., :16].eq(5).all() and state.z0[..., 112:].eq(5).all()


def test_the_published_settings_follow_the_app():
    pano = prepare(resolve(["model=tiny", "sync=stochsync", "width=1024"]))
    assert pano.cfg["steps"] == 25
    assert {k: pano.cfg["sync"][k] for k in ("warmup", "ode_steps", "seam_removal", "seam_mask")} == {
        "warmup": 2, "ode_steps": 25, "seam_removal": 2, "seam_mask": "horizontal"}  # the app's registration
    sphere = prepare(resolve(["model=tiny", "sync=stochsync", "app=panorama360"]))
    assert sphere.sync.options.seam_mask == "both"
    mesh = prepare(resolve(["model=tiny", "sync=stochsync", "app=mesh", "mesh=assets/vase.obj", "sync.warmup=3"]))
    assert mesh.sync.options.warmup == 3 and mesh.sync.options.ode_steps == 20  # the user's, then the app's
    assert mesh.sync.options.seam_removal == 4 and mesh.cfg["sync"]["warmup"] == 3


@pytest.mark.parametrize("extra", [["app=panorama", "width=1024"], ["app=panorama360", "width=256", "height=128"],
                                   ["app=mesh", "mesh=assets/vase.obj"]])
def test_it_runs_on_its_apps_and_counts_every_trajectory_call(tiny_denoiser, extra):
    cfg = resolve(["model=tiny", "progress=false", "sync=stochsync", "steps=3", "sync.warmup=1",
                   "sync.seam_removal=1", "sync.ode_steps=3", "sync.seam_ode_steps=3", *extra])
    result = generate_from_config(cfg, tiny_denoiser)
    assert torch.isfinite(result.canonical).all()
    n = result.metadata["num_views"]
    sets = [(n + 1) // 2, n // 2, (n + 1) // 2]  # views 0, 2, ... then 1, 3, ...
    levels = [len(trajectory_levels(t, 3)) - 1 for t in (999, annealed_level(1, 3, 999, 270),
                                                          min(2 * annealed_level(2, 3, 999, 270), 999))]
    assert result.metadata["views_predicted"] == sum(s * k for s, k in zip(sets, levels))


@pytest.mark.parametrize("extra,words", [
    (["model=tiny-sd3"], "sampler=flow-euler keeps none"),
    (["sampler=euler"], "use sampler=ddim"),
    (["steps=3"], "lower them or raise steps"),
    (["sync.view_sets=99"], "sync.view_sets<="),
    (["sync.t_min=999", "sync.t_max=500"], "the levels fall"),
    (["app=anagram", "width=512", "views=[{prompt: a}, {transform: rot180, prompt: b}]"], "use sync.view_sets=1"),
])
def test_where_it_is_unsound_it_refuses_in_one_line(extra, words):
    with pytest.raises(ConfigError, match=words) as error:
        prepare(resolve(["model=tiny", "sync=stochsync", "width=1024", *extra]))
    assert "\n" not in str(error.value)


def test_sdxl_runs_it(twins):
    size = prepare(resolve(["model=tiny-sdxl"])).spec.window_px
    cfg = resolve(["model=tiny-sdxl", "progress=false", "sync=stochsync", "steps=2", f"height={size}",
                   f"width={size * 2}", "sync.warmup=1", "sync.seam_removal=1", "sync.ode_steps=2",
                   "sync.seam_ode_steps=2"])
    assert torch.isfinite(generate_from_config(cfg, twins["tiny-sdxl"]).canonical).all()


def test_every_step_draws_fresh_noise():
    """Maximal stochasticity: no noise is carried from one step to the next, so two warm-up steps (both
    from pure noise) show the model different inputs, and the run's seed makes them."""
    from syncframe.models.offline import SD_SCHEDULE
    from syncframe.samplers import DDIM

    space = PanoramaSpace(512, 1024, window=64, stride=16)
    sampler = DDIM(SD_SCHEDULE, 4)

    def first_inputs(seed):
        sync = stochsync(space, warmup=2, seam_removal=0, ode_steps=3)
        sync.bind(MethodContext(space, CPU_MODEL, sampler, torch.Generator().manual_seed(seed)))
        steps = sync.schedule(sampler.steps)
        seen = []

        class Recorder(ExactPrior):
            def __call__(self, x, step, views=None):
                seen.append(x.clone())
                return super().__call__(x, step, views)

        z = torch.zeros(4, 64, 128)
        recorder, state = Recorder(space, z), sync.init(z, space.project(z))
        for step in steps[:2]:
            count = len(seen)
            state = sync.step(state, step, recorder)
            seen[count + 1:] = []  # keep each step's first model input
        return seen

    a, b = first_inputs(1)
    assert a.shape == b.shape and not torch.allclose(a, b)  # step 2's noise is not step 1's
    assert torch.equal(first_inputs(1)[0], a) and not torch.equal(first_inputs(2)[0], a)  # the seed decides


def test_top_noise_any_starts_from_pure_noise_exactly_at_the_top_level_and_black_starts_at_minus_one():
    """sync.top_noise=any (the official code): a step at the table's top level (t = 999) starts from the fresh
    noise alone, whatever the canonical estimate; below it, and with top_noise=warmup, the estimate shows.
    sync.start=black: the estimate before the first step is -1 everywhere."""
    from syncframe.models.offline import SD_SCHEDULE
    from syncframe.samplers import DDIM

    space = PanoramaSpace(512, 1024, window=64, stride=16)
    sampler = DDIM(SD_SCHEDULE, 4)

    def first_inputs(top_noise, estimate):
        sync = stochsync(space, warmup=0, seam_removal=0, ode_steps=3, top_noise=top_noise)
        sync.bind(MethodContext(space, CPU_MODEL, sampler, torch.Generator().manual_seed(0)))
        steps = sync.schedule(sampler.steps)
        assert int(steps[0].t) == 999 and int(steps[1].t) < 999
        seen = []

        class Recorder(ExactPrior):
            def __call__(self, x, step, views=None):
                seen.append(x.clone())
                return super().__call__(x, step, views)

        z = torch.zeros(4, 64, 128)
        state = sync.init(z, space.project(z))
        state.z0 = torch.full_like(z, estimate)
        firsts = []
        for step in steps[:2]:
            count = len(seen)
            state = sync.step(state, step, Recorder(space, z))
            firsts.append(seen[count])
            state.z0 = torch.full_like(z, estimate)
        return firsts

    any_a, any_b = first_inputs("any", 0.0), first_inputs("any", 3.0)
    assert torch.equal(any_a[0], any_b[0])  # the top level: noise alone
    assert not torch.allclose(any_a[1], any_b[1])  # below it the estimate shows
    warm_a, warm_b = first_inputs("warmup", 0.0), first_inputs("warmup", 3.0)
    assert not torch.allclose(warm_a[0], warm_b[0])  # no warm-up steps here: the estimate shows at the top too
    black = stochsync(space, start="black")
    black.bind(MethodContext(space, CPU_MODEL, sampler, torch.Generator().manual_seed(0)))
    z = torch.randn(4, 64, 128)
    assert black.init(z, space.project(z)).z0.eq(-1).all()
    zeros = stochsync(space)
    zeros.bind(MethodContext(space, CPU_MODEL, sampler, torch.Generator().manual_seed(0)))
    assert zeros.init(z, space.project(z)).z0.eq(0).all()


class Official:
    """A stand-in model with ε a fixed nonlinear function of (x, t), seen the way the official code sees it."""

    def eps(self, x, t):
        return 0.3 * torch.tanh(x) + 0.05 * torch.sin(x * t / 300)

    def __call__(self, x, step, views=None):
        eps = self.eps(x, step.t)
        return (x - step.s * eps) / step.a, eps


def bound_stochsync(**options):
    from syncframe.models.offline import SD_SCHEDULE
    from syncframe.samplers import DDIM

    space = PanoramaSpace(512, 1024, window=64, stride=16)
    sync = stochsync(space, **options)
    sync.bind(MethodContext(space, CPU_MODEL, DDIM(SD_SCHEDULE, 25), torch.Generator().manual_seed(0)))
    return sync


def test_the_dpm_solver_trajectory_is_diffusers_on_the_official_timesteps():
    """sync.solver=dpmpp: the official fast_sample, DPMSolverMultistepScheduler set to the trajectory's
    levels (its last one dropped) and stepped through them."""
    from diffusers import DPMSolverMultistepScheduler

    from syncframe.models.offline import SD_SCHEDULE

    sync = bound_stochsync(solver="dpmpp")
    levels = trajectory_levels(700, 25)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = sync.dpm_trajectory(x, levels, Official(), torch.ones(2, dtype=torch.bool))
    scheduler = DPMSolverMultistepScheduler.from_config(SD_SCHEDULE)
    scheduler.set_timesteps(timesteps=levels[:-1])
    reference = x.clone()
    for t in levels[:-1]:
        reference = scheduler.step(Official().eps(reference, t), t, reference).prev_sample
    assert torch.allclose(ours, reference, atol=1e-5), (ours - reference).abs().max()


def test_the_alpha0_landing_is_the_official_move_step():
    """sync.landing=alpha0: every move is the official move_step (Tweedie at the level, re-noised to the
    next with the same ε), the last one onto the ᾱ₀ level, not onto x0."""
    from syncframe.models.offline import SD_SCHEDULE
    from syncframe.samplers import DDIM

    sync = bound_stochsync(landing="alpha0", seam_removal=0, ode_steps=25)
    alphas = DDIM(SD_SCHEDULE, 25).alphas_cumprod
    step = Step(3, 600, *[alphas[600] ** 0.5, (1 - alphas[600]) ** 0.5], 1.0, 0.0, 0.0, 25)
    x = torch.randn(5, 4, 64, 64, generator=torch.Generator().manual_seed(2))
    ours = sync.trajectory(x, None, step, Official(), torch.ones(5, dtype=torch.bool))
    reference = x.clone()
    levels = trajectory_levels(600, 25)
    for t, t_next in zip(levels[:-1], levels[1:]):
        eps = Official().eps(reference, t)
        tweedie = (reference - (1 - alphas[t]) ** 0.5 * eps) / alphas[t] ** 0.5
        reference = alphas[t_next] ** 0.5 * tweedie + (1 - alphas[t_next]) ** 0.5 * eps
    assert torch.allclose(ours, reference, atol=1e-5)
    assert not torch.allclose(ours, bound_stochsync(seam_removal=0, ode_steps=25).trajectory(
        x, None, step, Official(), torch.ones(5, dtype=torch.bool)), atol=1e-4)  # x0 itself is another landing
