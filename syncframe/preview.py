"""Cheap previews of a run while it goes: the canonical latents as a picture, every few steps.

TAESD (the tiny autoencoder for SD 1.x/2.x latents) when its weights are given; otherwise a
fixed linear map from latent channels to RGB: the published approximations of the SD and SDXL
VAEs (a least-squares fit of decoded colour to latent, per channel; close enough to watch a
layout form), or, for a family without one, the first three channels at a fixed contrast.
Analytic priors decode in closed form, which is cheap: they use their own decoder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from .apps.base import to_pil

# Rows: latent channels; columns: R, G, B (in [-1, 1] units). Community fits of decoded colour.
LATENT_RGB = {
    "sd": (torch.tensor([[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264],
                         [-0.184, -0.271, -0.473]]), torch.zeros(3)),
    "sdxl": (torch.tensor([[0.3920, 0.4054, 0.4549], [-0.2634, -0.0196, 0.0653], [0.0568, 0.1687, -0.0755],
                           [-0.3112, -0.2359, -0.2076]]), torch.zeros(3)),
}


def linear_rgb(latents: torch.Tensor, family: str) -> torch.Tensor:
    """``latents: [C, h, w]`` -> ``[3, h, w]`` in [-1, 1] by the family's linear map."""
    latents = latents.float().cpu()
    known = LATENT_RGB.get(family)
    if known is not None and latents.shape[0] == known[0].shape[0]:
        matrix, bias = known
        rgb = torch.einsum("chw,cr->rhw", latents, matrix) + bias[:, None, None]
    else:  # no fit for this family: the first channels, scaled by their spread
        rgb = latents[:3] if latents.shape[0] >= 3 else latents[:1].expand(3, -1, -1)
        rgb = rgb / (2 * rgb.std().clamp_min(1e-6))
    return rgb.clamp(-1, 1)


class Previewer:
    """``previewer(canonical latents [C, h, w]) -> PIL image`` at most ``max_side`` pixels wide.

    ``decoder``: "taesd" (needs ``taesd``, a diffusers AutoencoderTiny folder or repository id,
    and SD 1.x/2.x latents), "linear", or "model" (the denoiser's own decoder: analytic priors).
    """

    def __init__(self, family: str, decoder: str = "linear", taesd=None, model_decode=None, max_side: int = 1024):
        self.family, self.decoder, self.max_side = family, decoder, max_side
        self.taesd, self.model_decode = taesd, model_decode

    @classmethod
    def for_model(cls, denoiser, spec, taesd_source: str | None = None, max_side: int = 1024) -> "Previewer":
        """The cheapest faithful preview for this model: its own decoder where the model's latents are
        its own (analytic priors, the small demo model: cheap), TAESD for SD 1.x/2.x latents when its
        weights are given, else the family's linear map."""
        from .models.families import family

        if spec.own_latents or family(spec.family).pipeline is None:
            return cls(spec.family, "model", model_decode=denoiser.decode, max_side=max_side)
        if taesd_source and family(spec.family).can("taesd"):
            from diffusers import AutoencoderTiny

            from .models.hub import locate

            taesd = AutoencoderTiny.from_pretrained(locate(taesd_source, "taesd")).float().requires_grad_(False).eval()
            return cls(spec.family, "taesd", taesd=taesd, max_side=max_side)
        return cls(spec.family, "linear", max_side=max_side)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, cheap: bool = False) -> Image.Image:
        """``cheap``: the linear map whatever the decoder (the caller's time budget is spent)."""
        if self.decoder == "taesd" and not cheap:
            # TAESD decodes diffusion-space latents as they are (its scaling factor is 1).
            rgb = self.taesd.decode(latents[None].float().cpu()).sample[0]
        elif self.decoder == "model" and not cheap:
            rgb = self.model_decode(latents[None].to(torch.float32))[0].float().cpu()
        else:
            rgb = linear_rgb(latents, self.family)
        rgb = rgb.clamp(-1, 1)
        width = rgb.shape[-1]
        if width > self.max_side:
            height = max(1, round(rgb.shape[-2] * self.max_side / width))
            rgb = F.interpolate(rgb[None], size=(height, self.max_side), mode="bilinear", antialias=True)[0]
        elif width < 256:  # a latent-sized linear preview: nearest up to a visible size
            rgb = F.interpolate(rgb[None], scale_factor=max(1, 512 // width), mode="nearest")[0]
        return to_pil(rgb)
