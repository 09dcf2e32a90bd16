"""diffusers' own panorama pipeline over a Denoiser's components: the reference that tests and
benchmarks compare MultiDiffusion against."""
from __future__ import annotations

import copy


def diffusers_panorama_pipeline(denoiser):
    from diffusers import StableDiffusionPanoramaPipeline

    pipe = StableDiffusionPanoramaPipeline(
        vae=denoiser.vae, text_encoder=denoiser.text_encoder, tokenizer=denoiser.tokenizer, unet=denoiser.unet,
        scheduler=copy.deepcopy(denoiser.scheduler), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
