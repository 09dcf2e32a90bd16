"""SpotDiffusion: shifted non-overlapping windows, each canvas latent denoised by exactly one window
per step; equal to the official roll-and-split formulation on a loop; refusals where unsound."""
import pytest
import torch

from syncframe.config import resolve
from syncframe.errors import ConfigError
from syncframe.methods import MethodContext
from syncframe.pipeline import generate_from_config, prepare
from syncframe.samplers import Step
from syncframe.spaces.panorama import PanoramaSpace
from syncframe.syncs.spotdiffusion import SpotDiffusion, cells, tiles


@pytest.mark.parametrize("size,window", [(64, 64), (96, 64), (384, 64), (100, 32)])
@pytest.mark.parametrize("wrap", [False, True])
def test_the_cells_cover_each_position_once_inside_their_windows(size, window, wrap):
    for offset in range(0, window, 7):
        covered = torch.zeros(size, dtype=torch.long)
        for start, length, left in cells(size, window, offset, wrap):
            span = torch.arange(start, start + length) % size
            covered[span] += 1
            window_span = set(((left + torch.arange(window)) % size).tolist())
            assert set(span.tolist()) <= window_span
            if not wrap:
                assert 0 <= left <= size - window  # flush with the border, never outside
        assert covered.eq(1).all(), (offset, covered)


def test_the_tiles_own_every_canvas_latent_once():
    index, own = tiles(80, 200, 32, (5, 17), (False, True))
    count = torch.zeros(80 * 200).index_add_(0, index[own], torch.ones(int(own.sum())))
    assert count.eq(1).all()


class Recorder:
    """A stand-in ViewModel: x0 = the window times a per-window number that depends on the whole
    window (so a wrong cut changes the result), ε = x − x0; counts the windows it saw."""

    predicted = 0

    def windows(self, x, step, like=0):
        self.predicted += x.shape[0]
        scale = torch.tanh(x.mean(dim=(1, 2, 3), keepdim=True)) + 0.5
        x0 = x * scale
        return x0, x - x0


def test_one_step_equals_the_official_roll_and_split_on_a_loop():
    """The official method on a looping panorama: roll the canvas by the offset, cut it into
    windows side by side, denoise each, roll back."""
    space = PanoramaSpace(512, 2048, window=64, stride=8, loop=True)
    z = torch.randn(4, 64, 256, generator=torch.Generator().manual_seed(0))
    sync = SpotDiffusion((False, True), 64)
    generator = torch.Generator().manual_seed(7)
    sync.bind(MethodContext(space, None, None, generator))
    step = Step(0, 500, 0.7, 0.71, 0.8, 0.6, 0.0, 10)
    model = Recorder()
    z0, zeps = sync.predict(z, step, model)
    offset = torch.randint(0, 64, (2,), generator=torch.Generator().manual_seed(7)).tolist()[1]
    rolled = torch.roll(z, -offset, dims=-1)
    windows = torch.stack(rolled.split(64, dim=-1))
    x0, _ = Recorder().windows(windows, step)
    expected = torch.roll(torch.cat(list(x0), dim=-1), offset, dims=-1)
    assert model.predicted == 4  # 256 latents / 64: four model calls, not MultiDiffusion's 32
    assert torch.allclose(z0, expected, atol=1e-6)


def test_a_run_costs_a_few_windows_per_step_and_counts_them(tiny_denoiser):
    common = ["model=tiny", "width=1536", "steps=3", "progress=false", "seed=1"]
    spot = generate_from_config(resolve([*common, "sync=spotdiffusion", "sync.blend_steps=1"]), tiny_denoiser)
    multi = generate_from_config(resolve([*common, "sync=multidiffusion"]), tiny_denoiser)
    # 192 latents: 3 or 4 windows a step (4 when the offset cuts one), twice in the blended last step;
    # MultiDiffusion: 17 views
    assert 12 <= spot.metadata["views_predicted"] <= 16
    assert multi.metadata["views_predicted"] == 3 * 17
    assert spot.canonical.shape == multi.canonical.shape and torch.isfinite(spot.canonical).all()


@pytest.mark.parametrize("extra", [["app=panorama360", "width=256", "height=128", "steps=2"],
                                   ["app=panorama", "app.loop=true", "width=1024", "steps=2", "sampler=dpmpp-2m"],
                                   ["app=panorama", "width=1024", "steps=2", "sampler=ddpm"]])
def test_it_runs_on_every_canvas(tiny_denoiser, extra):
    result = generate_from_config(resolve(["model=tiny", "progress=false", "sync=spotdiffusion", *extra]),
                                  tiny_denoiser)
    assert torch.isfinite(result.canonical).all()


@pytest.mark.parametrize("extra,words", [
    (["app=mesh", "mesh=assets/vase.obj"], "app=mesh has none"),
    (["app=anagram", "width=512", "views=[{prompt: a}, {transform: rot180, prompt: b}]"], "app=anagram has none"),
    (["regions=" + "assets/layout.yaml"], "with regions="),
    (["app=panorama360", "app.domain=rgb"], "app.domain=latent"),
    (["controlnet=tiny", "app=panorama360", "depth=assets/room_depth.png"], "drop controlnet="),
])
def test_where_it_is_unsound_it_refuses_in_one_line(extra, words):
    with pytest.raises(ConfigError, match=words) as error:
        prepare(resolve(["model=tiny", "sync=spotdiffusion", *extra]))
    assert "\n" not in str(error.value)


class Identity(Recorder):
    def windows(self, x, step, like=0):
        self.predicted += x.shape[0]
        return x.clone(), torch.zeros_like(x)


@pytest.mark.parametrize("wrap", [(False, True), (False, False)])
def test_the_blended_steps_weigh_two_partitions_to_one(wrap):
    """Two partitions half a window apart, tent-weighted and normalised: a model that returns its
    input returns the canvas exactly, at twice the calls; and no texel takes its value from near
    the border of both partitions' windows."""
    space = PanoramaSpace(512, 2048, window=64, stride=8, loop=wrap[1])
    z = torch.randn(4, 64, 256, generator=torch.Generator().manual_seed(3))
    sync = SpotDiffusion(wrap, 64, blend_steps=2)
    sync.bind(MethodContext(space, None, None, torch.Generator().manual_seed(5)))
    model = Identity()
    z0, _ = sync.predict(z, Step(8, 50, 0.9, 0.1, 0.95, 0.05, 0.0, 10), model)
    assert torch.allclose(z0, z, atol=1e-6)
    assert model.predicted >= 8  # both partitions: at least 4 windows each
    half = torch.arange(64) + 0.5
    tent = torch.minimum(half, 64 - half) / 32
    assert torch.allclose(tent + tent.roll(32), torch.ones(64))  # the two tents sum to one on a loop
    model.predicted = 0
    sync.predict(z, Step(0, 900, 0.3, 0.95, 0.35, 0.93, 0.0, 10), model)
    assert model.predicted <= 5  # an early step: one partition


@pytest.mark.parametrize("model", ["tiny-sdxl", "tiny-sd3", "tiny-flux"])
def test_every_family_runs_it(twins, model):
    size = prepare(resolve([f"model={model}"])).spec.window_px
    cfg = resolve([f"model={model}", "progress=false", "sync=spotdiffusion", "steps=2", f"height={size}",
                   f"width={size * 2}", "sync.blend_steps=1"])
    result = generate_from_config(cfg, twins[model])
    assert torch.isfinite(result.canonical).all() and result.metadata["views_predicted"] >= 4


def test_official_shifts_give_the_official_runs_panorama_turned_back_by_their_sum():
    """The official loop on the same latents: step k rolls the canvas by its shift (none at step 0; the
    shifts drawn as ours are), cuts windows side by side, denoises each, steps the rolled canvas and
    keeps it rolled. Ours, with sync.shifts=official, is that canvas turned back by the total shift."""
    from syncframe.samplers import Sampler

    space = PanoramaSpace(512, 2048, window=64, stride=8, loop=True)
    z = torch.randn(4, 64, 256, generator=torch.Generator().manual_seed(0))
    steps = [Step(k, 900 - 200 * k, 0.3 + 0.2 * k, 0.9 - 0.2 * k, 0.5 + 0.2 * k, 0.8 - 0.2 * k, 0.0, 4)
             for k in range(4)]
    sampler = Sampler(steps)  # the deterministic update a' x0 + s' ε
    sync = SpotDiffusion((False, True), 64, blend_steps=0, shifts="official")
    sync.bind(MethodContext(space, None, sampler, torch.Generator().manual_seed(9)))
    state = sync.init(z, space.project(z))
    for step in steps:
        state = sync.step(state, step, Recorder())
    draws = torch.Generator().manual_seed(9)
    official, total = z.clone(), 0
    for step in steps:
        shift = 0 if step.index == 0 else torch.randint(0, 64, (2,), generator=draws).tolist()[1]
        total += shift
        rolled = torch.roll(official, -shift, dims=-1)
        x0, eps = Recorder().windows(torch.stack(rolled.split(64, dim=-1)), step)
        official = step.a_prev * torch.cat(list(x0), -1) + step.s_prev * torch.cat(list(eps), -1)
    assert total > 0 and torch.allclose(state.z, torch.roll(official, total, dims=-1), atol=1e-5)
