"""The user's own additions to a model, loaded the way diffusers loads them: LoRAs (PEFT backend,
``load_lora_weights`` / ``set_adapters``), IP-Adapter image prompts (``load_ip_adapter``), and the
speed switches (attention kernels, ``torch.compile``, VAE slicing and tiling).

Everything a run names is checked in :func:`check` before any weights load (paths, formats, the
family a LoRA was made for, installed packages); :func:`apply` then loads it into the denoiser's
diffusers pipeline and says what it did, for ``run.json``.
"""
from __future__ import annotations

import hashlib
import importlib
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from ..errors import ConfigError
from . import families
from .hub import locate

LORA_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# What the keys of a LoRA file start with, by the network it adapts (diffusers' and kohya's names).
UNET_PREFIXES = ("unet.", "lora_unet_", "text_encoder", "lora_te")
TRANSFORMER_PREFIXES = ("transformer.", "lora_transformer_", "diffusion_model.", "double_blocks", "single_blocks")


def all_loras(run) -> list:
    """``lora=`` then ``loras=`` of the common keys ``run``, the ones with a path, in the order they are loaded."""
    return [item for item in [run.lora, *run.loras] if item.path]


def lora_file(item) -> Path | None:
    """The local file of a LoRA (None for a repository id not known locally yet)."""
    path = Path(item.path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if item.weight_name:
            return path / item.weight_name
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in LORA_SUFFIXES)
        return files[0] if len(files) == 1 else None
    return None


def check(run, family: str) -> None:
    """Everything the run's adapters and switches need (``run``: the common keys), checked before weights load."""
    for i, item in enumerate(all_loras(run)):
        key = "lora" if i == 0 and run.lora.path else f"loras[{i - bool(run.lora.path)}]"
        path = Path(item.path).expanduser()
        if path.suffix.lower() in LORA_SUFFIXES and not path.exists():
            raise ConfigError(f"{key}={item.path}: no such file; give a LoRA .safetensors file, a folder or a "
                              "repository id")
        if not path.exists():
            locate(item.path, key)  # a repository id: cached, or the hub reachable, or one line
        file = lora_file(item)
        if path.is_dir() and file is None:
            raise ConfigError(f"{key}={item.path} holds no single LoRA file; name it with {key}.weight_name=")
        if file is not None:
            check_lora_file(file, key, family)
    ip = run.ip_adapter
    if ip.path and not run.ip_image:
        raise ConfigError("ip_adapter= needs an image prompt: give ip_image=<image> (or drop ip_adapter=)")
    if run.ip_image and not ip.path:
        raise ConfigError("ip_image= needs an IP-Adapter to read it: give ip_adapter=<repo|folder> (e.g. "
                          "h94/IP-Adapter) or drop ip_image=")
    if ip.path:
        if not families.family(family).can("ip_adapter"):  # FLUX's takes its embedding another way: not wired yet
            raise ConfigError(f"ip_adapter= works with SD 1/2 and SDXL models here; this model is {family}: drop "
                              "ip_adapter=")
        locate(ip.path, "ip_adapter")
        from ..images import image_size

        image_size(run.ip_image, "ip_image")
    if run.attention.kernels == "xformers":
        try:
            importlib.import_module("xformers.ops")
        except ImportError as exc:
            raise ConfigError(f"attention=xformers needs the xformers package ({exc}); pip install xformers on a "
                              "CUDA machine, or use attention=sdpa") from None


def check_lora_file(file: Path, key: str, family: str) -> None:
    """A LoRA file is readable and made for this kind of network (UNet or transformer)."""
    if file.suffix.lower() != ".safetensors":
        return  # pickled LoRAs are read by diffusers with weights_only; their keys are checked on load
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ConfigError(f"{key}={file} is not a readable safetensors file ({str(exc).splitlines()[0][:120]}); "
                          "give a LoRA in diffusers' or kohya's format") from None
    if not keys:
        raise ConfigError(f"{key}={file} holds no tensors; give a LoRA file")
    unet = sum(k.startswith(UNET_PREFIXES) for k in keys)
    transformer = sum(k.startswith(TRANSFORMER_PREFIXES) for k in keys)
    wants = families.family(family).lora_network
    if (wants == "unet" and transformer and not unet) or (wants == "transformer" and unet and not transformer):
        made = "an SD3 or FLUX transformer" if transformer else "an SD 1/2 or SDXL UNet"
        raise ConfigError(f"{key}={file} is a LoRA for {made}, and this model is {family}; give a LoRA made for "
                          "this model's family")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def apply(denoiser, run, family: str) -> dict:
    """Load the run's LoRAs and IP-Adapter into ``denoiser.pipe`` and switch attention, compile and
    the VAE's slicing/tiling (``run``: the common keys); returns what was done (for ``run.json``)."""
    done: dict = {}
    loras = all_loras(run)
    if loras or run.ip_adapter.path or run.vae.slicing or run.vae.tiling:
        if denoiser.pipe is None:
            raise ConfigError(f"model={denoiser.name} is no diffusers model: LoRAs, IP-Adapters and vae.* switches "
                              "need one")
    if loras:
        done["loras"] = load_loras(denoiser, loras, run.lora_fuse, family)
    if run.ip_adapter.path:
        done["ip_adapter"] = load_ip_adapter(denoiser, run.ip_adapter)
    if run.vae.slicing:
        denoiser.vae.enable_slicing()
    if run.vae.tiling:
        denoiser.vae.enable_tiling()
    if run.attention.kernels == "xformers":
        try:
            denoiser.backbone.enable_xformers_memory_efficient_attention()
        except Exception as exc:  # xformers raises for devices and dtypes it does not support
            raise ConfigError(f"attention=xformers could not be switched on ({str(exc).splitlines()[0]}); use "
                              "attention=sdpa") from None
    return done


def load_loras(denoiser, loras: list, fuse: bool, family: str) -> list[dict]:
    pipe, names, records = denoiser.pipe, [], []
    for i, item in enumerate(loras):
        name = f"lora_{i}"
        source = item.path if Path(item.path).expanduser().exists() else locate(item.path, "lora")
        file = lora_file(item)
        if file is not None and file.is_file():  # the file itself: diffusers reads X.SAFETENSORS by name as a pickle
            source = str(file)
        kwargs = {"weight_name": item.weight_name} if item.weight_name and not Path(source).is_file() else {}
        with diffusers_log() as said:
            try:
                pipe.load_lora_weights(source, adapter_name=name, **kwargs)
            except Exception as exc:  # diffusers and peft raise many types for a LoRA that does not fit
                reason = " ".join(str(exc).split())[:200]
                raise ConfigError(f"lora={item.path} could not be loaded into this {family} model "
                                  f"({reason}); a LoRA for another family or model size, or a damaged file") from None
        unexpected = [line for line in said if "unexpected keys" in line]
        if unexpected:
            extra = unexpected[0].split(":", 1)[-1].split(",")
            raise ConfigError(f"lora={item.path}: {len(extra)} of its tensors name layers this {family} model does not "
                              f"have (e.g. {extra[0].strip()[:80]}); a LoRA for another model, or its keys renamed")
        if not any(name in adapters for adapters in pipe.get_list_adapters().values()):
            raise ConfigError(f"lora={item.path} has no weights for this {family} model's networks "
                              "(a LoRA for another family?); give a LoRA made for this model")
        records.append({"path": item.path, "scale": item.scale, "adapter": name,
                        "sha256": sha256(file) if file is not None and file.is_file() else None})
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[item.scale for item in loras])
    if fuse:
        clock = time.perf_counter()
        pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
        pipe.unload_lora_weights()  # the fused weights stay; the adapters' layers go
        records[-1]["fuse_s"] = round(time.perf_counter() - clock, 4)
    return records


@contextmanager
def diffusers_log():
    """diffusers' log lines while a LoRA loads, kept instead of printed (a size mismatch is 60 lines
    of them before the one line syncframe says); yields the list they are collected in."""
    import logging

    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    logger = logging.getLogger("diffusers")
    handlers, propagate, level = logger.handlers[:], logger.propagate, logger.level
    logger.handlers, logger.propagate = [Keep(logging.WARNING)], False
    logger.setLevel(logging.WARNING)  # the run keeps diffusers at errors only; its key warnings are wanted here
    try:
        with warnings.catch_warnings(record=True) as warned:  # peft warns of unexpected keys, torch.load of pickles
            warnings.simplefilter("always")
            yield said
            said += [str(w.message) for w in warned]
    finally:
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


def load_ip_adapter(denoiser, options) -> dict:
    pipe = denoiser.pipe
    kwargs = {"image_encoder_folder": options.image_encoder} if options.image_encoder else {}
    try:
        pipe.load_ip_adapter(locate(options.path, "ip_adapter"), subfolder=options.subfolder,
                             weight_name=options.weight_name, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(f"ip_adapter={options.path} could not be loaded ({reason}); give an IP-Adapter "
                          "repository or folder made for this model, with ip_adapter.subfolder= and "
                          "ip_adapter.weight_name= naming its weights") from None
    pipe.set_ip_adapter_scale(options.scale)
    return {"path": options.path, "weight_name": options.weight_name, "scale": options.scale}


def compile_backbone(denoiser) -> None:
    """``torch.compile`` the UNet or transformer in place (its first calls compile)."""
    denoiser.backbone.compile()


def image_prompt_embeds(denoiser, image) -> torch.Tensor:
    """The IP-Adapter embedding of ``image`` ``[2, ...]`` (negative, positive), computed once."""
    pipe = denoiser.pipe
    with torch.no_grad():
        embeds = pipe.prepare_ip_adapter_image_embeds(ip_adapter_image=image, ip_adapter_image_embeds=None,
                                                      device=denoiser.device, num_images_per_prompt=1,
                                                      do_classifier_free_guidance=True)
    (embed,) = embeds  # one adapter: [negative; positive]
    negative, positive = embed.chunk(2)
    return torch.stack([negative[0], positive[0]])


def wanted(run) -> tuple:
    """What a run asks to be loaded into its model: (LoRAs as (path, scale), IP-Adapter path)."""
    return tuple((item.path, item.scale) for item in all_loras(run)), run.ip_adapter.path


def loaded(denoiser) -> tuple:
    """What was loaded into ``denoiser`` (as :func:`wanted` says it)."""
    extras = denoiser.extras
    return (tuple((item["path"], item["scale"]) for item in extras.get("loras", [])),
            extras.get("ip_adapter", {}).get("path"))
