"""Single-file checkpoints (``model=<file>.safetensors`` or ``.ckpt``: the A1111 / ComfyUI layout),
loaded through diffusers' ``from_single_file``.

The family is read from the checkpoint's keys (nothing is loaded for a ``.safetensors`` file: its
header lists them; a ``.ckpt`` is opened memory-mapped with ``weights_only``, so a pickle cannot
run code). What a checkpoint lacks, its pipeline's configs (sizes, scheduler, tokenizers), comes
from ``model.config=<local diffusers folder|repo>``, by default the family's reference repository
when it is cached or the hub answers; offline, one line says so.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

SUFFIXES = (".safetensors", ".ckpt")


def is_single_file(source: str) -> bool:
    return Path(source).suffix.lower() in SUFFIXES


def checkpoint_keys(path: Path, key: str = "model") -> list[str]:
    """The tensor names of a checkpoint, or one ConfigError for a file that is none."""
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such file; give a .safetensors or .ckpt checkpoint, a diffusers folder "
                          "or a repository id")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                return list(handle.keys())
        import torch

        state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:  # safetensors' and pickle's errors share no base class
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ConfigError(f"{key}={path} is not a readable checkpoint ({reason}); give a .safetensors file or a .ckpt "
                          "holding only tensors (a pickle that would run code is refused)") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ConfigError(f"{key}={path} holds {type(state).__name__}, not a state dict; give a model checkpoint")
    return list(state)


def detect(keys: list[str]) -> str | None:
    """The kind of a checkpoint from its key layout: sd-v1, sd-v2, sdxl, sd3, flux-dev, flux-schnell."""
    names = set(keys)
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(".joint_blocks." in k or k.startswith("joint_blocks.") for k in keys):
        return "sd3"
    if any(k.startswith(("double_blocks.", "model.diffusion_model.double_blocks.")) for k in keys):
        return "flux-dev" if any(k.endswith("guidance_in.in_layer.weight") for k in keys) else "flux-schnell"
    if "model.diffusion_model.input_blocks.0.0.weight" in names:
        return "sd-v2" if any(k.startswith("cond_stage_model.model.") for k in keys) else "sd-v1"
    return None


def resolve_checkpoint(path: str, family: str, config: str | None) -> tuple[str, str]:
    """(family, the configs' folder or repository) of the checkpoint at ``path``, checked."""
    from .families import family as family_named, family_of_checkpoint
    from .hub import locate

    file = Path(path).expanduser()
    keys = checkpoint_keys(file)
    kind = detect(keys)
    if family == "auto":
        if kind is None:
            raise ConfigError(f"model={path} is a checkpoint of a layout syncframe does not know (neither SD 1.x/2.x, "
                              "SDXL, SD3 nor FLUX keys); set model.family= if it is one of them, or convert it to a "
                              "diffusers folder")
        family = family_of_checkpoint(kind).name
    if config is not None:
        found = locate(config, "model.config")
        check_config_folder(found, config, family, path)
        return family, found
    layouts = family_named(family).checkpoints  # the reference repository whose configs the layout takes
    default = layouts.get(kind or "", next(iter(layouts.values())))
    try:
        return family, locate(default, "model.config")
    except ConfigError:
        raise ConfigError(f"model={path} is a single-file {family} checkpoint; its pipeline's configs (sizes, "
                          f"scheduler, tokenizers) come from model.config=<local diffusers folder|repo>, and the "
                          f"default, {default}, is neither cached nor downloadable now: give model.config= (any "
                          f"diffusers folder of the same family)") from None


def check_config_folder(found: str, given: str, family: str, checkpoint: str) -> None:
    """A local ``model.config=`` folder is a diffusers pipeline of the checkpoint's family (its
    ``model_index.json`` says which), or one line about model.config=, not about model=."""
    import json

    from .families import DIFFUSERS, family as family_named

    folder = Path(found)
    if not folder.is_dir():
        return  # a repository id the hub will answer for: diffusers checks it
    index = folder / "model_index.json"
    if not index.is_file():
        raise ConfigError(f"model.config={given} has no model_index.json: it is not a diffusers pipeline folder; give "
                          f"the folder of a diffusers {family} pipeline (its configs are what the checkpoint lacks)")
    try:
        named = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"model.config={given}: its model_index.json is not readable ({exc}); give a diffusers "
                          f"{family} pipeline folder") from None
    wanted = family_named(family).pipeline_class().__name__
    others = {f.pipeline for f in DIFFUSERS if f.name != family and f.pipeline != wanted}
    if named in others:  # another family's pipeline; a class no family names is left to diffusers
        raise ConfigError(f"model.config={given} holds a {named}'s configs, and model={checkpoint} is a {family} "
                          f"checkpoint ({wanted}); give model.config= a {family} pipeline folder")


def lowercase_suffix(path: Path) -> tuple[Path, object]:
    """``path``, or a link to it named with a lower-case suffix (``X.SAFETENSORS``: diffusers decides
    a file's format by its suffix, case and all) and the temporary folder holding it."""
    if path.suffix == path.suffix.lower():
        return path, None
    import tempfile

    holder = tempfile.TemporaryDirectory(prefix="syncframe-ckpt-")
    link = Path(holder.name) / (path.stem + path.suffix.lower())
    link.symlink_to(path.resolve())
    return link, holder


def load_pipeline(path: str, family: str, config: str, dtype, name: str):
    """The family's diffusers pipeline from a single file (weights) and ``config`` (everything else)."""
    from .families import family as family_named

    described = family_named(family)
    cls = described.pipeline_class()
    # from_single_file takes the safety checker's switches but no feature extractor
    extra = {k: v for k, v in described.pipeline_kwargs.items() if k != "feature_extractor"}
    local = Path(config).is_dir()
    file, holder = lowercase_suffix(Path(path).expanduser())
    try:
        return cls.from_single_file(str(file), config=config, torch_dtype=dtype, local_files_only=local, **extra)
    except Exception as exc:  # diffusers' SingleFileComponentError, OSError, ValueError, KeyError, ...
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(f"could not load model {name!r} as a single-file {family} checkpoint with the configs of "
                          f"{config} ({reason}); check model.config= names a folder of the same family and "
                          "size") from None
    finally:
        if holder is not None:
            holder.cleanup()
