"""``app=panorama``: a wide (optionally looping) panorama from 512x512 windows."""
from __future__ import annotations

import torch

from syncframe.apps.base import App, to_pil
from syncframe.decode import decode_tiled
from syncframe.registry import register_app
from syncframe.spaces.panorama import PanoramaSpace


@register_app("panorama")
class PanoramaApp(App):
    def build_space(self) -> PanoramaSpace:
        cfg = self.cfg
        return PanoramaSpace(cfg["height"], cfg["width"], stride=int(cfg["app"]["stride"]),
                             loop=bool(cfg["app"]["loop"]), channels=self.channels)

    def finalize(self, views, denoiser):
        o = self.cfg["app"]
        canvas = self.space.unproject(views)
        with torch.no_grad():
            image = decode_tiled(canvas, denoiser.decode, overlap=int(o["decode_overlap"]),
                                 wrap=bool(o["loop"]), batch_size=int(o["decode_batch_size"]))
        return {"panorama.png": to_pil(image)}, canvas
