"""Tiled VAE decoding: equal to a direct decode on one tile, close on a wide canvas, and seamless across
a loop's wrap."""
import torch

from syncframe.tiling import decode_tiled


def test_tiled_decode_matches_direct_decode(tiny_denoiser):
    latent = torch.randn(4, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        direct = tiny_denoiser.decode(latent[None])[0]
        assert torch.allclose(decode_tiled(latent, tiny_denoiser.decode), direct, atol=1e-5)
        wide = torch.randn(4, 64, 160, generator=torch.Generator().manual_seed(1))
        full = tiny_denoiser.decode(wide[None])[0]
        tiled = decode_tiled(wide, tiny_denoiser.decode, overlap=16)
    assert tiled.shape == full.shape == (3, 512, 1280)
    # Tiles see less context than the whole canvas; blending keeps the difference small.
    assert (tiled - full).abs().mean() < 0.05 * full.abs().mean()


def test_wrapped_decode_is_continuous_across_the_seam(tiny_denoiser):
    canvas = torch.randn(4, 64, 144, generator=torch.Generator().manual_seed(2))  # 3 tile strides
    with torch.no_grad():
        image = decode_tiled(canvas, tiny_denoiser.decode, overlap=16, wrap=True)
        rolled = decode_tiled(canvas.roll(48, dims=-1), tiny_denoiser.decode, overlap=16, wrap=True)
    # Decoding with wrap commutes with a circular shift by a tile stride: no column is special.
    assert torch.allclose(image.roll(384, dims=-1), rolled, atol=1e-3)  # 8-bit step is 8e-3
