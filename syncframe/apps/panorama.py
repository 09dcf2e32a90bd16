"""``app=panorama``: a wide (optionally looping) panorama from 512x512 windows."""
from __future__ import annotations

from typing import Literal

import torch

from syncframe.apps.base import App, AppFacts, DecodeOptions, WindowWeights, WindowWeightsOptions, to_pil, window_weights_option
from syncframe.images import from_pil, load_image, resized
from syncframe.tiling import decode_tiled, encode_tiled
from syncframe.options import option
from syncframe.registry import register_app
from syncframe.resources import view_state_bytes
from syncframe.spaces.panorama import PanoramaSpace, window_count


DECODE_BYTES_PER_PIXEL = 40  # tiled decode: blended sum, weights and the image, in float32


class PanoramaOptions(DecodeOptions, WindowWeightsOptions):
    stride: int | None = option(None, "latents between windows, less than the window; null = 1/8 of the model's "
                                      "window (8 for SD's 64: MultiDiffusion's; SyncDiffusion used 16)", ge=1)
    loop: bool = option(False, "add wrap-around windows so the left and right edges join")
    weights: WindowWeights = window_weights_option("uniform")
    decode_overlap: int = option(16, "latents of overlap between VAE decoding tiles (of the model's window)", ge=0)
    resize: Literal["fit", "crop", "stretch"] = option(
        "crop", "an init= image of another aspect: crop (cover, keep the centre), fit (inside, edges extended), "
                "stretch")


@register_app("panorama", options=PanoramaOptions, common=dict(sync="multidiffusion"), facts=AppFacts(
    main_image="panorama.png", images=("panorama.png",), paintable=True, aspect=6.0,
    # the methods' published settings here: SyncTweedies' official cross-view attention; StochSync's
    # official panorama configuration; SyncSDE's wide-image one
    sync_defaults={"synctweedies": dict(cross_view="auto"),
                   "stochsync": dict(warmup=2, ode_steps=25, seam_removal=2, seam_mask="horizontal"),
                   # SyncSDE's official wide-image code: each window pulled to the one before it
                   "syncsde": dict(reference="previous", t_scale="first")}))
class PanoramaApp(App):
    """A wide (optionally looping) panorama from windows of the model's size (512x3072 for SD)."""

    layout_image_name = "panorama.png"

    def default_size(self):
        if self.init is not None:  # the image's own size, in whole latents, at least one window
            scale, least = self.spec.scale, self.spec.window_px
            return (max(least, self.init.width // scale * scale), max(least, self.init.height // scale * scale))
        return 6 * self.spec.window_px, self.spec.window_px

    def load_init(self, init: str):
        return load_image(init, "init")

    def init_image(self) -> torch.Tensor:
        """``init=`` at the canvas size, ``[3, H, W]`` in [-1, 1]."""
        return from_pil(resized(self.init, self.run.width, self.run.height, self.options.resize))

    def init_latents(self, denoiser, generator):
        o = self.options
        return encode_tiled(self.init_image(), denoiser.encode, tile=self.window, overlap=o.decode_overlap,
                            batch_size=o.decode_batch_size, scale=self.spec.scale, generator=generator,
                            progress=self.run.progress)

    def settle_options(self, size):
        return {"stride": max(1, self.window // 8)} if self.options.stride is None else {}

    def plan_size(self):
        run, o, window = self.run, self.options, self.window
        h, w = run.height // self.spec.scale, run.width // self.spec.scale
        n = window_count(h, w, window, o.stride, o.loop)
        parts = {"the views": n * (view_state_bytes(self.channels, window) + window**2 * 8),
                 "the decoded canvas": run.width * run.height * DECODE_BYTES_PER_PIXEL}
        return n, parts, f"{run.width}x{run.height} at app.stride={o.stride}"

    def build_space(self) -> PanoramaSpace:
        return PanoramaSpace(self.run.height, self.run.width, window=self.window, stride=self.options.stride,
                             loop=self.options.loop, channels=self.channels, vae_scale=self.spec.scale,
                             weights=self.options.weights, sigma=self.options.weights_sigma)

    def finalize(self, views, denoiser):
        o = self.options
        canvas = self.base_space.unproject(views)
        with torch.no_grad():
            image = decode_tiled(canvas, denoiser.decode, tile=self.window, overlap=o.decode_overlap,
                                 wrap=o.loop, batch_size=o.decode_batch_size, scale=self.spec.scale,
                                 progress=self.run.progress)
        return {"panorama.png": to_pil(image)}, canvas
