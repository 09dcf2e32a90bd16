"""Regions by painting: the image editor's layers -> the label image ``regions=`` takes (black
background, one flat colour per region) and the prompts in the order the layout reads them.
Inputs the page receives (uploads, painted layouts) are kept under ``<outputs>/ui-inputs/`` by
content, so the command a run shows still finds them. No Gradio here.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from syncframe.errors import ConfigError

# The brush colours, one per region, and their names in the page.
PALETTE = {"red": (230, 25, 75), "green": (60, 180, 75), "blue": (0, 130, 200), "yellow": (255, 225, 25),
           "magenta": (240, 50, 230), "cyan": (70, 240, 240)}


def _rgba(layer) -> np.ndarray:
    array = np.asarray(layer.convert("RGBA") if isinstance(layer, Image.Image) else layer)
    if array.ndim == 2:
        array = np.stack([array] * 3 + [np.full_like(array, 255)], axis=-1)
    if array.shape[-1] == 3:
        array = np.concatenate([array, np.full(array.shape[:2] + (1,), 255, array.dtype)], axis=-1)
    return array.astype(np.int64)


def labels_from_layers(layers: list) -> np.ndarray:
    """Painted RGBA layers (later ones on top) -> ``[H, W, 3]`` uint8: each pixel painted at least
    half opaque takes the nearest palette colour (brush edges are soft), the rest stays black."""
    if not layers:
        raise ConfigError("paint at least one region on the layout canvas, or turn regions off")
    palette = np.array(list(PALETTE.values()), dtype=np.int64)
    out = None
    for layer in layers:
        rgba = _rgba(layer)
        if out is None:
            out = np.zeros(rgba.shape[:2] + (3,), dtype=np.uint8)
        if rgba.shape[:2] != out.shape[:2]:
            raise ConfigError("the painted layers differ in size; clear the canvas and paint again")
        painted = rgba[..., 3] >= 128
        distance = ((rgba[..., None, :3] - palette[None, None]) ** 2).sum(-1)
        out[painted] = palette[distance.argmin(-1)][painted].astype(np.uint8)
    return out


def region_prompts(labels: np.ndarray, prompts: dict[str, str]) -> list[str]:
    """The prompts of the colours painted, in the order ``regions=`` reads a label image (by
    colour code); a painted colour without a prompt is refused."""
    used = {tuple(int(c) for c in v) for v in np.unique(labels.reshape(-1, 3), axis=0)} - {(0, 0, 0)}
    if not used:
        raise ConfigError("the layout canvas has no painted region; paint one or turn regions off")
    ordered = sorted(used, key=lambda rgb: (rgb[0] << 16) | (rgb[1] << 8) | rgb[2])
    names = {rgb: name for name, rgb in PALETTE.items()}
    missing = [names[rgb] for rgb in ordered if not (prompts.get(names[rgb]) or "").strip()]
    if missing:
        raise ConfigError(f"the {', '.join(missing)} region{'s have' if len(missing) > 1 else ' has'} no prompt; "
                          "type one for every colour you painted")
    return [prompts[names[rgb]].strip() for rgb in ordered]


def keep(data: bytes, root: Path, name: str) -> Path:
    """Store ``data`` as ``<root>/ui-inputs/<hash>/<name>`` (once per content) and return the path."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = Path(root) / "ui-inputs" / digest
    path = folder / name
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{name}.partial"
        partial.write_bytes(data)
        partial.replace(path)
    return path


def keep_upload(upload: str | Path, root: Path) -> Path:
    """An uploaded file (Gradio's temporary copy) -> its kept copy under ``ui-inputs``."""
    upload = Path(upload)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in upload.name)[-80:] or "input"
    return keep(upload.read_bytes(), root, safe)


def keep_labels(labels: np.ndarray, root: Path) -> Path:
    """The label image as a PNG under ``ui-inputs`` (lossless: the colours are the regions)."""
    buffer = io.BytesIO()
    Image.fromarray(labels).save(buffer, format="PNG")
    return keep(buffer.getvalue(), root, "layout.png")

