"""Input images: read with clear errors, resized to a canvas, as tensors in [-1, 1]."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import ConfigError

RESIZE = ("fit", "crop", "stretch")
MAX_INPUT_PIXELS = 2**28  # decompression-bomb guard: 16384² is plenty for an input
MAX_LAYOUT_PIXELS = 2**25  # label images and masks: a layout needs no more pixels than the output


def image_size(path: str, key: str, max_pixels: int = MAX_INPUT_PIXELS, hint: str = "give a smaller image"
               ) -> tuple[int, int]:
    """(width, height) of the image at ``path`` from its header alone, checked against ``max_pixels``
    before anything is decoded; one ConfigError for a missing, unreadable or too big file."""
    with _opened(path, key, max_pixels, hint) as image:
        return image.size


def read_image(path: str, key: str, mode: str | None = "RGB", max_pixels: int = MAX_INPUT_PIXELS,
               hint: str = "give a smaller image") -> Image.Image:
    """The image at ``path`` (given as ``key=``), its size checked from the header before it is
    decoded, converted to ``mode`` (None: as stored); or one ConfigError saying why not."""
    with _opened(path, key, max_pixels, hint) as image:
        try:
            image.load()
            return image.convert(mode) if mode else image.copy()
        except (OSError, ValueError, SyntaxError) as exc:
            raise ConfigError(f"{key}={path!r} is not a readable image ({exc}); give a PNG or JPEG file") from None


@contextmanager
def _opened(path: str, key: str, max_pixels: int, hint: str):
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{key}={path!r} does not exist; give an image file (PNG, JPEG, ...)")
    # PIL's own decompression-bomb guard warns, or raises without telling the size; ours reads
    # the size from the header and says it in the run's words.
    previous = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(file)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ConfigError(f"{key}={path!r} is not a readable image ({exc}); give a PNG or JPEG file") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    with image:
        if image.width * image.height > max_pixels:
            raise ConfigError(f"{key}={path!r} is {image.width}x{image.height}, above {max_pixels} pixels; {hint}")
        yield image


def load_image(path: str, key: str) -> Image.Image:
    """An RGB image from ``path`` (given as ``key=``), or one ConfigError saying why not."""
    return read_image(path, key)


def resized(image: Image.Image, width: int, height: int, mode: str = "stretch") -> Image.Image:
    """``image`` at ``width`` x ``height`` (Lanczos): ``stretch`` to it; ``crop``: scaled to cover
    it, the centre kept; ``fit``: scaled to fit inside it, the rest filled with the image's edge
    pixels (no foreign colour for the model to keep)."""
    if image.size == (width, height):
        return image
    if mode == "stretch":
        return image.resize((width, height), Image.LANCZOS)
    scale = (max if mode == "crop" else min)(width / image.width, height / image.height)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    scaled = np.asarray(image.resize((w, h), Image.LANCZOS))
    if mode == "crop":
        top, left = (h - height) // 2, (w - width) // 2
        return Image.fromarray(scaled[top:top + height, left:left + width])
    top, left = (height - h) // 2, (width - w) // 2
    padded = np.pad(scaled, ((top, height - h - top), (left, width - w - left), (0, 0)), mode="edge")
    return Image.fromarray(padded)


def from_pil(image: Image.Image) -> torch.Tensor:
    """8-bit RGB -> ``[3, H, W]`` in [-1, 1]."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 127.5 - 1
