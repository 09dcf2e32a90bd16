"""The private diffusers calls syncframe relies on, in one place.

diffusers' pipelines keep some of their latent bookkeeping in underscore methods (SDXL's size /
crop time ids, FLUX's 2x2 packing of latents into tokens and their position ids). syncframe
calls them so that its conditioning and packing are exactly the pipelines'. They are not public
API: ``tests/test_compat.py`` states what each must do, and ``pyproject.toml`` bounds diffusers
to the releases CI has run them on.
"""
from __future__ import annotations

import torch


def sdxl_time_ids(pipe, size: tuple[int, int], dtype: torch.dtype, projection_dim: int) -> torch.Tensor:
    """SDXL's added time ids ``[1, 6]`` for a whole ``size`` image, cropped at (0, 0)."""
    return pipe._get_add_time_ids(size, (0, 0), size, dtype=dtype, text_encoder_projection_dim=projection_dim)


def flux_pack(latents: torch.Tensor) -> torch.Tensor:
    """FLUX latents ``[B, C, h, w]`` -> tokens ``[B, h/2 · w/2, 4C]`` (2x2 patches)."""
    from diffusers import FluxPipeline

    b, c, h, w = latents.shape
    return FluxPipeline._pack_latents(latents, b, c, h, w)


def flux_unpack(tokens: torch.Tensor, height_px: int, width_px: int, vae_scale: int) -> torch.Tensor:
    """The inverse of :func:`flux_pack` for an image of ``height_px`` x ``width_px`` pixels."""
    from diffusers import FluxPipeline

    return FluxPipeline._unpack_latents(tokens, height_px, width_px, vae_scale)


def flux_image_ids(batch: int, height: int, width: int, device, dtype: torch.dtype) -> torch.Tensor:
    """FLUX's position ids ``[height · width, 3]`` of a ``height`` x ``width`` grid of packed tokens."""
    from diffusers import FluxPipeline

    return FluxPipeline._prepare_latent_image_ids(batch, height, width, device, dtype)


def execution_device(pipe) -> torch.device:
    """Where a pipeline runs its models: its device, or the accelerator its offload hooks move them to."""
    return pipe._execution_device
