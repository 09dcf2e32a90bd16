"""The ``model=`` group: pretrained diffusers repositories of every family, offline random-weight
twins and analytic priors, each a registered schema with presets. A name that is no preset is a
diffusers repository id or local folder (``pretrained``).

Each entry's factory returns the model's :class:`~syncframe.models.spec.ModelSpec` (cheap: configs
only) and its loader; :func:`model_spec` and :func:`load_model` dispatch to them.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import torch

from ..errors import ConfigError
from ..options import Options, Source, option
from ..registry import register_model
from ..samplers import VP
from .families import DIFFUSERS, family
from .spec import ModelSpec

Family = Literal[("auto", *[f.name for f in DIFFUSERS])]  # type: ignore[valid-type]


class PretrainedOptions(Options):
    trained: ClassVar[bool] = True  # its weights were trained (helpers such as LPIPS must be real too)
    kind: Literal["pretrained"] = option("pretrained", "weights from a diffusers repository or folder")
    repo: Source = option("stabilityai/stable-diffusion-2-base", "diffusers repository id or local folder")
    family: Family = option("auto", "model family; auto = read from the repository's model_index.json")
    config: Source | None = option(None, "a single-file checkpoint's pipeline configs: a diffusers folder or repository "
                                         "of the same family; null = the family's reference repository")
    t5: Literal["same", "cpu", "drop"] = option(
        "same", "SD3 / FLUX T5 text encoder: on the run's device, on the CPU (saves ~9 GB of GPU memory), "
                "or dropped (SD3 only: zeros for its embedding)")


class OfflineOptions(Options):
    trained: ClassVar[bool] = False
    kind: Literal["offline"] = option("offline", "components built in code with seeded random weights")
    builder: Literal["tiny", "mid", "tiny-inpaint", "tiny-sdxl", "tiny-sd3", "tiny-flux"] = option(
        "tiny", "which twin: tiny / mid (SD 1/2), tiny-sdxl, tiny-sd3, tiny-flux")
    seed: int = option(0, "seed of the random weights", ge=0, le=2**32 - 1)
    prediction_type: Literal["epsilon", "v_prediction"] = option(
        "epsilon", "what the random UNet predicts (UNet twins; the flow twins predict velocity)")


class DemoOptions(Options):
    trained: ClassVar[bool] = True
    kind: Literal["demo"] = option("demo", "the small model trained by this project, shipped with the package")


class AnalyticOptions(Options):
    trained: ClassVar[bool] = False
    kind: Literal["analytic"] = option("analytic", "a closed-form Gaussian prior: exact ε, no weights")
    scenes: list[Literal["day", "night", "sunset"]] = option(
        ["day"], "the Gaussian scenes of the prior (syncframe/models/analytic.py)", min_length=1)
    prompt_weight: float = option(0.9, "prior mass on the scenes a prompt names", gt=0, lt=1)


class Model:
    """What a ``model=`` entry is: its spec from its options, before any weights load (configs only),
    and its loader. ``options``: its typed section; ``name``: what ``model=`` chose."""

    @staticmethod
    def spec(options, name: str) -> ModelSpec:
        raise NotImplementedError

    @staticmethod
    def load(options, name: str, spec: ModelSpec, device, dtype, **kwargs):
        raise NotImplementedError


def model_section(plan_or_cfg):
    """(the model's entry, its typed section, the chosen name) of a :class:`~syncframe.plan.Plan` or a
    config tree."""
    from ..config import group_entry

    if isinstance(plan_or_cfg, dict):
        tree = plan_or_cfg["model"]
        name, entry = tree["name"], group_entry("model", tree["name"])
        return entry, entry.options.model_validate({k: v for k, v in tree.items() if k != "name"}), name
    name = plan_or_cfg.names["model"]
    return group_entry("model", name), plan_or_cfg.model, name


def model_spec(plan_or_cfg) -> ModelSpec:
    """The spec of the run's model (a :class:`~syncframe.plan.Plan` or a config tree), before any weights
    load (may read small config files)."""
    entry, options, name = model_section(plan_or_cfg)
    return entry.factory.spec(options, name)


def load_model(plan_or_cfg, spec: ModelSpec, device: torch.device, dtype: torch.dtype, **kwargs):
    """The denoiser of the run's model on ``device``."""
    entry, options, name = model_section(plan_or_cfg)
    return entry.factory.load(options, name, spec, device, dtype, **kwargs)


@register_model("pretrained", options=PretrainedOptions, hidden=True)
class Pretrained(Model):
    """Any diffusers SD 1.x/2.x, SDXL, SD3 or FLUX repository id or local folder."""

    @staticmethod
    def spec(options, name):
        from .hub import locate
        from .single_file import is_single_file, resolve_checkpoint
        from .spec import pretrained_spec

        if is_single_file(options.repo):
            family_name, config = resolve_checkpoint(options.repo, options.family, options.config)
            return pretrained_spec(config, family_name, options.repo)
        if options.config is not None:
            raise ConfigError(f"model.config={options.config} is for single-file checkpoints; model={options.repo} "
                              "is a diffusers folder or repository with configs of its own: drop model.config=")
        return pretrained_spec(locate(options.repo, "model"), options.family, options.repo)

    @staticmethod
    def load(options, name, spec, device, dtype, **kwargs):
        from .hub import locate
        from .single_file import is_single_file, load_pipeline, resolve_checkpoint

        repo = options.repo
        if is_single_file(repo):
            family_name, config = resolve_checkpoint(repo, spec.family, options.config)
            return wrap_pipeline(load_pipeline(repo, family_name, config, dtype, repo), family_name, device, repo,
                                 options.t5, **kwargs)
        source = locate(repo, "model")
        return wrap_pipeline(load_family_pipeline(source, spec.family, dtype, repo, options.t5), spec.family, device,
                             repo, options.t5, **kwargs)


def load_family_pipeline(source: str, family_name: str, dtype, name: str, t5: str = "same"):
    """The family's diffusers pipeline ``from_pretrained`` a located repository or folder (its own
    scheduler config kept: the samplers take their schedules from it). ``t5=drop``: SD3 without its
    third text encoder (the pipeline gives zeros for it)."""
    described = family(family_name)
    extra = dict(described.pipeline_kwargs)
    if t5 == "drop":
        if described.t5_drop is None:
            raise ConfigError(f"model.t5=drop: {described.label} needs its T5 encoder; use model.t5=cpu to keep it off "
                              "the GPU")
        extra.update(described.t5_drop)
    try:
        return described.pipeline_class().from_pretrained(source, torch_dtype=dtype, **extra)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"could not load model {name!r}: {str(exc).splitlines()[0]}. Fix: give a diffusers "
                          f"{described.label} repository id or local folder (gated repositories need a Hugging "
                          "Face token), or use model=demo offline") from None


def wrap_pipeline(pipe, family_name: str, device, name: str, t5: str = "same", **kwargs):
    """The denoiser of ``family_name`` over an already-built diffusers pipeline's components."""
    return family(family_name).from_pipe(pipe, device, name, t5, **kwargs)


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
    register_model(_name, options=PretrainedOptions, preset={"repo": _repo}, summary=_repo)(Pretrained)


@register_model("offline", options=OfflineOptions, hidden=True)
class Offline(Model):
    """Offline twins with seeded random weights: noise, not pictures."""

    @staticmethod
    def spec(options, name):
        from .offline import offline_spec

        return offline_spec(options.builder, options.prediction_type)

    @staticmethod
    def load(options, name, spec, device, dtype, **kwargs):
        from .offline import build_offline

        return build_offline(options.builder, options.seed, options.prediction_type, name=name,
                             **kwargs).to(device=device, dtype=dtype)


TWINS = {
    "tiny": "SD 1/2 twin, tiny: tests and smoke runs (noise, not pictures)",
    "mid": "SD 1/2 twin, mid-size: timing the framework on a CPU",
    "tiny-inpaint": "SD inpainting twin (a 9-channel UNet: latents, mask, masked-image latents), tiny",
    "tiny-sdxl": "SDXL twin (pooled text + time ids, two CLIP encoders), tiny",
    "tiny-sd3": "SD3 twin (16-channel flow transformer, CLIP x2 + T5), tiny",
    "tiny-flux": "FLUX twin (packed latents, CLIP + T5, guidance embedded), tiny",
}
for _name, _summary in TWINS.items():
    register_model(_name, options=OfflineOptions, preset={"builder": _name}, summary=_summary)(Offline)


DEMO = Path(__file__).resolve().parent / "demo"  # a diffusers StableDiffusionPipeline folder (docs/demo_model.md)
# What the demo model is used with: 256² windows, DDIM; its own steps and guidance (docs/demo_model.md)
DEMO_DEFAULTS = dict(steps=30, guidance=5.0, sampler="ddim")


@register_model("demo", options=DemoOptions,
                summary="the small text-to-image model trained here: landscapes, materials; pictures on any CPU")
class Demo(Model):
    """syncframe's own small model (docs/demo_model.md), loaded from the package like any SD folder."""

    @staticmethod
    def spec(options, name):
        from dataclasses import replace

        from .spec import pretrained_spec

        if not (DEMO / "model_index.json").is_file():
            raise ConfigError(f"model=demo: its weights are not in {DEMO}; train them with "
                              "python scripts/demo_model/train.py (or reinstall syncframe)")
        return replace(pretrained_spec(str(DEMO), "sd", "demo"), preferred=dict(DEMO_DEFAULTS), own_latents=True)

    @staticmethod
    def load(options, name, spec, device, dtype, **kwargs):
        return wrap_pipeline(load_family_pipeline(str(DEMO), "sd", dtype, "demo"), "sd", device, "demo", **kwargs)


@register_model("analytic", options=AnalyticOptions, hidden=True)
class Analytic(Model):
    """A closed-form Gaussian-mixture prior: exact posterior mean, no weights."""

    @staticmethod
    def spec(options, name):
        from .offline import SD_SCHEDULE

        return ModelSpec("analytic", 64, 3, 8, VP, dict(SD_SCHEDULE))

    @staticmethod
    def load(options, name, spec, device, dtype, **kwargs):
        from .analytic import build_analytic

        return build_analytic(options, name, **kwargs).to(device)


register_model("gaussian", options=AnalyticOptions, preset={"scenes": ["day"]},
               summary="closed-form Gaussian prior over each view (one scene)")(Analytic)
register_model("gaussian-mixture", options=AnalyticOptions, preset={"scenes": ["day", "night", "sunset"]},
               summary="closed-form mixture of three scenes (day, night, sunset); a prompt naming one weights it")(
    Analytic)
