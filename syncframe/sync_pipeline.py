"""``SyncPipeline``: syncframe as a diffusers pipeline — a maintained successor of diffusers'
deprecated ``StableDiffusionPanoramaPipeline``, for every app and every family.

    pipe = SyncPipeline.from_pretrained("stabilityai/stable-diffusion-2-base", dtype=torch.float16).to("cuda")
    image = pipe("a photo of the dolomites", width=2048).images[0]

It is a ``DiffusionPipeline`` over the components of SD 1.x/2.x, SDXL, SD3 or FLUX (whichever the
repository holds), so ``from_pretrained``, ``from_pipe``, ``to``, offloading and LoRA loading work as
on any diffusers pipeline; ``__call__`` runs :func:`syncframe.generate` on its components as they
are and returns diffusers' ``StableDiffusionPipelineOutput`` (no safety checker: ``nsfw_content_detected`` None).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from diffusers import (AutoencoderKL, DiffusionPipeline, FluxTransformer2DModel, SD3Transformer2DModel,
                       UNet2DConditionModel)

from .errors import ConfigError

class SyncPipeline(DiffusionPipeline):
    """Synchronized joint diffusion (MultiDiffusion, SyncDiffusion, SyncTweedies, ...) over a text-to-image
    model's components. Any of SD 1.x/2.x, SDXL, SD3 and FLUX: the components present say which."""

    model_cpu_offload_seq = "text_encoder->text_encoder_2->text_encoder_3->image_encoder->unet->transformer->vae"
    _optional_components = ["text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "text_encoder_3",
                            "tokenizer_3", "unet", "transformer", "image_encoder", "feature_extractor",
                            "safety_checker"]

    # The model components' types are annotated: diffusers' from_pipe hands over only components whose
    # class matches the annotation.
    def __init__(self, vae: AutoencoderKL, scheduler, text_encoder=None, tokenizer=None,
                 unet: UNet2DConditionModel | None = None, text_encoder_2=None, tokenizer_2=None,
                 text_encoder_3=None, tokenizer_3=None,
                 transformer: SD3Transformer2DModel | FluxTransformer2DModel | None = None, image_encoder=None,
                 feature_extractor=None, safety_checker=None, requires_safety_checker: bool = False):
        super().__init__()
        self.register_modules(vae=vae, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, text_encoder_3=text_encoder_3,
                              tokenizer_3=tokenizer_3, transformer=transformer, image_encoder=image_encoder,
                              feature_extractor=feature_extractor, safety_checker=safety_checker)

    def family_pipeline(self):
        """The family's own text-to-image pipeline over these components (shared, not copied)."""
        from .models.from_pipe import family_of

        family = family_of(self)
        cls = family.pipeline_class()
        names = set(cls._get_signature_keys(cls)[0]) | set(cls._optional_components)
        components = {k: v for k, v in self.components.items() if k in names}
        # the family's switches (SD's safety checker off), its components kept where it has them
        components.update({k: components.get(k, v) if v is None else v for k, v in family.pipeline_kwargs.items()})
        own = cls(**components)
        own.register_to_config(_name_or_path=self.config.get("_name_or_path", ""))  # what run.json names
        return own

    def __call__(self, prompt: str | list[str] | None = None, app: str = "panorama", sync: str | dict | None = None,
                 height: int | None = None, width: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, view_batch_size: int | None = None,
                 negative_prompt: str | list[str] | None = None, num_images_per_prompt: int = 1,
                 eta: float | None = None, generator=None, latents=None, prompt_embeds=None,
                 negative_prompt_embeds=None, output_type: str = "pil", return_dict: bool = True,
                 cross_attention_kwargs: dict | None = None, circular_padding: bool | None = None,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs: list[str] | None = None,
                 seed: int | None = None, **options):
        """Generate with ``app`` (panorama, panorama360, mesh, ...). The arguments of diffusers'
        panorama pipeline keep their meaning: a list of prompts (and of negative prompts) and
        ``num_images_per_prompt`` make a batch of panoramas, run one after another and returned
        together, each reproducible from its generator (one generator, or a list of one per
        panorama: its seed); ``circular_padding`` is ``app.loop``, ``eta`` DDIM's η;
        ``cross_attention_kwargs={"scale": s}`` scales the pipeline's LoRAs for the call;
        ``callback_on_step_end(pipe, step, timestep, {"latents": the canonical latent})`` after every
        step. Anything else is a syncframe option as a keyword (``sync={"name": "syncdiffusion",
        "weight": 10}``, ``mesh="vase.obj"``, ``steps``...). ``output_type``: "pil" (the app's image),
        "np" (float ``[B, H, W, 3]`` in [0, 1]) or "latent" (the canonical tensors, ``[B, ...]``)."""
        from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput

        prompts, negatives = self.batch_prompts(prompt, negative_prompt, num_images_per_prompt, prompt_embeds,
                                                negative_prompt_embeds, latents, output_type)
        seeds = self.batch_seeds(generator, seed, len(prompts))
        kwargs = dict(options, app=app, progress=False)
        for key, value in (("sync", sync), ("height", height), ("width", width), ("steps", num_inference_steps),
                           ("guidance", guidance_scale), ("view_batch_size", view_batch_size)):
            if value is not None:
                kwargs[key] = value
        if circular_padding is not None:
            kwargs["app.loop"] = circular_padding
        if eta is not None:
            kwargs.update({"sampler": "ddim", "sampler.eta": eta})
        unknown = set(callback_on_step_end_tensor_inputs or []) - {"latents"}
        if unknown:
            raise ConfigError(f"callback_on_step_end_tensor_inputs has to be in ['latents'], but found {sorted(unknown)}")
        results = []
        with lora_scale(self, (cross_attention_kwargs or {}).get("scale")):
            for text, negative, one_seed in zip(prompts, negatives, seeds):
                results.append(self.generate_one(text, negative, one_seed, kwargs, callback_on_step_end))
        self.last_result = results[-1]  # every file of the last run (result.images, result.metadata)
        self.last_results = results
        images = self.outputs(results, app, output_type)
        if not return_dict:
            return images, None
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)

    @staticmethod
    def batch_prompts(prompt, negative_prompt, per_prompt: int, prompt_embeds, negative_prompt_embeds, latents,
                      output_type: str) -> tuple[list[str], list[str]]:
        """Every panorama's prompt and negative prompt, checked as diffusers checks them."""
        if output_type not in ("pil", "np", "latent"):
            raise ConfigError(f"output_type={output_type!r}: expected pil, np or latent")
        if prompt_embeds is not None or negative_prompt_embeds is not None:
            raise ConfigError("prompt_embeds / negative_prompt_embeds are not supported by SyncPipeline: each view is "
                              "conditioned on its own prompt (regions, view-dependent prompts); pass `prompt`")
        if latents is not None:
            raise ConfigError("latents are not supported by SyncPipeline: a canvas's noise is drawn through its space "
                              "(views share it where they overlap); pass `generator` to set it")
        if prompt is None:
            raise ConfigError("Provide either `prompt` or `prompt_embeds`. Cannot leave both `prompt` and "
                              "`prompt_embeds` undefined.")
        if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not all(isinstance(p, str) for p in prompt)):
            raise ConfigError(f"`prompt` has to be of type `str` or `list` but is {type(prompt)}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if negative_prompt is None or isinstance(negative_prompt, str):
            negatives = [negative_prompt or ""] * len(prompts)
        else:
            negatives = list(negative_prompt)
            if len(negatives) != len(prompts):
                raise ConfigError(f"`negative_prompt`: {negative_prompt} has batch size {len(negatives)}, but `prompt`: "
                                  f"{prompt} has batch size {len(prompts)}. Please make sure that passed "
                                  "`negative_prompt` matches the batch size of `prompt`.")
        if not isinstance(per_prompt, int) or per_prompt < 1:
            raise ConfigError(f"num_images_per_prompt={per_prompt!r}: a whole number, at least 1")
        return ([p for p in prompts for _ in range(per_prompt)], [n for n in negatives for _ in range(per_prompt)])

    @staticmethod
    def batch_seeds(generator, seed: int | None, count: int) -> list[int]:
        """One seed per panorama: a generator's (each of a list of ``count``), ``seed`` and the ones after it,
        or 0, 1, ..."""
        if generator is not None and seed is not None:
            raise ConfigError("give generator= or seed=, not both")
        if isinstance(generator, list):
            if len(generator) != count:
                raise ConfigError(f"You have passed a list of generators of length {len(generator)}, but requested an "
                                  f"effective batch size of {count}. Make sure the batch size matches the length of "
                                  "the generators.")
            return [g.initial_seed() for g in generator]
        if generator is not None:
            return [generator.initial_seed() + i for i in range(count)]
        return [(seed or 0) + i for i in range(count)]

    def generate_one(self, prompt: str, negative: str, seed: int, kwargs: dict, callback):
        from .pipeline import generate

        def on_step(report):  # diffusers' callback: (pipe, step index, timestep, tensors)
            callback(self, report.done - 1, report.t, {"latents": report.canonical()})

        run = dict(kwargs, prompt=prompt, negative_prompt=negative, seed=seed)
        pairs = [(key, value) for key, value in run.items() if "." in key]
        return generate(*pairs, pipe=self.family_pipeline(), on_step=on_step if callback is not None else None,
                        **{k: v for k, v in run.items() if "." not in k})

    @staticmethod
    def outputs(results: list, app: str, output_type: str):
        from .apps.base import app_facts

        if output_type == "latent":
            return torch.stack([r.canonical for r in results])
        images = [r.images[app_facts(app).main_image or next(iter(r.images))] for r in results]
        if output_type == "pil":
            return images
        return np.stack([np.asarray(image, dtype=np.float32) / 255.0 for image in images])


@contextmanager
def lora_scale(pipe, scale: float | None):
    """diffusers' ``cross_attention_kwargs={"scale": s}``: the pipeline's LoRA layers scaled by ``s`` for
    the call (PEFT), as its own pipelines do, and back after."""
    if scale is None or scale == 1.0:
        yield
        return
    from diffusers.utils import scale_lora_layers, unscale_lora_layers

    networks = [m for m in (pipe.unet, pipe.transformer, pipe.text_encoder, pipe.text_encoder_2) if m is not None]
    for network in networks:
        scale_lora_layers(network, scale)
    try:
        yield
    finally:
        for network in networks:
            unscale_lora_layers(network, scale)
