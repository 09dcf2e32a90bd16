"""``app=panorama``: a wide (optionally looping) panorama from 512x512 windows."""
from __future__ import annotations

from typing import ClassVar, Literal

import torch

from syncframe.apps.base import App, AppFacts, DecodeOptions, WindowWeights, WindowWeightsOptions, to_pil, window_weights_option
from syncframe.images import from_pil, load_image, resized
from syncframe.metrics import keep_border_seam
from syncframe.tiling import decode_tiled, encode_tiled
from syncframe.errors import ConfigError
from syncframe.options import FilePath, Options, option
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


class CanvasPhoto(Options):
    """``image=<photo>`` sets ``path`` (its primary key): a photo placed on the wide canvas and kept."""

    primary: ClassVar[str] = "path"
    path: FilePath | None = option(None, "a photo to extend: placed on the canvas at image.x, image.y (its own size), "
                                         "kept there, the rest of the canvas generated (outpainting)")
    x: int | None = option(None, "the photo's left edge in canvas pixels; null = centred", ge=0)
    y: int | None = option(None, "the photo's top edge in canvas pixels; null = centred", ge=0)


class PanoramaInputs(Options):
    image: CanvasPhoto = option(CanvasPhoto(), "a photo extended sideways: image=photo.png image.x=0 (null = centred)")


@register_app("panorama", options=PanoramaOptions, inputs=PanoramaInputs, common=dict(sync="multidiffusion"),
              facts=AppFacts(
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
    keep_frame = "the panorama canvas"
    makes_masked_latents = True

    def default_size(self):
        if self.inputs.image.path is not None:  # room to extend it: six windows wide, at least its own size
            scale, window = self.spec.scale, self.spec.window_px
            return (max(6 * window, -(-self.init.width // scale) * scale),
                    max(window, -(-self.init.height // scale) * scale))
        if self.init is not None:  # the image's own size, in whole latents, at least one window
            scale, least = self.spec.scale, self.spec.window_px
            return (max(least, self.init.width // scale * scale), max(least, self.init.height // scale * scale))
        return 6 * self.spec.window_px, self.spec.window_px

    def load_init(self, init: str):
        return load_image(init, "init")

    def read_init(self):
        """``init=`` (a whole canvas), or ``image=`` (a photo placed on it once the size is settled)."""
        photo = self.inputs.image
        if photo.path is None:
            return super().read_init()
        if self.run.init is not None:
            raise ConfigError("image= places a photo on the canvas and init= gives a whole canvas: give one of them")
        if self.run.keep.path:
            raise ConfigError("image= keeps where the photo lies (keep.blur softens its edge): drop keep=")
        return load_image(photo.path, "image")

    def keeps(self) -> bool:
        return super().keeps() or self.inputs.image.path is not None

    def placement(self) -> tuple[int, int]:
        """(left, top) of the photo ``image=`` on the canvas, checked to lie inside it."""
        photo, (w, h), (width, height) = self.inputs.image, self.init.size, (self.run.width, self.run.height)
        if w > width or h > height:
            raise ConfigError(f"image={photo.path!r} is {w}x{h}, larger than the {width}x{height} canvas: give a larger "
                              "width= / height=, or a smaller photo")
        left = (width - w) // 2 if photo.x is None else photo.x
        top = (height - h) // 2 if photo.y is None else photo.y
        if left + w > width or top + h > height:
            raise ConfigError(f"image.x={left} image.y={top} puts the {w}x{h} photo past the {width}x{height} canvas's "
                              f"edge: use image.x<={width - w} image.y<={height - h}")
        return left, top

    def init_image(self) -> torch.Tensor:
        """``init=`` at the canvas size, or the canvas with ``image=`` on it (the rest its mean colour),
        ``[3, H, W]`` in [-1, 1]."""
        if self.inputs.image.path is None:
            return from_pil(resized(self.init, self.run.width, self.run.height, self.options.resize))
        photo, (left, top) = from_pil(self.init), self.placement()
        canvas = photo.mean(dim=(1, 2))[:, None, None].repeat(1, self.run.height, self.run.width)
        canvas[:, top:top + photo.shape[1], left:left + photo.shape[2]] = photo
        return canvas

    def read_keep(self):
        if self.inputs.image.path is None:
            return super().read_keep()
        from syncframe.keep import latent_mask

        (left, top), (w, h) = self.placement(), self.init.size
        covered = torch.zeros(self.run.height, self.run.width)
        covered[top:top + h, left:left + w] = 1
        return latent_mask(covered, self.spec.scale, self.run.keep.blur, f"image={self.inputs.image.path!r}")

    def init_latents(self, denoiser, generator, image: torch.Tensor | None = None):
        o = self.options
        image = self.init_image() if image is None else image
        return encode_tiled(image, denoiser.encode, tile=self.window, overlap=o.decode_overlap,
                            batch_size=o.decode_batch_size, scale=self.spec.scale, generator=generator,
                            progress=self.run.progress)

    def masked_init_latents(self, denoiser, generator):
        scale = self.spec.scale
        kept = (self.keep_mask[0] >= 0.5).repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        return self.init_latents(denoiser, generator, self.init_image() * kept)

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
        if self.keep_mask is not None:  # run.json: how visible the kept region's border is (≈1: not at all)
            kept = self.keep_mask[0].repeat_interleave(self.spec.scale, 0).repeat_interleave(self.spec.scale, 1) >= 0.5
            self.report = {"keep_border_seam": round(keep_border_seam(image.clamp(-1, 1), kept), 4),
                           "kept_fraction": round(float(self.keep_mask.mean()), 4)}
        return {"panorama.png": to_pil(image)}, canvas
