"""``app=panorama360``: a full 360°x180° equirectangular panorama from perspective views.

Denoising runs on 64x64-latent views synchronized through an equirect *latent* map; the final
image is made in RGB: every view is decoded and the decoded views are unprojected into the
output equirect (each output pixel samples the views that see it, blended towards view
borders), since a VAE decode of the distorted equirect latent itself would not be an image.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from syncframe.apps.base import (App, AppFacts, DomainOptions, DecodeOptions, SheetOptions, ViewerOptions, WindowWeights,
                                 WindowWeightsOptions, contact_sheet, to_pil, window_weights_option)
from syncframe.tiling import decode_batched, encode_batched
from syncframe.errors import ConfigError
from syncframe.metrics import equirect_seam, pole_spread, view_border_seam
from syncframe.images import from_pil, load_image, read_image, resized
from typing import ClassVar

from syncframe.options import FilePath, Options, option
from syncframe.registry import register_app
from syncframe.resources import view_state_bytes
from syncframe.spaces.base import fill_nearest
from syncframe.spaces.equirect import EquirectSpace, blend_views, place_photo, rig_from_rings
from syncframe.viewers import viewer_html

BLEND_BYTES_PER_PIXEL = 100  # blend_views: directions, per-camera lookups, sums and the image


def auto_latent_width(cameras, view_size: int) -> int:
    """Canonical latent width at which a texel spans the angle of one view pixel at the centre
    of the narrowest camera: finer and views read texels they cannot tell apart (holes), coarser
    and neighbouring view pixels read the same texel (blocks)."""
    width = 360.0 * view_size / min(c.fov for c in cameras)
    return int(math.ceil(width / 16) * 16)


class Ring(Options):
    """``count`` cameras evenly spaced in yaw at one pitch."""

    pitch: float = option(..., "latitude the cameras look at, degrees", ge=-90, le=90)
    count: int = option(..., "cameras in the ring", ge=1)
    fov: float = option(..., "field of view, degrees", gt=0, lt=180)
    yaw_offset: float = option(0.0, "yaw of the first camera, degrees")


class Panorama360Options(DomainOptions, DecodeOptions, SheetOptions, ViewerOptions, WindowWeightsOptions):
    rings: list[Ring] = option([dict(pitch=0, count=8, fov=72), dict(pitch=45, count=4, fov=90, yaw_offset=22.5),
                                dict(pitch=-45, count=4, fov=90, yaw_offset=22.5), dict(pitch=90, count=1, fov=90),
                                dict(pitch=-90, count=1, fov=90)],
                               "the camera rig: rings of {pitch, count, fov[, yaw_offset]}", min_length=1)
    latent_width: int | None = option(None, "canonical latent map width (even); null = 360 * 64 / smallest fov",
                                      ge=16, le=16384, multiple_of=2)
    sheet_columns: int = option(6, "columns of the contact sheet of the decoded views", ge=1, le=64)
    weights: WindowWeights = window_weights_option("fading", "; uniform is StochSync's official fit")


class PhotoOptions(Options):
    """``image=<photo>`` sets ``path`` (its primary key): a perspective photo placed in the map and kept."""

    primary: ClassVar[str] = "path"
    path: FilePath | None = option(None, "a perspective photo to start from: placed in the equirect map where it "
                                         "looks (image.yaw, image.pitch, image.fov), kept there, the rest generated")
    yaw: float = option(0.0, "where the photo looks: degrees to the right of the map's centre", ge=-360, le=360)
    pitch: float = option(0.0, "where the photo looks: degrees up", ge=-90, le=90)
    fov: float = option(90.0, "the photo's horizontal field of view in degrees (its vertical one follows its aspect)",
                        gt=1, lt=180)


class Panorama360Inputs(Options):
    depth: FilePath | None = option(None, "equirect depth image (2:1, near = bright) for a depth ControlNet")
    image: PhotoOptions = option(PhotoOptions(), "a photo into a 360° panorama: image=photo.jpg image.yaw=0 "
                                                 "image.pitch=0 image.fov=90")


@register_app("panorama360", options=Panorama360Options, inputs=Panorama360Inputs, common=dict(sync="synctweedies"),
              facts=AppFacts(main_image="equirect.png", images=("equirect.png", "views.png"), paintable=True,
                             aspect=2.0, equirect=True, sync_defaults={
                                 "synctweedies": dict(cross_view="auto"),
                                 # StochSync's panorama settings; the seam mask of views with borders on
                                 # four sides is ours (docs/benchmarks.md)
                                 "stochsync": dict(warmup=2, ode_steps=25, seam_removal=2, seam_mask="both")}))
class Panorama360App(App):
    """A 360°x180° equirectangular panorama from perspective views (2048x1024 for SD)."""

    layout_image_name = "equirect.png"
    keep_frame = "the equirect map"

    def default_size(self):
        return 4 * self.spec.window_px, 2 * self.spec.window_px

    def settle_options(self, size):
        if self.options.latent_width is not None:
            return {}
        return {"latent_width": auto_latent_width(rig_from_rings(self.options.rings), self.window)}

    def plan_size(self):
        run, o = self.run, self.options
        if run.width != 2 * run.height or run.height < 64:
            raise ConfigError(f"width={run.width} height={run.height}: an equirect panorama is 2:1 "
                              "and at least 128x64; use e.g. width=2048 height=1024")
        n = sum(ring.count for ring in o.rings)
        view_pixels = self.spec.window_px ** 2
        parts = {"the views": n * (view_state_bytes(self.channels, self.window) + self.window**2 * 49),
                 "the decoded views": n * view_pixels * 3 * 4 * 3,
                 "the equirect image": run.width * run.height * BLEND_BYTES_PER_PIXEL}
        return n, parts, f"{n} cameras in app.rings, {run.width}x{run.height}"

    def build_space(self) -> EquirectSpace:
        o = self.options
        self.cameras = rig_from_rings(o.rings)
        self.depth = load_equirect_depth(self.inputs.depth) if self.inputs.depth else None
        return EquirectSpace(o.latent_width // 2, o.latent_width, self.cameras, view_size=self.window,
                             channels=self.channels, weights=o.weights, sigma=o.weights_sigma)

    def rgb_space(self) -> EquirectSpace:
        """The equirect image at the output size seen by the same cameras at the model's view size."""
        return self.pixel_space(self.run.height, self.run.width, 3, self.options.weights, self.options.weights_sigma)

    def pixel_space(self, height: int, width: int, channels: int, weights: str = "fading",
                    sigma: float = 0.1) -> EquirectSpace:
        """An equirect map of ``height`` x ``width`` pixels seen by the rig at the model's view size (bilinear)."""
        return EquirectSpace(height, width, self.cameras, view_size=self.spec.window_px, channels=channels,
                             mode="bilinear", weights=weights, sigma=sigma)

    def read_init(self):
        """``init=`` (a whole equirect map), or ``image=`` (a photo, placed once the size is settled)."""
        photo = self.inputs.image
        if photo.path is None:
            return super().read_init()
        if self.run.init is not None:
            raise ConfigError("image= places a photo in the map and init= gives a whole map: give one of them")
        if self.run.keep.path:
            raise ConfigError("image= keeps where the photo lands (keep.blur softens its edge): drop keep=")
        image = load_image(photo.path, "image")
        vertical = 2 * math.degrees(math.atan(math.tan(math.radians(photo.fov) / 2) * image.height / image.width))
        if vertical > 175:  # a pinhole's image plane stretches without bound towards 180°
            raise ConfigError(f"image={photo.path!r} is {image.width}x{image.height}: at image.fov={photo.fov:g}° across "
                              f"it spans {vertical:.0f}° up and down, more than a perspective photo can (175° at most); "
                              "lower image.fov")
        return image

    def placed(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The photo ``image=`` in an equirect map ``[3, height, width]`` and the pixels it covers."""
        photo = self.inputs.image
        return place_photo(from_pil(self.init).double(), photo.yaw, photo.pitch, photo.fov, height, width)

    def init_map(self) -> torch.Tensor:
        """What the run starts from at the output size, ``[3, H, W]`` in [-1, 1]: ``init=``, or the placed photo."""
        if self.inputs.image.path is None:
            return from_pil(resized(self.init, self.run.width, self.run.height))
        return self.placed(self.run.height, self.run.width)[0].float()

    def keeps(self) -> bool:
        return super().keeps() or self.inputs.image.path is not None

    def read_keep(self):
        if self.inputs.image.path is None:
            return super().read_keep()
        from syncframe.keep import latent_mask

        _, height, width = self.base_space.canonical_shape
        scale = self.spec.scale
        covered = self.placed(height * scale, width * scale)[1].float()
        return latent_mask(covered, scale, self.run.keep.blur, f"image={self.inputs.image.path!r}")

    def load_init(self, init: str):
        image = load_image(init, "init")
        if abs(image.width - 2 * image.height) > 1:
            raise ConfigError(f"init={init!r} is {image.width}x{image.height}; a 360° init is an equirect image, 2:1 "
                              "(e.g. 4096x2048)")
        return image

    def init_latents(self, denoiser, generator):
        """Every view rendered from the equirect ``init=`` (bilinear, at the model's view size),
        encoded, and the latent views unprojected into the canonical map."""
        views = self.rgb_space().project(self.init_map())
        latents = encode_batched(views, denoiser.encode, self.options.decode_batch_size, generator)
        return self.base_space.unproject(latents)

    def control_given(self) -> bool:
        return self.inputs.depth is not None

    def control_images(self) -> torch.Tensor | None:
        """Per-view depth ``[N, 3, 512, 512]`` in [0, 1], read from the equirect depth image."""
        if self.depth is None:
            return None
        space = self.pixel_space(self.depth.shape[1], self.depth.shape[2], 1)
        return space.project(self.depth).expand(-1, 3, -1, -1).contiguous()

    def finalize(self, views, denoiser):
        o = self.options
        with torch.no_grad():
            rgb = decode_batched(views, denoiser.decode, int(o.decode_batch_size), self.run.progress).clamp(-1, 1)
        equirect, covered = blend_views(rgb, self.cameras, self.run.height, self.run.width)
        equirect = fill_nearest(equirect, covered, wrap=True)  # distances wrap at 0°/360°
        self.report = {"seam": equirect_seam(equirect), "view_border_seam": view_border_seam(equirect, self.cameras),
                       "pole_spread": pole_spread(equirect)}
        images = {"equirect.png": to_pil(equirect), "views.png": contact_sheet(rgb, int(o.sheet_columns))}
        if o.viewer:
            images["viewer.html"] = viewer_html(images["equirect.png"], title=self.run.prompt)
        return images, self.base_space.unproject_filled(views)


def load_equirect_depth(path: str) -> torch.Tensor:
    """A 2:1 depth image -> ``[1, H, W]`` in [0, 1] (the image's own min..max)."""
    image = read_image(path, "depth", mode=None)
    w, h = image.size
    if abs(w - 2 * h) > 1:
        raise ConfigError(f"depth={path!r} is {w}x{h}; an equirect depth image is 2:1 (e.g. 2048x1024)")
    array = np.asarray(image.convert("F"), dtype=np.float32)
    lo, hi = float(array.min()), float(array.max())
    return torch.from_numpy((array - lo) / (hi - lo if hi > lo else 1.0))[None]
