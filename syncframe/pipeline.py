"""The Python API: resolve a config, run the joint loop, return images + metadata, save a run folder."""
from __future__ import annotations

import json
import platform
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from . import __version__
from .config import dump, resolve
from .models.denoiser import Denoiser, from_pretrained, load_controlnet, pick_device, pick_dtype
from .errors import ConfigError
from .registry import APPS, SYNCS
from .sampler import sample


@dataclass
class Result:
    """Output files by name (PIL images, text or bytes), the canonical tensor, the final views, and metadata."""

    images: dict
    canonical: torch.Tensor
    views: torch.Tensor
    config: dict
    metadata: dict = field(default_factory=dict)

    def save(self, out: str | Path) -> Path:
        """Write images, ``config.yaml`` and ``run.json`` into ``out`` atomically."""
        out = Path(out)
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"output folder {out} exists and is not empty; choose another out=")
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            started = time.perf_counter()
            for name, item in self.images.items():
                if isinstance(item, str):
                    (partial / name).write_text(item, encoding="utf-8")
                elif isinstance(item, bytes):
                    (partial / name).write_bytes(item)
                else:
                    item.save(partial / name)
            (partial / "config.yaml").write_text(dump(self.config))
            self.metadata["timings_s"]["write"] = round(time.perf_counter() - started, 4)
            (partial / "run.json").write_text(json.dumps(self.metadata, indent=2))
            if out.exists():
                out.rmdir()
            partial.rename(out)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return out


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
    options = dict(guidance=float(cfg["guidance"]), view_batch_size=cfg["view_batch_size"])
    if m.get("analytic"):
        from .models.analytic import build_analytic

        if cfg["controlnet"]:
            raise ConfigError(f"model={m['name']} is analytic and takes no ControlNet; drop controlnet=")
        return build_analytic(m, **options).to(device)
    if m.get("builder"):
        from .models.offline import build_components

        parts = build_components(m["builder"], seed=int(m["seed"]), prediction_type=m["prediction_type"])
        denoiser = Denoiser(**parts, name=m["name"], **options).to(device=device, dtype=dtype)
    else:
        denoiser = from_pretrained(m["repo"], device, dtype, **options)
    if cfg["controlnet"]:
        denoiser.controlnet = load_controlnet(str(cfg["controlnet"]), denoiser.unet, device, dtype)
        denoiser.controlnet_scale = float(cfg["controlnet_scale"])
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
    """Build the app (and its space) and the synchronizer: all input checks, no model yet."""
    app = APPS.get(cfg["app"]["name"])(cfg)
    sync = SYNCS.get(cfg["sync"]["name"])(cfg)
    return app, sync


def generate_from_config(cfg: dict, denoiser: Denoiser | None = None, prepared=None) -> Result:
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
    control = app.control_images()
    if (control is None) != (denoiser.controlnet is None):
        raise ConfigError("controlnet= and a control input go together: give both (e.g. app=panorama360 "
                          "depth=<image> controlnet=<repo>) or neither")
    if control is not None:
        cond.control = control.to(denoiser.device, denoiser.dtype)
    timings["encode"] = time.perf_counter() - clock

    clock = time.perf_counter()
    generator = torch.Generator("cpu").manual_seed(int(cfg["seed"]))
    views = sample(app.space, denoiser, sync, cond, int(cfg["steps"]), generator, eta=float(cfg["eta"]),
                   progress=bool(cfg["progress"]))
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
        "versions": {"syncframe": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "diffusers": _version("diffusers"), "transformers": _version("transformers")},
        "command": sys.argv if Path(sys.argv[0]).name == "syncframe" else None,
        "created": datetime.now().isoformat(timespec="seconds"),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "peak_memory": peak_memory_mb(denoiser.device),
        **({"metrics": app.report} if app.report else {}),
    }
    return Result(images, canonical.detach().cpu(), views.detach().cpu(), cfg, metadata)


def default_out(cfg: dict) -> Path:
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    base = Path("outputs") / cfg["app"]["name"] / stamp
    out, k = base, 1
    while out.exists():
        out, k = base.with_name(f"{stamp}-{k}"), k + 1
    return out


def run(cfg: dict, out: str | Path | None = None, denoiser: Denoiser | None = None) -> tuple[Path, Result]:
    """Check everything, generate, and write the run folder; nothing is left behind on failure."""
    prepared = prepare(cfg)
    target = Path(out or cfg["out"] or default_out(cfg))
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"output folder {target} exists and is not empty; choose another out=")
    result = generate_from_config(cfg, denoiser, prepared)
    return result.save(target), result


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
