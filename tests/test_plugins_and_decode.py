from importlib.metadata import entry_points

import pytest
import torch

import syncframe
from syncframe.tiling import decode_tiled
from syncframe.registry import APPS, ENTRY_POINT_GROUP, SPACES, SYNCS


def test_builtins_come_through_the_plugin_entry_point():
    assert "builtin" in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"panorama"} <= set(APPS.names()) and {"panorama"} <= set(SPACES.names())
    assert {"none", "multidiffusion", "syncdiffusion", "synctweedies"} <= set(SYNCS.names())


def test_a_new_space_and_app_plug_in_without_touching_the_core(tiny_denoiser):
    """The worked example of docs/plugins.md: a vertically mirrored square."""
    from syncframe.apps.base import App, to_pil
    from syncframe.spaces import CanonicalSpace

    @syncframe.register_space("mirror-test")
    class MirrorSpace(CanonicalSpace):
        num_views, view_shape, canonical_shape = 2, (4, 64, 64), (4, 64, 64)

        def project(self, z):
            return torch.stack([z, z.flip(-1)])

        def project_adjoint(self, x):
            return x[0] + x[1].flip(-1)

    @syncframe.register_app("mirror-test", common={"sync": "synctweedies", "width": 512, "height": 512},
                            defaults={"flip": True})
    class MirrorApp(App):
        def build_space(self):
            return MirrorSpace()

        def finalize(self, views, denoiser):
            z = self.base_space.unproject(views)
            return {"image.png": to_pil(denoiser.decode(z[None])[0])}, z

    result = syncframe.generate("app=mirror-test", "model=tiny", "steps=3", "progress=false",
                                denoiser=tiny_denoiser)
    assert result.config["app"] == {"name": "mirror-test", "flip": True}  # a plugin option, typed by its default
    with pytest.raises(syncframe.ConfigError, match="app.flip='sometimes': expected true or false"):
        syncframe.generate("app=mirror-test", "model=tiny", "app.flip=sometimes")
    views = result.views
    assert torch.allclose(views[1], views[0].flip(-1), atol=1e-5)  # synchronized: the views agree
    assert not torch.allclose(views[0], views[0].flip(-1), atol=1e-2)  # ...and are not trivially symmetric
    assert result.images["image.png"].size == (512, 512)


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
