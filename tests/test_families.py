"""Every model family through the one loop: equal to diffusers' own pipeline on the same tiny
components (one window, no synchronization), and every synchronizer end to end."""
import pytest
import torch

from syncframe.config import resolve
from syncframe.errors import ConfigError
from syncframe.models.compat import flux_unpack
from syncframe.pipeline import generate_from_config, prepare
from test_sampler import diffusers_scheduler

from conftest import TWINS


def window_px(model) -> int:
    return prepare(resolve([f"model={model}"])).spec.window_px


def one_window(model, *extra):
    """A panorama of exactly one window of the model's size: the loop with nothing to sync."""
    size = window_px(model)
    return resolve(["app=panorama", f"model={model}", "sync=none", "progress=false", "seed=5", f"width={size}",
                    f"height={size}", "prompt=a lighthouse on a cliff", *extra])


def diffusers_latents(denoiser, cfg, scheduler):
    """The family's diffusers pipeline, same components, seed and steps, ``output_type="latent"``."""
    pipe = denoiser.pipe
    pipe.scheduler = scheduler
    pipe.set_progress_bar_config(disable=True)
    size = cfg["width"]
    kwargs = dict(height=size, width=size, num_inference_steps=cfg["steps"], guidance_scale=cfg["guidance"],
                  generator=torch.Generator().manual_seed(cfg["seed"]), output_type="latent")
    latents = pipe(cfg["prompt"], **kwargs).images
    if type(denoiser).__name__ == "FluxDenoiser":  # packed tokens -> [1, 16, h, w]
        latents = flux_unpack(latents, size, size, pipe.vae_scale_factor)
    return latents[0]


CASES = [("tiny", "ddim"), ("tiny", "dpmpp-2m"), ("tiny", "euler"), ("tiny", "ddpm"),
         ("tiny-sdxl", "ddim"), ("tiny-sdxl", "dpmpp-2m"), ("tiny-sdxl", "euler"),
         ("tiny-sd3", "flow-euler"), ("tiny-flux", "flow-euler")]


@pytest.mark.parametrize("model, sampler", CASES)
def test_one_window_equals_the_family_pipeline(twins, model, sampler):
    denoiser = twins[model]
    cfg = one_window(model, f"sampler={sampler}", "steps=5")
    result = generate_from_config(cfg, denoiser)
    assert result.metadata["num_views"] == 1
    ours = result.canonical
    reference = diffusers_latents(denoiser, result.config, diffusers_scheduler(sampler, denoiser.scheduler.config))
    assert ours.shape == reference.shape
    assert torch.allclose(ours, reference, atol=1e-4, rtol=1e-4), (ours - reference).abs().max()
    assert ours.std() > 0.05


SYNCS = ["none", "multidiffusion", "synctweedies", "syncdiffusion", "eps-averaging", "canonical-x0", "canonical-eps"]


@pytest.mark.parametrize("model", TWINS)
@pytest.mark.parametrize("sync", SYNCS)
def test_every_sync_runs_and_synchronizes_with_every_family(twins, model, sync, tmp_path):
    spec = prepare(resolve([f"model={model}"])).spec
    overrides = [f"model={model}", f"sync={sync}", "steps=2", "progress=false", f"width={spec.window_px * 3 // 2}"]
    if sync == "eps-averaging" and spec.schedule == "flow":
        with pytest.raises(ConfigError, match="sync.aggregate=eps .* rectified-flow"):
            prepare(resolve(overrides))
        return
    if sync == "canonical-eps" and spec.schedule == "flow":
        with pytest.raises(ConfigError, match="sync.aggregate=eps"):
            prepare(resolve(overrides))
        return
    result = generate_from_config(resolve(overrides), twins[model])
    views = result.views
    assert views.shape[1:] == (spec.channels, spec.window, spec.window) and torch.isfinite(views).all()
    assert result.images["panorama.png"].size == (spec.window_px * 3 // 2, spec.window_px)
    # the overlapping windows agree (they are the projection of one canvas) exactly when synchronized
    space = prepare(resolve(overrides)).app.space
    gap = ((space.sync(views) - views).abs().max() / views.abs().max()).item()
    assert gap > 1e-3 if sync == "none" else gap < 1e-5, (sync, gap)


@pytest.mark.parametrize("model", ["tiny-sdxl", "tiny-sd3", "tiny-flux"])
def test_the_window_follows_the_model_in_every_app(model, tmp_path):
    """The twins' native view is 32 latents (256 px), not SD's 64: spaces, sizes and rigs follow."""
    from pathlib import Path

    mesh = Path(__file__).resolve().parents[1] / "assets" / "vase.obj"
    for app, extra in (("panorama", []), ("panorama360", ["app.viewer=false"]), ("mesh", [f"mesh={mesh}"])):
        cfg = resolve([f"app={app}", f"model={model}", *extra])
        prepared = prepare(cfg)
        assert prepared.app.space.view_shape[1:] == (32, 32), app
        assert prepared.spec.window_px == 256
    prepared = prepare(resolve([f"model={model}"]))
    assert prepared.settled["width"] == prepared.cfg["width"] == 6 * 256
    assert prepared.cfg["app"]["stride"] == 4  # 1/8 of the window
    with pytest.raises(ConfigError, match="mesh views are square, a multiple of 64 pixels \\(256 for this model\\)"):
        prepare(resolve(["app=mesh", f"model={model}", f"mesh={mesh}", "width=500", "height=500"]))


def test_a_twin_with_a_smaller_window_says_so_and_what_it_writes_before_it_runs(capsys):
    """The README's sizes are the families' (SDXL 1024 px views); a twin's views are 256 px, so what it
    will write is said while the run is prepared, before any weights load; the twin with its family's
    window (tiny, 512 px) says nothing."""
    from pathlib import Path

    from syncframe import messages

    mesh = Path(__file__).resolve().parents[1] / "assets" / "vase.obj"
    for argv, writes in ((["model=tiny-sdxl"], "this run writes 1536x256"),
                         (["model=tiny-flux", "app=panorama360", "app.viewer=false"], "this run writes 1024x512"),
                         (["model=tiny-sd3", "app=mesh", f"mesh={mesh}", "app.texture_size=512"],
                          "this run writes a 512² texture from 256² views")):
        with messages.collecting() as notes:
            prepare(resolve(argv))
        said = [n for n in notes if "offline twin" in n]
        assert len(said) == 1 and said[0].startswith(f"{argv[0]} is an offline twin") and "window where" in said[0]
        assert said[0].endswith(writes), said[0]
    with messages.collecting() as notes:
        prepare(resolve(["model=tiny"]))
    assert not [n for n in notes if "offline twin" in n]


@pytest.mark.parametrize("model, sampler, message", [
    ("tiny", "flow-euler", "sampler=flow-euler does not fit model=tiny (sd, a variance-preserving model); "
                           "use sampler=ddim or sampler=ddpm or sampler=dpmpp-2m or sampler=euler"),
    ("tiny-flux", "dpmpp-2m", "sampler=dpmpp-2m does not fit model=tiny-flux (flux, a rectified-flow model); "
                              "use sampler=flow-euler"),
    ("tiny-sd3", "ddim", "sampler=ddim does not fit model=tiny-sd3"),
])
def test_a_sampler_that_does_not_fit_the_family_is_refused(model, sampler, message):
    with pytest.raises(ConfigError) as error:
        prepare(resolve([f"model={model}", f"sampler={sampler}"]))
    assert message in str(error.value)


def test_family_defaults_settle_steps_guidance_and_sampler():
    for model, (steps, guidance, sampler) in {"tiny": (50, 7.5, "ddim"), "tiny-sdxl": (50, 5.0, "ddim"),
                                              "tiny-sd3": (28, 7.0, "flow-euler"),
                                              "tiny-flux": (28, 3.5, "flow-euler")}.items():
        cfg = resolve([f"model={model}"])
        prepared = prepare(cfg)
        ran, settled = prepared.cfg, prepared.settled
        assert (ran["steps"], ran["guidance"], ran["sampler"]["name"]) == (steps, guidance, sampler)
        assert settled["steps"] == steps and settled["sampler"] == sampler
        assert cfg == resolve([f"model={model}"])  # the caller's config is not changed
    prepared = prepare(resolve(["model=tiny-flux", "steps=4", "guidance=0"]))
    assert prepared.settled.get("steps") is None and prepared.cfg["steps"] == 4  # what the user set stays


def test_a_folder_that_is_not_a_diffusers_pipeline_is_refused(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(ConfigError, match="is not a diffusers pipeline \\(no readable model_index.json"):
        prepare(resolve([f"model={tmp_path / 'weights'}"]))
    (tmp_path / "weights" / "model_index.json").write_text('{"_class_name": "KandinskyPipeline"}')
    with pytest.raises(ConfigError, match="is a KandinskyPipeline pipeline, which syncframe does not drive"):
        prepare(resolve([f"model={tmp_path / 'weights'}"]))


def test_a_saved_twin_loads_through_the_real_loading_path(twins, tmp_path):
    """Each family's twin saved with diffusers' save_pretrained loads back as model=<folder>
    (family and window read from its configs) and gives the same result. FLUX's config has no
    sample size: a FLUX folder gets FluxPipeline's default view, 128 latents (1024 px)."""
    for model, window in (("tiny-sdxl", 32), ("tiny-sd3", 32), ("tiny-flux", 128)):
        folder = tmp_path / model
        twins[model].pipe.save_pretrained(folder)
        size = [f"width={window * 8}", f"height={window * 8}"]
        cfg = resolve([f"model={folder}", "steps=2", "progress=false", "sync=none", *size])
        prepared = prepare(cfg)
        assert prepared.spec.family == model.removeprefix("tiny-") and prepared.spec.window == window
        if model == "tiny-flux":  # the twin's own spec says 32: no like-for-like run; the spec is what matters
            assert prepared.spec.distilled_guidance and prepared.cfg["steps"] == 2 and prepared.settled["guidance"] == 3.5
            continue
        loaded = generate_from_config(cfg).canonical
        direct = generate_from_config(resolve([f"model={model}", "steps=2", "progress=false", "sync=none", *size]),
                                      twins[model]).canonical
        assert torch.allclose(loaded, direct, atol=1e-5)


def test_sdxl_takes_a_controlnet(twins, tmp_path):
    """SDXL's ControlNet (diffusers' ControlNetModel shaped like its UNet, with the added
    text/time conditioning) gets the mesh's rendered depth, and it changes the result."""
    from pathlib import Path

    mesh = Path(__file__).resolve().parents[1] / "assets" / "vase.obj"
    common = ["app=mesh", "model=tiny-sdxl", f"mesh={mesh}", "steps=2", "progress=false", "app.viewer=false",
              "app.views=[{elevation: 0, count: 2}]"]
    plain = generate_from_config(resolve(common), twins["tiny-sdxl"]).views
    controlled = generate_from_config(resolve([*common, "controlnet=tiny"])).views
    assert (plain - controlled).abs().max() > 1e-3
