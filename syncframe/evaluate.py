"""``syncframe eval``: metrics over run folders (or any folder of images), grouped by the config
keys that differ between the runs, as a CSV, a Markdown table and one plot per metric.

    syncframe eval runs=outputs/panorama/ out=table.csv metrics=intra_lpips,intra_style,worst_column_step

A run folder is one with a ``config.yaml``; its image is the app's main output
(``panorama.png``, ``equirect.png``, ...); a mesh's or splats' are its ``heldout/`` renders, from
cameras no view used (FID, KID, GIQA and CLIP-S over them; no window metrics). Any other ``.png``/``.jpg`` under ``runs=`` is an image
of its own (group: its folder). Metrics (docs/design.md):

- ``intra_lpips``: SyncDiffusion's Intra-LPIPS, the mean LPIPS (VGG) over the pairs of the
  non-overlapping ``crop``-pixel windows of the image (6 windows, 15 pairs at 512×3072);
- ``intra_style``: SyncDiffusion's Intra-Style-L, the same pairs' Gram-matrix (style) distance on
  the LPIPS network's VGG features;
- ``worst_column_step``: the largest step across one column boundary over the mean step (a seam);
- ``equirect_seam``, ``pole_spread``: a 360° run's seam at the wrap and spread at the poles;
- every number the run's ``run.json`` lists under ``metrics``.

Against a reference set (``reference=``, a folder of images; ``reference.make=N`` generates N
single-window images of the runs' model and prompts into it first), per group, on one random
``crop``² crop per image (a 360° run: one perspective view at a random yaw):

- ``fid``, ``kid``: FID and KID of the crops against the reference crops (torchmetrics');
- ``giqa``: KNN-GIQA (K = ``metrics.k``, 8) of each crop against the reference set;
- ``clip_score``: CLIP-S of each crop against its run's prompt (``metrics.clip=``, a CLIP folder).

A 360° run's windows are six 60° perspective views around the horizon (Intra-LPIPS over their 15
pairs). Runs that cannot be read are listed in the output, never fatal.
"""
from __future__ import annotations

import csv
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
from .metrics import crops, equirect_seam, pair_indices, pole_spread, to_height, worst_column_step

MAIN_IMAGES = ("panorama.png", "equirect.png", "image.png", "upscaled.png", "texture.png")
IMAGE_METRICS = ("intra_lpips", "intra_style", "worst_column_step", "equirect_seam", "pole_spread")
SET_METRICS = ("fid", "kid", "giqa", "clip_score")  # against reference= (clip_score: against the prompt)
ALL_METRICS = (*IMAGE_METRICS, *SET_METRICS)
HORIZON_YAWS = [60.0 * k for k in range(6)]  # a 360° run's six windows: 60° views tiling the horizon
# Never a group: they differ between the runs of one setting (a paper's table averages over its prompts).
IGNORED_KEYS = {"out", "seed", "progress", "device", "prompt", "negative_prompt"}


@dataclass
class Item:
    """One image to measure: its path, the config it came from (flattened) and its run.json metrics."""

    image: Path
    config: dict = field(default_factory=dict)
    recorded: dict = field(default_factory=dict)
    folder: Path | None = None  # the run folder, when it is one
    heldout: list[Path] = field(default_factory=list)  # a mesh's or splats' renders from unused cameras

    @property
    def is_equirect(self) -> bool:
        return self.image.name == "equirect.png"


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
        heldout = sorted((folder / "heldout").glob("*.png"))
        if image is None and not heldout:
            problems.append(f"{folder}: no {' / '.join(MAIN_IMAGES)} and no heldout/ renders")
            continue
        try:
            config = flatten(yaml.safe_load((folder / "config.yaml").read_text()) or {})
            meta = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
        except (yaml.YAMLError, json.JSONDecodeError, OSError) as exc:
            problems.append(f"{folder}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        recorded = {k: v for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))}
        items.append(Item(heldout[0] if heldout else image, config, recorded, folder, heldout))
    in_runs = set(folders)
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        if not any(parent in in_runs for parent in path.parents):
            items.append(Item(path, {"folder": str(path.parent.relative_to(root)) or "."}))
    return items, problems


def window_stack(image: torch.Tensor, size: int, equirect: bool = False) -> torch.Tensor:
    """The windows Intra-LPIPS compares, ``[N, 3, size, size]``: a panorama's non-overlapping
    ``size``-wide ones (its height resized to ``size`` first when it differs); an equirect's six
    60° perspective views around the horizon."""
    if equirect:
        from .set_metrics import perspective_views

        return perspective_views(image, HORIZON_YAWS, size)
    return crops(to_height(image, size), size)


def intra_pairs(image: torch.Tensor, size: int, equirect: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first [P, 3, size, size], second)``: the pairs of ``window_stack``."""
    views = window_stack(image, size, equirect)
    first, second = pair_indices(len(views))
    return views[first], views[second]


@torch.no_grad()
def image_metrics(image: torch.Tensor, names: list[str], lpips=None, style=None, crop: int = 512,
                  equirect: bool = False) -> dict:
    """``image: [3, H, W]`` in [-1, 1] -> the named metrics of it (an equirect map's when
    ``equirect``: the seam metrics, and its perspective views as the windows). The trunk runs once
    per window, not once per pair: the same numbers for a fifth of the cost at 6 windows."""
    out = {}
    if "worst_column_step" in names and not equirect:
        out["worst_column_step"] = worst_column_step(image)
    if equirect and "equirect_seam" in names:
        out["equirect_seam"] = equirect_seam(image)
    if equirect and "pole_spread" in names:
        out["pole_spread"] = pole_spread(image)
    if "intra_lpips" in names or "intra_style" in names:
        views = window_stack(image, crop, equirect)
        first, second = pair_indices(len(views))
        feats = (lpips or style.lpips).features(views)
        feats_a, feats_b = [f[first] for f in feats], [f[second] for f in feats]
        if "intra_lpips" in names:
            out["intra_lpips"] = lpips.distance(feats_a, feats_b).mean().item()
        if "intra_style" in names:
            out["intra_style"] = style.distance(feats_a, feats_b).mean().item()
    return out


def heldout_crop(path: Path, size: int) -> torch.Tensor:
    """A held-out render ``[3, size, size]`` (resized whole: it frames the object)."""
    render = from_pil(Image.open(path).convert("RGB"))
    return torch.nn.functional.interpolate(render[None], size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True)[0]


def crop_of(image: torch.Tensor, size: int, generator: torch.Generator, equirect: bool = False) -> torch.Tensor:
    """The one crop an image is measured by against the reference set: a random ``size``² crop; a
    360° map's perspective view (60°) at a random yaw on the horizon."""
    from .set_metrics import perspective_views, random_crop

    if equirect:
        return perspective_views(image, [float(torch.rand((), generator=generator)) * 360.0], size)[0]
    return random_crop(image, size, generator)


def grouping_keys(items: list[Item]) -> list[str]:
    """The config keys whose values differ between the items (but seeds, prompts and output paths),
    less those an earlier key already decides (``sync.loss`` when only SyncDiffusion has one)."""
    def value(item, key):
        return json.dumps(item.config.get(key), default=str)

    keys = sorted({k for item in items for k in item.config} - IGNORED_KEYS)
    chosen: list[str] = []
    for key in (k for k in keys if len({value(item, k) for item in items}) > 1):
        decided: dict[tuple, set] = {}
        for item in items:
            decided.setdefault(tuple(value(item, k) for k in chosen), set()).add(value(item, key))
        if not chosen or any(len(values) > 1 for values in decided.values()):
            chosen.append(key)
    return chosen


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
        cells += ["" if entry[m] is None else f"{entry[m][0]:.4f}" if m == "fid" else
                  f"{entry[m][0]:.4f} ± {entry[m][1]:.4f}" for m in metrics]  # one FID per group: no sd
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


@dataclass
class SetOptions:
    """What the reference-set metrics need: the reference folder, how many images to make in it,
    the feature network (``inception``: pool3, the papers'; ``clip``: the CLIP image tower; ``vgg``:
    the LPIPS trunk, offline), its
    weights, the CLIP model for CLIP-S, GIQA's K and the seed of the random crops."""

    reference: str | None = None
    make: int = 0
    features: str = "inception"
    inception: str | None = None
    clip: str | None = None
    k: int = 8
    seed: int = 0


def check_set_options(names: list[str], opts: SetOptions) -> None:
    """One line for every way the reference-set metrics cannot run, before anything loads."""
    if opts.features not in ("inception", "clip", "vgg"):
        raise ConfigError(f"metrics.features={opts.features}: use inception (the papers'), clip or vgg (offline: "
                          "the LPIPS VGG trunk; compares runs among themselves only)")
    if {"fid", "kid", "giqa"} & set(names) and not opts.reference:
        raise ConfigError("fid, kid and giqa compare against a reference set: give reference=<folder of images> "
                          "(reference.make=500 generates single-window images of the runs' prompts into it)")
    if "clip_score" in names and not opts.clip:
        raise ConfigError("clip_score needs a CLIP model: metrics.clip=<folder or hub id, e.g. "
                          "openai/clip-vit-base-patch16>")
    if opts.features == "clip" and {"fid", "kid", "giqa"} & set(names) and not opts.clip:
        raise ConfigError("metrics.features=clip needs metrics.clip=<CLIP folder or hub id>")
    if opts.reference and not opts.make and not Path(opts.reference).is_dir():
        raise ConfigError(f"reference={opts.reference}: no such folder; give a folder of images or add "
                          "reference.make=N to generate N there")
    if opts.k < 1 or opts.make < 0:
        raise ConfigError("metrics.k must be at least 1 and reference.make at least 0")


def make_reference(items: list[Item], folder: Path, count: int, size: int, progress: bool = True,
                   denoiser=None) -> list[Path]:
    """SyncDiffusion's reference set: ``count`` single-window generations (the model's window,
    512² for SD) of the runs' model, sampler, steps, guidance and prompts (spread evenly over the
    prompts; measured on ``size``² crops like the runs), into ``folder``
    as ``<prompt index>_<seed>.png``; images already there are kept (a stopped make resumes)."""
    from .config import overrides_from_file, resolve
    from .models.presets import model_spec
    from .pipeline import generate_from_config, load_denoiser

    kept = ("model", "sampler", "prompt", "negative_prompt", "guidance", "steps", "dtype", "device")
    settings: dict[str, list] = {}
    for item in items:
        if item.folder is None:
            continue
        pairs = [(k, v) for k, v in overrides_from_file(item.folder / "config.yaml")
                 if k.partition(".")[0] in kept and v is not None]
        settings.setdefault(json.dumps(pairs, default=str, sort_keys=True), pairs)
    if not settings:
        raise ConfigError("reference.make needs run folders (config.yaml) under runs= to know the model and prompts")
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    jobs = [(j, seed) for seed in range(-(-count // len(settings))) for j in range(len(settings))][:count]
    loaded = {}
    for j, seed in tqdm(jobs, desc="reference", disable=not progress):
        path = folder / f"{j:02d}_{seed:05d}.png"
        if not path.is_file():
            pairs = list(settings.values())[j]
            cfg = resolve(["app=panorama", *pairs, "sync=none", f"seed={seed}", "progress=false"])
            window = model_spec(cfg).window_px  # one window of the model: a plain generation
            cfg = resolve(["app=panorama", *pairs, f"width={window}", f"height={window}", "sync=none",
                           f"seed={seed}", "progress=false"])
            key = json.dumps(cfg["model"], default=str, sort_keys=True)
            if denoiser is None and key not in loaded:
                loaded.clear()  # one model in memory at a time
                loaded[key] = load_denoiser(cfg)
            image = generate_from_config(cfg, denoiser or loaded[key]).images["panorama.png"]
            partial = path.with_suffix(".partial.png")
            image.save(partial)
            partial.replace(path)  # never a half-written reference image
        made.append(path)
    return made


def set_metrics(rows: list[dict], crops_by_row: list[torch.Tensor], groups: dict[tuple, list[int]],
                names: list[str], opts: SetOptions, size: int, progress: bool,
                net: torch.nn.Module | None = None,
                lpips_weights: str | None = None) -> tuple[list[dict], dict, list[str]]:
    """Per row: GIQA and CLIP-S of its crops ``[k, 3, s, s]`` (one for an image; a mesh's or
    splats' held-out renders: their mean); per group: FID and KID of all its crops against the
    reference set's, on ``net``'s features (default: ``opts.features``). Returns
    ``(per row {metric: value}, {group: {metric: (value, sd)}}, problems)``."""
    from . import set_metrics as sm

    problems, per_group, per_row = [], {}, [{} for _ in rows]
    model = processor = None
    if opts.clip:
        model, processor = sm.load_clip(opts.clip)
    if "clip_score" in names:
        score = sm.ClipScore(model, processor)
        for row, crops, found in zip(rows, crops_by_row, per_row):
            found["clip_score"] = statistics.mean(score(c, row["prompt"]) for c in sm.to_uint8(crops)) \
                if row.get("prompt") else None
    if not {"fid", "kid", "giqa"} & set(names):
        return per_row, per_group, problems
    if net is None:
        net = {"clip": lambda: sm.ClipFeatures(model, processor), "vgg": lambda: sm.VggFeatures(lpips_weights),
               "inception": lambda: sm.InceptionFeatures(opts.inception)}[opts.features]()
    generator = torch.Generator().manual_seed(opts.seed + 1)
    reference = []
    for path in tqdm(sm.reference_images(Path(opts.reference)), desc="reference crops", disable=not progress):
        try:
            reference.append(sm.to_uint8(sm.random_crop(from_pil(Image.open(path).convert("RGB")), size, generator)[None])[0])
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {exc}")
    if len(reference) < 2:
        raise ConfigError(f"reference={opts.reference}: {len(reference)} readable image(s); FID, KID and GIQA need "
                          "at least two (the papers use 500: reference.make=500)")
    real = sm.features_of(net, reference)
    fake = sm.features_of(net, [c for crops in crops_by_row for c in sm.to_uint8(crops)])
    owner = torch.tensor([i for i, crops in enumerate(crops_by_row) for _ in range(len(crops))])
    if "giqa" in names:
        scores = sm.knn_giqa(fake, real, opts.k)
        for i, found in enumerate(per_row):
            found["giqa"] = scores[owner == i].mean().item()
    for values, rows_of_group in groups.items():
        entry = per_group[values] = {}
        members = torch.isin(owner, torch.tensor(rows_of_group)).nonzero().flatten()
        if len(members) < 2:
            problems.append(f"group {values}: one image; FID and KID need at least two")
            continue
        if "fid" in names:
            entry["fid"] = (sm.fid(real, fake[members]), 0.0)
        if "kid" in names:
            entry["kid"] = sm.kid(real, fake[members], seed=opts.seed)
    return per_row, per_group, problems


def evaluate(runs: str | Path, out: str | Path, metrics: list[str] | None = None, lpips_weights: str | None = None,
             crop: int = 512, progress: bool = True, sets: SetOptions | None = None, denoiser=None,
             feature_net=None) -> dict:
    """Measure every item under ``runs``; write ``out`` (CSV, one row per image), ``out`` with
    ``.md`` (the grouped table) and ``<out stem>_<metric>.png`` (plots). Returns what was written.
    ``metrics=["all"]``: every image metric, and the reference-set ones whose inputs are given.
    ``feature_net`` replaces the FID/KID/GIQA feature network (tests: the same features torchmetrics
    gets); ``denoiser`` the model ``reference.make`` loads."""
    runs, out, opts = Path(runs), Path(out), sets or SetOptions()
    names = list(metrics or IMAGE_METRICS)
    if names == ["all"]:
        names = [*IMAGE_METRICS, *(["fid", "kid", "giqa"] if opts.reference else []),
                 *(["clip_score"] if opts.clip else [])]
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown:
        raise ConfigError(f"metrics={','.join(unknown)}: unknown; use all or some of {', '.join(ALL_METRICS)} "
                          "(run.json's metrics are always included)")
    if out.suffix != ".csv":
        raise ConfigError(f"out={out}: the table is a CSV; use out=<name>.csv")
    check_set_options(names, opts)
    items, problems = find_items(runs)
    if not items:
        raise ConfigError(f"runs={runs}: no run folders (config.yaml) and no images under it")
    if opts.make:
        make_reference(items, Path(opts.reference), opts.make, crop, progress, denoiser)
    lpips = style = None
    if {"intra_lpips", "intra_style"} & set(names):
        from .models.perceptual import StyleLoss, load_lpips

        lpips = load_lpips("vgg", lpips_weights, allow_random=False).eval()
        style = StyleLoss(lpips)
    wants_crops = bool(set(SET_METRICS) & set(names))
    generator = torch.Generator().manual_seed(opts.seed)
    rows, crops_by_row = [], []
    for item in tqdm(items, desc="measuring", disable=not progress):
        try:
            if item.heldout:  # a mesh or splats: its renders from cameras no view used are what is measured
                measured = {}
                if wants_crops:
                    crops_by_row.append(torch.stack([heldout_crop(path, crop) for path in item.heldout]))
            else:
                image = from_pil(Image.open(item.image).convert("RGB"))
                measured = image_metrics(image, names, lpips, style, crop, item.is_equirect)
                if wants_crops:
                    crops_by_row.append(crop_of(image, crop, generator, item.is_equirect)[None])
        except (OSError, ValueError) as exc:
            problems.append(f"{item.image}: {exc}")
            continue
        rows.append({"image": str(item.image), **item.config, **item.recorded, **measured})
    keys = grouping_keys(items)
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(i)
    per_group = {}
    if wants_crops and rows:
        per_row, per_group, more = set_metrics(rows, crops_by_row, groups, names, opts, crop, progress, feature_net,
                                               lpips_weights)
        rows = [{**row, **found} for row, found in zip(rows, per_row)]
        problems += more
    columns = [n for n in names if not (n in ("fid", "kid"))]
    columns = [n for n in columns if any(isinstance(r.get(n), (int, float)) for r in rows)] or columns
    columns += sorted({k for item in items for k in item.recorded} - set(names))
    table = summarise(rows, keys, columns)
    set_columns = [n for n in ("fid", "kid") if n in names]
    for entry in table:
        values = tuple(entry["group"].get(k) for k in keys)
        for metric in set_columns:
            entry[metric] = per_group.get(values, {}).get(metric)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["image", *keys, *columns]
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    shown = [*columns, *set_columns]
    report = markdown(table, keys, shown)
    if problems:
        report += "\nNot measured:\n" + "".join(f"- {p}\n" for p in problems)
    out.with_suffix(".md").write_text(report)
    plots = []
    for metric in shown:
        if any(e[metric] is not None and math.isfinite(e[metric][0]) for e in table):
            path = out.with_name(f"{out.stem}_{metric}.png")
            plot(table, keys, metric, path)
            plots.append(path)
    return {"csv": out, "markdown": out.with_suffix(".md"), "plots": plots, "rows": rows, "table": table,
            "keys": keys, "problems": problems}
