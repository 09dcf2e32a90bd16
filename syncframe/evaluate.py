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

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

import torch
import yaml
from tqdm import tqdm

from .errors import ConfigError
from .options import FilePath, FolderPath, Options, Source, option, validated
from .images import MAX_INPUT_PIXELS, from_pil, read_image
from .eval_tables import grouping_keys, sweep_keys, write_tables
from .metrics import crops, equirect_seam, pair_indices, pole_spread, to_height, worst_column_step
from .set_metrics import make_reference, set_metrics

IMAGE_METRICS = ("intra_lpips", "intra_style", "worst_column_step", "equirect_seam", "pole_spread")
SET_METRICS = ("fid", "kid", "giqa", "clip_score")  # against reference= (clip_score: against the prompt)
ALL_METRICS = (*IMAGE_METRICS, *SET_METRICS)
HORIZON_YAWS = [60.0 * k for k in range(6)]  # a 360° run's six windows: 60° views tiling the horizon


@dataclass
class Item:
    """One image to measure: its path, the config it came from (flattened) and its run.json metrics."""

    image: Path
    config: dict = field(default_factory=dict)
    recorded: dict = field(default_factory=dict)
    folder: Path | None = None  # the run folder, when it is one
    heldout: list[Path] = field(default_factory=list)  # a mesh's or splats' renders from unused cameras
    is_equirect: bool = False  # its app's main image is an equirect 360° map
    swept: tuple[str, ...] = ()  # the keys its sweep's command line set (multirun.csv), flattened like config


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
        try:
            tree = yaml.safe_load((folder / "config.yaml").read_text()) or {}
            meta = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
        except (yaml.YAMLError, json.JSONDecodeError, OSError, UnicodeDecodeError) as exc:
            which = "run.json" if isinstance(exc, json.JSONDecodeError) else "config.yaml"
            problems.append(f"{folder}: its {which} is not readable ({type(exc).__name__}: "
                            f"{(str(exc).splitlines() or [''])[0]}); skipped")
            continue
        if not isinstance(tree, dict) or not isinstance(meta, dict):
            which, bad = ("config.yaml", tree) if not isinstance(tree, dict) else ("run.json", meta)
            held = "null" if bad is None else f"a {type(bad).__name__}"
            problems.append(f"{folder}: its {which} holds {held}, not the mapping syncframe writes; skipped")
            continue
        config = flatten(tree)
        facts = run_app_facts(config)
        image = folder / facts.main_image if facts.main_image and (folder / facts.main_image).is_file() else None
        heldout = sorted((folder / facts.heldout).glob("*.png")) if facts.heldout else []
        if image is None and not heldout:
            what = " and ".join(filter(None, [facts.main_image, facts.heldout and f"{facts.heldout}/ renders"]))
            problems.append(f"{folder}: no {what or 'image its app declares'} (app={config.get('app', '?')})")
            continue
        recorded = {k: v for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))}
        items.append(Item(heldout[0] if heldout else image, config, recorded, folder, heldout, facts.equirect))
    swept = sweep_keys(root)
    items = [replace(item, swept=swept.get(item.folder, ())) for item in items]
    in_runs = set(folders)
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        if not any(parent in in_runs for parent in path.parents):
            items.append(Item(path, {"folder": str(path.parent.relative_to(root)) or "."}))
    return items, problems


def run_app_facts(config: dict):
    """The facts of the app a run folder's config names (an unknown app: none declared)."""
    from .apps.base import AppFacts, app_facts
    from .errors import ConfigError as Unknown

    try:
        return app_facts(str(config.get("app", "")))
    except Unknown:
        return AppFacts()


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


MIN_SIDE = 8  # below this a window, a column step or a crop says nothing


def measured_image(path: Path) -> torch.Tensor:
    """The image at ``path`` as ``[3, H, W]`` in [-1, 1], its size checked from the header first (a
    decompression bomb, a 1x1 image: one ValueError line, the image skipped)."""
    try:
        image = read_image(str(path), "image", max_pixels=MAX_INPUT_PIXELS,
                           hint="syncframe eval measures images up to 16384x16384; this one is skipped")
    except ConfigError as exc:
        raise ValueError(str(exc).removeprefix("image=")) from None
    if min(image.size) < MIN_SIDE:
        raise ValueError(f"is {image.width}x{image.height} pixels: too small to measure (at least {MIN_SIDE} on a "
                         "side); skipped")
    return from_pil(image)


def heldout_crop(path: Path, size: int) -> torch.Tensor:
    """A held-out render ``[3, size, size]`` (resized whole: it frames the object)."""
    render = measured_image(path)
    return torch.nn.functional.interpolate(render[None], size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True)[0]


def crop_of(image: torch.Tensor, size: int, generator: torch.Generator, equirect: bool = False) -> torch.Tensor:
    """The one crop an image is measured by against the reference set: a random ``size``² crop; a
    360° map's perspective view (60°) at a random yaw on the horizon."""
    from .set_metrics import perspective_views, random_crop

    if equirect:
        return perspective_views(image, [float(torch.rand((), generator=generator)) * 360.0], size)[0]
    return random_crop(image, size, generator)


MAX_REFERENCE = 100_000  # images reference.make may generate: far beyond any paper's 500, far below a full disk


class ReferenceOptions(Options):
    """``reference=FOLDER`` sets ``folder`` (its primary key); ``reference.make=N`` the rest."""

    primary: ClassVar[str] = "folder"
    folder: FolderPath | None = option(None, "a folder of reference images: FID, KID and GIQA compare against it")
    make: int = option(0, "generate this many single windows of the runs' model and prompts into reference= first "
                          "(the papers: 500; a stopped make resumes)", ge=0, le=MAX_REFERENCE)


class MeasureOptions(Options):
    """``metrics=all|a,b`` sets ``names`` (its primary key); ``metrics.features=`` and the rest."""

    primary: ClassVar[str] = "names"
    names: str = option("default", f"all, default ({','.join(IMAGE_METRICS)}), or a comma-separated list of "
                                   f"{', '.join(ALL_METRICS)}; run.json's metrics are always included")
    features: Literal["inception", "clip", "vgg"] = option(
        "inception", "FID / KID / GIQA features: inception (the papers'), clip (CLIP-FID), vgg (the LPIPS trunk, "
                     "offline: comparable only among runs measured the same way)")
    inception: FilePath | None = option(None, "Inception weights file (torch-fidelity's pt_inception); null = download")
    clip: Source | None = option(None, "a CLIP model (folder or hub id) for clip_score and features=clip")
    k: int = option(8, "GIQA's K nearest reference images", ge=1, le=1000)


class EvalOptions(Options):
    """``syncframe eval key=value ...``: what to measure, against what, where the table goes."""

    runs: FolderPath = option(..., "a folder of run folders (outputs/<app>/) or of images")
    out: FilePath = option(..., "the table: a .csv (a Markdown table and one plot per metric beside it)")
    metrics: MeasureOptions = option(MeasureOptions(), "which metrics: metrics=all|a,b (metrics.KEY=VALUE)")
    reference: ReferenceOptions = option(ReferenceOptions(), "the reference set: reference=FOLDER (reference.make=N)")
    lpips_weights: FilePath | None = option(None, "LPIPS-vgg weights for intra_lpips / intra_style; null = search "
                                                  "(../shared/weights, SYNCFRAME_WEIGHTS, the lpips package)")
    crop: int = option(512, "side of the windows and random crops measured, in pixels", ge=32, le=4096)
    seed: int = option(0, "seed of the random crops", ge=0)
    progress: bool = option(True, "show progress bars")

    def measured(self) -> list[str]:
        """The metrics to compute: ``all`` is every image metric and the set metrics whose inputs are given."""
        names = self.metrics.names
        if names == "default":
            return list(IMAGE_METRICS)
        if names == "all":
            return [*IMAGE_METRICS, *(["fid", "kid", "giqa"] if self.reference.folder else []),
                    *(["clip_score"] if self.metrics.clip else [])]
        chosen = [n for n in names.split(",") if n]
        unknown = [m for m in chosen if m not in ALL_METRICS]
        if unknown or not chosen:
            raise ConfigError(f"metrics={names}: {'unknown' if unknown else 'none named'}; use all or some of "
                              f"{', '.join(ALL_METRICS)} (run.json's metrics are always included)")
        return chosen


def eval_options(runs, out, metrics: list[str] | None = None, **options) -> EvalOptions:
    """The Python API's :class:`EvalOptions`: ``eval_options("runs/", "t.csv", ["fid"], crop=64,
    reference="ref/", make=4, features="vgg")`` (``reference``/``make`` and the ``metrics.*`` keys flat)."""
    reference = {k: options.pop(k) for k in ("make",) if k in options}
    if "reference" in options:
        reference["folder"] = options.pop("reference")
    measure = {k: options.pop(k) for k in ("features", "inception", "clip", "k") if k in options}
    if metrics is not None:
        measure["names"] = ",".join(metrics)
    data = {"runs": str(runs), "out": str(out), "metrics": measure, "reference": reference, **options}
    return validated(EvalOptions, {k: str(v) if isinstance(v, Path) else v for k, v in data.items()})


def check_set_options(names: list[str], opts: EvalOptions) -> None:
    """One line for every way the reference-set metrics cannot run, before anything loads."""
    folder, clip = opts.reference.folder, opts.metrics.clip
    if opts.reference.make and not folder:
        raise ConfigError("reference.make=N generates N images into the reference folder: give reference=<folder> "
                          "too")
    if {"fid", "kid", "giqa"} & set(names) and not folder:
        raise ConfigError("fid, kid and giqa compare against a reference set: give reference=<folder of images> "
                          "(reference.make=500 generates single-window images of the runs' prompts into it)")
    if "clip_score" in names and not clip:
        raise ConfigError("clip_score needs a CLIP model: metrics.clip=<folder or hub id, e.g. "
                          "openai/clip-vit-base-patch16>")
    if opts.metrics.features == "clip" and {"fid", "kid", "giqa"} & set(names) and not clip:
        raise ConfigError("metrics.features=clip needs metrics.clip=<CLIP folder or hub id>")
    if folder and not opts.reference.make and not Path(folder).is_dir():
        raise ConfigError(f"reference={folder}: no such folder; give a folder of images or add "
                          "reference.make=N to generate N there")


def weighed(names: list[str], options: EvalOptions) -> tuple[list[str], list[str]]:
    """``names`` without the LPIPS metrics when no LPIPS-vgg weights are found and the user did not
    name them (``metrics=default|all``: the metrics that need no weights still run), and the note
    that says so; named, their absence is the one error line."""
    from .models.perceptual import lpips_source

    wanted = [n for n in names if n in ("intra_lpips", "intra_style")]
    if not wanted or options.metrics.names not in ("default", "all") or options.lpips_weights is not None:
        return names, []  # named weights that cannot be read are the run's one error, not a skip
    try:
        lpips_source("vgg", options.lpips_weights, allow_random=False, key="lpips_weights")
    except ConfigError as exc:
        return [n for n in names if n not in wanted], [f"{' and '.join(wanted)} skipped: {exc}"]
    return names, []


def evaluate(options: EvalOptions, denoiser=None, feature_net=None) -> dict:
    """Measure every item under ``options.runs``; write ``options.out`` (CSV, one row per image), the
    same with ``.md`` (the grouped table) and ``<out stem>_<metric>.png`` (plots). Returns what was
    written. ``feature_net`` replaces the FID/KID/GIQA feature network (tests: the same features
    torchmetrics gets); ``denoiser`` the model ``reference.make`` loads."""
    runs, out, crop, progress = Path(options.runs), Path(options.out), options.crop, options.progress
    names, problems = weighed(options.measured(), options)
    if out.suffix != ".csv":
        raise ConfigError(f"out={out}: the table is a CSV; use out=<name>.csv")
    table_place(out)
    check_set_options(names, options)
    items, found_problems = find_items(runs)
    problems = [*problems, *found_problems]
    if not items:
        if found_problems:
            more = f" (and {len(found_problems) - 1} more)" if len(found_problems) > 1 else ""
            raise ConfigError(f"runs={runs}: no run folder under it could be read: {found_problems[0]}{more}")
        raise ConfigError(f"runs={runs}: no run folders (config.yaml) and no images under it")
    if options.reference.make:
        make_reference(items, Path(options.reference.folder), options.reference.make, crop, progress, denoiser)
    rows, crops_by_row = measure_items(items, names, options, problems)
    if not rows:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"runs={runs}: no image under it could be measured: {problems[-1]}{more}")
    keys = grouping_keys(items)
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(i)
    per_group = {}
    if crops_by_row and rows:
        per_row, per_group, more = set_metrics(rows, crops_by_row, groups, names, options, crop, progress,
                                               feature_net, options.lpips_weights)
        rows = [{**row, **found} for row, found in zip(rows, per_row)]
        problems += more
    try:
        return write_tables(out, items, rows, keys, names, per_group, problems)
    except OSError as exc:  # the place passed the checks but the system refused (a read-only mount, /proc)
        raise ConfigError(f"out={out}: cannot write the table there ({exc.strerror or exc}); choose a writable "
                          "place for out=") from None


def table_place(out: Path) -> None:
    """``out`` (the table) can be written: not a folder, and under a folder that is or can be made."""
    from .outputs import check_ancestors

    if out.is_dir():
        raise ConfigError(f"out={out} is a folder; the table is a file: out={out / 'table.csv'}")
    check_ancestors(out, "the table cannot go under it", "choose another out=")


def measure_items(items: list[Item], names: list[str], options: EvalOptions, problems: list[str]):
    """Every item's image metrics (a row each) and, when set metrics are asked for, its crops."""
    lpips = style = None
    # only where an image has windows to compare (a mesh's or splats' held-out renders have none)
    if {"intra_lpips", "intra_style"} & set(names) and any(not item.heldout for item in items):
        from .models.perceptual import StyleLoss, load_lpips

        lpips = load_lpips("vgg", options.lpips_weights, allow_random=False, key="lpips_weights").eval()
        style = StyleLoss(lpips)
    wants_crops, crop = bool(set(SET_METRICS) & set(names)), options.crop
    generator = torch.Generator().manual_seed(options.seed)
    rows, crops_by_row = [], []
    for item in tqdm(items, desc="measuring", disable=not options.progress):
        try:
            if item.heldout:  # a mesh or splats: its renders from cameras no view used are what is measured
                measured = {}
                if wants_crops:
                    crops_by_row.append(torch.stack([heldout_crop(path, crop) for path in item.heldout]))
            else:
                image = measured_image(item.image)
                measured = image_metrics(image, names, lpips, style, crop, item.is_equirect)
                if wants_crops:
                    crops_by_row.append(crop_of(image, crop, generator, item.is_equirect)[None])
        except (OSError, ValueError) as exc:
            problems.append(f"{item.image}: {exc}")
            continue
        rows.append({"image": str(item.image), **item.config, **item.recorded, **measured})
    return rows, crops_by_row


