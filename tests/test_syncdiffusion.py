import pytest
import torch

from syncframe.pipeline import generate_from_config, prepare
from syncframe.loop import ViewModel
from syncframe.methods import MethodContext
from syncframe.samplers import DDIM
from conftest import need_weight


def bound_guidance(cfg, denoiser):
    prepared = prepare(cfg)
    app, sync = prepared.app, prepared.sync
    prompts, view_prompt = app.prompts()
    cond = denoiser.encode_prompts(prompts, "", view_prompt)
    model = ViewModel(denoiser, cond, app.space.num_views, batch_size=8)
    sync.bind(MethodContext(app.space, model, prepared.sampler, torch.Generator().manual_seed(0)))
    return app.space, sync


def per_view_loss(sync, x, step):
    with torch.no_grad():
        target = sync.decode(sync.predict_x0(x[sync.anchor:sync.anchor + 1], step, torch.tensor([sync.anchor])))
        images = sync.decode(sync.predict_x0(x, step, torch.arange(len(x))))
        return sync.loss(images, target.expand_as(images))


@pytest.mark.parametrize("loss", ["lpips-vgg", "style"])
def test_one_guidance_step_lowers_every_loss_and_leaves_anchor(tiny_denoiser, small_cfg, loss):
    cfg = small_cfg("sync=syncdiffusion", f"sync.loss={loss}", "sync.loss_resolution=128", "app.stride=16")
    space, sync = bound_guidance(cfg, tiny_denoiser)
    step = DDIM(tiny_denoiser.scheduler.config, 50).steps[5]
    _, x = space.sample_noise(torch.Generator().manual_seed(0))
    grad = sync.loss_gradient(x, step)
    assert torch.equal(grad[sync.anchor], torch.zeros_like(grad[sync.anchor]))
    before = per_view_loss(sync, x, step)
    # A small step along the normalised gradient: first-order decrease for every view.
    scale = 1e-2 / grad.flatten(1).norm(dim=1).max()
    after = per_view_loss(sync, x - scale * grad, step)
    others = [i for i in range(len(x)) if i != sync.anchor]
    assert (after[others] < before[others]).all(), (before, after)
    assert before[others].min() > 0


def test_the_step_before_model_applies_lowers_the_loss_of_every_view(tiny_denoiser, small_cfg):
    """What the loop runs: ``before_model`` moves each non-anchor view down the gradient of its loss
    (a sign flip, which would climb it, fails here), by w₀·decay^k, and leaves the anchor."""
    cfg = small_cfg("sync=syncdiffusion", "sync.loss_resolution=128", "app.stride=16")
    space, sync = bound_guidance(cfg, tiny_denoiser)
    step = DDIM(tiny_denoiser.scheduler.config, 50).steps[3]
    _, x = space.sample_noise(torch.Generator().manual_seed(2))
    grad = sync.loss_gradient(x, step)
    # a weight small enough for first-order descent: the step moves the farthest view by 1e-2
    sync.weight = 1e-2 / (grad.flatten(1).norm(dim=1).max().item() * sync.decay ** step.index)
    moved = sync.before_model(x, step)
    others = [i for i in range(len(x)) if i != sync.anchor]
    assert torch.equal(moved[sync.anchor], x[sync.anchor])
    assert torch.allclose(moved, x - sync.weight * sync.decay ** step.index * grad)
    before, after = per_view_loss(sync, x, step), per_view_loss(sync, moved, step)
    assert (after[others] < before[others]).all(), (before, after)


def test_guidance_without_unet_gradient_also_descends(tiny_denoiser, small_cfg):
    cfg = small_cfg("sync=syncdiffusion", "sync.grad_through_unet=false", "sync.loss_resolution=128")
    space, sync = bound_guidance(cfg, tiny_denoiser)
    step = DDIM(tiny_denoiser.scheduler.config, 50).steps[2]
    _, x = space.sample_noise(torch.Generator().manual_seed(1))
    grad = sync.loss_gradient(x, step)
    assert grad.abs().sum() > 0
    # The full-gradient and stop-gradient directions agree in sign overall (positive inner product).
    full = bound_guidance(small_cfg("sync=syncdiffusion", "sync.loss_resolution=128"), tiny_denoiser)[1]
    assert (full.loss_gradient(x, step) * grad).sum() > 0


def test_weight_zero_reproduces_multidiffusion_bit_for_bit(tiny_denoiser, small_cfg):
    a = generate_from_config(small_cfg("sync=syncdiffusion", "sync.weight=0"), tiny_denoiser).canonical
    b = generate_from_config(small_cfg("sync=multidiffusion"), tiny_denoiser).canonical
    assert torch.equal(a, b)


def test_guidance_changes_the_result_only_on_guided_steps(tiny_denoiser, small_cfg):
    base = generate_from_config(small_cfg("sync=multidiffusion", "steps=3"), tiny_denoiser).canonical
    guided = generate_from_config(small_cfg("sync=syncdiffusion", "steps=3", "sync.loss_resolution=64",
                                            "sync.thres=1"), tiny_denoiser).canonical
    skipped = generate_from_config(small_cfg("sync=syncdiffusion", "steps=3", "sync.freq=4"), tiny_denoiser).canonical
    assert not torch.equal(guided, base)
    assert torch.equal(skipped, base)  # (k+1) % 4 never 0 within 3 steps


def test_real_model_without_lpips_weights_is_a_clear_error(small_cfg, monkeypatch, tmp_path):
    from syncframe.errors import ConfigError
    monkeypatch.setenv("SYNCFRAME_WEIGHTS", str(tmp_path))
    monkeypatch.setitem(__import__("sys").modules, "lpips", None)
    from syncframe.models.families import family
    from syncframe.models.offline import offline_spec
    from syncframe.plan import RunFacts
    from syncframe.registry import SYNCS
    from syncframe.spaces.panorama import PanoramaSpace
    from syncframe.syncs.syncdiffusion import GuidedOptions

    facts = RunFacts("syncdiffusion", "panorama", family("sd"), offline_spec("tiny"), "cpu",
                     space=PanoramaSpace(512, 768), weights=True)  # a model with trained weights: no random LPIPS
    with pytest.raises(ConfigError, match="no LPIPS-vgg weights"):
        SYNCS.get("syncdiffusion")(GuidedOptions(loss="lpips-vgg"), facts)


def test_tiny_model_without_lpips_weights_says_so_once_and_uses_random(small_cfg, monkeypatch, tmp_path, capsys):
    from syncframe.messages import collecting

    monkeypatch.setenv("SYNCFRAME_WEIGHTS", str(tmp_path))
    monkeypatch.setitem(__import__("sys").modules, "lpips", None)
    with collecting() as notes:
        prepare(small_cfg("sync=syncdiffusion", "sync.loss=lpips-vgg"))
        prepare(small_cfg("sync=syncdiffusion", "sync.loss=lpips-vgg"))
    assert notes.count("no LPIPS-vgg weights were found, so SyncDiffusion's loss uses random LPIPS weights (allowed "
                       "for the offline models only; see the README to install real ones)") == 1
    err = capsys.readouterr().err
    assert err.count("random LPIPS weights") <= 1 and "UserWarning" not in err and "warnings.warn" not in err


def test_taesd_decoder_for_the_loss(tiny_denoiser, small_cfg):
    cfg = small_cfg("sync=syncdiffusion", "sync.decoder=taesd", f"sync.taesd={need_weight('taesd', 'TAESD weights')}",
                    "sync.loss_resolution=128")
    space, sync = bound_guidance(cfg, tiny_denoiser)
    step = DDIM(tiny_denoiser.scheduler.config, 50).steps[5]
    _, x = space.sample_noise(torch.Generator().manual_seed(0))
    grad = sync.loss_gradient(x, step)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
