"""The pretrained model behind one call ``eps(x_t, t, cond)``, wrapping diffusers components."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError


@dataclass
class Conditioning:
    """Text conditioning for N views.

    embeds: ``[P, 2, L, D]`` — for each of P prompts the (negative, positive) encoder states.
    view_prompt: ``[N]`` — which prompt each view uses.
    """

    embeds: torch.Tensor
    view_prompt: torch.Tensor
    control: torch.Tensor | None = None  # [N, 3, 8h, 8w] in [0, 1]: ControlNet images per view

    def for_views(self, view_ids: torch.Tensor) -> torch.Tensor:
        return self.embeds[self.view_prompt[view_ids]]  # [B, 2, L, D]

    def control_for(self, view_ids: torch.Tensor) -> torch.Tensor | None:
        return None if self.control is None else self.control[view_ids.to(self.control.device)]


class ViewBatchedDenoiser(nn.Module):
    """ε for all views in batches; subclasses give ``model_eps(x, t, embeds, control)`` for one
    batch, ``resolve_batch_size`` and a ``controlnet`` attribute (None without one)."""

    def eps(self, x: torch.Tensor, t, cond: Conditioning, view_ids: torch.Tensor | None = None,
            batch_size: int | None = None) -> torch.Tensor:
        """ε for all views ``x: [N, C, h, w]`` in batches of ``batch_size`` views."""
        n = x.shape[0]
        view_ids = torch.arange(n) if view_ids is None else view_ids
        batch_size = batch_size or self.resolve_batch_size(n)
        parts = [self.model_eps(x[i:i + batch_size], t, cond.for_views(view_ids[i:i + batch_size]),
                                cond.control_for(view_ids[i:i + batch_size]))
                 for i in range(0, n, batch_size)]
        return torch.cat(parts)


class Denoiser(ViewBatchedDenoiser):
    """UNet + VAE + text encoder + tokenizer + scheduler, batched over views with CFG."""

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler, guidance: float = 7.5,
                 view_batch_size: int | None = None, name: str = "custom", controlnet=None,
                 controlnet_scale: float = 1.0):
        super().__init__()
        self.unet, self.vae, self.text_encoder = unet, vae, text_encoder
        self.controlnet, self.controlnet_scale = controlnet, controlnet_scale
        if controlnet is not None:
            controlnet.requires_grad_(False).eval()
        self.tokenizer, self.scheduler = tokenizer, scheduler
        self.guidance = guidance
        self.view_batch_size = view_batch_size
        self.name = name
        for module in (unet, vae, text_encoder):
            module.requires_grad_(False).eval()
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.clone().float(), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def latent_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def latent_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def prediction_type(self) -> str:
        return self.scheduler.config.prediction_type

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str], negative_prompt: str, view_prompt) -> Conditioning:
        def encode(texts):
            ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids
            return self.text_encoder(ids.to(self.device))[0]

        cond = encode(list(prompts))
        uncond = encode([negative_prompt] * len(prompts))
        embeds = torch.stack([uncond, cond], dim=1).to(self.dtype)
        return Conditioning(embeds, torch.as_tensor(view_prompt, dtype=torch.long))

    def resolve_batch_size(self, num_views: int) -> int:
        """Views per UNet call; each view costs two UNet samples (the CFG halves)."""
        if self.view_batch_size:
            return max(1, min(self.view_batch_size, num_views))
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            # ~0.6 GiB of activations per view-pair at 64x64 latents in fp16 with SDPA for
            # SD 2 base; keep half the free memory in reserve for the VAE and allocator.
            per_view = 0.6 * 2**30 * (2 if self.dtype == torch.float32 else 1)
            return max(1, min(num_views, int(0.5 * free / per_view)))
        return min(num_views, 8)

    def model_eps(self, x: torch.Tensor, t, embeds: torch.Tensor, control: torch.Tensor | None = None) -> torch.Tensor:
        """ε for views ``x: [B, C, h, w]`` with ``embeds: [B, 2, L, D]`` and optional ControlNet
        images ``control: [B, 3, 8h, 8w]``; one UNet call for both CFG halves."""
        b = x.shape[0]
        use_cfg = self.guidance > 1.0
        if use_cfg:
            model_in = torch.cat([x, x])
            states = torch.cat([embeds[:, 0], embeds[:, 1]])
            control = None if control is None else torch.cat([control, control])
        else:
            model_in, states = x, embeds[:, 1]
        model_in = model_in.to(self.dtype)
        residuals = {}
        if control is not None:
            if self.controlnet is None:
                raise ConfigError("this run has ControlNet images (e.g. depth=) but no ControlNet: set controlnet=")
            down, mid = self.controlnet(model_in, t, encoder_hidden_states=states, controlnet_cond=control.to(self.dtype),
                                        conditioning_scale=self.controlnet_scale, return_dict=False)
            residuals = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        out = self.unet(model_in, t, encoder_hidden_states=states, **residuals).sample.to(x.dtype)
        if use_cfg:
            uncond, cond = out[:b], out[b:]
            out = uncond + self.guidance * (cond - uncond)
        if self.prediction_type == "v_prediction":
            a = self.alphas_cumprod[int(t)].to(x.dtype)
            out = a.sqrt() * out + (1 - a).sqrt() * x
        elif self.prediction_type != "epsilon":
            raise ConfigError(f"prediction_type {self.prediction_type!r} is not supported; "
                              "use an epsilon- or v-prediction model")
        return out

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, 4, h, w]`` -> images ``[B, 3, 8h, 8w]`` in [-1, 1] (not clamped)."""
        z = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        return self.vae.decode(z).sample.to(latents.dtype)


def load_controlnet(source: str, unet, device: torch.device, dtype: torch.dtype):
    """``tiny``: a seeded random ControlNet shaped like ``unet`` (offline tests); else a diffusers
    ControlNet repository id or folder (e.g. a depth ControlNet matching the base model)."""
    from diffusers import ControlNetModel

    if source == "tiny":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))
            # Real ControlNets start with zero convolutions (no effect); a test one must act.
            for block in [*net.controlnet_down_blocks, net.controlnet_mid_block,
                          net.controlnet_cond_embedding.conv_out]:
                torch.nn.init.normal_(block.weight, std=0.2)
        return net.to(device, dtype)
    from .hub import locate

    try:
        return ControlNetModel.from_pretrained(locate(source, "controlnet"), torch_dtype=dtype).to(device)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"could not load ControlNet {source!r}: {str(exc).splitlines()[0]}. Fix: give a "
                          "diffusers ControlNet repository id or folder (e.g. a depth ControlNet for SD 2 or 1.5), "
                          "or controlnet=tiny with model=tiny") from exc


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    table = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
             "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if dtype not in table:
        raise ConfigError(f"dtype={dtype!r} is not one of auto, {', '.join(table)}")
    return table[dtype]


def from_pretrained(repo: str, device: torch.device, dtype: torch.dtype, **kwargs) -> Denoiser:
    """Load any diffusers Stable Diffusion 1.x/2.x repository id or local folder."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from .hub import locate

    name, repo = repo, locate(repo, "model")
    try:
        unet = UNet2DConditionModel.from_pretrained(repo, subfolder="unet", torch_dtype=dtype)
        vae = AutoencoderKL.from_pretrained(repo, subfolder="vae", torch_dtype=dtype)
        text_encoder = CLIPTextModel.from_pretrained(repo, subfolder="text_encoder", torch_dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(repo, subfolder="tokenizer")
        # DDIM is the papers' sampler; the repository's own schedule (betas, offset,
        # prediction type) is kept.
        scheduler = DDIMScheduler.from_pretrained(repo, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"could not load model {name!r}: {str(exc).splitlines()[0]}. Fix: give a "
                          "diffusers Stable Diffusion repository id or local folder (model.repo=...), "
                          "check the network or HF token, or use model=tiny offline") from None
    return Denoiser(unet, vae, text_encoder, tokenizer, scheduler, name=name, **kwargs).to(device)
