"""Stable Diffusion 3 / 3.5: the SD3 transformer on 16-channel latents, rectified flow.

Prompts are encoded by diffusers' ``StableDiffusion3Pipeline`` on the same components (CLIP-L,
CLIP-G, and T5 unless dropped: ``model.t5=drop`` gives zeros for it, as the pipeline does without
a third text encoder). The transformer predicts the flow velocity.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .denoiser import Conditioning, DiffusersDenoiser, freeze, text_device
from .unet import nn_list, vae_decode, vae_encode


class SD3Denoiser(DiffusersDenoiser):
    prediction_type = "flow"

    def __init__(self, pipe, guidance: float = 7.0, view_batch_size: int | None = None, name: str = "custom",
                 t5_device: str = "same", frozen: bool = True):
        super().__init__()
        self.name, self.pipe, self.scheduler = name, pipe, pipe.scheduler
        self.transformer, self.vae = pipe.transformer, pipe.vae
        self.text_encoders = nn_list(pipe.text_encoder, pipe.text_encoder_2)
        self.t5_device = t5_device  # T5 is not a submodule: moving the denoiser leaves it where it was put
        self.guidance, self.view_batch_size = guidance, view_batch_size
        self.controlnet = None  # not supported for this family yet
        if frozen:  # a pipeline the user built (generate(pipe=...)) is used as it is
            freeze(self.transformer, self.vae, *self.text_encoders, pipe.text_encoder_3)
        self.area_factor = 4 * (self.transformer.config.sample_size / 128) ** 2

    @property
    def backbone(self) -> torch.nn.Module:
        return self.transformer

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str], negative_prompt: str, view_prompt) -> Conditioning:
        prompts, negatives = list(prompts), [negative_prompt] * len(prompts)
        with text_device(self.text_encoders, self.device, self.t5_device) as device:
            positive, negative, pooled, negative_pooled = self.pipe.encode_prompt(
                prompts, prompts, prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True,
                negative_prompt=negatives, negative_prompt_2=negatives, negative_prompt_3=negatives)
        tensors = {"text": torch.stack([negative, positive], 1), "pooled": torch.stack([negative_pooled, pooled], 1)}
        return Conditioning({k: v.to(self.device, self.dtype) for k, v in tensors.items()}, torch.as_tensor(view_prompt))

    def forward_model(self, x, step, states, control):
        if control is not None:
            raise ConfigError("ControlNets for SD3 are not supported yet; drop controlnet= (or use an SD 1.x/2.x "
                              "or SDXL model with its ControlNet)")
        t = torch.full((x.shape[0],), step.t, device=x.device, dtype=torch.float32)
        return self.transformer(hidden_states=x.to(self.dtype), timestep=t, encoder_hidden_states=states["text"],
                                pooled_projections=states["pooled"], return_dict=False)[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return vae_decode(self.vae, latents)

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return vae_encode(self.vae, images, generator)


def sd3_from_pipe(pipe, device, name: str, t5: str = "same", **kwargs) -> SD3Denoiser:
    """The denoiser over an SD3 pipeline's components; T5 on the run's device or the CPU (``device``
    None: everything stays where it is)."""
    denoiser = SD3Denoiser(pipe, name=name, t5_device=t5, **kwargs)
    if device is None:
        return denoiser
    denoiser = denoiser.to(device)
    if pipe.text_encoder_3 is not None:
        pipe.text_encoder_3.to("cpu" if t5 == "cpu" else device)
    return denoiser
