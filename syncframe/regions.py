"""Prompts per region (MultiDiffusion's region-based generation, SyncDiffusion's layout application).

A view is a (window or transform, prompt, per-pixel weight) triple. Given region masks on the
canonical grid (region 0 is the background: the main ``prompt=``, weight 1 − Σ other masks),
:class:`RegionSpace` makes one view of every (base view, region) pair whose mask is non-empty in
that view, with the region's prompt, weighted per pixel by its mask; the canonical average then
mixes the regions by their masks. It wraps any space whose canonical tensor is a pixel grid
``[C, H, W]`` (the panorama canvas, the equirect map, the UV texture).

Layouts: a label image (black or index 0 = background, every other colour or index a region, in
increasing order; prompts from ``regions.prompts``) or a YAML file::

    background: a sunny meadow          # optional; default prompt=
    regions:
      - {prompt: a red barn, box: [0.1, 0.3, 0.4, 1.0]}     # x0, y0, x1, y1 in canvas fractions
      - {prompt: a lake, mask: lake.png}                     # grey levels are soft weights
      - {prompt: polished brass, part: metal}                # app=mesh: a part (an OBJ material, a glTF mesh)

Masks must have the canvas's aspect ratio (within 1%); any size is resized to the canonical grid
(nearest for labels, area-averaged for masks). Another aspect is refused rather than stretched:
a stretched layout would put regions where the user did not draw them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import PlainValidator, model_validator

from .errors import ConfigError
from .images import MAX_LAYOUT_PIXELS, read_image
from .options import FilePath, Options, Text, option, read_yaml
from .registry import register_regions

LAYOUT_HINT = "a layout needs no more pixels than the output: give a smaller image"
LABEL_SUFFIXES = (".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _mask_array(value):
    if not isinstance(value, np.ndarray) or value.ndim != 2:
        raise ValueError("expected a path to a mask image (or, from Python, a 2-D array)")
    return value


# The Python API's array masks (validated by api_regions); a file path everywhere else.
MaskArray = Annotated[Any, PlainValidator(_mask_array)]


class RegionItem(Options):
    prompt: str = option(..., "the region's prompt")
    box: list[float] | None = option(None, "[x0, y0, x1, y1] in canvas fractions", min_length=4, max_length=4)
    mask: FilePath | MaskArray | None = option(None, "a mask image (grey levels: soft weights) at the canvas's "
                                                     "aspect (from Python also a 2-D array)")
    part: str | None = option(None, "app=mesh: the faces of one part of the mesh file (an OBJ material, a glTF mesh)")


class LayoutOptions(Options):
    file: FilePath | None = option(None, "the layout: a label image or a YAML file (set by regions=<file>)")
    regions: list[RegionItem] | None = option(None, "the regions, in place of a file (Python API, or a YAML list)")
    prompts: list[str] | None = option(None, "a label image's prompts, one per colour in increasing order (black is "
                                             "the background)")
    background: Text | None = option(None, "the background's prompt; null = prompt=")
    blur: float = option(0.0, "soften the masks: Gaussian sigma in output pixels", ge=0, le=512)
    bootstrap: float = option(0.4, "MultiDiffusion's bootstrapping: for this fraction of the steps each region's "
                                   "views see a random constant colour around the region (0 = off; 0.4 = its 20 of "
                                   "50 steps)", ge=0, le=1)


    @model_validator(mode="after")
    def _something_to_draw(self):
        if (self.file is None) == (self.regions is None):
            raise ValueError("a layout is a file (regions=<label image | layout.yaml>) or a list of regions "
                             "(regions.regions / the Python API's regions=[...]), one of the two")
        return self


class NoRegions(Options):
    pass


register_regions("none", options=NoRegions, summary="one prompt for the whole canvas")(None)
register_regions("layout", options=LayoutOptions, summary="prompts per region: regions=<label image | layout.yaml>")(
    None)


@dataclass(frozen=True)
class PartRef:
    """A region drawn by a part of a mesh (its faces), resolved on the UV grid by the mesh app."""

    name: str


@dataclass
class Layout:
    prompts: list[str]  # region 1.. (region 0 is the background)
    background: str | None
    masks: list[np.ndarray | PartRef]  # [H, W] float in [0, 1] (or a box, or a part), one per region
    colours: list[tuple[int, int, int]]  # for layout.png


def load_layout(options, key: str = "regions") -> Layout:
    """A layout from ``regions=<file>`` (label image or YAML) or the Python API's list of regions
    (``options``: the regions section)."""
    file, listed, background = options.file, options.regions, options.background
    if listed is not None:
        return layout_from_list([item.model_dump() for item in listed], Path("."), background)
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"{key}={file!r} does not exist; give a label image or a YAML layout (see docs/design.md)")
    if path.suffix.lower() in (".yaml", ".yml"):
        data = read_yaml(path, f"{key}={file}", "a YAML layout (see docs/design.md)")
        if not isinstance(data, dict) or not isinstance(data.get("regions"), list):
            raise ConfigError(f"{key}={file!r}: a YAML layout is a mapping with a list under regions: "
                              "(each region a prompt and a box or a mask)")
        return layout_from_list(data["regions"], path.parent, data.get("background", background))
    if path.suffix.lower() in LABEL_SUFFIXES:
        return layout_from_labels(path, options.prompts or [], background)
    raise ConfigError(f"{key}={file!r}: {path.suffix or 'no suffix'} is neither a label image nor a YAML layout")


def layout_from_labels(path: Path, prompts: list[str], background) -> Layout:
    image = read_image(str(path), "regions", mode=None, max_pixels=MAX_LAYOUT_PIXELS, hint=LAYOUT_HINT)
    labels = np.asarray(image if image.mode in ("L", "P", "I") else image.convert("RGB"))
    if labels.ndim == 3:  # one integer per colour, in the order of (r, g, b): unique on a flat array is fast
        keys = (labels[..., 0].astype(np.int64) << 16) | (labels[..., 1].astype(np.int64) << 8) | labels[..., 2]
        codes, inverse = np.unique(keys, return_inverse=True)  # sorted: black first
        values = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=1)
    else:
        values, inverse = np.unique(labels.reshape(-1), return_inverse=True)  # index 0 first
        values = values[:, None]
    inverse = inverse.reshape(labels.shape[:2])
    region_values = [i for i in range(len(values)) if values[i].any()]  # every colour but black
    if len(region_values) > len(prompts):
        raise ConfigError(f"regions={str(path)!r} has {len(region_values)} region colours but regions.prompts gives "
                          f"{len(prompts)} prompts; give one prompt per colour (black is the background)")
    if not region_values:
        raise ConfigError(f"regions={str(path)!r} has no region (every pixel is the background colour, black)")
    masks = [(inverse == i).astype(np.float32) for i in region_values]
    colours = [tuple(int(c) for c in np.resize(values[i], 3)) for i in region_values]
    return Layout(list(prompts[:len(region_values)]), background, masks, colours)


def layout_from_list(regions: list, folder: Path, background) -> Layout:
    if not regions:
        raise ConfigError("the layout has no regions; give at least one {prompt, box or mask}")
    prompts, masks = [], []
    for i, region in enumerate(regions):
        if not isinstance(region, dict) or not isinstance(region.get("prompt"), str):
            raise ConfigError(f"region {i} of the layout needs a prompt (and a box or a mask): got {region!r}")
        given = [key for key in ("box", "mask", "part") if region.get(key) is not None]
        if len(given) != 1:
            raise ConfigError(f"region {i} ({region['prompt']!r}) needs exactly one of box: [x0, y0, x1, y1] (canvas "
                              "fractions), mask: <image> or part: <mesh part name>")
        prompts.append(region["prompt"])
        if given == ["part"]:
            masks.append(PartRef(str(region["part"])))
        else:
            masks.append(box_mask(region["box"], i) if given == ["box"] else mask_of(region["mask"], folder, i))
    palette = [(230, 80, 60), (60, 160, 230), (240, 200, 40), (120, 200, 90), (200, 90, 220), (250, 140, 30)]
    return Layout(prompts, background, masks, [palette[i % len(palette)] for i in range(len(prompts))])


def box_mask(box, i: int) -> np.ndarray:
    """A box in canvas fractions, as a mask at a resolution fine enough for any canvas (1024 per side)."""
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise ConfigError(f"region {i}: box={box!r} must be [x0, y0, x1, y1] in canvas fractions")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ConfigError(f"region {i}: box={list(box)} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    return np.array([[x0, y0, x1, y1]], dtype=np.float32)  # resolved on the canonical grid (rasterize_box)


def mask_of(mask, folder: Path, i: int) -> np.ndarray:
    if isinstance(mask, np.ndarray):
        array = mask.astype(np.float32)
        return array / 255.0 if array.max() > 1 else array
    path = Path(mask) if Path(mask).is_absolute() else folder / mask
    image = read_image(str(path), f"region {i}: mask", mode="L", max_pixels=MAX_LAYOUT_PIXELS, hint=LAYOUT_HINT)
    return np.asarray(image, dtype=np.float32) / 255.0


def blurred(masks: torch.Tensor, sigma: float) -> torch.Tensor:
    """``masks [R, H, W]`` each blurred by a Gaussian of ``sigma`` grid cells (edges extended)."""
    from scipy.ndimage import gaussian_filter

    out = gaussian_filter(masks.numpy(), sigma=(0, sigma, sigma), mode="nearest", truncate=3.0)
    return torch.from_numpy(out).clamp(0, 1)


def region_masks(layout: Layout, height: int, width: int, blur: float = 0.0, label: str = "the canvas",
                 part_mask=None) -> torch.Tensor:
    """``[R + 1, height, width]`` weights on the canonical grid: the background first (1 − the
    others, clamped), then each region's mask resized (and blurred by ``blur`` grid cells).
    ``part_mask(name, height, width)`` draws a mesh part's region (None: the space has no parts)."""
    out = []
    for i, mask in enumerate(layout.masks):
        if isinstance(mask, PartRef):
            if part_mask is None:
                raise ConfigError(f"region {i} ({layout.prompts[i]!r}) names part: {mask.name}, but only app=mesh has "
                                  "parts; draw it with a box or a mask")
            out.append(part_mask(mask.name, height, width))
            continue
        if mask.shape == (1, 4):  # a box
            x0, y0, x1, y1 = mask[0]
            ys, xs = (np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width
            grid = ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
            out.append(torch.from_numpy(grid.astype(np.float32)))
            continue
        h, w = mask.shape
        if abs(w / h - width / height) > 0.01 * width / height:
            raise ConfigError(f"the mask of region {i} ({layout.prompts[i]!r}) is {w}x{h}, not the aspect of {label} "
                              f"({width}:{height} on its grid); draw it at that aspect (it is not stretched)")
        tensor = torch.from_numpy(np.ascontiguousarray(mask))[None, None]
        hard = set(np.unique(mask).tolist()) <= {0.0, 1.0}
        out.append(F.interpolate(tensor, size=(height, width), mode="nearest" if hard else "area")[0, 0])
    masks = torch.stack(out)
    if blur > 0:
        masks = blurred(masks, blur)
    for i, m in enumerate(masks):
        if m.max() <= 1e-3:
            raise ConfigError(f"region {i} ({layout.prompts[i]!r}) is empty on {label}; draw it bigger or drop it")
    background = (1 - masks.sum(0)).clamp_min(0)
    return torch.cat([background[None], masks])


def view_prompts(base_prompts: list[str], base_index: list[int], main_prompt: str, layout: Layout,
                 region: torch.Tensor, region_of_base) -> tuple[list[str], list[int]]:
    """Prompts of the region views: a region's prompt in place of the main prompt in its base view's
    text (so view-dependent suffixes like ", side view" are kept); the background keeps the text."""
    texts = []
    for j, r in zip(region_of_base, region.tolist()):
        text = base_prompts[base_index[j]]
        if r > 0:
            text = layout.prompts[r - 1] + text[len(main_prompt):] if text.startswith(main_prompt) else layout.prompts[r - 1]
        elif layout.background is not None:
            text = layout.background + text[len(main_prompt):] if text.startswith(main_prompt) else layout.background
        texts.append(text)
    distinct = sorted(set(texts), key=texts.index)
    return distinct, [distinct.index(t) for t in texts]


def layout_image(image: Image.Image, masks: torch.Tensor, colours: list[tuple[int, int, int]]) -> Image.Image:
    """``image`` with each region tinted in its colour (40%) and outlined: ``layout.png``."""
    w, h = image.size
    grid = F.interpolate(masks[None], size=(h, w), mode="bilinear", align_corners=False)[0][1:]  # regions only
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    out = base.copy()
    for mask, colour in zip(grid.numpy(), colours):
        alpha = 0.4 * np.clip(mask, 0, 1)[..., None]
        out = out * (1 - alpha) + np.array(colour, dtype=np.float32) * alpha
        edge = (mask > 0.5) != np.roll(mask > 0.5, 1, axis=0)
        edge |= (mask > 0.5) != np.roll(mask > 0.5, 1, axis=1)
        out[edge] = colour
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def api_regions(items: list) -> list[dict]:
    """The Python API's ``regions=[{"prompt": ..., "mask": array_or_path}, ...]``: array masks stay
    in memory as float arrays of 8-bit levels in [0, 1] (0..255 arrays are scaled); the run folder writes them as
    ``region_mask_<i>.png`` beside its ``config.yaml``, which names them (:func:`mask_files`)."""
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"regions[{i}]={item!r}: each region is a mapping {{prompt, box | mask | part}}")
        item = dict(item)
        if isinstance(item.get("mask"), np.ndarray):
            array = item["mask"]
            if array.ndim != 2 or array.size == 0 or not np.issubdtype(array.dtype, np.number) \
                    or not np.isfinite(array).all():
                raise ConfigError(f"regions[{i}].mask: an array mask is a finite 2-D array of weights (got shape "
                                  f"{array.shape}, {array.dtype}); give [H, W] values in [0, 1] or 0..255")
            array = array.astype(np.float32)
            array = np.clip(array / 255.0 if array.max() > 1 else array, 0, 1)
            # 8-bit levels, as the PNG the run folder keeps holds them: --config reproduces the run
            item["mask"] = np.round(array * 255).astype(np.float32) / 255.0
        out.append(item)
    return out


def mask_files(cfg: dict, folder: Path) -> tuple[dict, dict]:
    """(a copy of ``cfg`` whose array masks name files in ``folder``, {file name: PNG image}):
    what a run folder writes so that its ``config.yaml`` reproduces a run given array masks."""
    regions = (cfg.get("regions") or {}).get("regions") or []
    if not any(isinstance(item.get("mask"), np.ndarray) for item in regions):
        return cfg, {}
    files, items = {}, []
    for i, item in enumerate(regions):
        item = dict(item)
        if isinstance(item.get("mask"), np.ndarray):
            name = f"region_mask_{i}.png"
            files[name] = Image.fromarray(np.round(item["mask"] * 255).astype(np.uint8))
            item["mask"] = str(Path(folder).resolve() / name)
        items.append(item)
    return {**cfg, "regions": {**cfg["regions"], "regions": items}}, files
