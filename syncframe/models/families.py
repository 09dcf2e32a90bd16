"""Every model family syncframe drives, one descriptor each: the only place family names are compared.

A :class:`Family` says which diffusers pipeline the family is, where its denoising network lives,
how its spec is read from the components' configs, how its denoiser wraps the pipeline, what its
pipeline's constructor needs beyond the components, what it supports, and the steps, guidance and
sampler it is used with. Adding a family (SD 3.5 Large, a new DiT) is one entry here plus its
denoiser's file.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ConfigError

VP, FLOW = "vp", "flow"  # the two kinds of noise schedule (samplers.py says which sampler fits which)


@dataclass(frozen=True)
class Family:
    """One model family.

    ``pipeline``: diffusers' text-to-image pipeline class name (None: no diffusers model, the analytic
    priors); ``denoiser_folder``: the repository folder of its denoising network; ``denoiser``:
    ``"module:function"`` that builds the family's denoiser over a pipeline
    (``fn(pipe, device, name, t5, **kwargs)``); ``pipeline_kwargs``: what its pipeline's constructor
    needs beyond the components; ``supports``: of ``controlnet``, ``ip_adapter``, ``taesd`` (its
    latents are SD 1/2's, which TAESD decodes); ``defaults``: steps, guidance, sampler (its
    pipeline's; DDIM for the variance-preserving families, as in the papers); ``lora_network``:
    what its LoRAs adapt; ``checkpoints``: the single-file layouts of the family, each with the
    reference repository whose configs it takes."""

    name: str
    label: str
    pipeline: str | None
    denoiser_folder: str | None
    schedule: str
    defaults: dict
    denoiser: str | None = None
    spec: Callable | None = None  # (denoiser config, vae config, scheduler config) -> ModelSpec
    pipeline_kwargs: dict = field(default_factory=dict)
    supports: frozenset = frozenset()
    lora_network: str = "unet"
    checkpoints: dict = field(default_factory=dict)
    t5_drop: dict | None = field(default_factory=dict)  # components that model.t5=drop leaves out (None: it cannot)
    window_px: int | None = None  # the view side its released models are trained for (what its twins are not)

    @property
    def has_unet(self) -> bool:
        return self.denoiser_folder == "unet"

    def can(self, feature: str) -> bool:
        return feature in self.supports

    def from_pipe(self, pipe, device, name: str, t5: str = "same", **kwargs):
        """The family's denoiser over an already-built diffusers pipeline's components."""
        module, function = self.denoiser.split(":")
        return getattr(importlib.import_module(module, __package__), function)(pipe, device, name, t5, **kwargs)

    def pipeline_class(self):
        import diffusers

        return getattr(diffusers, self.pipeline)


def unet_spec(family: str):
    def spec(denoiser: dict, vae: dict, scheduler: dict):
        from .spec import ModelSpec

        channels = denoiser.get("out_channels") or denoiser["in_channels"]
        return ModelSpec(family, denoiser["sample_size"], channels, vae_scale(vae), VP, scheduler,
                         inpaint=denoiser["in_channels"] == 2 * channels + 1)

    return spec


def sd3_spec(denoiser: dict, vae: dict, scheduler: dict):
    from .spec import ModelSpec

    return ModelSpec("sd3", denoiser["sample_size"], denoiser["in_channels"], vae_scale(vae), FLOW, scheduler)


def flux_spec(denoiser: dict, vae: dict, scheduler: dict):
    """No sample size in FLUX's config: the pipeline's default is 128 latents (1024 px); the
    transformer's input channels hold 2x2-packed latents."""
    from .spec import ModelSpec

    return ModelSpec("flux", 128, denoiser["in_channels"] // 4, vae_scale(vae), FLOW, scheduler,
                     distilled_guidance=bool(denoiser.get("guidance_embeds")), flow_sigmas="linspace")


def vae_scale(vae: dict) -> int:
    return 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)


SD_PIPELINE_KWARGS = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
FAMILIES = {f.name: f for f in [
    Family("sd", "SD 1.x/2.x", "StableDiffusionPipeline", "unet", VP, dict(steps=50, guidance=7.5, sampler="ddim"),
           ".unet:unet_from_pipe", unet_spec("sd"), SD_PIPELINE_KWARGS,
           frozenset({"controlnet", "ip_adapter", "taesd"}),
           checkpoints={"sd-v1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                        "sd-v2": "stabilityai/stable-diffusion-2-1"}, window_px=512),
    Family("sdxl", "SDXL", "StableDiffusionXLPipeline", "unet", VP, dict(steps=50, guidance=5.0, sampler="ddim"),
           ".unet:unet_from_pipe", unet_spec("sdxl"), {}, frozenset({"controlnet", "ip_adapter"}),
           checkpoints={"sdxl": "stabilityai/stable-diffusion-xl-base-1.0"}, window_px=1024),
    Family("sd3", "SD3", "StableDiffusion3Pipeline", "transformer", FLOW,
           dict(steps=28, guidance=7.0, sampler="flow-euler"), ".sd3:sd3_from_pipe", sd3_spec,
           lora_network="transformer", checkpoints={"sd3": "stabilityai/stable-diffusion-3-medium-diffusers"},
           t5_drop={"text_encoder_3": None, "tokenizer_3": None}, window_px=1024),
    Family("flux", "FLUX", "FluxPipeline", "transformer", FLOW, dict(steps=28, guidance=3.5, sampler="flow-euler"),
           ".flux:flux_from_pipe", flux_spec, lora_network="transformer",
           checkpoints={"flux-dev": "black-forest-labs/FLUX.1-dev",
                        "flux-schnell": "black-forest-labs/FLUX.1-schnell"}, t5_drop=None, window_px=1024),
    Family("analytic", "an analytic prior", None, None, VP, dict(steps=50, guidance=7.5, sampler="ddim")),
]}
DIFFUSERS = [f for f in FAMILIES.values() if f.pipeline is not None]  # the families with diffusers pipelines
PIPELINES = {f.pipeline: f.name for f in DIFFUSERS}  # model_index.json's _class_name -> family


def register_family(described: Family) -> Family:
    """Add a family to the table (a plugin's new family: one entry and its denoiser's file)."""
    if described.name in FAMILIES and FAMILIES[described.name] != described:
        raise ValueError(f"model family {described.name!r} is registered twice")
    FAMILIES[described.name] = described
    if described.pipeline is not None:
        if described not in DIFFUSERS:
            DIFFUSERS.append(described)
        PIPELINES.setdefault(described.pipeline, described.name)
    return described


def family(name: str) -> Family:
    """The descriptor of family ``name``."""
    if name not in FAMILIES:
        raise ConfigError(f"model.family={name} is not a family syncframe drives; use one of "
                          f"{', '.join(f.name for f in DIFFUSERS)}")
    return FAMILIES[name]


def family_of_checkpoint(kind: str) -> Family:
    """The family a single-file checkpoint layout (``sd-v1``, ``flux-dev``, ...) belongs to."""
    return next(f for f in DIFFUSERS if kind in f.checkpoints)


def family_of_components(components: dict) -> Family:
    """The family of a pipeline's components: which denoising network it holds and, for a UNet,
    whether a second text encoder comes with it (SDXL)."""
    unet, transformer = components.get("unet"), components.get("transformer")
    if unet is not None:
        return FAMILIES["sdxl" if components.get("text_encoder_2") is not None else "sd"]
    name = type(transformer).__name__
    for prefix, which in (("SD3", "sd3"), ("Flux", "flux")):
        if name.startswith(prefix):
            return FAMILIES[which]
    raise ConfigError(f"syncframe drives SD 1.x/2.x, SDXL, SD3 and FLUX pipelines; this one's denoiser is "
                      f"{type(unet or transformer).__name__}")


def run_defaults(spec) -> dict:
    """Steps, guidance and sampler a model is used with: its family's, FLUX schnell's 4 steps without
    guidance (a FLUX model whose guidance is not distilled)."""
    base = dict(FAMILIES[spec.family].defaults)
    if spec.schedule == FLOW and spec.family == "flux" and not spec.distilled_guidance:
        base.update(steps=4, guidance=0.0)
    return base
