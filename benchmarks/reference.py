"""diffusers' own panorama pipeline over a UNet denoiser's components: the reference that tests and
benchmarks compare MultiDiffusion against."""
from __future__ import annotations

import copy


def diffusers_panorama_pipeline(denoiser):
    from diffusers import StableDiffusionPanoramaPipeline

    p = denoiser.pipe
    pipe = StableDiffusionPanoramaPipeline(
        vae=p.vae, text_encoder=p.text_encoder, tokenizer=p.tokenizer, unet=p.unet,
        scheduler=copy.deepcopy(p.scheduler), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
