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
        return family, locate(config, "model.config")
    layouts = family_named(family).checkpoints  # the reference repository whose configs the layout takes
    default = layouts.get(kind or "", next(iter(layouts.values())))
    try:
        return family, locate(default, "model.config")
    except ConfigError:
        raise ConfigError(f"model={path} is a single-file {family} checkpoint; its pipeline's configs (sizes, "
                          f"scheduler, tokenizers) come from model.config=<local diffusers folder|repo>, and the "
                          f"default, {default}, is neither cached nor downloadable now: give model.config= (any "
                          f"diffusers folder of the same family)") from None


def load_pipeline(path: str, family: str, config: str, dtype, name: str):
    """The family's diffusers pipeline from a single file (weights) and ``config`` (everything else)."""
    from .families import family as family_named

    described = family_named(family)
    cls = described.pipeline_class()
    # from_single_file takes the safety checker's switches but no feature extractor
    extra = {k: v for k, v in described.pipeline_kwargs.items() if k != "feature_extractor"}
    local = Path(config).is_dir()
    try:
        return cls.from_single_file(str(Path(path).expanduser()), config=config, torch_dtype=dtype,
                                    local_files_only=local, **extra)
    except Exception as exc:  # diffusers' SingleFileComponentError, OSError, ValueError, KeyError, ...
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(f"could not load model {name!r} as a single-file {family} checkpoint with the configs of "
                          f"{config} ({reason}); check model.config= names a folder of the same family and "
                          "size") from None
