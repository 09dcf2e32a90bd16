"""SyncDiffusion (Lee et al. 2023): a gradient step on every non-anchor view's x_t that lowers a
perceptual loss between its decoded Tweedie prediction and the anchor's, then averaging.

The gradient is batched over views: each view's loss depends only on its own x_t, so the
gradient of the summed loss is every view's own gradient.
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from ..errors import ConfigError
from ..messages import note
from ..models.perceptual import StyleLoss, load_lpips
from ..options import FilePath, Source, option
from ..registry import register_sync
from ..loop import SampleContext
from ..samplers import Step
from .averaging import AveragingOptions, AveragingSync, averaging_from_config


class GuidedOptions(AveragingOptions):
    aggregate: Literal["eps", "x0", "x_prev"] = option(
        "x_prev", "the averaging after guidance: x_prev (the paper) or x0 (+ SyncTweedies)")
    weight: float = option(20.0, "gradient step w_0 (w_k = w_0 * decay^k)", ge=0, le=1e4)
    decay: float = option(0.95, "per-step decay of the gradient step", gt=0, le=1)
    thres: int | None = option(None, "guide the first `thres` steps only (SyncDiffusion's sync_thres); null = all", ge=0)
    freq: int = option(1, "guide when (k+1) % freq == 0 (SyncDiffusion's sync_freq)", ge=1)
    anchor: Literal["center"] | Annotated[int, Field(ge=0)] = option("center", "the anchor view: center, or a view index")
    loss: Literal["auto", "lpips-vgg", "lpips-alex", "style"] = option(
        "auto", "perceptual loss; auto = lpips-vgg on a GPU (the paper), lpips-alex on a CPU")
    loss_resolution: Literal["auto"] | Annotated[int, Field(ge=16, le=4096)] | None = option(
        "auto", "resize decoded views to this size before the loss; null = full size; "
                "auto = full on a GPU, 128 on a CPU")
    grad_through_unet: bool = option(True, "false: treat ε as constant (no UNet backward), much cheaper")
    decoder: Literal["vae", "taesd"] = option("vae", "decoder for the loss: the model's VAE, or TAESD (tiny)")
    taesd: Source = option("madebyollin/taesd", "TAESD repository id or folder, when decoder=taesd")
    grad_batch_size: int | None = option(None, "views per gradient pass; null = half the view batch", ge=1, le=4096)
    lpips_weights: FilePath | None = option(None, "file with the lpips package's state dict; null = search (see README)")

    @model_validator(mode="after")
    def _per_view_state(self):
        if self.state != "instance":
            raise ValueError("SyncDiffusion guidance moves each view's own x_t: use sync.state=instance")
        return self


# What `auto` means per device: the paper's settings on a GPU; on a CPU LPIPS-AlexNet at 128 px
# (LPIPS-VGG at 512 px costs minutes per step on 2 cores, the coherence picture of the README
# was made with these).
AUTO = {"cuda": dict(loss="lpips-vgg", loss_resolution=None), "cpu": dict(loss="lpips-alex", loss_resolution=128)}


class GuidedSync(AveragingSync):
    """Perceptual-loss guidance before the model call + any averaging of the family."""

    def __init__(self, averaging: AveragingSync, loss: torch.nn.Module, weight: float = 20.0,
                 decay: float = 0.95, thres: int | None = None, freq: int = 1, anchor="center",
                 loss_resolution: int | None = None, grad_through_unet: bool = True,
                 decoder=None, grad_batch_size: int | None = None):
        super().__init__(averaging.aggregate, averaging.state, averaging.until, averaging.name)
        self.loss, self.weight, self.decay, self.thres, self.freq = loss, weight, decay, thres, freq
        self.anchor_option, self.loss_resolution = anchor, loss_resolution
        self.grad_through_unet, self.decoder, self.grad_batch_size = grad_through_unet, decoder, grad_batch_size
        self.auto_options: dict = {}  # what sync.loss / sync.loss_resolution = auto became

    def resolved(self) -> dict:
        return dict(self.auto_options)

    def bind(self, ctx: SampleContext) -> None:
        self.ctx = ctx
        # One anchor for all views, or (regions) one per region: its centre view.
        self.groups = ctx.space.anchor_groups(None if self.anchor_option == "center" else self.anchor_option)
        self.anchor = self.groups[0][0]
        self.loss.to(ctx.denoiser.device)
        if self.decoder is not None:
            self.decoder.to(ctx.denoiser.device)

    def guided(self, step: Step) -> bool:
        in_range = self.thres is None or step.index < self.thres
        return in_range and (step.index + 1) % self.freq == 0 and self.weight != 0

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        image = self.ctx.denoiser.decode(x0) if self.decoder is None else self.decoder.decode(x0).sample
        # The reference clamps to the displayable range before the loss; so do we.
        image = image.float().clamp(-1, 1)
        if self.loss_resolution:
            image = F.interpolate(image, size=self.loss_resolution, mode="bilinear", antialias=True,
                                  align_corners=False)
        return image

    def predict_x0(self, x_t: torch.Tensor, step: Step, view_ids: torch.Tensor) -> torch.Tensor:
        ctx = self.ctx
        if self.grad_through_unet:
            return ctx.denoiser.predict(x_t, step, ctx.cond, view_ids=view_ids, batch_size=len(view_ids))[0]
        # The model's output held constant (no backward through it): x0 still moves with x_t,
        # by ∂x0/∂x_t at a fixed output (1/a for ε-prediction, as in the paper's cheap variant).
        with torch.no_grad():
            x0 = ctx.denoiser.predict(x_t, step, ctx.cond, view_ids=view_ids, batch_size=len(view_ids))[0]
        return x0 + ctx.denoiser.x0_slope(step) * (x_t - x_t.detach())

    def loss_gradient(self, x_t: torch.Tensor, step: Step) -> torch.Tensor:
        """∇_{x_t^(i)} L(D(x0^(i)), D(x0^(anchor))) for every view, towards its group's anchor
        (one group of all views, or one per region); zero for the anchors."""
        grad = torch.zeros_like(x_t)
        size = self.grad_batch_size or max(1, self.ctx.batch_size // 2)
        for anchor, members in self.groups:
            target = self.anchor_target(x_t, anchor, step)
            others = [i for i in members if i != anchor and self.ctx.mine(i)]  # this process's views
            for start in range(0, len(others), size):
                ids = torch.tensor(others[start:start + size])
                with torch.enable_grad():
                    view = x_t[ids].detach().requires_grad_(True)
                    images = self.decode(self.predict_x0(view, step, ids))
                    loss = self.loss(images, target.expand_as(images)).sum()
                    grad[ids] = torch.autograd.grad(loss, view)[0].to(grad.dtype)
        return grad

    def anchor_target(self, x_t: torch.Tensor, anchor: int, step: Step) -> torch.Tensor:
        """The anchor's decoded prediction ``[1, 3, H, W]``: computed by the process that denoises the
        anchor and broadcast to the others in a distributed run."""
        ctx = self.ctx
        if ctx.mine(anchor):
            with torch.no_grad():
                target = self.decode(self.predict_x0(x_t[anchor:anchor + 1], step, torch.tensor([anchor])))
        else:
            side = self.loss_resolution or x_t.shape[-1] * ctx.denoiser.latent_scale
            target = torch.zeros(1, 3, side, side, device=x_t.device)
        return target if ctx.group is None else ctx.group.broadcast(target, ctx.owner[anchor])

    def before_model(self, x_t, step):
        if not self.guided(step):
            return x_t
        w = self.weight * self.decay ** step.index
        return x_t - w * self.loss_gradient(x_t, step)


def build_loss(name: str, weights, allow_random: bool) -> torch.nn.Module:
    if name == "style":
        return StyleLoss(load_lpips("vgg", weights, allow_random))
    return load_lpips(name.split("-")[1], weights, allow_random)


def build_decoder(name: str, source: str):
    if name == "vae":
        return None
    from diffusers import AutoencoderTiny

    from ..models.hub import locate

    try:
        return AutoencoderTiny.from_pretrained(locate(source, "sync.taesd")).float().requires_grad_(False).eval()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"could not load TAESD from {source!r}: {str(exc).splitlines()[0]}. "
                          "Fix: sync.taesd=<diffusers AutoencoderTiny repository id or folder>") from exc


def resolve_auto(options: dict, device: str) -> dict:
    """``loss`` and ``loss_resolution`` with ``auto`` replaced by the device's choice."""
    auto = AUTO["cuda" if device.startswith("cuda") else "cpu"]
    return {key: auto[key] if options[key] == "auto" else options[key] for key in auto}


@register_sync("syncdiffusion", options=GuidedOptions)
def make_syncdiffusion(cfg, space) -> GuidedSync:
    """LPIPS-gradient guidance towards an anchor view, then averaging (Lee et al. 2023)."""
    from ..models.denoiser import pick_device

    o = cfg["sync"]
    space.anchor_groups(None if o["anchor"] == "center" else o["anchor"])  # checked before anything is loaded
    auto = resolve_auto(o, pick_device(cfg["device"]).type)
    offline_model = cfg["model"].get("kind") in ("offline", "analytic")  # offline models may use random LPIPS
    sync = GuidedSync(
        averaging_from_config(o), build_loss(auto["loss"], o["lpips_weights"], allow_random=offline_model),
        weight=o["weight"], decay=o["decay"], thres=o["thres"], freq=o["freq"], anchor=o["anchor"],
        loss_resolution=auto["loss_resolution"], grad_through_unet=o["grad_through_unet"],
        decoder=build_decoder(o["decoder"], o["taesd"]), grad_batch_size=o["grad_batch_size"])
    sync.auto_options = {f"sync.{key}": value for key, value in auto.items() if o[key] == "auto"}
    if pick_device(cfg["device"]).type == "cpu" and "auto" in (o["loss"], o["loss_resolution"]):
        note(f"sync=syncdiffusion on a CPU: the loss is {auto['loss']} at {auto['loss_resolution'] or 'full'} px "
             "(the paper's lpips-vgg at full size costs minutes per step here); set sync.loss=lpips-vgg "
             "sync.loss_resolution=null for the paper's settings")
    o.update(auto)  # config.yaml records what ran
    return sync
