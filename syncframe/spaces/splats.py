"""Colours of fixed 3D Gaussian splats seen from cameras around them (SyncTweedies' 3DGS setting).

Canonical ``z: [C, N]``, one colour per splat. The geometry never changes, so a view is linear in
``z``: ``project(z) = W z``, premultiplied by the splats' coverage; a pixel's alpha ``A`` (the row
sum of W) is how much of it the splats own, and its remaining ``1 − A`` is background, which keeps
the view's own value under :meth:`SplatSpace.sync` (as a mesh view's background does).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .base import CanonicalSpace


class SplatSpace(CanonicalSpace):
    """Per-splat colours rendered by ``renderer`` (:class:`~syncframe.geometry.splat_raster.SparseRenderer`
    or :class:`~syncframe.geometry.splat_gsplat.GsplatRenderer`).

    - ``unproject`` (``"adjoint"``): the alpha-corrected normalised adjoint
      ``z = Wᵀ(A x) / Wᵀ A``, exact for a colour the views agree on (the premultiplied target
      ``A x`` is fitted by ``W z``); ``"lsq"`` solves the weighted least squares
      ``min_z Σ_p A_p (A_p x_p − (W z)_p)² + μ |z − z₀|²`` by conjugate gradients started from
      the adjoint's answer z₀ (the deterministic counterpart of SyncTweedies' Adam fit per step).
    - splats no view sees take the colour of the nearest seen splat in 3-D (``means``).
    - ``sample_noise``: unit variance per pixel, shared through the splats where views overlap.
    """

    def __init__(self, renderer, means: torch.Tensor, channels: int = 4, unproject: str = "adjoint",
                 lsq_iterations: int = 20, lsq_damping: float = 1e-4):
        if unproject not in ("adjoint", "lsq"):
            raise ConfigError(f"app.unproject={unproject!r} must be adjoint or lsq")
        self.renderer, self.mode = renderer, unproject
        self.lsq_iterations, self.lsq_damping = lsq_iterations, lsq_damping
        self.num_views = renderer.num_views
        self.canonical_shape = (channels, renderer.num_splats)
        self.view_shape = (channels, renderer.height, renderer.width)
        self.alpha = renderer.alpha.float()  # [V, h, w]
        coverage = self.project_adjoint(self.alpha[:, None])[0]
        self.seen = coverage > 0
        if not self.seen.any():
            raise ConfigError("no view sees any splat; check the cameras (app.views, app.margin or app.cameras)")
        self.fill_source = nearest_seen(means, self.seen)
        self.norm = self.row_norms()
        # least squares' damping unit: the mean row sum of Wᵀ A W over seen splats (geometry only)
        ones = torch.ones(1, renderer.num_splats)
        self.lsq_scale = float(self.project_adjoint(self.alpha[:, None] * self.project(ones))[0, self.seen].mean())

    def seen_by_view(self) -> torch.Tensor:
        """``[V]``: the fraction of the splats each view sees (any weight in it)."""
        ones = torch.ones(1, 1, *self.view_shape[1:])
        return torch.stack([(self.project_adjoint(torch.cat([ones if k == v else torch.zeros_like(ones)
                                                             for k in range(self.num_views)]))[0] > 0).float().mean()
                            for v in range(self.num_views)])

    # -- projection -----------------------------------------------------------------------------
    def project(self, z: torch.Tensor) -> torch.Tensor:
        return self.renderer.render(z.T)

    def project_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        return self.renderer.adjoint(x).T

    def view_weights(self, like: torch.Tensor) -> torch.Tensor:
        return self.alpha.to(like.device, like.dtype)[:, None]

    def unproject(self, x: torch.Tensor) -> torch.Tensor:
        # The fitted target is the premultiplied colour A x (the 1 − A rest is the view's own background).
        z = super().unproject(x)  # Wᵀ(A x) / Wᵀ A, unseen filled
        return self.least_squares(x, z) if self.mode == "lsq" else z

    def least_squares(self, x: torch.Tensor, start: torch.Tensor, iterations: int | None = None) -> torch.Tensor:
        """CG on ``(Wᵀ Ω W + μ I) z = Wᵀ Ω (A x) + μ z₀`` with Ω = A and z₀ = ``start``, every
        channel at once from z₀; μ = λ times the mean row sum of Wᵀ Ω W over seen splats. Rows of
        splats no view sees are μ z = μ z₀, so they keep z₀'s fill exactly."""
        dtype = x.dtype
        x, start = x.double(), start.double()  # CG in float32 depends on the order of its sums (1%)
        a = self.view_weights(x)
        damping = self.lsq_damping * self.lsq_scale
        apply = lambda z: self.view_sum(a * self.project(z)) + damping * z  # noqa: E731
        rhs = self.view_sum(a * a * x) + damping * start
        z = start.clone()
        residual = rhs - apply(z)
        direction, rho = residual.clone(), (residual * residual).sum(1)
        for _ in range(iterations or self.lsq_iterations):
            product = apply(direction)
            step = rho / (direction * product).sum(1).clamp_min(1e-30)
            z = z + step[:, None] * direction
            residual = residual - step[:, None] * product
            new_rho = (residual * residual).sum(1)
            if bool((new_rho <= 1e-12 * (rhs * rhs).sum(1)).all()):
                break
            direction, rho = residual + (new_rho / rho.clamp_min(1e-30))[:, None] * direction, new_rho
        return z.to(dtype)

    def fill(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, self.fill_source.to(z.device)]

    def sync(self, x: torch.Tensor) -> torch.Tensor:
        """``W U(x) + (1 − A) x``: the splats' share of every pixel from the canonical colours,
        the background share the view's own."""
        a = self.view_weights(x)
        return self.project(self.unproject(x)) + (1 - a) * x

    def solid(self) -> torch.Tensor:
        """``[V, 1, h, w]`` bool: pixels the splats cover all but fully (A > 0.99), where a view's
        value is the splats' alone (metrics are measured there)."""
        return (self.alpha > 0.99)[:, None]

    def disagreement(self, x: torch.Tensor, iterations: int = 50) -> float:
        """How far views ``x`` are from any one colouring of the splats: mean |x − W z*| over solid
        pixels relative to their mean |x|, z* their least-squares colours (0 for views that are
        renders of one set of colours, whatever ``app.unproject`` is)."""
        fitted = self.project(self.least_squares(x, super().unproject(x), iterations))
        solid = self.solid().to(x.device).expand_as(x)
        return float((x - fitted).abs()[solid].mean() / x.abs()[solid].mean())

    # -- noise ------------------------------------------------------------------------------------
    def row_norms(self, probes: int = 64) -> torch.Tensor:
        """``|W_p|₂`` per pixel ``[V, 1, h, w]``: the standard deviation of ``W z`` for white ``z``
        (≪ 1 where several splats blend). Exact from the sparse W; a renderer without one
        (gsplat) estimates it from ``probes`` renders of white noise."""
        W = self.renderer.W
        if W is not None:
            squared = torch.sparse_csr_tensor(W.crow_indices(), W.col_indices(), W.values() ** 2, W.shape,
                                              check_invariants=False)  # W's own structure
            norms = (squared @ torch.ones(W.shape[1], 1, dtype=W.dtype)).sqrt()
            return norms.float().reshape(self.num_views, 1, *self.view_shape[1:])
        generator = torch.Generator("cpu").manual_seed(0)
        z = torch.randn(probes, self.canonical_shape[1], generator=generator)
        return self.renderer.render(z.T).pow(2).mean(1, keepdim=True).sqrt().cpu()

    def sample_noise(self, generator: torch.Generator, dtype=torch.float32, device="cpu"):
        """White noise per splat, rendered and rescaled to unit variance per pixel, mixed with the
        pixel's own noise by coverage: ``x = √A · W z / |W_p| + √(1 − A) · ε``, so views share
        their noise where they see the same splats and every pixel is N(0, 1)."""
        z = torch.randn(self.canonical_shape, generator=generator, dtype=dtype, device=device)
        own = torch.randn((self.num_views, *self.view_shape), generator=generator, dtype=dtype, device=device)
        a = self.view_weights(own)
        norm = self.norm.to(device, dtype)
        shared = torch.where(norm > 0, self.project(z) / norm.clamp_min(1e-12), torch.zeros_like(own))
        return z, a.sqrt() * shared + (1 - a).clamp_min(0).sqrt() * own


def nearest_seen(means: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """``[N]`` index of the nearest seen splat in 3-D for every splat (itself when seen)."""
    from scipy.spatial import cKDTree

    points = means.detach().cpu().double().numpy()
    seen_np = seen.cpu().numpy()
    source = np.arange(len(points))
    if not seen_np.all():
        seen_ids = np.flatnonzero(seen_np)
        _, nearest = cKDTree(points[seen_ids]).query(points[~seen_np])
        source[~seen_np] = seen_ids[nearest]
    return torch.from_numpy(source)
