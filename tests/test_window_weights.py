"""app.weights: how overlapping windows are averaged; gaussian is Mixture of Diffusers' (Jiménez 2023)."""
import math

import pytest
import torch

from syncframe.errors import ConfigError
from syncframe.spaces.base import gaussian_weights, window_weights
from syncframe.spaces.panorama import PanoramaSpace


def official_tile_weights(latent: int, var: float = 0.01) -> torch.Tensor:
    """Mixture of Diffusers' formula, written from its definition: a Gaussian of variance ``var`` in units
    of the tile's side, columns centred at (side - 1) / 2 and rows at side / 2 (as published)."""
    def probs(mid):
        return [math.exp(-(i - mid) ** 2 / latent**2 / (2 * var)) / math.sqrt(2 * math.pi * var) for i in range(latent)]

    return torch.outer(torch.tensor(probs(latent / 2), dtype=torch.float64),
                       torch.tensor(probs((latent - 1) / 2), dtype=torch.float64))


def test_gaussian_weights_are_the_published_columns_and_fall_to_almost_nothing_at_the_border():
    like = torch.zeros(1)
    w = gaussian_weights(64, 3, like)[0, 0].double()
    assert w.shape == (64, 64) and w.max() <= 1
    official = official_tile_weights(64)
    # the column profile is theirs up to a constant (the constant cancels in the average)
    cols = official[0] / official[0].max()
    assert torch.allclose(w[32] / w[32].max(), cols, rtol=1e-6)
    assert w[0, 0] < 1e-9 and w[31, 31] > 0.98 and torch.equal(w, w.T)  # symmetric: both axes at (s-1)/2
    wider = gaussian_weights(64, 1, like, sigma=0.3)[0, 0]
    assert wider[0, 32] > 100 * w[0, 32]  # sigma reaches the weights
    with pytest.raises(ConfigError, match="must be one of uniform, fading, gaussian"):
        window_weights("triangle", 8, 1, like)


def test_gaussian_canvas_average_is_the_weighted_mean_of_the_windows():
    space = PanoramaSpace(512, 768, window=64, stride=32, weights="gaussian")
    x = torch.randn(space.num_views, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    z = space.unproject(x)
    w = gaussian_weights(64, 1, x)[0, 0]
    # column 40 is seen by window 0 (its column 40) and window 1 (its column 8)
    expected = (x[0, :, :, 40] * w[:, 40] + x[1, :, :, 8] * w[:, 8]) / (w[:, 40] + w[:, 8])
    assert torch.allclose(z[:, :, 40], expected, atol=1e-6)
    assert torch.allclose(z[:, :, 10], x[0, :, :, 10])  # one window alone: its own value, whatever its weight


def mixture_of_diffusers(pipe, prompt: str, seed: int, steps: int, guidance: float, cols: int, overlap: int):
    """The official tiling pipeline's sampling, written here from its definition (one row of ``cols`` 512
    tiles, ``overlap`` latents shared): canvas noise from the seed, every tile's guided ε, the ε of the
    canvas their Gaussian-weighted mean (the published weights), one scheduler step of the canvas."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    tile, stride = 64, 64 - overlap
    width = tile + (cols - 1) * stride
    latents = torch.randn((1, 4, tile, width), generator=torch.Generator().manual_seed(seed))
    cond, uncond = pipe.encode_prompt(prompt, "cpu", 1, True, "")
    embeds = torch.cat([uncond, cond])
    weights = official_tile_weights(tile)
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps_sum, den = torch.zeros_like(latents), torch.zeros_like(latents)
            for c in range(cols):
                piece = latents[:, :, :, c * stride:c * stride + tile]
                e_u, e_c = pipe.unet(torch.cat([piece] * 2), t, encoder_hidden_states=embeds).sample.chunk(2)
                eps_sum[:, :, :, c * stride:c * stride + tile] += (e_u + guidance * (e_c - e_u)) * weights
                den[:, :, :, c * stride:c * stride + tile] += weights
            latents = scheduler.step(eps_sum / den, t, latents).prev_sample
    return latents[0]


@pytest.mark.parametrize("sync", ["eps-averaging", "multidiffusion"])
def test_gaussian_weights_equal_the_official_tiling_pipeline_on_two_tiles(tiny_denoiser, sync):
    """Two 512 tiles sharing half their width: syncframe's panorama with app.weights=gaussian equals the
    official Mixture of Diffusers sampling. Their scheme averages ε (sync=eps-averaging); under a
    deterministic DDIM step x_{t-1} is linear in ε at a fixed x_t, so MultiDiffusion's x_{t-1} average
    with the same weights is the same run."""
    import syncframe

    pipe = tiny_denoiser.pipe
    reference = mixture_of_diffusers(pipe, "a lighthouse", seed=4, steps=3, guidance=7.5, cols=2, overlap=32)
    common = dict(prompt="a lighthouse", width=768, height=512, steps=3, seed=4, progress=False, guidance=7.5,
                  sync=sync, sampler="ddim", **{"app.stride": 32})
    ours = syncframe.generate(pipe=pipe, **common, **{"app.weights": "gaussian"}).canonical
    assert ours.shape == reference.shape == (4, 64, 96)
    assert torch.allclose(ours, reference, atol=1e-4, rtol=1e-4), (ours - reference).abs().max()
    uniform = syncframe.generate(pipe=pipe, **common, **{"app.weights": "uniform"}).canonical
    assert (uniform - reference).abs().max() > 1e-2  # the weights are what makes it theirs
