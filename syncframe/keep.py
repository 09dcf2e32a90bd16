"""Keeping part of ``init=`` exactly (``keep=<mask>``): outpainting, inpainting, a partial texture completed.

The mask lives in the canonical space's own frame (the panorama canvas, the equirect map, the UV
texture): white where ``init=`` stays, black where the run generates. After every step of the
joint loop the kept region of every view is replaced by the content noised to the level the
views are now at (the blended or "legacy inpaint" scheme of diffusers' inpainting pipelines with
a plain 4-channel UNet): ``x ← m x_known + (1 − m) x`` with ``x_known = a P(z_known) + s ε``,
``ε`` the run's starting noise, and the clean content after the last step. ``keep.resample`` adds RePaint's resampling (Lugmayr et al.
2022, jump length 1): each step but the last is taken again from its result noised back to the
step's level, so the generated region is denoised again knowing the kept one.

Shapes: the canonical content ``known: [C, H, W]``, the mask ``mask: [1, H, W]`` in [0, 1]; views
``x: [N, C, h, w]`` and their masks ``[N, 1, h, w]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from PIL import Image, ImageFilter

from .errors import ConfigError
from .images import read_image
from .options import Options, PathMark, option
from .samplers import Step

# A mask value this close to 0 (1) counts as nothing (everything) kept: 8-bit images step by 1/255.
EPSILON = 0.5 / 255


class KeepOptions(Options):
    """``keep=<mask image>`` sets ``path`` (its primary key): the part of ``init=`` a run keeps exactly."""

    primary: ClassVar[str] = "path"
    path: Annotated[str, PathMark("path to a mask image")] | None = option(
        None, "a mask in the canonical's own frame (the panorama canvas, the equirect map, the UV texture): white "
              "where init= is kept as it is, black where the run generates (outpainting, inpainting)")
    blur: float = option(0.0, "soften the mask's edge: a Gaussian of this many pixels (its standard deviation)",
                         ge=0, le=256)
    scheme: Literal["auto", "blend", "model", "both"] = option(
        "auto", "how the mask is honoured: blend = the kept region replaced by the content noised to each step's "
                "level (any model); model = an inpainting model's own mask and masked-image channels (SD 2 / SDXL "
                "inpainting); both = the model's channels and the blend (kept exactly); auto = both for an inpainting "
                "model, blend otherwise")
    resample: int = option(0, "RePaint's resampling: each step but the last taken again this many times from its "
                              "result noised back to the step's level, so the generated region agrees with the kept "
                              "one (each time one more model call per view and step)", ge=0, le=50)


@dataclass
class Keep:
    """What a run keeps: the canonical content ``known`` and the canonical ``mask`` (1 = kept)."""

    known: torch.Tensor
    mask: torch.Tensor
    resample: int = 0

    def bind(self, space, noise: torch.Tensor) -> "KeptViews":
        """The views' side of it in ``space``, with the views' starting noise ``noise: [N, C, h, w]``."""
        channels = self.known.shape[0]
        with torch.no_grad():
            masks = space.project(self.mask.expand(channels, -1, -1).to(noise))[:, :1].clamp(0, 1)
            content = space.project(self.known.to(noise))
        return KeptViews(content, masks, noise, self.resample)


@dataclass
class KeptViews:
    """The kept content as the views see it ``content: [N, C, h, w]``, their masks ``masks: [N, 1, h, w]``
    and the starting noise the kept region is noised with."""

    content: torch.Tensor
    masks: torch.Tensor
    noise: torch.Tensor
    resample: int = 0

    def blend(self, x: torch.Tensor, step: Step, last: bool) -> torch.Tensor:
        """The views ``x`` after ``step`` (at the level ``a_prev``, ``s_prev``) with the kept region
        replaced by the content at that level; the clean content after the ``last`` step."""
        known = self.content if last else step.a_prev * self.content + step.s_prev * self.noise
        return torch.where(self.masks >= 1, known, self.masks * known + (1 - self.masks) * x)

    @staticmethod
    def renoise(x: torch.Tensor, step: Step, noise: torch.Tensor) -> torch.Tensor:
        """The views ``x`` at ``step``'s end level (``a_prev``, ``s_prev``) noised forward to its start
        (``a``, ``s``) with fresh unit ``noise``: x_t = (a / a_prev) x + sqrt(s² − (a s_prev / a_prev)²) ε,
        the forward process's one step for any (a, s) path (VP: sqrt(1 − ᾱ_t / ᾱ_prev))."""
        ratio = step.a / step.a_prev
        return ratio * x + max(step.s**2 - (ratio * step.s_prev) ** 2, 0.0) ** 0.5 * noise


def read_keep_mask(path: str, height: int, width: int, frame: str, blur_px: float, scale: int) -> torch.Tensor:
    """The mask image ``keep=`` as ``[1, height, width]`` in [0, 1] at the canonical latent resolution:
    its luminance stretched over ``frame`` (the canonical's pixel frame, ``scale`` pixels per latent),
    then :func:`latent_mask`. An image of another aspect is refused in one line."""
    image = read_image(path, "keep", mode="L")
    px_w, px_h = width * scale, height * scale
    if abs(image.width * px_h - image.height * px_w) > max(px_w, px_h, image.width, image.height):
        raise ConfigError(f"keep={path!r} is {image.width}x{image.height}, and {frame} is {px_w}x{px_h}: give a mask "
                          f"of the same aspect ({aspect(px_w, px_h)}), white where init= is kept, black where the run "
                          "generates")
    pixels = np.asarray(image.resize((px_w, px_h), Image.BILINEAR), dtype=np.float32) / 255
    return latent_mask(torch.from_numpy(pixels), scale, blur_px, f"keep={path!r}")


def latent_mask(pixels: torch.Tensor, scale: int, blur_px: float, label: str) -> torch.Tensor:
    """A keep mask ``pixels: [H·scale, W·scale]`` in [0, 1] -> ``[1, H, W]``: softened by a Gaussian of
    ``blur_px`` pixels, then averaged over each latent's pixels. One that keeps nothing or everything
    (``label`` names it) is refused in one line."""
    if blur_px > 0:
        image = Image.fromarray(np.round(pixels.numpy() * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur_px))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)
    height, width = pixels.shape[0] // scale, pixels.shape[1] // scale
    mask = pixels.reshape(height, scale, width, scale).mean(dim=(1, 3))[None]
    if float(mask.max()) <= EPSILON:
        raise ConfigError(f"{label} is black everywhere: nothing of init= is kept, which is plain generation from "
                          "init= (drop keep=), or paint white where init= should stay")
    if float(mask.min()) >= 1 - EPSILON:
        raise ConfigError(f"{label} is white everywhere: nothing is left to generate; to keep init= as it is use "
                          "strength=0 and drop keep=, or paint black where the run should generate")
    return mask


def aspect(width: int, height: int) -> str:
    """``2:1``, ``1:1``, ``1.78:1``: how a frame's aspect is said."""
    ratio = width / height
    return f"{round(ratio)}:1" if abs(ratio - round(ratio)) < 1e-6 else f"{ratio:.2f}:1"
