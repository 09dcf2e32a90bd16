"""The model behind one call ``predict(x_t, step, cond) -> (x0, ε)``, batched over views.

Families (``unet.py`` for SD 1/2 and SDXL, ``sd3.py``, ``flux.py``) give the model's raw output for
a batch of views; this base class batches the views, pairs the classifier-free-guidance halves
in one call and turns the output into (x0, ε) by the model's prediction type:

- ``epsilon``: ε = out, x0 = (x_t − s ε) / a;
- ``v_prediction``: x0 = a x_t − s v, ε = s x_t + a v;
- ``flow`` (rectified flow, velocity v = ε − x0): x0 = x_t − σ v, ε = x_t + (1 − σ) v,
  with σ = s — no division, so σ = 1 (the start of FLUX / SD3 schedules) is fine;
- ``sample`` (the analytic priors' exact posterior mean): x0 = out, ε = (x_t − a x0) / s.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..samplers import Step, eps_from_x0, tweedie

PREDICTIONS = ("epsilon", "v_prediction", "flow", "sample")


@dataclass
class Conditioning:
    """Conditioning for N views.

    tensors: name -> ``[P, 2, ...]``: for each of P prompts the (negative, positive) tensor
    (text states, pooled embeddings, time ids, ...; what the family needs).
    view_prompt: ``[N]`` — which prompt each view uses.
    """

    tensors: dict[str, torch.Tensor]
    view_prompt: torch.Tensor
    control: torch.Tensor | None = None  # [N, 3, 8h, 8w] in [0, 1]: ControlNet images per view
    # [N, E, h, w]: channels an inpainting model reads beside each view's latents (its mask, the masked image's latents)
    extra: torch.Tensor | None = None

    def for_views(self, view_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        prompts = self.view_prompt[view_ids]
        return {name: t[prompts.to(t.device)] for name, t in self.tensors.items()}  # [B, 2, ...]

    def control_for(self, view_ids: torch.Tensor) -> torch.Tensor | None:
        return None if self.control is None else self.control[view_ids.to(self.control.device)]

    def extra_for(self, view_ids: torch.Tensor) -> torch.Tensor | None:
        return None if self.extra is None else self.extra[view_ids.to(self.extra.device)]


class ViewDenoiser(nn.Module):
    """Subclasses give ``forward_model(x, step, states, control)`` (the raw output for a batch,
    ``states`` one tensor per conditioning name, already batched), ``prediction_type``, ``device``,
    ``dtype``, ``decode`` and ``encode_prompts``; ``guidance`` is the CFG scale (``uses_cfg``
    decides whether the negative half runs). Each sets ``self.controlnet`` in ``__init__`` (never
    as a class attribute: it would shadow a ControlNet module registered later)."""

    guidance: float = 7.5
    view_batch_size: int | None = None
    pipe = None  # the family's diffusers pipeline over the same components (None: no diffusers model)
    extras: dict = {}  # what was loaded into it beyond the model (LoRAs, IP-Adapter), for run.json
    compiled: bool = False  # its backbone went through torch.compile (compile=true)

    @property
    def uses_cfg(self) -> bool:
        return self.guidance > 1.0

    @property
    def backbone(self) -> nn.Module | None:
        """The denoising network (``compile=true`` compiles it); None: a closed-form prior has none."""
        return None

    def predict(self, x: torch.Tensor, step: Step, cond: Conditioning, view_ids: torch.Tensor | None = None,
                batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, ε) for all views ``x: [N, C, h, w]`` in batches of ``batch_size`` views."""
        n = x.shape[0]
        view_ids = torch.arange(n) if view_ids is None else view_ids
        batch_size = batch_size or self.resolve_batch_size(n)
        out = torch.cat([self.model_output(x[i:i + batch_size], step, cond.for_views(view_ids[i:i + batch_size]),
                                           cond.control_for(view_ids[i:i + batch_size]),
                                           cond.extra_for(view_ids[i:i + batch_size]))
                         for i in range(0, n, batch_size)])
        return self.split(x, out, step)

    def model_output(self, x: torch.Tensor, step: Step, states: dict, control: torch.Tensor | None,
                     extra: torch.Tensor | None = None) -> torch.Tensor:
        """The model's output for views ``x: [B, ...]``, with CFG: both halves in one call; ``extra``
        (``[B, E, h, w]``) is concatenated to the input's channels (an inpainting model's), after the
        latents as diffusers' inpainting pipelines do."""
        model_input = x if extra is None else torch.cat([x, extra.to(x)], dim=1)
        if not self.uses_cfg:
            return self.forward_model(model_input, step, {k: v[:, 1] for k, v in states.items()}, control).to(x.dtype)
        paired = {k: torch.cat([v[:, 0], v[:, 1]]) for k, v in states.items()}
        control = None if control is None else torch.cat([control, control])
        uncond, cond = self.forward_model(torch.cat([model_input, model_input]), step, paired,
                                          control).to(x.dtype).chunk(2)
        return uncond + self.guidance * (cond - uncond)

    def forward_model(self, x: torch.Tensor, step: Step, states: dict, control) -> torch.Tensor:
        raise NotImplementedError

    def split(self, x: torch.Tensor, out: torch.Tensor, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, ε) from the model's output, by its prediction type."""
        a, s = step.a, step.s
        if self.prediction_type == "epsilon":
            return tweedie(x, out, step), out
        if self.prediction_type == "v_prediction":
            return a * x - s * out, s * x + a * out
        if self.prediction_type == "flow":
            return x - s * out, x + a * out
        if self.prediction_type == "sample":
            return out, eps_from_x0(x, out, step)
        raise ConfigError(f"prediction_type {self.prediction_type!r} is not supported; use one of {', '.join(PREDICTIONS)}")

    def x0_slope(self, step: Step) -> float:
        """∂x0/∂x_t with the model's output held constant (SyncDiffusion's cheap gradient)."""
        return {"epsilon": 1 / step.a, "v_prediction": step.a, "flow": 1.0, "sample": 0.0}[self.prediction_type]

    def resolve_batch_size(self, num_views: int) -> int:
        """Views per model call; each view costs two model samples with CFG."""
        if self.view_batch_size:
            return max(1, min(self.view_batch_size, num_views))
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            # ~0.6 GiB of activations per view-pair at 64x64 latents in fp16 with SDPA for
            # SD 2 base (an estimate, not measured yet); scaled by the view's latent area and
            # half the free memory kept in reserve for the VAE and allocator.
            per_view = 0.6 * 2**30 * (2 if self.dtype == torch.float32 else 1) * self.area_factor
            return max(1, min(num_views, int(0.5 * free / per_view)))
        return min(num_views, 8)

    area_factor = 1.0  # a family's activations per view relative to SD 2 base at 64² latents


class DiffusersDenoiser(ViewDenoiser):
    """A diffusers family: its denoising network (``backbone``: the UNet or the transformer) sets
    the device, dtype and latent channels (its input channels; FLUX packs 2x2 latents into them);
    its ``vae`` the latent scale."""

    @property
    def backbone(self) -> nn.Module:
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.dtype

    run_device: torch.device | None = None  # where it runs when that is not where its weights are (offload hooks)

    @property
    def device(self) -> torch.device:
        return self.run_device or self.backbone.device

    @property
    def latent_channels(self) -> int:
        return self.backbone.config.in_channels

    @property
    def latent_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


@contextmanager
def text_device(encoders: nn.Module, device: torch.device, t5: str):
    """Where prompts are encoded: on ``device``, or with ``model.t5=cpu`` (T5 kept on the CPU to
    save GPU memory) on the CPU, the CLIP encoders visiting it for the encoding."""
    if t5 != "cpu" or device.type == "cpu":
        yield device
        return
    encoders.to("cpu")
    try:
        yield torch.device("cpu")
    finally:
        encoders.to(device)


def freeze(*modules) -> None:
    for module in modules:
        if module is not None:
            module.requires_grad_(False).eval()


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
                          "or controlnet=tiny (a random ControlNet, offline)") from exc


def pick_device(device: str) -> torch.device:
    """The run's device; in a distributed run, this rank's (``cuda:LOCAL_RANK`` or the CPU)."""
    from ..distributed import current

    group = current()
    if group is not None:
        return group.device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    return table[dtype]
