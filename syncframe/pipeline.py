"""The Python API: resolve a config, run the joint loop, return images + metadata, save a run folder."""
from __future__ import annotations

import json
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from . import __version__
from .config import dump, group_entry, resolve
from .errors import ConfigError
from .messages import collecting
from .models.denoiser import Denoiser, load_controlnet, pick_device, pick_dtype
from .models.hub import locate
from .outputs import RunFolder, default_out
from .registry import APPS, SYNCS
from .loop import sample


@dataclass
class Result:
    """Output files by name (PIL images, text or bytes), the canonical tensor, the final views, and metadata."""

    images: dict
    canonical: torch.Tensor
    views: torch.Tensor
    config: dict
    metadata: dict = field(default_factory=dict)

    def write(self, folder: RunFolder) -> Path:
        """Write the outputs, ``config.yaml`` and ``run.json`` (with the time the others took) into
        a claimed folder and publish it."""
        clock = time.perf_counter()

        def run_json():
            self.metadata["out"] = str(folder.target)
            self.metadata["timings_s"]["write"] = round(time.perf_counter() - clock, 4)
            return {"run.json": json.dumps(self.metadata, indent=2)}

        try:
            return folder.commit({**self.images, "config.yaml": dump(self.config)}, last=run_json)
        except OSError as exc:
            raise ConfigError(f"could not write the outputs to {folder.target} ({exc.strerror or exc}); "
                              "free some disk space or choose another out=") from None

    def save(self, out: str | Path) -> Path:
        """Write the run folder ``out`` (absent or empty) atomically: complete, or nothing."""
        folder = RunFolder(out).claim()
        try:
            return self.write(folder)
        except BaseException:
            folder.abandon()
            raise


def overrides_from_kwargs(args: tuple, kwargs: dict) -> list:
    """``generate("steps=5", sync={"name": "syncdiffusion", "weight": 10}, seed=1)`` -> override pairs."""
    pairs: list = list(args)
    for key, value in kwargs.items():
        if isinstance(value, dict):
            options = dict(value)
            if "name" in options:
                pairs.append((key, options.pop("name")))
            pairs += [(f"{key}.{k}", v) for k, v in options.items()]
        else:
            pairs.append((key, value))
    return pairs


def load_denoiser(cfg: dict) -> Denoiser:
    device = pick_device(cfg["device"])
    dtype = pick_dtype(cfg["dtype"], device)
    m = cfg["model"]
    denoiser = group_entry("model", m["name"]).factory(m, device, dtype, guidance=cfg["guidance"],
                                                       view_batch_size=cfg["view_batch_size"])
    if cfg["controlnet"]:
        denoiser.controlnet = load_controlnet(cfg["controlnet"], denoiser.unet, device, dtype)
        denoiser.controlnet_scale = cfg["controlnet_scale"]
    return denoiser


def peak_memory_mb(device: torch.device) -> dict:
    peak = {"cpu_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        peak["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return peak


def generate(*overrides, denoiser: Denoiser | None = None, **kwargs) -> Result:
    """Run one job. Overrides as ``"key=value"`` strings and/or keyword arguments.

    ``denoiser`` reuses already-loaded components (e.g. across a sweep); its model must
    match ``cfg.model``.
    """
    cfg = resolve(overrides_from_kwargs(overrides, kwargs))
    return generate_from_config(cfg, denoiser)


def prepare(cfg: dict):
    """Build the app (and its space) and the synchronizer: all input checks, no model yet; the
    weights the run needs are found first (cache, folder, or a reachable hub)."""
    if cfg["model"]["kind"] == "pretrained":
        locate(cfg["model"]["repo"], "model")
    if cfg["controlnet"] and cfg["controlnet"] != "tiny":
        locate(cfg["controlnet"], "controlnet")
    app = APPS.get(cfg["app"]["name"])(cfg)
    if cfg["controlnet"] and not app.can_control():
        raise ConfigError("controlnet= needs a control input, and this run has none: give one (e.g. app=panorama360 "
                          "depth=<equirect depth image>; app=mesh uses its rendered depth) or drop controlnet=")
    if app.control_given() and not cfg["controlnet"]:
        raise ConfigError("this run has a control input (depth=) but no ControlNet: set controlnet=<repo|folder> "
                          "or drop the control input")
    sync = SYNCS.get(cfg["sync"]["name"])(cfg, app.space)
    return app, sync


def generate_from_config(cfg: dict, denoiser: Denoiser | None = None, prepared=None) -> Result:
    with collecting() as notes:
        app, sync = prepared or prepare(cfg)
        timings = {"build_space": app.build_s}
        clock = time.perf_counter()
        if denoiser is None:
            denoiser = load_denoiser(cfg)
        channels = app.space.view_shape[0]
        if denoiser.latent_scale != 8 or denoiser.latent_channels != channels:
            raise ConfigError(f"model {cfg['model']['name']!r} has {denoiser.latent_channels} latent channels and "
                              f"VAE factor {denoiser.latent_scale}; this run needs {channels} and 8 "
                              "(a Stable Diffusion 1.x/2.x model, or model.latent_channels to match)")
        if torch.cuda.is_available() and denoiser.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(denoiser.device)
        timings["load"] = time.perf_counter() - clock

        clock = time.perf_counter()
        prompts, view_prompt = app.prompts()
        cond = denoiser.encode_prompts(prompts, cfg["negative_prompt"], view_prompt)
        control = app.control_images() if denoiser.controlnet is not None else None
        if control is not None:
            cond.control = control.to(denoiser.device, denoiser.dtype)
        timings["encode"] = time.perf_counter() - clock

        clock = time.perf_counter()
        generator = torch.Generator("cpu").manual_seed(cfg["seed"])
        views = sample(app.space, denoiser, sync, cond, cfg["steps"], generator, eta=cfg["eta"],
                       progress=cfg["progress"])
        timings["sample"] = time.perf_counter() - clock

        clock = time.perf_counter()
        images, canonical = app.finalize(views, denoiser)
        timings["finalize"] = time.perf_counter() - clock

    metadata = {
        "app": cfg["app"]["name"], "sync": cfg["sync"]["name"], "model": cfg["model"]["name"],
        "seed": cfg["seed"], "steps": cfg["steps"], "num_views": app.space.num_views,
        "view_batch_size": denoiser.resolve_batch_size(app.space.num_views),
        "device": str(denoiser.device), "dtype": str(denoiser.dtype).replace("torch.", ""),
        "gpu": torch.cuda.get_device_name(denoiser.device) if denoiser.device.type == "cuda" else None,
        "resolved": getattr(sync, "resolved", {}),
        "notes": notes,
        "versions": {"syncframe": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "diffusers": _version("diffusers"), "transformers": _version("transformers")},
        "command": sys.argv if Path(sys.argv[0]).name in ("syncframe", "__main__.py") else None,
        "created": datetime.now().isoformat(timespec="seconds"),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "peak_memory": peak_memory_mb(denoiser.device),
        **({"metrics": app.report} if app.report else {}),
    }
    return Result(images, canonical.detach().cpu(), views.detach().cpu(), cfg, metadata)


def run(cfg: dict, out: str | Path | None = None, denoiser: Denoiser | None = None) -> tuple[Path, Result]:
    """Claim the output folder, check everything, generate, and publish the folder; a failed or
    interrupted run leaves nothing behind."""
    target = out or cfg["out"]
    folder = RunFolder(target or default_out(cfg["app"]["name"]), explicit=target is not None).claim()
    try:
        result = generate_from_config(cfg, denoiser)
        return result.write(folder), result
    except BaseException:
        folder.abandon()
        raise


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
