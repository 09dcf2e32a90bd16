"""``SyncPipeline``: syncframe as a diffusers pipeline — a maintained successor of diffusers'
deprecated ``StableDiffusionPanoramaPipeline``, for every app and every family.

    pipe = SyncPipeline.from_pretrained("stabilityai/stable-diffusion-2-base", torch_dtype=torch.float16).to("cuda")
    image = pipe("a photo of the dolomites", width=2048).images[0]

It is a ``DiffusionPipeline`` over the components of SD 1.x/2.x, SDXL, SD3 or FLUX (whichever the
repository holds), so ``from_pretrained``, ``from_pipe``, ``to``, offloading and LoRA loading work as
on any diffusers pipeline; ``__call__`` runs :func:`syncframe.generate` on its components as they
are and returns diffusers' ``ImagePipelineOutput``.
"""
from __future__ import annotations

import numpy as np
import torch
from diffusers import (AutoencoderKL, DiffusionPipeline, FluxTransformer2DModel, SD3Transformer2DModel,
                       UNet2DConditionModel)
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

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

    def __call__(self, prompt: str, app: str = "panorama", sync: str | dict | None = None, height: int | None = None,
                 width: int | None = None, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 negative_prompt: str = "", generator: torch.Generator | None = None, seed: int | None = None,
                 view_batch_size: int | None = None, circular_padding: bool | None = None, eta: float | None = None,
                 output_type: str = "pil", return_dict: bool = True, **options):
        """Generate with ``app`` (panorama, panorama360, mesh, ...). The arguments of diffusers'
        panorama pipeline keep their meaning (``circular_padding`` is ``app.loop``, ``eta`` DDIM's η,
        ``generator`` gives the seed); anything else is a syncframe option as a keyword
        (``sync={"name": "syncdiffusion", "weight": 10}``, ``mesh="vase.obj"``, ``steps``...).
        ``output_type``: "pil" (the app's image), "np" (float [1, H, W, 3] in [0, 1]) or "latent"
        (the canonical tensor, [1, ...])."""
        from .pipeline import generate

        if output_type not in ("pil", "np", "latent"):
            raise ConfigError(f"output_type={output_type!r}: expected pil, np or latent")
        if not isinstance(prompt, str):
            raise ConfigError("prompt: one text prompt (a panorama is one image; run several calls for several)")
        if generator is not None and seed is not None:
            raise ConfigError("give generator= or seed=, not both")
        if generator is not None:
            seed = generator.initial_seed()
        kwargs = dict(options, app=app, prompt=prompt, negative_prompt=negative_prompt, progress=False)
        for key, value in (("sync", sync), ("height", height), ("width", width), ("steps", num_inference_steps),
                           ("guidance", guidance_scale), ("seed", seed), ("view_batch_size", view_batch_size)):
            if value is not None:
                kwargs[key] = value
        if circular_padding is not None:
            kwargs["app.loop"] = circular_padding
        if eta is not None:
            kwargs.update({"sampler": "ddim", "sampler.eta": eta})
        pairs = [(key, value) for key, value in kwargs.items() if "." in key]
        result = generate(*pairs, pipe=self.family_pipeline(), **{k: v for k, v in kwargs.items() if "." not in k})
        self.last_result = result  # every file of the run (result.images, result.metadata)
        if output_type == "latent":
            images = result.canonical[None]
        else:
            from .apps.base import app_facts

            image = result.images[app_facts(app).main_image or next(iter(result.images))]
            images = [image] if output_type == "pil" else (np.asarray(image, dtype=np.float32) / 255.0)[None]
        return ImagePipelineOutput(images=images) if return_dict else (images,)
