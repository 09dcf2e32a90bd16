"""The ``model=`` group: pretrained diffusers repositories, offline random-weight twins and analytic
priors, each a registered schema with presets. A name that is no preset is a diffusers repository
id or local folder (``pretrained``)."""
from __future__ import annotations

from typing import Literal

import torch

from ..options import Options, Source, option
from ..registry import register_model


class PretrainedOptions(Options):
    kind: Literal["pretrained"] = option("pretrained", "weights from a diffusers repository or folder")
    repo: Source = option("stabilityai/stable-diffusion-2-base", "diffusers repository id or local folder")


class OfflineOptions(Options):
    kind: Literal["offline"] = option("offline", "components built in code with seeded random weights")
    builder: Literal["tiny", "mid"] = option("tiny", "tiny (tests, smoke runs) | mid (framework timing on a CPU)")
    seed: int = option(0, "seed of the random weights", ge=0, le=2**32 - 1)
    prediction_type: Literal["epsilon", "v_prediction"] = option("epsilon", "what the random UNet predicts")


class AnalyticOptions(Options):
    kind: Literal["analytic"] = option("analytic", "a closed-form Gaussian prior: exact ε, no weights")
    scenes: list[Literal["day", "night", "sunset"]] = option(
        ["day"], "the Gaussian scenes of the prior (syncframe/models/analytic.py)", min_length=1)
    prompt_weight: float = option(0.9, "prior mass on the scenes a prompt names", gt=0, lt=1)
    latent_channels: Literal[3] = option(3, "the latent is the RGB image at 1/8 size")


@register_model("pretrained", options=PretrainedOptions)
def load_pretrained(options: dict, device: torch.device, dtype: torch.dtype, **kwargs):
    """Any diffusers Stable Diffusion 1.x/2.x repository id or local folder."""
    from .denoiser import from_pretrained

    return from_pretrained(options["repo"], device, dtype, **kwargs)


for _name, _repo in (("sd2-base", "stabilityai/stable-diffusion-2-base"),
                     ("sd21-base", "stabilityai/stable-diffusion-2-1-base"),
                     ("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5")):
    register_model(_name, options=PretrainedOptions, preset={"repo": _repo}, summary=_repo)(load_pretrained)


@register_model("offline", options=OfflineOptions)
def load_offline(options: dict, device: torch.device, dtype: torch.dtype, **kwargs):
    """Offline SD-like components with seeded random weights: noise, not pictures."""
    from .denoiser import Denoiser
    from .offline import build_components

    parts = build_components(options["builder"], seed=options["seed"], prediction_type=options["prediction_type"])
    return Denoiser(**parts, name=options["builder"], **kwargs).to(device=device, dtype=dtype)


register_model("tiny", options=OfflineOptions, preset={"builder": "tiny"},
               summary="offline, seeded random weights, tiny: tests and smoke runs (noise, not pictures)")(load_offline)
register_model("mid", options=OfflineOptions, preset={"builder": "mid"},
               summary="offline, seeded random weights, mid-size: timing the framework on a CPU")(load_offline)


@register_model("analytic", options=AnalyticOptions)
def load_analytic(options: dict, device: torch.device, dtype: torch.dtype, **kwargs):
    """A closed-form Gaussian-mixture prior: exact posterior mean, no weights."""
    from .analytic import build_analytic

    return build_analytic(options, **kwargs).to(device)


register_model("gaussian", options=AnalyticOptions, preset={"scenes": ["day"]},
               summary="closed-form Gaussian prior over each view (one scene)")(load_analytic)
register_model("gaussian-mixture", options=AnalyticOptions, preset={"scenes": ["day", "night", "sunset"]},
               summary="closed-form mixture of three scenes (day, night, sunset); a prompt naming one weights it")(
    load_analytic)
