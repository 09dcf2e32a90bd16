"""What a model is, known before its weights load: family, view window, latent channels, VAE
factor, noise schedule and the defaults that go with them.

Spaces, rigs and strides take the window from here (512² for SD 1/2-base, 1024² for SDXL / SD3 /
FLUX), the sampler its schedule, and ``steps`` / ``guidance`` / ``sampler`` left to ``auto`` their
family's defaults. For a diffusers repository or folder this reads only the small JSON configs
(``model_index.json``, the denoiser's, the VAE's and the scheduler's).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..samplers import FLOW, VP

PIPELINES = {  # model_index.json's _class_name -> family
    "StableDiffusionPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
}
FAMILIES = ("sd", "sdxl", "sd3", "flux")
# steps, guidance and sampler a family is used with (its diffusers pipeline's defaults; DDIM for
# the variance-preserving families, as in the papers)
FAMILY_DEFAULTS = {
    "sd": dict(steps=50, guidance=7.5, sampler="ddim"),
    "sdxl": dict(steps=50, guidance=5.0, sampler="ddim"),
    "sd3": dict(steps=28, guidance=7.0, sampler="flow-euler"),
    "flux": dict(steps=28, guidance=3.5, sampler="flow-euler"),
    "analytic": dict(steps=50, guidance=7.5, sampler="ddim"),
}
DENOISER_FOLDER = {"sd": "unet", "sdxl": "unet", "sd3": "transformer", "flux": "transformer"}


@dataclass
class ModelSpec:
    family: str  # sd | sdxl | sd3 | flux | analytic
    window: int  # latents per side of the view the model is trained for
    channels: int  # latent channels of a view (FLUX: before 2x2 packing)
    scale: int  # pixels per latent (VAE factor)
    schedule: str  # vp | flow
    scheduler_config: dict = field(default_factory=dict)
    distilled_guidance: bool = False  # FLUX dev: guidance is an input of the model, not CFG
    flow_sigmas: str = "scheduler"  # flow schedules: the scheduler's own sigmas, or linspace(1, 1/n) (FLUX)

    @property
    def window_px(self) -> int:
        return self.window * self.scale

    def defaults(self) -> dict:
        base = dict(FAMILY_DEFAULTS[self.family])
        if self.family == "flux" and not self.distilled_guidance:
            base.update(steps=4, guidance=0.0)  # FLUX schnell: 4 steps, no guidance
        return base


def read_json(source: str, name: str) -> dict:
    """A JSON file of a model: from a folder, the cache, or the hub (small files only)."""
    path = Path(source) / name
    if path.is_file():
        return json.loads(path.read_text())
    if Path(source).is_dir():
        raise FileNotFoundError(name)
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(source, name)).read_text())


def pretrained_spec(source: str, family: str = "auto", name: str | None = None) -> ModelSpec:
    """The spec of a diffusers repository or folder ``source`` (already located, see ``hub.locate``)."""
    name = name or source
    try:
        index = read_json(source, "model_index.json")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model={name} is not a diffusers pipeline (no readable model_index.json: {exc}); give "
                          "a diffusers repository id or folder of SD 1.x/2.x, SDXL, SD3 or FLUX") from None
    if not isinstance(index, dict):
        raise ConfigError(f"model={name}: its model_index.json holds a JSON {type(index).__name__}, not the mapping "
                          "a diffusers pipeline has; give a diffusers repository id or folder of SD 1.x/2.x, SDXL, SD3 "
                          "or FLUX")
    detected = PIPELINES.get(index.get("_class_name", ""))
    if family == "auto":
        if detected is None:
            raise ConfigError(f"model={name} is a {index.get('_class_name', 'unknown')} pipeline, which syncframe "
                              f"does not drive; set model.family= one of {', '.join(FAMILIES)} if it is one of them")
        family = detected
    try:
        denoiser = read_json(source, f"{DENOISER_FOLDER[family]}/config.json")
        vae = read_json(source, "vae/config.json")
        scheduler = read_json(source, "scheduler/scheduler_config.json")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model={name}: a config of the {family} pipeline is missing or unreadable ({exc}); "
                          "check model.family and the repository") from None
    try:
        if not all(isinstance(c, dict) for c in (denoiser, vae, scheduler)):
            raise TypeError("a config file holds no JSON mapping")
        return spec_from_configs(family, denoiser, vae, scheduler)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"model={name}: the {family} pipeline's configs are not what diffusers writes ({exc}); "
                          "check model.family and the repository") from None


def spec_from_configs(family: str, denoiser: dict, vae: dict, scheduler: dict) -> ModelSpec:
    scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
    if family in ("sd", "sdxl"):
        return ModelSpec(family, denoiser["sample_size"], denoiser["in_channels"], scale, VP, scheduler)
    if family == "sd3":
        return ModelSpec(family, denoiser["sample_size"], denoiser["in_channels"], scale, FLOW, scheduler)
    # FLUX: no sample size in its config; the pipeline's default is 128 latents (1024 px)
    return ModelSpec(family, 128, denoiser["in_channels"] // 4, scale, FLOW, scheduler,
                     distilled_guidance=bool(denoiser.get("guidance_embeds")), flow_sigmas="linspace")
