"""``app.renderer=gsplat``: the same linear render ``W c`` through ``gsplat.rasterization`` (CUDA).

gsplat is an optional extra (``pip install gsplat``, CUDA only), imported when this renderer is
built. The adjoint ``Wᵀ x`` is taken by autograd: the render is linear in the colours, so the
gradient of ⟨render(c), x⟩ with respect to c is exactly ``Wᵀ x``.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .splat_raster import EPS2D, NEAR, PinholeCamera


def import_gsplat():
    if not torch.cuda.is_available():
        raise ConfigError("app.renderer=gsplat needs a CUDA GPU (gsplat's rasterizer is CUDA only); use "
                          "app.renderer=torch, which runs on the CPU and on CUDA")
    try:
        import gsplat
    except ImportError as exc:
        raise ConfigError(f"app.renderer=gsplat needs the gsplat package ({exc}); pip install gsplat, or use "
                          "app.renderer=torch") from None
    return gsplat


class GsplatRenderer:
    """The interface of :class:`~syncframe.geometry.splat_raster.SparseRenderer` on gsplat."""

    W = None  # no explicit matrix: what needs one estimates it from renders

    def __init__(self, means, quats, scales, opacities, cameras: list[PinholeCamera], device="cuda"):
        self.gsplat = import_gsplat()
        self.num_views, self.height, self.width = len(cameras), cameras[0].height, cameras[0].width
        self.num_splats = len(means)
        as32 = lambda t: t.to(device, torch.float32).contiguous()  # noqa: E731
        self.means, self.quats, self.scales, self.opacities = (as32(t) for t in (means, quats, scales, opacities))
        self.viewmats = torch.stack([as32(c.viewmat) for c in cameras])
        self.Ks = torch.stack([as32(c.K) for c in cameras])
        with torch.no_grad():
            expected_depth, alpha = self.rasterize(self.means.new_zeros(self.num_splats, 1), "ED")
        self.alpha = alpha[..., 0].cpu()
        self.depth = torch.where(self.alpha > 0, expected_depth[..., 0].cpu(), torch.zeros_like(self.alpha))
        self.nnz = 0  # no explicit matrix

    def rasterize(self, colours: torch.Tensor, mode: str = "RGB"):
        """(renders ``[V, h, w, C]``, alphas ``[V, h, w, 1]``) by ``gsplat.rasterization``."""
        renders, alphas, _ = self.gsplat.rasterization(
            self.means, self.quats, self.scales, self.opacities, colours, self.viewmats, self.Ks, self.width,
            self.height, near_plane=NEAR, eps2d=EPS2D, packed=False, render_mode=mode)
        return renders, alphas

    def render(self, colours: torch.Tensor) -> torch.Tensor:
        """``colours [N, C]`` -> ``[V, C, h, w]``."""
        return self.rasterize(colours.to(self.means))[0].permute(0, 3, 1, 2).to(colours.dtype)

    def adjoint(self, views: torch.Tensor) -> torch.Tensor:
        """``views [V, C, h, w]`` -> ``[N, C]`` by autograd through the render."""
        colours = self.means.new_zeros(self.num_splats, views.shape[1], requires_grad=True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.render(colours), colours, grad_outputs=views.to(self.means))
        return grad.to(views.dtype)
