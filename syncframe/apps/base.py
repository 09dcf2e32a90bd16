"""What every app is: a canonical space + conditioning + an output writer."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image

from syncframe.errors import ConfigError
from syncframe.options import Options, option
from syncframe.resources import check_run_size
from syncframe.spaces import CanonicalSpace
from syncframe.spaces.base import WINDOW_WEIGHTS


@dataclass(frozen=True)
class AppFacts:
    """What an app declares at registration (``register_app(..., facts=AppFacts(...))``), for everything
    outside it that asks: ``syncframe eval``, the page, ``SyncPipeline``, the config.

    ``main_image``: the file people look at (``SyncPipeline``'s image, what eval measures);
    ``images``: the image files it writes that the page shows, the result first; ``paintable``: the
    page may paint regions on its canvas, of ``aspect`` (width / height; the painting canvas before
    the size is known); ``equirect``: its main image is a 2:1 equirect map (eval's windows are
    perspective views); ``heldout``: a folder of renders from cameras no view used (eval measures
    those instead); ``sync_defaults``: per synchronizer, its published settings on this app, applied
    under the user's own (StochSync's per-app settings, SyncTweedies' cross-view attention)."""

    main_image: str | None = None
    images: tuple[str, ...] = ()
    paintable: bool = False
    aspect: float = 1.0
    equirect: bool = False
    heldout: str | None = None
    sync_defaults: dict = field(default_factory=dict)


def app_facts(name: str) -> AppFacts:
    """The facts ``app=<name>`` declared (a plugin that declared none: the defaults)."""
    from syncframe.registry import APPS

    return APPS.entry(name).facts or AppFacts()


WindowWeights = Literal[WINDOW_WEIGHTS]  # the spaces' kinds, named once (syncframe/spaces/base.py)


def window_weights_option(default: str, note: str = ""):
    """``app.weights``: how an app's overlapping views are averaged (its default differs per app)."""
    return option(default, "how overlapping views are averaged: uniform (MultiDiffusion's plain mean), fading (each "
                           "view counts less towards its border) or gaussian (Mixture of Diffusers' tile weights, "
                           "app.weights_sigma)" + note)


class WindowWeightsOptions(Options):
    weights_sigma: float = option(0.1, "app.weights=gaussian: the Gaussian's standard deviation as a fraction of the "
                                       "view's side (Mixture of Diffusers' variance 0.01: 0.1)", gt=0, le=10)


# Options several apps share, declared once; an app's schema inherits the ones it takes.
class DecodeOptions(Options):
    decode_batch_size: int = option(4, "views (or canvas tiles) per VAE call", ge=1, le=256)


class DomainOptions(Options):
    domain: Literal["latent", "rgb"] = option(
        "latent", "where views are synchronized: latent (the model's latents) or rgb (decoded, synced at pixel "
                  "resolution in the app's RGB space, encoded back; x0 / ε syncs only)")
    rgb_clamp: float = option(1.0, "app.domain=rgb: decoded views are clamped to [-c, c] (StochSync's official code: "
                                   "0.98, its [0.01, 0.99])", gt=0, le=1)


class SheetOptions(Options):
    sheet_columns: int = option(5, "columns of the contact sheets of the views", ge=1, le=64)


class ViewerOptions(Options):
    viewer: bool = option(True, "write viewer.html, an interactive viewer of the result that opens from disk")


class App:
    """Subclasses build their space and turn the final views into files.

    An app gets the run's :class:`~syncframe.plan.Plan` (its own options ``self.options``, its inputs
    ``self.inputs``, the common keys ``self.run``) and the model's spec. ``__init__`` reads and checks
    its inputs; :meth:`settle` says what it makes of the options left to it (pure); :meth:`build`,
    with the settled plan, estimates the run's size (:meth:`plan`: too big a run is refused) and
    builds the space, so bad sizes fail before any model is loaded.
    """

    default_strength = 0.8  # diffusers' img2img default
    takes_regions = True  # regions= needs a canonical pixel grid [C, H, W]; apps without one set False
    view_sized = False  # width and height are each view's size (mesh, splats), not the output's
    keep_frame = None  # what keep= masks, said in messages ("the panorama canvas"); None: the app takes no keep=
    makes_masked_latents = False  # whether masked_init_latents is built (an inpainting model's masked image)

    def __init__(self, plan, spec):
        self.use(plan)
        self.spec = spec
        self.channels, self.window = spec.channels, spec.window  # latents per view, from the model
        self.report: dict = {}  # app-specific measurements, written to run.json
        if self.has_regions and not self.takes_regions:
            raise ConfigError(f"regions= paints prompts onto a canvas of pixels (app=panorama, panorama360, mesh, "
                              f"upscale, anagram); app={self.name} has none: drop regions=")
        self.init = self.read_init()
        self.check_keep()
        self.keep_mask = None  # [1, H, W] at the canonical latent resolution, once built

    def use(self, plan) -> None:
        """Take ``plan``'s sections as this app's (again, once they are settled)."""
        self.plan, self.run, self.options, self.inputs = plan, plan.run, plan.app, plan.inputs
        self.name, self.has_regions = plan.names["app"], plan.names["regions"] != "none"

    def settle(self) -> dict:
        """What the options left to the app (``null``) become, pure: the size (:meth:`default_size`),
        ``strength`` with ``init=``, and the app's own (:meth:`settle_options`); ``{key: value}``."""
        run, settled = self.run, {}
        if run.width is None or run.height is None:
            for key, value in zip(("width", "height"), self.default_size()):
                if getattr(run, key) is None:
                    settled[key] = value
        if self.init is not None and run.strength is None:  # keep=: diffusers' inpainting default, from noise
            settled["strength"] = 1.0 if self.keeps() else self.default_strength
        return {**settled, **{f"app.{k}": v for k, v in self.settle_options({**self.sizes_of(settled)}).items()}}

    def recorded(self, settled: dict) -> dict:
        """How ``run.json`` names what :meth:`settle` settled: an app whose width and height are each
        view's calls them ``view_px``."""
        if not self.view_sized:
            return dict(settled)
        out = {k: v for k, v in settled.items() if k not in ("width", "height")}
        if "width" in settled or "height" in settled:
            out["view_px"] = settled.get("width", settled.get("height"))
        return out

    def sizes_of(self, settled: dict) -> dict:
        """The output's width and height once ``settled`` (from :meth:`settle`) applies."""
        return {key: settled.get(key, getattr(self.run, key)) for key in ("width", "height")}

    def settle_options(self, size: dict) -> dict:
        """The app's own options left to it and what they become (``size``: the settled width and
        height); nothing by default."""
        return {}

    def build(self, plan) -> None:
        """With the settled plan: the size check, the space, regions and the RGB domain."""
        self.use(plan)
        if getattr(self.options, "domain", "latent") == "rgb":  # before anything is built
            self.check_rgb_domain()
        started = time.perf_counter()
        estimate = self.plan_size()
        if estimate is not None:
            check_run_size(*estimate, self.run)
        self.space = self.build_space()
        self.base_space, self.layout = self.space, None
        if self.has_regions:
            self.apply_regions()
        if getattr(self.options, "domain", "latent") == "rgb":
            self.apply_rgb_domain()
        self.keep_mask = self.read_keep()
        self.build_s = time.perf_counter() - started  # input checks, geometry, rasterization

    def default_size(self) -> tuple[int, int]:
        """(width, height) in pixels when the config leaves them null: one view by default."""
        return self.spec.window_px, self.spec.window_px

    def sizes(self) -> dict:
        """What the run's sizes are, for ``run.json``: the output image's and each view's, in pixels."""
        return {"output_px": [self.run.width, self.run.height], "view_px": self.spec.window_px}

    def read_init(self):
        """The content to start from (``init=``, read and checked), or None."""
        if self.run.init is None:
            if self.run.strength is not None:
                raise ConfigError(f"strength={self.run.strength} needs a starting point: give init=<image> (or drop "
                                  "strength=)")
            return None
        return self.load_init(self.run.init)

    def check_keep(self) -> None:
        """``keep=`` names what of ``init=`` stays: it needs ``init=`` and an app with a canonical pixel grid."""
        if not self.run.keep.path:
            return
        if self.keep_frame is None:
            raise ConfigError(f"keep= masks a canonical pixel grid (app=panorama, panorama360, mesh); app={self.name} "
                              "has none: drop keep=")
        if self.init is None:
            raise ConfigError(f"keep={self.run.keep.path!r} says which part of init= stays, and there is no init=: give "
                              f"init=<image> ({self.keep_frame}), or drop keep=")

    def keeps(self) -> bool:
        """Whether the run keeps part of its start exactly (``keep=``)."""
        return bool(self.run.keep.path)

    def read_keep(self) -> torch.Tensor | None:
        """The keep mask ``[1, H, W]`` at the canonical latent resolution (``keep=``, read once the space
        is built), or None."""
        if not self.run.keep.path:
            return None
        from syncframe.keep import read_keep_mask

        _, height, width = self.base_space.canonical_shape
        return read_keep_mask(self.run.keep.path, height, width, self.keep_frame, self.run.keep.blur, self.spec.scale)

    def masked_init_latents(self, denoiser, generator: torch.Generator) -> torch.Tensor:
        """The canonical latent of ``init=`` with what is not kept set to 0 (mid-grey), as an inpainting
        model reads it (diffusers: ``image * (mask < 0.5)``); apps with ``makes_masked_latents``."""
        raise NotImplementedError

    def load_init(self, init: str):
        """Read ``init=`` (an image for most apps) and check it fits; the app's own kind of content."""
        raise ConfigError(f"app={self.name} does not take init=; drop it")

    def init_latents(self, denoiser, generator: torch.Generator) -> torch.Tensor:
        """The canonical latent of ``self.init`` (encoded with ``denoiser``), what the run starts from."""
        raise NotImplementedError

    def plan_size(self) -> tuple[int, dict[str, int], str] | None:
        """(views per step, {part of the run: bytes}, the sizes that set them), from the config
        alone and cheap; None skips the size check (plugins that do not say)."""
        return None

    def build_space(self) -> CanonicalSpace:
        raise NotImplementedError

    def prompts(self) -> tuple[list[str], list[int]]:
        """The distinct prompts and, per (base) view, the index of its prompt; one prompt by default."""
        return [self.run.prompt], [0] * self.base_space.num_views

    def rgb_space(self) -> CanonicalSpace:
        """The base space's cameras at pixel resolution with 3 channels (``app.domain=rgb``)."""
        raise NotImplementedError

    def check_rgb_domain(self) -> None:
        """``app.domain=rgb`` takes no latent-domain features (checked before the space is built; which
        synchronizers can go through a decoder, each decides for itself)."""
        if self.has_regions:
            raise ConfigError(f"regions= works in the latent domain: drop regions= or set app.domain=latent "
                              f"(app={self.name})")
        if self.init is not None:
            raise ConfigError(f"init= works in the latent domain: drop init= or set app.domain=latent (app={self.name})")

    def apply_rgb_domain(self) -> None:
        """``app.domain=rgb``: the loop's views are synchronized through :meth:`rgb_space`."""
        from syncframe.spaces.rgb_domain import RGBDomain

        self.space = RGBDomain(self.base_space, self.rgb_space(), int(self.options.decode_batch_size),
                               self.options.rgb_clamp)

    # -- regions (regions=): views per (base view, region) -------------------------------------
    layout_image_name = None  # the output file layout.png draws the regions on
    part_mask = None  # (name, height, width) -> the mask of a part of the input (meshes have parts)

    def apply_regions(self) -> None:
        from syncframe.regions import load_layout, region_masks
        from syncframe.spaces.regions import RegionSpace

        options = self.plan.regions
        self.layout = load_layout(options)
        _, height, width = self.base_space.canonical_shape
        self.masks = region_masks(self.layout, height, width, blur=options.blur / self.spec.scale,
                                  label=f"the {self.name} canvas", part_mask=self.part_mask)
        self.space = RegionSpace(self.base_space, self.masks)

    def view_conditioning(self) -> tuple[list[str], list[int]]:
        """The prompts of the views the loop runs (the regions' when a layout is given)."""
        prompts, index = self.prompts()
        if self.layout is None:
            return prompts, index
        from syncframe.regions import view_prompts

        return view_prompts(prompts, index, self.run.prompt, self.layout, self.space.region,
                            self.space.base_index.tolist())

    def with_regions(self, method):
        """``method`` with MultiDiffusion's region bootstrapping in front (``regions.bootstrap``), when the
        run has regions and the method runs per-view trajectories (a method that owns its state keeps
        it: noted); ``method`` itself otherwise."""
        bootstrap = self.plan.regions.bootstrap if self.layout is not None else 0
        if not bootstrap:
            return method
        from syncframe.methods import Synchronizer
        from syncframe.spaces.regions import Bootstrapped

        if not isinstance(method, Synchronizer):
            from syncframe.messages import note

            note(f"regions.bootstrap acts on per-view trajectories; sync={self.plan.names['sync']} owns its state, "
                 "so it was not applied")
            return method
        return Bootstrapped(method, self.run.seed, bootstrap, self.spec.window_px)

    def view_control(self) -> torch.Tensor | None:
        control = self.control_images()
        return control if control is None or self.layout is None else control[self.space.base_index]

    def finish(self, views: torch.Tensor, denoiser) -> tuple[dict, torch.Tensor]:
        """The final views (of the regions, when a layout is given, mixed by their masks) -> files."""
        if self.layout is None:
            return self.finalize(views, denoiser)
        from syncframe.regions import layout_image

        base_views = self.space.to_base(views)
        images, canonical = self.finalize(base_views, denoiser)
        images["layout.png"] = layout_image(images[self.layout_image_name], self.masks, self.layout.colours)
        return images, canonical

    def finalize(self, views: torch.Tensor, denoiser) -> tuple[dict[str, Image.Image], torch.Tensor]:
        """Final views of ``self.base_space`` (a layout's region views already mixed) -> ({file name:
        image, text or bytes}, canonical tensor); may set ``self.report``."""
        raise NotImplementedError

    def control_given(self) -> bool:
        """Whether the user gave a control input (e.g. ``depth=``), which needs ``controlnet=``."""
        return False

    def can_control(self) -> bool:
        """Whether this run has ControlNet images to give (``controlnet=`` needs them)."""
        return self.control_given()

    def control_images(self) -> torch.Tensor | None:
        """Per-view ControlNet conditioning ``[N, 3, 8h, 8w]`` in [0, 1], or None."""
        return None


def contact_sheet(images: torch.Tensor, columns: int = 6, tile: int = 256, background: float = -1.0,
                  labels: list[str] | None = None) -> Image.Image:
    """Views ``[N, 3, H, W]`` in [-1, 1] -> one grid image of ``tile``-px thumbnails; cells no view
    fills are ``background`` (-1 black .. 1 white), and ``labels`` (one per view) caption each cell."""
    from PIL import ImageDraw

    thumbs = torch.nn.functional.interpolate(images.float(), size=tile, mode="bilinear", antialias=True)
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    sheet = torch.full((3, rows * tile, columns * tile), float(background))
    for i, thumb in enumerate(thumbs):
        r, c = divmod(i, columns)
        sheet[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = thumb
    picture = to_pil(sheet)
    if labels:
        draw = ImageDraw.Draw(picture)
        for i, label in enumerate(labels):
            r, c = divmod(i, columns)
            while len(label) > 1 and draw.textlength(label) > tile - 12:  # stays inside its own cell
                label = label[:-2] + "…" if not label.endswith("…") else label[:-2] + "…"
            box = draw.textbbox((c * tile + 6, r * tile + 5), label)
            draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(255, 255, 255))
            draw.text((c * tile + 6, r * tile + 5), label, fill=(0, 0, 0))
    return picture


def to_pil(image: torch.Tensor) -> Image.Image:
    """``[3, H, W]`` in [-1, 1] -> 8-bit RGB."""
    array = ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(np.ascontiguousarray(array.permute(1, 2, 0).cpu().numpy()))
