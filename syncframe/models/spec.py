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
    preferred: dict = field(default_factory=dict)  # steps / guidance / sampler this model is best used with
    own_latents: bool = False  # its VAE is its own (not its family's): previews decode with it
    # An inpainting model: its input adds the view's mask (1 = generate) and the masked image's latents to
    # the latents (in = 2 · channels + 1: SD 2 / SDXL inpainting's 9-channel UNets).
    inpaint: bool = False

    @property
    def window_px(self) -> int:
        return self.window * self.scale

    def defaults(self) -> dict:
        """Steps, guidance and sampler a run leaves to the model: its family's, then its own."""
        from .families import run_defaults

        return {**run_defaults(self), **self.preferred}


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
    from .families import DIFFUSERS, PIPELINES, family as family_named

    detected = PIPELINES.get(index.get("_class_name", ""))
    if family == "auto":
        if detected is None:
            raise ConfigError(f"model={name} is a {index.get('_class_name', 'unknown')} pipeline, which syncframe "
                              f"does not drive; set model.family= one of {', '.join(f.name for f in DIFFUSERS)} if it "
                              "is one of them")
        family = detected
    try:
        denoiser = read_json(source, f"{family_named(family).denoiser_folder}/config.json")
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
    """The spec of a family's pipeline from its denoiser's, VAE's and scheduler's configs."""
    from .families import family as family_named

    return family_named(family).spec(denoiser, vae, scheduler)
