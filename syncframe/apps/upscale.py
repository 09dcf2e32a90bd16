"""``app=upscale``: a bigger, sharper image from an existing one (tiled diffusion upscaling).

The image is resized by ``scale`` (Lanczos), encoded tile by tile, pushed to the noise level
``strength`` picks, denoised by synchronized overlapping windows over the whole canvas (the
panorama space in two dimensions: windows tile both axes) and decoded tile by tile. Memory is set
by the window and the batch, not by the canvas, apart from the canvas itself (its latent and
its image). An optional tile ControlNet (``controlnet=``) sees each window's crop of the resized
input, as upscaling tools do.
"""
from __future__ import annotations

import math

import torch

from syncframe.apps.base import App, AppFacts, DecodeOptions, WindowWeights, WindowWeightsOptions, to_pil, window_weights_option
from syncframe.errors import ConfigError
from syncframe.metrics import window_border_seam
from syncframe.images import from_pil, image_size, load_image, resized
from syncframe.options import FilePath, Options, option
from syncframe.registry import register_app
from syncframe.resources import view_state_bytes
from syncframe.spaces.base import gather_views
from syncframe.spaces.panorama import PanoramaSpace, window_count
from syncframe.tiling import decode_tiled, encode_tiled

MAX_OUTPUT_PIXELS = 2**28  # 16384²: beyond this an output is refused before anything is allocated
CANVAS_BYTES_PER_PIXEL = 60  # the resized input, the tiled encode and decode sums, the output


class UpscaleOptions(DecodeOptions, WindowWeightsOptions):
    stride: int | None = option(None, "latents between windows (both axes); null = 3/4 of the window (a quarter "
                                      "overlap)", ge=1)
    decode_overlap: int = option(16, "latents of overlap between VAE encoding and decoding tiles", ge=0)
    weights: WindowWeights = window_weights_option("fading")


class UpscaleInputs(Options):
    image: FilePath | None = option(None, "the image to upscale (PNG, JPEG, ...)")
    scale: float = option(2.0, "how many times bigger, per side (the output is rounded to whole latents)", ge=1,
                          le=64)


@register_app("upscale", options=UpscaleOptions, inputs=UpscaleInputs, common=dict(sync="multidiffusion"),
              facts=AppFacts(main_image="upscaled.png", images=("upscaled.png", "input.png")))
class UpscaleApp(App):
    """A bigger, sharper image: resize, encode, renoise to strength, denoise in synchronized tiles."""

    layout_image_name = "upscaled.png"

    default_strength = 0.35

    def read_init(self):
        """``image=``, what the run starts from; the output's size is checked from its header first."""
        run, image = self.run, self.inputs.image
        if not image:
            raise ConfigError("app=upscale needs image=<file>: the image to upscale (e.g. image=photo.png scale=2)")
        if run.init is not None:
            raise ConfigError("app=upscale starts from image=; drop init=")
        if run.width is None or run.height is None:  # the output's size from the header, before decoding
            self.output_size(image_size(image, "image"))
        return load_image(image, "image")

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The output size ``image=`` of ``size`` makes at ``scale=`` (whole latents), checked."""
        unit, scale, window = self.spec.scale, self.inputs.scale, self.spec.window_px
        width, height = (round(side * scale / unit) * unit for side in size)
        shown = f"image={self.inputs.image!r} ({size[0]}x{size[1]}) at scale={scale:g} would be {width}x{height}"
        if width * height > MAX_OUTPUT_PIXELS:
            raise ConfigError(f"{shown}, above {MAX_OUTPUT_PIXELS} pixels; use a smaller scale")
        if min(width, height) < window:
            least = math.ceil(window / min(size))
            fix = f"use scale>={least} or a bigger image" if least <= 64 else "give a bigger image"
            raise ConfigError(f"{shown}, smaller than one window ({window} px) of this model; {fix}")
        return width, height

    def default_size(self):
        return self.output_size(self.init.size)

    def settle_options(self, size):
        return {"stride": max(1, self.window * 3 // 4)} if self.options.stride is None else {}

    def plan_size(self):
        run, stride, window = self.run, self.options.stride, self.window
        if run.width * run.height > MAX_OUTPUT_PIXELS:
            raise ConfigError(f"width={run.width} height={run.height} is above {MAX_OUTPUT_PIXELS} pixels; "
                              "use a smaller size")
        h, w = run.height // self.spec.scale, run.width // self.spec.scale
        n = window_count(h, w, window, stride)
        parts = {"the windows": n * (view_state_bytes(self.channels, window) + window**2 * 8),
                 "the canvas": run.width * run.height * CANVAS_BYTES_PER_PIXEL}
        return n, parts, f"{run.width}x{run.height} at app.stride={stride}"

    def build_space(self) -> PanoramaSpace:
        return PanoramaSpace(self.run.height, self.run.width, window=self.window, stride=self.options.stride,
                             channels=self.channels, vae_scale=self.spec.scale, weights=self.options.weights,
                             sigma=self.options.weights_sigma)

    def resized_input(self) -> torch.Tensor:
        return from_pil(resized(self.init, self.run.width, self.run.height))

    def init_latents(self, denoiser, generator):
        o = self.options
        return encode_tiled(self.resized_input(), denoiser.encode, tile=self.window, overlap=o.decode_overlap,
                            batch_size=o.decode_batch_size, scale=self.spec.scale, generator=generator,
                            progress=self.run.progress)

    def can_control(self) -> bool:
        return True  # a tile ControlNet sees each window's crop of the resized input

    def control_images(self) -> torch.Tensor:
        """Each window's crop of the resized input, ``[N, 3, 8w, 8w]`` in [0, 1]."""
        pixels = PanoramaSpace(self.run.height, self.run.width, window=self.spec.window_px,
                               stride=self.options.stride * self.spec.scale, channels=3, vae_scale=1)
        return (gather_views(self.resized_input(), pixels.index) + 1) / 2

    def finalize(self, views, denoiser):
        o = self.options
        canvas = self.base_space.unproject(views)
        with torch.no_grad():
            image = decode_tiled(canvas, denoiser.decode, tile=self.window, overlap=o.decode_overlap,
                                 batch_size=o.decode_batch_size, scale=self.spec.scale, progress=self.run.progress)
        scale = self.spec.scale
        windows = [(top * scale, left * scale) for top, left in self.base_space.windows]
        self.report = {"input_size": list(self.init.size), "output_size": [self.run.width, self.run.height],
                       "windows": self.base_space.num_views,
                       "window_border_seam": round(window_border_seam(image.clamp(-1, 1), windows, self.spec.window_px), 4)}
        return {"upscaled.png": to_pil(image), "input.png": to_pil(self.resized_input())}, canvas
