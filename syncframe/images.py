"""Input images: read with clear errors, resized to a canvas, as tensors in [-1, 1]."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import ConfigError

RESIZE = ("fit", "crop", "stretch")
MAX_INPUT_PIXELS = 2**28  # decompression-bomb guard: 16384² is plenty for an input


def load_image(path: str, key: str) -> Image.Image:
    """An RGB image from ``path`` (given as ``key=``), or one ConfigError saying why not."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{key}={path!r} does not exist; give an image file (PNG, JPEG, ...)")
    try:
        with Image.open(file) as image:
            if image.width * image.height > MAX_INPUT_PIXELS:
                raise ConfigError(f"{key}={path!r} is {image.width}x{image.height}, above {MAX_INPUT_PIXELS} pixels; "
                                  "give a smaller image")
            return image.convert("RGB")
    except ConfigError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"{key}={path!r} is not a readable image ({exc}); give a PNG or JPEG file") from None


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
