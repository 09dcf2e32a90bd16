"""UNet families: Stable Diffusion 1.x/2.x (:class:`UNetDenoiser`) and SDXL (:class:`SDXLDenoiser`).

Prompts are encoded by diffusers' own pipeline (``StableDiffusionPipeline`` /
``StableDiffusionXLPipeline`` built on the same components), so the conditioning is exactly the
pipeline's; the UNet is then called on batches of views.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .compat import sdxl_time_ids
from .denoiser import Conditioning, DiffusersDenoiser, freeze


class UNetDenoiser(DiffusersDenoiser):
    """Stable Diffusion 1.x/2.x over ``pipe`` (its ``StableDiffusionPipeline``); :class:`SDXLDenoiser`
    adds SDXL's pooled text and time ids."""

    family = "sd"

    def __init__(self, pipe, guidance: float = 7.5, view_batch_size: int | None = None, name: str = "custom",
                 controlnet=None, controlnet_scale: float = 1.0, frozen: bool = True):
        super().__init__()
        self.name = name
        self.unet, self.vae = pipe.unet, pipe.vae
        self.text_encoders = nn_list(pipe.text_encoder, getattr(pipe, "text_encoder_2", None))
        self.pipe, self.scheduler = pipe, pipe.scheduler
        self.guidance, self.view_batch_size = guidance, view_batch_size
        self.controlnet, self.controlnet_scale = controlnet, controlnet_scale
        if frozen:  # a pipeline the user built (generate(pipe=...)) is used as it is
            freeze(self.unet, self.vae, *self.text_encoders, controlnet)
        self.area_factor = (self.unet.config.sample_size / 64) ** 2

    @classmethod
    def from_components(cls, unet, vae, text_encoder, tokenizer, scheduler, text_encoder_2=None, tokenizer_2=None,
                        **kwargs) -> "UNetDenoiser":
        """SD from (unet, vae, text_encoder, tokenizer, scheduler); SDXL when the second text encoder is given."""
        if text_encoder_2 is None:
            from diffusers import StableDiffusionPipeline

            pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                           scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
            return UNetDenoiser(pipe, **kwargs)
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                         tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler)
        return SDXLDenoiser(pipe, **kwargs)

    @property
    def backbone(self) -> torch.nn.Module:
        return self.unet

    @property
    def prediction_type(self) -> str:
        return self.scheduler.config.prediction_type

    @property
    def latent_channels(self) -> int:
        return self.unet.config.out_channels  # an inpainting UNet reads 9 channels and predicts 4

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str], negative_prompt: str, view_prompt) -> Conditioning:
        prompts = list(prompts)
        positive, negative = self.pipe.encode_prompt(prompts, self.device, 1, True,
                                                     negative_prompt=[negative_prompt] * len(prompts))
        return self.conditioning({"text": torch.stack([negative, positive], 1)}, view_prompt)

    def conditioning(self, tensors: dict, view_prompt) -> Conditioning:
        return Conditioning({k: v.to(self.dtype) for k, v in tensors.items()}, torch.as_tensor(view_prompt))

    def added_conditions(self, states: dict) -> dict:
        """The UNet's ``added_cond_kwargs`` beyond the text states (SDXL's; an IP-Adapter's image prompt)."""
        if "ip_image" in states:  # an IP-Adapter's image prompt (adapters.image_prompt_embeds)
            return {"image_embeds": [states["ip_image"]]}
        return {}

    def forward_model(self, x, step, states, control):
        x = x.to(self.dtype)
        added = self.added_conditions(states)
        extra = {"added_cond_kwargs": added} if added else {}
        if control is not None:
            if self.controlnet is None:
                raise ConfigError("this run has ControlNet images (e.g. depth=) but no ControlNet: set controlnet=")
            down, mid = self.controlnet(x, step.t, encoder_hidden_states=states["text"],
                                        controlnet_cond=control.to(self.dtype), conditioning_scale=self.controlnet_scale,
                                        return_dict=False, **extra)
            extra.update(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        return self.unet(x, step.t, encoder_hidden_states=states["text"], **extra).sample

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, C, h, w]`` -> images ``[B, 3, 8h, 8w]`` in [-1, 1] (not clamped)."""
        return vae_decode(self.vae, latents)

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1] -> latents, sampled from the VAE's posterior with
        ``generator`` as diffusers' img2img pipelines do."""
        return vae_encode(self.vae, images, generator)


class SDXLDenoiser(UNetDenoiser):
    """SDXL: the pooled text embedding of the second encoder and the size / crop time ids of every
    view (a whole native-size image, crop (0, 0))."""

    family = "sdxl"

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str], negative_prompt: str, view_prompt) -> Conditioning:
        prompts = list(prompts)
        # SDXL's own rule: an empty negative prompt is zeros (force_zeros_for_empty_prompt)
        positive, negative, pooled, negative_pooled = self.pipe.encode_prompt(
            prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=True,
            negative_prompt=[negative_prompt] * len(prompts) if negative_prompt else None)
        size = (self.unet.config.sample_size * self.latent_scale,) * 2
        time_ids = sdxl_time_ids(self.pipe, size, positive.dtype, int(pooled.shape[-1]))
        return self.conditioning({"text": torch.stack([negative, positive], 1),
                                  "pooled": torch.stack([negative_pooled, pooled], 1),
                                  "time_ids": time_ids.to(self.device).expand(len(prompts), 2, -1)}, view_prompt)

    def added_conditions(self, states: dict) -> dict:
        return {"text_embeds": states["pooled"], "time_ids": states["time_ids"], **super().added_conditions(states)}


def vae_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    z = latents.to(vae.dtype) / vae.config.scaling_factor + (getattr(vae.config, "shift_factor", None) or 0.0)
    return vae.decode(z).sample.to(latents.dtype)


def vae_encode(vae, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    posterior = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    sample = posterior.sample(generator) if generator is not None else posterior.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((sample - shift) * vae.config.scaling_factor).to(images.dtype)


def nn_list(*modules) -> torch.nn.ModuleList:
    return torch.nn.ModuleList([m for m in modules if m is not None])


def unet_from_pipe(pipe, device, name: str, t5: str = "same", **kwargs) -> UNetDenoiser:
    """The denoiser over an SD 1.x/2.x or SDXL pipeline's components, on ``device`` (None: where they
    are); ``t5``: these families have none."""
    cls = SDXLDenoiser if getattr(pipe, "text_encoder_2", None) is not None else UNetDenoiser
    denoiser = cls(pipe, name=name, **kwargs)
    return denoiser if device is None else denoiser.to(device)
