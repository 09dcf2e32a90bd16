"""A diffusers pipeline the user already built (LoRAs, IP-Adapter, a tuned scheduler, its device,
dtype and offload hooks), used as it is: no reload, no move, nothing of it changed.

Its family is read from its components; a pipeline of another class over the same components (an
img2img or ControlNet pipeline, say) is viewed as the family's text-to-image pipeline with
diffusers' ``from_pipe``, which shares the components. The spec comes from the components' own
configs, the sampler's schedule from its scheduler's config.
"""
from __future__ import annotations

from ..errors import ConfigError
from .families import Family, family_of_components
from .spec import ModelSpec


def family_of(pipe) -> Family:
    """The family of a pipeline, from which components it holds."""
    components = getattr(pipe, "components", None)
    if not isinstance(components, dict):
        raise ConfigError(f"pipe={type(pipe).__name__}: not a diffusers pipeline (it has no components); pass a "
                          "DiffusionPipeline of SD 1.x/2.x, SDXL, SD3 or FLUX")
    try:
        return family_of_components(components)
    except ConfigError as exc:
        raise ConfigError(f"pipe={type(pipe).__name__}: {exc}") from None


def family_pipeline(pipe, family: Family):
    """``pipe`` itself when it is the family's text-to-image pipeline, else that pipeline over the
    same components (diffusers' ``from_pipe``: shared, not copied)."""
    cls = family.pipeline_class()
    if type(pipe) is cls:
        return pipe
    return cls.from_pipe(pipe, **family.pipeline_kwargs)


def spec_of(pipe, family: Family) -> ModelSpec:
    backbone = getattr(pipe, family.denoiser_folder)
    return family.spec(dict(backbone.config), dict(pipe.vae.config), dict(pipe.scheduler.config))


def denoiser_of(pipe, view_batch_size: int | None):
    """(denoiser, spec) over the pipeline's components as they are; its guidance the family's (a run
    sets its own while it runs)."""
    from .compat import execution_device

    family = family_of(pipe)
    own = family_pipeline(pipe, family)
    spec = spec_of(own, family)
    name = str(getattr(pipe.config, "_name_or_path", "") or type(pipe).__name__)
    run_device = execution_device(own)
    denoiser = family.from_pipe(own, None, name, guidance=spec.defaults()["guidance"],
                                view_batch_size=view_batch_size, frozen=False)
    denoiser.run_device = run_device
    denoiser.extras = {"pipeline": type(pipe).__name__, "adapters": own.get_list_adapters()}
    return denoiser, spec
