"""SyncDiffusion (Lee et al. 2023): a gradient step on every non-anchor view's x_t that lowers a
perceptual loss between its decoded Tweedie prediction and the anchor's, then averaging.

The gradient is batched over views: each view's loss depends only on its own x_t, so the
gradient of the summed loss is every view's own gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.perceptual import StyleLoss, load_lpips
from ..registry import register_sync
from ..sampler import SampleContext, Step, tweedie
from .averaging import AveragingSync, averaging_from_config

LOSSES = ("lpips-vgg", "lpips-alex", "style")
DECODERS = ("vae", "taesd")


class GuidedSync(AveragingSync):
    """Perceptual-loss guidance before the model call + any averaging of the family."""

    def __init__(self, averaging: AveragingSync, loss: torch.nn.Module, weight: float = 20.0,
                 decay: float = 0.95, thres: int | None = None, freq: int = 1, anchor="center",
                 loss_resolution: int | None = None, grad_through_unet: bool = True,
                 decoder=None, grad_batch_size: int | None = None):
        super().__init__(averaging.aggregate, averaging.state, averaging.until)
        if averaging.state != "instance":
            raise ConfigError("SyncDiffusion guidance moves each view's own x_t: use sync.state=instance")
        if freq < 1:
            raise ConfigError(f"sync.freq={freq} must be >= 1")
        if thres is not None and thres < 0:
            raise ConfigError(f"sync.thres={thres} must be >= 0 or null (all steps)")
        if not (anchor == "center" or isinstance(anchor, int)):
            raise ConfigError(f"sync.anchor={anchor!r} must be 'center' or a view index")
        self.loss, self.weight, self.decay, self.thres, self.freq = loss, weight, decay, thres, freq
        self.anchor_option, self.loss_resolution = anchor, loss_resolution
        self.grad_through_unet, self.decoder, self.grad_batch_size = grad_through_unet, decoder, grad_batch_size

    def bind(self, ctx: SampleContext) -> None:
        self.ctx = ctx
        n = ctx.space.num_views
        self.anchor = n // 2 if self.anchor_option == "center" else self.anchor_option
        if not 0 <= self.anchor < n:
            raise ConfigError(f"sync.anchor={self.anchor} is not a view index (0..{n - 1})")
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
        with torch.set_grad_enabled(self.grad_through_unet and torch.is_grad_enabled()):
            eps = ctx.denoiser.eps(x_t, step.t, ctx.cond, view_ids=view_ids, batch_size=len(view_ids))
        return tweedie(x_t, eps, step.alpha)

    def loss_gradient(self, x_t: torch.Tensor, step: Step) -> torch.Tensor:
        """∇_{x_t^(i)} L(D(x0^(i)), D(x0^(anchor))) for every view; zero for the anchor."""
        n = x_t.shape[0]
        with torch.no_grad():
            target = self.decode(self.predict_x0(x_t[self.anchor:self.anchor + 1], step,
                                                 torch.tensor([self.anchor])))
        grad = torch.zeros_like(x_t)
        others = [i for i in range(n) if i != self.anchor]
        size = self.grad_batch_size or max(1, self.ctx.batch_size // 2)
        for start in range(0, len(others), size):
            ids = torch.tensor(others[start:start + size])
            with torch.enable_grad():
                view = x_t[ids].detach().requires_grad_(True)
                images = self.decode(self.predict_x0(view, step, ids))
                loss = self.loss(images, target.expand_as(images)).sum()
                grad[ids] = torch.autograd.grad(loss, view)[0].to(grad.dtype)
        return grad

    def before_model(self, x_t, step):
        if not self.guided(step):
            return x_t
        w = self.weight * self.decay ** step.index
        return x_t - w * self.loss_gradient(x_t, step)


def build_loss(name: str, weights, allow_random: bool) -> torch.nn.Module:
    if name not in LOSSES:
        raise ConfigError(f"sync.loss={name!r} is not one of {', '.join(LOSSES)}")
    if name == "style":
        return StyleLoss(load_lpips("vgg", weights, allow_random))
    return load_lpips(name.split("-")[1], weights, allow_random)


def build_decoder(name: str, source: str):
    if name not in DECODERS:
        raise ConfigError(f"sync.decoder={name!r} is not one of {', '.join(DECODERS)}")
    if name == "vae":
        return None
    from diffusers import AutoencoderTiny

    try:
        return AutoencoderTiny.from_pretrained(source).float().requires_grad_(False).eval()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"could not load TAESD from {source!r}: {str(exc).splitlines()[0]}. "
                          "Fix: sync.taesd=<diffusers AutoencoderTiny repository id or folder>") from exc


@register_sync("syncdiffusion")
def make_syncdiffusion(cfg) -> GuidedSync:
    o = cfg["sync"]
    offline_model = bool(cfg["model"].get("builder") or cfg["model"].get("analytic"))  # offline models may use random LPIPS
    return GuidedSync(
        averaging_from_config(o), build_loss(o["loss"], o["lpips_weights"], allow_random=offline_model),
        weight=float(o["weight"]), decay=float(o["decay"]), thres=o["thres"], freq=int(o["freq"]),
        anchor=o["anchor"], loss_resolution=o["loss_resolution"], grad_through_unet=bool(o["grad_through_unet"]),
        decoder=build_decoder(o["decoder"], o["taesd"]), grad_batch_size=o["grad_batch_size"])
