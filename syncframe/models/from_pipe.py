"""A diffusers pipeline the user already built (LoRAs, IP-Adapter, a tuned scheduler, its device,
dtype and offload hooks), used as it is: no reload, no move, nothing of it changed.

Its family is read from its components; a pipeline of another class over the same components (an
img2img or ControlNet pipeline, say) is viewed as the family's text-to-image pipeline with
diffusers' ``from_pipe``, which shares the components. The spec comes from the components' own
configs, the sampler's schedule from its scheduler's config.
"""
from __future__ import annotations

from ..errors import ConfigError
from .spec import ModelSpec, spec_from_configs


def family_of(pipe) -> str:
    """sd | sdxl | sd3 | flux, from which components the pipeline holds."""
    components = getattr(pipe, "components", None)
    if not isinstance(components, dict):
        raise ConfigError(f"pipe={type(pipe).__name__}: not a diffusers pipeline (it has no components); pass a "
                          "DiffusionPipeline of SD 1.x/2.x, SDXL, SD3 or FLUX")
    unet, transformer = components.get("unet"), components.get("transformer")
    if unet is not None:
        return "sdxl" if components.get("text_encoder_2") is not None else "sd"
    name = type(transformer).__name__
    if name.startswith("SD3"):
        return "sd3"
    if name.startswith("Flux"):
        return "flux"
    raise ConfigError(f"pipe={type(pipe).__name__}: syncframe drives SD 1.x/2.x, SDXL, SD3 and FLUX pipelines; this "
                      f"one's denoiser is {type(unet or transformer).__name__}")


PIPELINES = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline", "sd3": "StableDiffusion3Pipeline",
             "flux": "FluxPipeline"}


def family_pipeline(pipe, family: str):
    """``pipe`` itself when it is the family's text-to-image pipeline, else that pipeline over the
    same components (diffusers' ``from_pipe``: shared, not copied)."""
    import diffusers

    cls = getattr(diffusers, PIPELINES[family])
    if type(pipe) is cls:
        return pipe
    extra = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False) if family == "sd" else {}
    return cls.from_pipe(pipe, **extra)


def spec_of(pipe, family: str) -> ModelSpec:
    backbone = pipe.unet if family in ("sd", "sdxl") else pipe.transformer
    return spec_from_configs(family, dict(backbone.config), dict(pipe.vae.config), dict(pipe.scheduler.config))


def denoiser_of(pipe, guidance: float, view_batch_size: int | None):
    """(denoiser, spec) over the pipeline's components as they are."""
    from .compat import execution_device

    family = family_of(pipe)
    own = family_pipeline(pipe, family)
    name = str(getattr(pipe.config, "_name_or_path", "") or type(pipe).__name__)
    kwargs = dict(guidance=guidance, view_batch_size=view_batch_size, name=name, frozen=False)
    if family in ("sd", "sdxl"):
        from .unet import UNetDenoiser

        denoiser = UNetDenoiser(own, family, **kwargs)
    elif family == "sd3":
        from .sd3 import SD3Denoiser

        denoiser = SD3Denoiser(own, **kwargs)
    else:
        from .flux import FluxDenoiser

        denoiser = FluxDenoiser(own, **kwargs)
    denoiser.run_device = execution_device(own)
    denoiser.extras = {"pipeline": type(pipe).__name__, "adapters": own.get_list_adapters()}
    return denoiser, spec_of(own, family)
