"""The ``model=`` group: pretrained diffusers repositories of every family, offline random-weight
twins and analytic priors, each a registered schema with presets. A name that is no preset is a
diffusers repository id or local folder (``pretrained``).

Each entry's factory returns the model's :class:`~syncframe.models.spec.ModelSpec` (cheap: configs
only) and its loader; :func:`model_spec` and :func:`load_model` dispatch to them.
"""
from __future__ import annotations

from typing import Literal

import torch

from ..errors import ConfigError
from ..options import Options, Source, option
from ..registry import MODELS, register_model
from ..samplers import VP
from .spec import ModelSpec

Family = Literal["auto", "sd", "sdxl", "sd3", "flux"]


class PretrainedOptions(Options):
    kind: Literal["pretrained"] = option("pretrained", "weights from a diffusers repository or folder")
    repo: Source = option("stabilityai/stable-diffusion-2-base", "diffusers repository id or local folder")
    family: Family = option("auto", "model family; auto = read from the repository's model_index.json")
    config: Source | None = option(None, "a single-file checkpoint's pipeline configs: a diffusers folder or repository "
                                         "of the same family; null = the family's reference repository")
    t5: Literal["same", "cpu", "drop"] = option(
        "same", "SD3 / FLUX T5 text encoder: on the run's device, on the CPU (saves ~9 GB of GPU memory), "
                "or dropped (SD3 only: zeros for its embedding)")


class OfflineOptions(Options):
    kind: Literal["offline"] = option("offline", "components built in code with seeded random weights")
    builder: Literal["tiny", "mid", "tiny-sdxl", "tiny-sd3", "tiny-flux"] = option(
        "tiny", "which twin: tiny / mid (SD 1/2), tiny-sdxl, tiny-sd3, tiny-flux")
    seed: int = option(0, "seed of the random weights", ge=0, le=2**32 - 1)
    prediction_type: Literal["epsilon", "v_prediction"] = option(
        "epsilon", "what the random UNet predicts (UNet twins; the flow twins predict velocity)")


class AnalyticOptions(Options):
    kind: Literal["analytic"] = option("analytic", "a closed-form Gaussian prior: exact ε, no weights")
    scenes: list[Literal["day", "night", "sunset"]] = option(
        ["day"], "the Gaussian scenes of the prior (syncframe/models/analytic.py)", min_length=1)
    prompt_weight: float = option(0.9, "prior mass on the scenes a prompt names", gt=0, lt=1)


def model_spec(cfg: dict) -> ModelSpec:
    """The spec of ``cfg["model"]``, before any weights load (may read small config files)."""
    m = cfg["model"]
    if m["kind"] == "pretrained":
        from .hub import locate
        from .single_file import is_single_file, resolve_checkpoint
        from .spec import pretrained_spec

        if is_single_file(m["repo"]):
            family, config = resolve_checkpoint(m["repo"], m["family"], m["config"])
            return pretrained_spec(config, family, m["repo"])
        if m["config"] is not None:
            raise ConfigError(f"model.config={m['config']} is for single-file checkpoints; model={m['repo']} is a "
                              "diffusers folder or repository with configs of its own: drop model.config=")
        return pretrained_spec(locate(m["repo"], "model"), m["family"], m["repo"])
    if m["kind"] == "offline":
        from .offline import offline_spec

        return offline_spec(m["builder"], m["prediction_type"])
    from .offline import SD_SCHEDULE

    return ModelSpec("analytic", 64, 3, 8, VP, dict(SD_SCHEDULE))


def load_model(cfg: dict, spec: ModelSpec, device: torch.device, dtype: torch.dtype, **kwargs):
    """The denoiser of ``cfg["model"]`` on ``device``."""
    m = cfg["model"]
    return MODELS.get(m["name"] if m["name"] in MODELS else "pretrained")(m, spec, device, dtype, **kwargs)


@register_model("pretrained", options=PretrainedOptions)
def load_pretrained(options: dict, spec: ModelSpec, device, dtype, **kwargs):
    """Any diffusers SD 1.x/2.x, SDXL, SD3 or FLUX repository id or local folder."""
    from .hub import locate
    from .single_file import is_single_file, load_pipeline, resolve_checkpoint

    name = options["repo"]
    if is_single_file(name):
        family, config = resolve_checkpoint(name, spec.family, options["config"])
        return wrap_pipeline(load_pipeline(name, family, config, dtype, name), family, device, name, options["t5"],
                             **kwargs)
    source = locate(options["repo"], "model")
    if spec.family in ("sd", "sdxl"):
        from .unet import load_unet_family

        return load_unet_family(source, spec.family, device, dtype, name, **kwargs)
    if spec.family == "sd3":
        from .sd3 import load_sd3

        return load_sd3(source, device, dtype, name, t5=options["t5"], **kwargs)
    from .flux import load_flux

    return load_flux(source, device, dtype, name, t5=options["t5"], **kwargs)


def wrap_pipeline(pipe, family: str, device, name: str, t5: str = "same", **kwargs):
    """The denoiser of ``family`` over an already-built diffusers pipeline's components."""
    if family in ("sd", "sdxl"):
        from .unet import unet_from_pipe

        return unet_from_pipe(pipe, family, device, name, **kwargs)
    if family == "sd3":
        from .sd3 import sd3_from_pipe

        return sd3_from_pipe(pipe, device, name, t5, **kwargs)
    from .flux import flux_from_pipe

    return flux_from_pipe(pipe, device, name, t5, **kwargs)


PRETRAINED = {
    "sd2-base": "stabilityai/stable-diffusion-2-base",
    "sd21-base": "stabilityai/stable-diffusion-2-1-base",
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sd3-medium": "stabilityai/stable-diffusion-3-medium-diffusers",
    "sd35-medium": "stabilityai/stable-diffusion-3.5-medium",
    "flux-schnell": "black-forest-labs/FLUX.1-schnell",
    "flux-dev": "black-forest-labs/FLUX.1-dev",
}
for _name, _repo in PRETRAINED.items():
    register_model(_name, options=PretrainedOptions, preset={"repo": _repo}, summary=_repo)(load_pretrained)


@register_model("offline", options=OfflineOptions)
def load_offline(options: dict, spec: ModelSpec, device, dtype, **kwargs):
    """Offline twins with seeded random weights: noise, not pictures."""
    from .offline import build_offline

    return build_offline(options["builder"], options["seed"], options["prediction_type"], name=options["name"],
                         **kwargs).to(device=device, dtype=dtype)


TWINS = {
    "tiny": "SD 1/2 twin, tiny: tests and smoke runs (noise, not pictures)",
    "mid": "SD 1/2 twin, mid-size: timing the framework on a CPU",
    "tiny-sdxl": "SDXL twin (pooled text + time ids, two CLIP encoders), tiny",
    "tiny-sd3": "SD3 twin (16-channel flow transformer, CLIP x2 + T5), tiny",
    "tiny-flux": "FLUX twin (packed latents, CLIP + T5, guidance embedded), tiny",
}
for _name, _summary in TWINS.items():
    register_model(_name, options=OfflineOptions, preset={"builder": _name}, summary=_summary)(load_offline)


@register_model("analytic", options=AnalyticOptions)
def load_analytic(options: dict, spec: ModelSpec, device, dtype, **kwargs):
    """A closed-form Gaussian-mixture prior: exact posterior mean, no weights."""
    from .analytic import build_analytic

    return build_analytic(options, **kwargs).to(device)


register_model("gaussian", options=AnalyticOptions, preset={"scenes": ["day"]},
               summary="closed-form Gaussian prior over each view (one scene)")(load_analytic)
register_model("gaussian-mixture", options=AnalyticOptions, preset={"scenes": ["day", "night", "sunset"]},
               summary="closed-form mixture of three scenes (day, night, sunset); a prompt naming one weights it")(
    load_analytic)
