"""``syncframe eval``: metrics over run folders (or any folder of images), grouped by the config
keys that differ between the runs, as a CSV, a Markdown table and one plot per metric.

    syncframe eval runs=outputs/panorama/ out=table.csv metrics=intra_lpips,intra_style,worst_column_step

A run folder is one with a ``config.yaml``; its image is the app's main output
(``panorama.png``, ``equirect.png``, ...). Any other ``.png``/``.jpg`` under ``runs=`` is an image
of its own (group: its folder). Metrics (docs/design.md):

- ``intra_lpips``: SyncDiffusion's Intra-LPIPS, the mean LPIPS (VGG) over the pairs of the
  non-overlapping ``crop``-pixel windows of the image (6 windows, 15 pairs at 512×3072);
- ``intra_style``: SyncDiffusion's Intra-Style-L, the same pairs' Gram-matrix (style) distance on
  the LPIPS network's VGG features;
- ``worst_column_step``: the largest step across one column boundary over the mean step (a seam);
- every number the run's ``run.json`` lists under ``metrics``.

Runs that cannot be read are listed in the output, never fatal.
"""
from __future__ import annotations

import csv
import itertools
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from PIL import Image
from tqdm import tqdm

from .errors import ConfigError
from .images import from_pil
from .metrics import crops, worst_column_step

MAIN_IMAGES = ("panorama.png", "equirect.png", "image.png", "upscaled.png", "texture.png")
IMAGE_METRICS = ("intra_lpips", "intra_style", "worst_column_step")
IGNORED_KEYS = {"out", "seed", "progress", "device"}  # never a group: they differ between runs of one setting


@dataclass
class Item:
    """One image to measure: its path, the config it came from (flattened) and its run.json metrics."""

    image: Path
    config: dict = field(default_factory=dict)
    recorded: dict = field(default_factory=dict)


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{"sync": {"name": "x", "weight": 5}}`` -> ``{"sync": "x", "sync.weight": 5}``."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            inner = flatten(value, f"{name}.")
            if "name" in value:
                inner[name] = inner.pop(f"{name}.name")
            flat.update(inner)
        else:
            flat[name] = json.dumps(value) if isinstance(value, list) else value
    return flat


def find_items(root: Path) -> tuple[list[Item], list[str]]:
    """The run folders and loose images under ``root``; and what could not be read, one line each."""
    if not root.exists():
        raise ConfigError(f"runs={root}: no such folder; give a folder of run folders (outputs/<app>/) or of images")
    items, problems = [], []
    folders = sorted({p.parent for p in root.rglob("config.yaml")})
    for folder in folders:
        image = next((folder / name for name in MAIN_IMAGES if (folder / name).is_file()), None)
        if image is None:
            problems.append(f"{folder}: no {' / '.join(MAIN_IMAGES)}")
            continue
        try:
            config = flatten(yaml.safe_load((folder / "config.yaml").read_text()) or {})
            meta = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
        except (yaml.YAMLError, json.JSONDecodeError, OSError) as exc:
            problems.append(f"{folder}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        recorded = {k: v for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))}
        items.append(Item(image, config, recorded))
    in_runs = set(folders)
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        if not any(parent in in_runs for parent in path.parents):
            items.append(Item(path, {"folder": str(path.parent.relative_to(root)) or "."}))
    return items, problems


def intra_pairs(image: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs of non-overlapping ``size``-wide windows of ``image: [3, H, W]`` (its height
    resized to ``size`` first when it differs) -> ``(first [P, 3, size, size], second)``."""
    if image.shape[1] != size:
        width = max(size, round(image.shape[2] * size / image.shape[1]))
        image = torch.nn.functional.interpolate(image[None], size=(size, width), mode="bilinear",
                                                align_corners=False, antialias=True)[0]
    parts = crops(image, size)
    pairs = list(itertools.combinations(range(len(parts)), 2))
    if not pairs:
        raise ValueError(f"fewer than two {size}-px windows")
    return parts[[i for i, _ in pairs]], parts[[j for _, j in pairs]]


@torch.no_grad()
def image_metrics(image: torch.Tensor, names: list[str], lpips=None, style=None, crop: int = 512) -> dict:
    """``image: [3, H, W]`` in [-1, 1] -> the named metrics of it."""
    out = {}
    if "worst_column_step" in names:
        out["worst_column_step"] = worst_column_step(image)
    if "intra_lpips" in names or "intra_style" in names:
        first, second = intra_pairs(image, crop)
        if "intra_lpips" in names:
            out["intra_lpips"] = lpips(first, second).mean().item()
        if "intra_style" in names:
            out["intra_style"] = style(first, second).mean().item()
    return out


def grouping_keys(items: list[Item]) -> list[str]:
    """The config keys whose values differ between the items (but seeds and output paths)."""
    keys = sorted({k for item in items for k in item.config} - IGNORED_KEYS)
    return [k for k in keys if len({json.dumps(item.config.get(k), default=str) for item in items}) > 1]


def summarise(rows: list[dict], keys: list[str], metrics: list[str]) -> list[dict]:
    """Mean, sd and count per group of ``keys``."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    table = []
    for values, members in groups.items():
        entry = {"group": dict(zip(keys, values)), "n": len(members)}
        for metric in metrics:
            numbers = [m[metric] for m in members if isinstance(m.get(metric), (int, float))]
            entry[metric] = (statistics.mean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else 0.0) \
                if numbers else None
        table.append(entry)
    return table


def markdown(table: list[dict], keys: list[str], metrics: list[str]) -> str:
    head = [*(keys or ["group"]), "n", *metrics]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for entry in table:
        cells = [str(entry["group"].get(k)) for k in keys] if keys else ["all"]
        cells.append(str(entry["n"]))
        cells += ["" if entry[m] is None else f"{entry[m][0]:.4f} ± {entry[m][1]:.4f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(table: list[dict], keys: list[str], metric: str, path: Path) -> None:
    """One bar per group, its mean with the sd as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [e for e in table if e[metric] is not None]
    labels = [", ".join(f"{k}={e['group'].get(k)}" for k in keys) or "all" for e in shown]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(shown) + 2), 3.2))
    ax.bar(range(len(shown)), [e[metric][0] for e in shown], yerr=[e[metric][1] for e in shown], capsize=4,
           color="#4c72b0")
    ax.set_xticks(range(len(shown)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(runs: str | Path, out: str | Path, metrics: list[str] | None = None, lpips_weights: str | None = None,
             crop: int = 512, progress: bool = True) -> dict:
    """Measure every item under ``runs``; write ``out`` (CSV, one row per image), ``out`` with
    ``.md`` (the grouped table) and ``<out stem>_<metric>.png`` (plots). Returns what was written."""
    runs, out = Path(runs), Path(out)
    names = list(metrics or IMAGE_METRICS)
    unknown = [m for m in names if m not in IMAGE_METRICS]
    if unknown:
        raise ConfigError(f"metrics={','.join(unknown)}: unknown; use some of {', '.join(IMAGE_METRICS)} "
                          "(run.json's metrics are always included)")
    if out.suffix != ".csv":
        raise ConfigError(f"out={out}: the table is a CSV; use out=<name>.csv")
    items, problems = find_items(runs)
    if not items:
        raise ConfigError(f"runs={runs}: no run folders (config.yaml) and no images under it")
    lpips = style = None
    if {"intra_lpips", "intra_style"} & set(names):
        from .models.perceptual import StyleLoss, load_lpips

        lpips = load_lpips("vgg", lpips_weights, allow_random=False).eval()
        style = StyleLoss(lpips)
    rows = []
    for item in tqdm(items, desc="measuring", disable=not progress):
        try:
            image = from_pil(Image.open(item.image).convert("RGB"))
            measured = image_metrics(image, names, lpips, style, crop)
        except (OSError, ValueError) as exc:
            problems.append(f"{item.image}: {exc}")
            continue
        rows.append({"image": str(item.image), **item.config, **item.recorded, **measured})
    keys = grouping_keys(items)
    columns = names + sorted({k for item in items for k in item.recorded} - set(names))
    table = summarise(rows, keys, columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["image", *keys, *columns]
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    report = markdown(table, keys, columns)
    if problems:
        report += "\nNot measured:\n" + "".join(f"- {p}\n" for p in problems)
    out.with_suffix(".md").write_text(report)
    plots = []
    for metric in columns:
        if any(e[metric] is not None and math.isfinite(e[metric][0]) for e in table):
            path = out.with_name(f"{out.stem}_{metric}.png")
            plot(table, keys, metric, path)
            plots.append(path)
    return {"csv": out, "markdown": out.with_suffix(".md"), "plots": plots, "rows": rows, "table": table,
            "keys": keys, "problems": problems}
