"""sync=syncsde (Lee et al., CVPR 2025) against the official wide-image pipeline's math, and its invariants."""
import pytest
import torch

import syncframe
from syncframe.errors import ConfigError
from syncframe.samplers import Step
from syncframe.syncs.syncsde import SyncSDE, correction_scale, reference_views


def official_wide_image(pipe, prompt: str, seed: int, steps: int, guidance: float, patches: int, inv_lambda: float):
    """The official WidePipeline's sampling (hjl1013/SyncSDE, pipeline_wide_image.py, with
    ``init_xt_from_zt``), written here from its definition: ``patches`` 512 windows a quarter apart cut from
    one canvas noise; every step a guided DDIM step of each, then each window j ≥ 1 corrected by
    γ_t · λ⁻¹ · t/T on the three quarters it shares with window j − 1, towards that window shifted by a
    quarter (T the first timestep). Returns the per-window latents ``[patches, 4, 64, 64]``."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    canvas = torch.randn((1, 4, 64, 64 + 16 * (patches - 1)), generator=torch.Generator().manual_seed(seed))
    latents = torch.cat([canvas[:, :, :, 16 * j:16 * j + 64] for j in range(patches)])
    cond, uncond = pipe.encode_prompt([prompt] * patches, "cpu", 1, True, [""] * patches)
    embeds = torch.cat([uncond, cond])
    overlap = torch.ones(1, 4, 64, 64)
    overlap[..., 48:] = 0  # the official mask is 1 on the last quarter; the correction uses (1 - mask)
    T = scheduler.timesteps.max().item()
    train = scheduler.config.num_train_timesteps
    with torch.no_grad():
        for t in scheduler.timesteps:
            old = latents.clone()
            e_u, e_c = pipe.unet(torch.cat([latents] * 2), t, encoder_hidden_states=embeds).sample.chunk(2)
            latents = scheduler.step(e_u + guidance * (e_c - e_u), t, latents).prev_sample
            prev_t = t - train // steps
            a_cur = scheduler.alphas_cumprod[t]
            a_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
            gamma = (a_prev / a_cur).sqrt() - ((1 - a_prev) / (1 - a_cur)).sqrt()
            for j in range(1, patches):
                shifted = torch.zeros_like(old[:1])
                shifted[..., :48] = old[j - 1:j, :, :, 16:]
                latents[j:j + 1] -= gamma * overlap * inv_lambda * (t.item() / T) * (old[j:j + 1] - shifted)
    return latents


def test_panorama_equals_the_official_wide_image_pipeline(tiny_denoiser):
    """Three windows a quarter apart (768 px at stride 16): every window's final latent equals the official
    pipeline's; the correction is what makes them so (without it the windows differ)."""
    pipe = tiny_denoiser.pipe
    reference = official_wide_image(pipe, "a lighthouse", seed=2, steps=4, guidance=7.5, patches=3, inv_lambda=5.0)
    common = dict(prompt="a lighthouse", width=768, height=512, steps=4, seed=2, progress=False, guidance=7.5,
                  sampler="ddim", **{"app.stride": 16})
    ours = syncframe.generate(pipe=pipe, sync="syncsde", **common).views
    assert ours.shape == reference.shape == (3, 4, 64, 64)
    assert torch.allclose(ours, reference, atol=1e-4, rtol=1e-4), (ours - reference).abs().max()
    plain = syncframe.generate(pipe=pipe, sync="none", **common).views
    assert torch.equal(plain[0], ours[0])  # the first window is never corrected
    assert (plain[1:] - reference[1:]).abs().max() > 1e-2
    off = syncframe.generate(pipe=pipe, sync={"name": "syncsde", "inv_lambda": 0.0}, **common).views
    assert torch.equal(off, plain)  # λ⁻¹ = 0: independent views, bit for bit


def test_the_correction_pulls_each_view_to_what_the_views_before_it_say(smooth_denoiser):
    """One after_step on a 360 rig (views overlapping irregularly): view 0 is unchanged; every other view
    moves by exactly scale · (target − x_t) where the views before it see, and nowhere else."""
    from syncframe.methods import MethodContext
    from syncframe.spaces.equirect import EquirectSpace, rig_from_rings

    cameras = rig_from_rings([dict(pitch=0, count=6, fov=80)])
    space = EquirectSpace(32, 64, cameras, view_size=16, channels=2)
    step = Step(index=1, t=700.0, a=0.5, s=0.75**0.5, a_prev=0.6, s_prev=0.64**0.5, noise=0.0, num_steps=4)
    sampler = type("S", (), {"steps": [Step(0, 900.0, 0.3, 0.91**0.5, 0.5, 0.75**0.5, 0.0, 4), step]})()
    sync = SyncSDE(2.0, "preceding", t_total=1000.0)
    sync.bind(MethodContext(space, None, sampler, torch.Generator()))
    g = torch.Generator().manual_seed(0)
    x_t, x_prev = torch.randn(6, 2, 16, 16, generator=g), torch.randn(6, 2, 16, 16, generator=g)
    out = sync.after_step(x_t, x_prev, step)
    scale = correction_scale(step, 2.0, 1000.0)
    assert scale == pytest.approx(2.0 * (0.6 / 0.5 - 0.8 / 0.75**0.5) * 0.7)
    assert torch.equal(out[0], x_prev[0])
    zero = torch.zeros(space.canonical_shape)
    for j in range(1, 6):
        refs = torch.arange(6) < j
        seen = space.project(space.capability("views_fit")(torch.ones_like(x_t), refs, zero))[j, 0] > 0.5
        target = space.project(space.capability("views_fit")(x_t, refs, zero))[j]
        expected = torch.where(seen, x_prev[j] - scale * (x_t[j] - target), x_prev[j])
        assert seen.any() and torch.allclose(out[j], expected, atol=1e-6)


def test_reference_sets_are_the_official_ones():
    assert reference_views(4, "previous").int().tolist() == [[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
    assert reference_views(4, "preceding").int().tolist() == [[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]]


def test_flow_models_are_refused_in_one_line():
    from syncframe.config import resolve
    from syncframe.plan import prepare

    with pytest.raises(ConfigError, match="derived for DDIM on a variance-preserving schedule"):
        prepare(resolve(["model=tiny-flux", "sync=syncsde", "width=512", "height=256", "steps=2"]))
