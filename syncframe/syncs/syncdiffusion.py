"""SyncDiffusion (Lee et al. 2023): a gradient step on every non-anchor view's x_t that lowers a
perceptual loss between its decoded Tweedie prediction and the anchor's, then averaging.

The gradient is batched over views: each view's loss depends only on its own x_t, so the
gradient of the summed loss is every view's own gradient. The loss network and the decoder are
found while the run is prepared and loaded when it binds (prepare loads no weights).
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from ..errors import ConfigError
from ..messages import note
from ..models.perceptual import StyleLoss, lpips_from, lpips_source
from ..options import FilePath, Source, option
from ..registry import register_sync
from ..samplers import Step
from .averaging import Averaging, AveragingOptions, check_averaging, cross_view_plan


# What `auto` means per device: the paper's settings on a GPU; on a CPU LPIPS-AlexNet at 128 px
# (LPIPS-VGG at 512 px costs minutes per step on 2 cores).
AUTO = {"cuda": dict(loss="lpips-vgg", loss_resolution=None), "cpu": dict(loss="lpips-alex", loss_resolution=128)}


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

    def settle(self, facts) -> dict:
        """``loss`` and ``loss_resolution`` left to ``auto``: the device's (AUTO); and the family's."""
        auto = AUTO["cuda" if facts.device == "cuda" else "cpu"]
        settled = {key: auto[key] for key in auto if getattr(self, key) == "auto"}
        if facts.device != "cuda" and settled:
            note(f"sync=syncdiffusion on a CPU: the loss is {auto['loss']} at {auto['loss_resolution'] or 'full'} px "
                 "(the paper's lpips-vgg at full size costs minutes per step here); set sync.loss=lpips-vgg "
                 "sync.loss_resolution=null for the paper's settings")
        return {**settled, **super().settle(facts)}


class Guided(Averaging):
    """Perceptual-loss guidance before the model call + any averaging of the family. ``loss``: how
    to build the loss network once bound; ``decoder``: how to build TAESD, or None (the model's VAE)."""

    def __init__(self, averaging: Averaging, options: GuidedOptions, loss, decoder=None):
        super().__init__(averaging.aggregate, averaging.until, averaging.cross_view)
        self.options, self.build_loss, self.build_decoder = options, loss, decoder
        self.weight, self.decay = options.weight, options.decay
        self.loss_resolution = options.loss_resolution

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.model = ctx.model
        # One anchor for all views, or (regions) one per region: its centre view.
        anchor = None if self.options.anchor == "center" else self.options.anchor
        self.groups = ctx.space.capability("anchors")(anchor)
        self.anchor = self.groups[0][0]
        self.loss = self.build_loss().to(ctx.model.device)
        self.decoder = None if self.build_decoder is None else self.build_decoder().to(ctx.model.device)

    def guided(self, step: Step) -> bool:
        o = self.options
        in_range = o.thres is None or step.index < o.thres
        return in_range and (step.index + 1) % o.freq == 0 and self.weight != 0

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        image = self.model.decode(x0) if self.decoder is None else self.decoder.decode(x0).sample
        # The reference clamps to the displayable range before the loss; so do we.
        image = image.float().clamp(-1, 1)
        if self.loss_resolution:
            image = F.interpolate(image, size=self.loss_resolution, mode="bilinear", antialias=True,
                                  align_corners=False)
        return image

    def predict_x0(self, x_t: torch.Tensor, step: Step, view_ids: torch.Tensor) -> torch.Tensor:
        if self.options.grad_through_unet:
            return self.model.predict(x_t, step, view_ids)[0]
        # The model's output held constant (no backward through it): x0 still moves with x_t,
        # by ∂x0/∂x_t at a fixed output (1/a for ε-prediction, as in the paper's cheap variant).
        with torch.no_grad():
            x0 = self.model.predict(x_t, step, view_ids)[0]
        return x0 + self.model.x0_slope(step) * (x_t - x_t.detach())

    def loss_gradient(self, x_t: torch.Tensor, step: Step) -> torch.Tensor:
        """∇_{x_t^(i)} L(D(x0^(i)), D(x0^(anchor))) for every view, towards its group's anchor
        (one group of all views, or one per region); zero for the anchors."""
        grad = torch.zeros_like(x_t)
        size = self.options.grad_batch_size or max(1, self.model.batch_size // 2)
        for anchor, members in self.groups:
            target = self.anchor_target(x_t, anchor, step)
            others = [i for i in members if i != anchor and self.model.owns(i)]  # this process's views
            for start in range(0, len(others), size):
                ids = torch.tensor(others[start:start + size])
                with torch.enable_grad():
                    view = x_t[ids].detach().requires_grad_(True)
                    images = self.decode(self.predict_x0(view, step, ids))
                    loss = self.loss(images, target.expand_as(images)).sum()
                    grad[ids] = torch.autograd.grad(loss, view)[0].to(grad.dtype)
        return grad

    def anchor_target(self, x_t: torch.Tensor, anchor: int, step: Step) -> torch.Tensor:
        """The anchor's decoded prediction ``[1, 3, H, W]``, computed by the process that denoises the
        anchor and handed to the others."""
        if self.model.owns(anchor):
            with torch.no_grad():
                target = self.decode(self.predict_x0(x_t[anchor:anchor + 1], step, torch.tensor([anchor])))
        else:
            side = self.loss_resolution or x_t.shape[-1] * self.model.latent_scale
            target = torch.zeros(1, 3, side, side, device=x_t.device)
        return self.model.share(target, anchor)

    def before_model(self, x_t, step):
        if not self.guided(step):
            return x_t
        w = self.weight * self.decay ** step.index
        return x_t - w * self.loss_gradient(x_t, step)


def loss_builder(name: str, source):
    """A function that builds the loss network named ``name`` from its LPIPS weights ``source``."""
    if name == "style":
        return lambda: StyleLoss(lpips_from("vgg", source))
    return lambda: lpips_from(name.split("-")[1], source)


def decoder_builder(options: GuidedOptions):
    """None (the model's VAE), or a function that loads TAESD from its located source."""
    if options.decoder == "vae":
        return None
    from ..models.hub import locate

    source = locate(options.taesd, "sync.taesd")

    def build():
        from diffusers import AutoencoderTiny

        try:
            return AutoencoderTiny.from_pretrained(source).float().requires_grad_(False).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"could not load TAESD from {options.taesd!r}: {str(exc).splitlines()[0]}. "
                              "Fix: sync.taesd=<diffusers AutoencoderTiny repository id or folder>") from exc

    return build


@register_sync("syncdiffusion", options=GuidedOptions)
def make_syncdiffusion(options: GuidedOptions, facts) -> Guided:
    """LPIPS-gradient guidance towards an anchor view, then averaging (Lee et al. 2023)."""
    check_averaging(facts.sync, options, facts)
    anchors = facts.space.capability("anchors")
    if anchors is None:
        raise ConfigError(f"sync=syncdiffusion pulls views to an anchor view; the views of {facts.app_label()} "
                          "have none: use another sync")
    anchors(None if options.anchor == "center" else options.anchor)  # a bad index is refused now, not mid-run
    net = "vgg" if options.loss == "style" else options.loss.split("-")[1]
    source = lpips_source(net, options.lpips_weights, allow_random=not facts.weights)
    averaging = Averaging(options.aggregate, options.until, cross_view_plan(options, facts))
    return Guided(averaging, options, loss_builder(options.loss, source), decoder_builder(options))
