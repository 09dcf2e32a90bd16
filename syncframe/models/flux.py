"""FLUX.1 (schnell, dev): the FLUX transformer on 2x2-packed 16-channel latents, rectified flow.

Views stay unpacked ``[N, 16, h, w]`` for the spaces; packing into ``[N, h/2 · w/2, 64]`` tokens
with their image ids happens inside each model call. Prompts are encoded by diffusers'
``FluxPipeline`` (CLIP pooled + T5 states). The distilled models take ``guidance`` as an input
of the model (dev) or none at all (schnell); classifier-free guidance is not run for them.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .compat import flux_image_ids, flux_pack, flux_unpack
from .denoiser import Conditioning, DiffusersDenoiser, freeze, text_device
from .unet import nn_list, vae_decode, vae_encode


class FluxDenoiser(DiffusersDenoiser):
    prediction_type = "flow"

    def __init__(self, pipe, guidance: float = 3.5, view_batch_size: int | None = None, name: str = "custom",
                 t5_device: str = "same", frozen: bool = True):
        super().__init__()
        self.name, self.pipe, self.scheduler = name, pipe, pipe.scheduler
        self.transformer, self.vae = pipe.transformer, pipe.vae
        self.text_encoders = nn_list(pipe.text_encoder)
        self.t5_device = t5_device  # T5 is not a submodule: moving the denoiser leaves it where it was put
        self.guidance, self.view_batch_size = guidance, view_batch_size
        self.controlnet = None  # not supported for this family yet
        if frozen:  # a pipeline the user built (generate(pipe=...)) is used as it is
            freeze(self.transformer, self.vae, pipe.text_encoder, pipe.text_encoder_2)
        self.area_factor = 4.0

    uses_cfg = False  # distilled: guidance is the model's input (dev) or absent (schnell)

    @property
    def backbone(self) -> torch.nn.Module:
        return self.transformer

    @property
    def latent_channels(self) -> int:
        return self.transformer.config.in_channels // 4

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str], negative_prompt: str, view_prompt) -> Conditioning:
        with text_device(self.text_encoders, self.device, self.t5_device) as device:
            states, pooled, _ = self.pipe.encode_prompt(list(prompts), list(prompts), device=device,
                                                        num_images_per_prompt=1)
        # the "negative" half is never run (uses_cfg is False); the same tensor keeps the layout
        tensors = {"text": torch.stack([states, states], 1), "pooled": torch.stack([pooled, pooled], 1)}
        return Conditioning({k: v.to(self.device, self.dtype) for k, v in tensors.items()}, torch.as_tensor(view_prompt))

    def forward_model(self, x, step, states, control):
        if control is not None:
            raise ConfigError("ControlNets for FLUX are not supported yet; drop controlnet= (or use an SD 1.x/2.x "
                              "or SDXL model with its ControlNet)")
        b, c, h, w = x.shape
        tokens = flux_pack(x.to(self.dtype))
        image_ids = flux_image_ids(b, h // 2, w // 2, x.device, self.dtype)
        text_ids = torch.zeros(states["text"].shape[1], 3, device=x.device, dtype=self.dtype)
        t = torch.full((b,), step.t, device=x.device, dtype=self.dtype) / 1000  # as FluxPipeline does
        guidance = (torch.full((b,), self.guidance, device=x.device, dtype=torch.float32)
                    if self.transformer.config.guidance_embeds else None)
        out = self.transformer(hidden_states=tokens, timestep=t, guidance=guidance, pooled_projections=states["pooled"],
                               encoder_hidden_states=states["text"], txt_ids=text_ids, img_ids=image_ids,
                               return_dict=False)[0]
        return flux_unpack(out, h * self.latent_scale, w * self.latent_scale, self.latent_scale)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return vae_decode(self.vae, latents)

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return vae_encode(self.vae, images, generator)


def flux_from_pipe(pipe, device, name: str, t5: str = "same", **kwargs) -> FluxDenoiser:
    """The denoiser over a FLUX pipeline's components; T5 on the run's device or the CPU (``device``
    None: everything stays where it is)."""
    denoiser = FluxDenoiser(pipe, name=name, t5_device=t5, **kwargs)
    if device is None:
        return denoiser
    denoiser = denoiser.to(device)
    pipe.text_encoder_2.to("cpu" if t5 == "cpu" else device)
    return denoiser
