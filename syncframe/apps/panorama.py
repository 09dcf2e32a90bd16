"""``app=panorama``: a wide (optionally looping) panorama from 512x512 windows."""
from __future__ import annotations

import torch

from syncframe.apps.base import App, to_pil
from syncframe.decode import decode_tiled
from syncframe.options import Options, option
from syncframe.registry import register_app
from syncframe.resources import starts, view_state_bytes
from syncframe.spaces.panorama import PanoramaSpace


WINDOW = 64  # latents per window side
DECODE_BYTES_PER_PIXEL = 40  # tiled decode: blended sum, weights and the image, in float32


class PanoramaOptions(Options):
    stride: int = option(8, "latents between windows (MultiDiffusion 8, SyncDiffusion 16); less than the window", ge=1)
    loop: bool = option(False, "add wrap-around windows so the left and right edges join")
    decode_overlap: int = option(16, "latents of overlap between VAE decoding tiles", ge=0)
    decode_batch_size: int = option(4, "tiles per VAE call", ge=1, le=256)


@register_app("panorama", options=PanoramaOptions, common=dict(sync="multidiffusion", width=3072, height=512))
class PanoramaApp(App):
    """A wide (optionally looping) panorama from 512x512 windows."""

    def plan(self):
        cfg, o = self.cfg, self.cfg["app"]
        h, w = cfg["height"] // 8, cfg["width"] // 8
        n = starts(h, WINDOW, o["stride"]) * (-(-w // o["stride"]) if o["loop"] else starts(w, WINDOW, o["stride"]))
        parts = {"the views": n * (view_state_bytes(self.channels, WINDOW) + WINDOW**2 * 8),
                 "the decoded canvas": cfg["width"] * cfg["height"] * DECODE_BYTES_PER_PIXEL}
        return n, parts, f"{cfg['width']}x{cfg['height']} at app.stride={o['stride']}"

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
