"""``app.domain=rgb``: latent views synchronized through a canonical space of RGB pixels.

The synchronized quantity is decoded to RGB views, made consistent there by the RGB space (its
unproject / project: fitted to the splats, the texture or the equirect map, and rendered back),
and encoded again. Decoding and encoding are not linear, so this only makes sense for a clean
quantity: the Tweedie x0 (``sync=synctweedies``) or the noise estimate ε (``sync=eps-averaging``)
of each view on its own (``sync.state=instance``). Averaging noisy x_{t-1} in RGB
(``multidiffusion``, ``syncdiffusion``) or denoising one canonical state is refused
(:func:`check_rgb_sync`, which the averaging synchronizers' ``check_domain`` applies and the apps
apply again before they build their spaces, so a refused run costs nothing).
"""
from __future__ import annotations

from functools import partial

import torch

from ..errors import ConfigError
from .base import CanonicalSpace, centre_anchor


class RGBDomain(CanonicalSpace):
    """Wraps ``latent`` (the views the model denoises; their noise) and ``rgb`` (the same cameras
    at pixel resolution with 3 channels). The denoiser's VAE is bound by the loop (:meth:`bind`)."""

    def __init__(self, latent: CanonicalSpace, rgb: CanonicalSpace, batch_size: int = 4, clamp: float = 1.0):
        if latent.num_views != rgb.num_views:
            raise ValueError(f"latent and RGB spaces differ in views: {latent.num_views} vs {rgb.num_views}")
        self.latent, self.rgb, self.batch_size, self.clamp = latent, rgb, batch_size, clamp
        self.num_views, self.view_shape = latent.num_views, latent.view_shape
        self.canonical_shape = rgb.canonical_shape
        self.denoiser = None

    def bind(self, denoiser) -> None:
        self.denoiser = denoiser

    def distribute(self, local, group) -> None:
        super().distribute(local, group)
        self.rgb.distribute(local, group)
        self.latent.distribute(local, group)

    def mine(self, views: torch.Tensor | None = None) -> torch.Tensor:
        """Indices of the views this process decodes and encodes (all of them in one process), of
        ``views`` (``[N]`` bool) only when given."""
        local = torch.ones(self.num_views, dtype=torch.bool) if self.local is None else self.local.cpu()
        if views is not None:
            local = local & views.cpu()
        return local.nonzero().flatten()

    def decode(self, x: torch.Tensor, views: torch.Tensor | None = None) -> torch.Tensor:
        """Latent views -> RGB views in [-1, 1], ``batch_size`` per decoder call (this process's
        views, of ``views`` only when given; the others' rows stay zero)."""
        ids = self.mine(views)
        with torch.no_grad():
            rgb = torch.cat([self.denoiser.decode(x[ids[i:i + self.batch_size]]).float().clamp(-self.clamp, self.clamp)
                             for i in range(0, len(ids), self.batch_size)]) if len(ids) else None
        out = torch.zeros(x.shape[0], 3, *self.rgb.view_shape[1:], device=x.device)
        if rgb is not None:
            out[ids.to(x.device)] = rgb.to(x.device)
        return out

    def encode(self, rgb: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """RGB views -> latent views (the VAE posterior's mode), as ``like``'s dtype and device
        (this process's views; the others' rows are ``like``'s)."""
        ids = self.mine()
        out = like.clone()
        with torch.no_grad():
            for i in range(0, len(ids), self.batch_size):
                batch = ids[i:i + self.batch_size]
                out[batch.to(like.device)] = self.denoiser.encode(rgb[batch].to(self.denoiser.dtype)).to(like)
        return out

    def project(self, z: torch.Tensor) -> torch.Tensor:
        rgb = self.rgb.project(z.to(torch.float32))
        return self.encode(rgb, torch.zeros(rgb.shape[0], *self.view_shape, dtype=z.dtype, device=z.device))

    def unproject(self, x: torch.Tensor) -> torch.Tensor:
        return self.rgb.unproject(self.decode(x))

    def fit_views(self, x: torch.Tensor, views: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The RGB canonical fitted to the decoded views ``views`` alone."""
        return self.rgb.capability("views_fit")(self.decode(x, views), views, z)

    def sync(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(self.rgb.sync(self.decode(x)), x)

    def capabilities(self) -> dict[str, object]:
        """``views_fit`` through the decoder, ``neighbours`` of the latent views, the default ``anchors``;
        no ``canvas`` (a noisy canvas cannot go through a decoder)."""
        return {"views_fit": self.fit_views, "neighbours": self.latent.capability("neighbours"),
                "anchors": partial(centre_anchor, self)}

    def sample_noise(self, generator: torch.Generator, dtype=torch.float32, device="cpu"):
        """The latent space's view-consistent noise (its canonical half is the latent one: only
        canonical-state synchronizers read it, and they are refused here)."""
        return self.latent.sample_noise(generator, dtype, device)


def check_rgb_sync(name: str, aggregate: str | None, state: str = "instance") -> None:
    """Refuse a synchronizer that averages noisy states or denoises a canonical state, which an
    RGB domain cannot carry (see the module docstring). ``aggregate`` None: not an averaging sync."""
    if aggregate is None or (aggregate in ("x0", "eps") and state == "instance"):
        return
    raise ConfigError(f"sync={name} with app.domain=rgb: the RGB domain decodes what is synchronized, and averaging "
                      "noisy x_t/x_{t-1} (or denoising one canonical state) through a decoder is meaningless; use "
                      "sync=synctweedies (x0) or sync=eps-averaging (ε), or app.domain=latent")
