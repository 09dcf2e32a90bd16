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
from PIL import Image

from syncframe.apps.base import App, contact_sheet, to_pil
from syncframe.decode import decode_batched
from syncframe.errors import ConfigError
from syncframe.metrics import equirect_seam, pole_spread
from syncframe.registry import register_app
from syncframe.spaces.base import fill_nearest
from syncframe.spaces.equirect import EquirectSpace, blend_views, rig_from_rings
from syncframe.viewer import bundle, viewer_html

LATENT_VIEW = 64  # latents per view side (512 px)


def auto_latent_width(cameras, view_size: int = LATENT_VIEW) -> int:
    """Canonical latent width at which a texel spans the angle of one view pixel at the centre
    of the narrowest camera: finer and views read texels they cannot tell apart (holes), coarser
    and neighbouring view pixels read the same texel (blocks)."""
    width = 360.0 * view_size / min(c.fov for c in cameras)
    return int(math.ceil(width / 16) * 16)


@register_app("panorama360")
class Panorama360App(App):
    def build_space(self) -> EquirectSpace:
        cfg, o = self.cfg, self.cfg["app"]
        if cfg["width"] != 2 * cfg["height"] or cfg["height"] < 64:
            raise ConfigError(f"width={cfg['width']} height={cfg['height']}: an equirect panorama is 2:1 "
                              "and at least 128x64; use e.g. width=2048 height=1024")
        self.cameras = rig_from_rings(o["rings"])
        lw = o["latent_width"] or auto_latent_width(self.cameras)
        if not isinstance(lw, int) or lw < 16 or lw % 2:
            raise ConfigError(f"app.latent_width={lw} must be an even integer >= 16 (or null for automatic)")
        self.depth = load_equirect_depth(cfg["depth"]) if cfg.get("depth") else None
        if o["viewer"]:
            bundle()  # fail before sampling when the viewer is not built
        return EquirectSpace(lw // 2, lw, self.cameras, view_size=LATENT_VIEW, channels=self.channels)

    def control_images(self) -> torch.Tensor | None:
        """Per-view depth ``[N, 3, 512, 512]`` in [0, 1], read from the equirect depth image."""
        if self.depth is None:
            return None
        space = EquirectSpace(self.depth.shape[1], self.depth.shape[2], self.cameras,
                              view_size=LATENT_VIEW * 8, channels=1, mode="bilinear")
        return space.project(self.depth).expand(-1, 3, -1, -1).contiguous()

    def finalize(self, views, denoiser):
        o = self.cfg["app"]
        with torch.no_grad():
            rgb = decode_batched(views, denoiser.decode, int(o["decode_batch_size"])).clamp(-1, 1)
        equirect, covered = blend_views(rgb, self.cameras, self.cfg["height"], self.cfg["width"])
        equirect = fill_nearest(equirect, covered, wrap=True)  # distances wrap at 0°/360°
        self.report = {"seam": equirect_seam(equirect), "pole_spread": pole_spread(equirect)}
        images = {"equirect.png": to_pil(equirect), "views.png": contact_sheet(rgb, int(o["sheet_columns"]))}
        if o["viewer"]:
            images["viewer.html"] = viewer_html(images["equirect.png"], title=self.cfg["prompt"])
        return images, self.space.unproject_filled(views)


def load_equirect_depth(path: str) -> torch.Tensor:
    """A 2:1 depth image -> ``[1, H, W]`` in [0, 1] (the image's own min..max)."""
    try:
        image = Image.open(path)
        image.load()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"depth={path!r} is not a readable image ({exc}); give an equirect depth image") from exc
    w, h = image.size
    if abs(w - 2 * h) > 1:
        raise ConfigError(f"depth={path!r} is {w}x{h}; an equirect depth image is 2:1 (e.g. 2048x1024)")
    array = np.asarray(image.convert("F"), dtype=np.float32)
    lo, hi = float(array.min()), float(array.max())
    return torch.from_numpy((array - lo) / (hi - lo if hi > lo else 1.0))[None]
