"""One config tree: the common keys plus one section for each of the groups app, model and sync.

Overrides are Hydra-style ``key=value`` strings: ``sync=syncdiffusion`` picks a registered name
(and its preset), ``sync.weight=10`` sets an option inside the section. Every option has a
declared type, range and description (:mod:`syncframe.options`); the whole tree is checked once,
here, before anything is built, and bad input is one :class:`ConfigError` line.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterable, Literal

import yaml
from pydantic import field_validator

from .errors import ConfigError
from .keep import KeepOptions
from .options import FolderPath, Options, PathMark, Source, Text, option, parse_value, plain, read_yaml, validate
from .registry import APPS, MODELS, REGIONS, SAMPLERS, SYNCS, Entry

GROUPS = ("app", "model", "sync", "sampler", "regions")
REGISTRIES = {"app": APPS, "model": MODELS, "sync": SYNCS, "sampler": SAMPLERS, "regions": REGIONS}
DEFAULT_SYNC = "synctweedies"  # for plugin apps that name no default synchronizer
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 64-bit seeds


class MetricsOptions(Options):
    clip: Source | None = option(None, "a CLIP model (repository id or folder) for the CLIP scores of apps that report "
                                       "them (anagram: alignment and concealment); null = skipped")


class LoraOptions(Options):
    """One LoRA: ``lora=<file|folder|repo>`` sets ``path`` (its primary key), ``lora.scale=`` the rest."""

    primary: ClassVar[str] = "path"
    path: Source | None = option(None, "a LoRA in diffusers' or kohya's format: a .safetensors file, a folder or a "
                                       "repository id")
    scale: float = option(1.0, "how strongly the LoRA acts (0 = not at all)", ge=-10, le=10)
    weight_name: str | None = option(None, "the file inside a folder or repository holding several")


class IPAdapterOptions(Options):
    """``ip_adapter=<repo|folder>`` sets ``path``; with ``ip_image=`` the image prompt every view shares."""

    primary: ClassVar[str] = "path"
    path: Source | None = option(None, "an IP-Adapter repository id or folder (SD 1/2, SDXL, FLUX), e.g. h94/IP-Adapter")
    subfolder: str = option("models", "the folder inside it that holds the weights")
    weight_name: str = option("ip-adapter_sd15.safetensors", "the weights' file name")
    image_encoder: str | None = option(None, "the image encoder's folder inside it; null = diffusers' default search")
    scale: float = option(1.0, "how strongly the image prompt acts", ge=0, le=10)


class VaeOptions(Options):
    slicing: bool = option(False, "decode one image at a time (diffusers' VAE slicing): less memory per decode")
    tiling: bool = option(False, "decode and encode each image in tiles (diffusers' VAE tiling): for views far "
                                 "larger than the model's")


class AttentionOptions(Options):
    """``attention=sdpa|xformers`` sets ``kernels`` (its primary key)."""

    primary: ClassVar[str] = "kernels"
    kernels: Literal["sdpa", "xformers"] = option(
        "sdpa", "attention kernels: sdpa (PyTorch's scaled dot-product attention) or xformers (pip install xformers)")


# Keys that moved: SyncTweedies' cross-view attention is its synchronizers' option now.
MOVED = {"attention.cross_view": "sync.cross_view", "attention.reference_until": "sync.reference_until",
         "attention.wrap": "sync.wrap"}


class RunOptions(Options):
    """The common keys of every run (``syncframe run key=value``)."""

    app: str = option("panorama", "what to make: an app name (syncframe --help lists them)")
    model: str = option("sd2-base", "a model preset, or any diffusers repository id or local folder")
    sync: str | None = option(None, "the synchronizer; null = the app's default")
    sampler: str = option("auto", "the sampler; auto = the model family's (ddim for SD 1/2 and SDXL, flow-euler for "
                                  "SD3 and FLUX)")
    regions: str = option("none", "prompts per region: a label image or a YAML layout (regions.KEY options); none = one "
                                  "prompt")
    prompt: Text = option("a photo of a mountain range at twilight", "the text prompt")
    negative_prompt: Text = option("", "the negative prompt (the unconditional half of classifier-free guidance)")
    seed: int = option(0, "seed of every random number of the run", ge=0, le=MAX_SEED)
    steps: int | None = option(None, "denoising steps; null = the model family's (50 for SD 1/2 and SDXL, 28 for SD3 "
                                     "and FLUX dev, 4 for FLUX schnell)", ge=1, le=1000)
    guidance: float | None = option(None, "guidance scale: classifier-free guidance (1 disables it), or the distilled "
                                          "guidance of FLUX dev; null = the model family's (7.5 SD, 5 SDXL, 7 SD3, "
                                          "3.5 FLUX dev)", ge=0, le=100)
    init: Annotated[str, PathMark("path to an image, or texture (app=mesh)")] | None = option(None, "content to start from: an image (panorama, panorama360: a 2:1 equirect), "
                                       "or texture (app=mesh: the mesh's own texture, or an image file)")
    strength: float | None = option(None, "how much of init= is regenerated: 1 = from noise (init unused), 0 = init "
                                          "through the VAE; null = 0.8 with init= (upscale 0.35; 1 with keep=)", ge=0, le=1)
    keep: KeepOptions = option(KeepOptions(), "keep part of init= exactly and generate the rest: keep=<mask image> "
                                              "(keep.blur=8 softens its edge)")
    width: int | None = option(None, "output width in pixels; null = the app's default", ge=8, le=2**20)
    height: int | None = option(None, "output height in pixels; null = the app's default", ge=8, le=2**20)
    out: FolderPath | None = option(None, "output folder (must not exist or be empty); null = outputs/<app>/<date-time>")
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = option(
        "auto", "model precision; auto = fp16 on CUDA, fp32 on CPU")
    controlnet: Source | None = option(None, "a ControlNet repository id or folder (depth), or tiny; "
                                             "needs a control input (depth=, or a mesh)")
    controlnet_scale: float = option(1.0, "ControlNet conditioning scale", ge=0, le=10)
    view_batch_size: int | None = option(None, "views per model call; null = as many as memory allows", ge=1,
                                         le=4096)
    offload: Literal["none", "model", "sequential"] = option(
        "none", "CUDA memory: model = each component on the GPU only while it runs, sequential = layer by "
                "layer (slowest, least memory); accelerate's hooks")
    progress: bool = option(True, "show progress bars")
    max_views: int = option(1024, "runs with more views per step are refused (raise it if you mean it)", ge=1)
    max_memory_gb: float | None = option(None, "runs estimated to need more memory are refused; "
                                               "null = the memory available now", gt=0)
    metrics: MetricsOptions = option(MetricsOptions(), "optional measurements (metrics.KEY=VALUE)")
    lora: LoraOptions = option(LoraOptions(), "a LoRA for the model: lora=<file|folder|repo> lora.scale=0.8")
    loras: list[LoraOptions] = option([], "several LoRAs: loras='[{path: a.safetensors, scale: 0.8}, {path: b, "
                                          "scale: 0.5}]' (with lora=, one more; at most 32)", max_length=32)
    lora_fuse: bool = option(False, "fuse the LoRAs into the weights once loaded: faster steps, a slower start")
    ip_adapter: IPAdapterOptions = option(IPAdapterOptions(), "an image prompt's adapter: ip_adapter=<repo|folder> "
                                                              "with ip_image=<image> (ip_adapter.scale=...)")
    ip_image: Annotated[str, PathMark("path to an image")] | None = option(
        None, "the image prompt (needs ip_adapter=); its embedding is computed once and shared by every view")
    attention: AttentionOptions = option(AttentionOptions(), "attention: attention=sdpa|xformers (the kernels), "
                                                             "attention.cross_view=auto|neighbours|none")
    compile: bool = option(False, "torch.compile the UNet / transformer (the compile time is recorded apart from "
                                  "sampling)")
    vae: VaeOptions = option(VaeOptions(), "VAE memory switches (vae.slicing=true, vae.tiling=true)")

    def settle(self, facts) -> dict:
        """``steps``, ``guidance`` and ``sampler`` left to the model (null / auto): its family's, and the
        model's own preferences (``facts.spec``)."""
        defaults = facts.spec.defaults()
        settled = {key: defaults[key] for key in ("steps", "guidance") if getattr(self, key) is None}
        if self.sampler == "auto":
            settled["sampler"] = defaults["sampler"]
        return settled

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError("expected auto, cpu, cuda, cuda:N or mps")
        return value


def plain_default(value):
    return value.model_dump() if hasattr(value, "model_dump") else value


def group_names(group: str) -> list[str]:
    return REGISTRIES[group].names()


def group_entry(group: str, name: str) -> Entry:
    """The registered entry; a model name that is no preset is a diffusers repository id or folder."""
    if group == "model" and name not in MODELS:
        return MODELS.entry("pretrained")
    if group == "regions" and name not in REGIONS:
        return REGIONS.entry("layout")
    return REGISTRIES[group].entry(name)


def section(group: str, name: str) -> tuple[Entry, dict]:
    """The entry of a group choice and its unvalidated options (defaults <- preset), ``name`` first."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{group}={name!r}: expected a name; choose one of: {', '.join(group_names(group))}")
    entry = group_entry(group, name)
    values = {key: copy.deepcopy(f.default) for key, f in entry.options.model_fields.items()}
    values.update(copy.deepcopy(entry.preset))
    if group == "model" and name not in MODELS:
        values["repo"] = name
    if group == "regions" and name not in REGIONS:
        values["file"] = name
    return entry, {"name": name, **values}


def parse_overrides(args: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not key=value (e.g. prompt=\"a castle\" or sync=syncdiffusion)")
        key, value = arg.split("=", 1)
        if not re.fullmatch(r"[A-Za-z_][\w-]*(\.[\w-]+)*", key):
            raise ConfigError(f"{key!r} is not a config key (write key=value, nested keys with dots)")
        pairs.append((key, value))
    return pairs


def resolve(overrides: Iterable[tuple[str, Any]] | Iterable[str] = ()) -> dict:
    """Defaults <- the app's common defaults <- group choices <- key overrides, validated once."""
    pairs = [p if isinstance(p, tuple) else parse_overrides([p])[0] for p in overrides]
    choices = {g: v for g, v in pairs if g in GROUPS}
    top_fields = RunOptions.model_fields
    app_name = _choice("app", choices.get("app", top_fields["app"].default))
    app_entry, app_section = section("app", app_name)
    inputs = app_entry.inputs.model_fields if app_entry.inputs else {}
    top = {key: copy.deepcopy(plain_default(f.default)) for key, f in top_fields.items()}
    top.update({key: copy.deepcopy(plain_default(f.default)) for key, f in inputs.items()})
    sync_name = choices.get("sync")
    if sync_name in (None, "null"):  # the app's default
        sync_name = app_entry.common.get("sync", DEFAULT_SYNC)
    sync_name = _choice("sync", sync_name)
    model_name = _choice("model", choices.get("model", top["model"]))
    sampler_name = _choice("sampler", choices.get("sampler", top["sampler"]))
    regions_name = _choice("regions", choices.get("regions", top["regions"]))
    sections = {"app": app_section, "sync": section("sync", sync_name)[1], "model": section("model", model_name)[1],
                "sampler": section("sampler", sampler_name)[1], "regions": section("regions", regions_name)[1]}
    if app_entry.facts is not None:  # the method's published settings on this app, under the user's
        sections["sync"].update(copy.deepcopy(app_entry.facts.sync_defaults.get(sync_name, {})))
    entries = {g: group_entry(g, sections[g]["name"]) for g in GROUPS}
    for key, value in pairs:
        if key in GROUPS:
            continue
        moved_from = [old for old in MOVED if key == old or (key == old.split(".")[0] and isinstance(value, dict)
                                                          and old.split(".")[1] in value)]
        if moved_from:
            raise ConfigError(f"{moved_from[0]}= is now {MOVED[moved_from[0]]}= (an option of the averaging syncs, "
                              f"e.g. sync=synctweedies {MOVED[moved_from[0]]}=...)")
        head, _, rest = key.partition(".")
        if head in GROUPS and rest:
            _set_option(sections[head], entries[head].options, head, rest, value)
        elif rest and isinstance(top.get(head), dict):  # a nested section of the common keys (metrics.clip)
            fields = {**top_fields, **inputs}[head].annotation.model_fields
            if rest not in fields:
                raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(f'{head}.{k}' for k in fields)}")
            top[head][rest] = _value(fields[rest], value)
        elif rest:
            raise ConfigError(f"unknown config key {key!r}: {head} has no sub-keys")
        else:
            _set_top(top, key, value, app_name, inputs)
    sync_entry = SYNCS.entry(sync_name)
    for key, value in [*app_entry.common.items(), *sync_entry.common.items()]:  # null: the app's (sync's) default
        if top.get(key) is None:
            top[key] = copy.deepcopy(value)
    top.update(app=app_name, sync=sync_name, model=model_name, sampler=sampler_name, regions=regions_name)
    cfg = validate(RunOptions, {k: v for k, v in top.items() if k in top_fields})
    if app_entry.inputs:
        cfg.update(validate(app_entry.inputs, {k: v for k, v in top.items() if k in inputs}))
    for group in GROUPS:
        options = {k: v for k, v in sections[group].items() if k != "name"}
        cfg[group] = {"name": sections[group]["name"], **validate(entries[group].options, options, group)}
    check_device(cfg["device"])
    if cfg["offload"] != "none" and not cfg["device"].startswith("cuda") and not (
            cfg["device"] == "auto" and _cuda()):
        raise ConfigError(f"offload={cfg['offload']} moves weights between the CPU and a CUDA GPU; this run is on the "
                          "CPU: use offload=none")
    return cfg


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _choice(group: str, value: Any) -> str:
    if isinstance(value, Path):  # model=Path(...) from Python
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{group}={value!r}: expected a name; choose one of: {', '.join(group_names(group))}")
    return value


def _set_top(top: dict, key: str, value: Any, app_name: str, inputs: dict) -> None:
    fields = {**RunOptions.model_fields, **inputs}
    section = fields[key].annotation if key in fields else None
    if isinstance(section, type) and issubclass(section, Options) and "primary" in section.__class_vars__ \
            and not isinstance(value, dict):  # lora=<path>: the section's primary key
        primary = section.primary
        top[key][primary] = _value(section.model_fields[primary], value)
        return
    if key not in fields:
        owners = [name for name in APPS.names() if APPS.entry(name).inputs and key in APPS.entry(name).inputs.model_fields]
        if owners:
            raise ConfigError(f"{key}= is an input of app={' / app='.join(owners)}, not of app={app_name}; "
                              f"add app={owners[0]} (or drop {key}=)")
        for group in GROUPS:
            holders = [n for n in REGISTRIES[group].names() if key in REGISTRIES[group].entry(n).options.model_fields]
            if holders:
                raise ConfigError(f"unknown config key {key!r}: it is an option of {group}={' / '.join(holders)}; "
                                  f"write {group}.{key}=... (with {group}={holders[0]})")
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint}; valid keys: {', '.join(fields)}")
    top[key] = _value(fields[key], value)


def _set_option(values: dict, schema: type[Options], group: str, key: str, value: Any) -> None:
    if "." in key or key not in schema.model_fields:
        owners = [n for n in REGISTRIES[group].names() if key in REGISTRIES[group].entry(n).options.model_fields]
        named = " / ".join(owners[:3]) + (" / ..." if len(owners) > 3 else "")
        where = f" (it is an option of {group}={named})" if owners else ""
        raise ConfigError(f"unknown config key '{group}.{key}' for {group}={values['name']}{where}; "
                          f"valid keys: {', '.join(schema.model_fields) or 'none'}")
    values[key] = _value(schema.model_fields[key], value)


def _value(field, value: Any) -> Any:
    return parse_value(field.annotation, value, field.metadata) if isinstance(value, str) else plain(value)


def check_device(device: str) -> None:
    """The device exists in this torch build and machine, or one clear error."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device}: this machine has no usable CUDA GPU (torch {torch.__version__}); "
                              "use device=cpu or device=auto")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device={device}: there are {torch.cuda.device_count()} CUDA devices "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("device=mps: Apple's MPS backend is not available here; use device=cpu or device=auto")


def expand_multirun(args: list[str]) -> list[list[str]]:
    """``seed=0,1 sync=a,b`` -> the cartesian product of runs; ``\\,`` keeps a literal comma;
    ``mesh=glob:meshes/*.obj`` sweeps over the files the pattern matches (sorted)."""
    axes = []
    for key, value in parse_overrides(args):
        if value.startswith("glob:"):
            import glob

            matches = sorted(glob.glob(value[len("glob:"):], recursive=True))
            if not matches:
                raise ConfigError(f"{key}={value}: the pattern matches no file; check the path (relative to "
                                  f"{Path.cwd()})")
            axes.append([f"{key}={m}" for m in matches])
            continue
        axes.append([f"{key}={p}" for p in sweep_values(value)])
    return [list(combo) for combo in itertools.product(*axes)] if axes else [[]]


def sweep_values(value: str) -> list[str]:
    """``0,1,2`` -> three values; commas inside brackets, braces or quotes (a YAML list or mapping)
    and ``\\,`` do not split."""
    parts, current, depth, quote, i = [], "", 0, None, 0
    while i < len(value):
        char = value[i]
        if char == "\\" and value[i + 1:i + 2] == ",":
            current, i = current + ",", i + 2
            continue
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            parts.append(current)
            current, i = "", i + 1
            continue
        current, i = current + char, i + 1
    return [*parts, current]


def dump(cfg: dict) -> str:
    return yaml.safe_dump(copy.deepcopy(cfg), sort_keys=False, allow_unicode=True)


def overrides_from_file(path: str | Path) -> list[tuple[str, Any]]:
    """A config file -> override pairs: a run's ``config.yaml`` (resolves to the same config) or
    a partial one (``configs/``: only the keys it sets; a group is its name, ``sync: synctweedies``,
    or a mapping with an optional ``name`` and its options)."""
    path = Path(path)
    data = read_yaml(path, f"--config {path}", "a run's config.yaml or a file of configs/")
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"--config {path}: not a syncframe config (a mapping of keys such as app, model, sync, "
                          "prompt); see configs/ for examples")
    pairs: list[tuple[str, Any]] = []
    for key, value in data.items():
        if key in GROUPS and isinstance(value, dict):
            if "name" in value:
                pairs.append((key, value["name"]))
            pairs += [(f"{key}.{k}", v) for k, v in value.items() if k != "name"]
        else:
            pairs.append((key, value))
    return pairs

