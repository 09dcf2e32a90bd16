"""The canonical-space interface every app builds on.

Shapes: a canonical tensor ``z`` has the space's own ``canonical_shape``; the views of
one step are ``x: [N, C, h, w]`` (N = ``num_views``).
"""
from __future__ import annotations

import torch


class CanonicalSpace:
    """Subclasses implement ``project`` and ``project_adjoint``; the rest has defaults.

    ``project`` must be linear in ``z`` for the default ``unproject`` (the normalised
    adjoint) to be the weighted average that best agrees with all views.
    """

    num_views: int
    view_shape: tuple[int, int, int]
    canonical_shape: tuple[int, ...]

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """canonical ``z`` -> views ``[N, C, h, w]``."""
        raise NotImplementedError

    def project_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        """``Pᵀ x``: views ``[N, C, h, w]`` -> canonical, the un-normalised adjoint of ``project``."""
        raise NotImplementedError

    def view_weights(self, like: torch.Tensor) -> torch.Tensor:
        """Per-pixel weight ``w_i`` of each view, ``[N, 1, h, w]``; uniform by default."""
        n, _, h, w = like.shape
        return torch.ones(n, 1, h, w, dtype=like.dtype, device=like.device)

    def unproject(self, x: torch.Tensor) -> torch.Tensor:
        """``z = Σ P_iᵀ(w_i x_i) / Σ P_iᵀ(w_i)``; canonical entries no view sees stay 0."""
        w = self.view_weights(x)
        num = self.project_adjoint(w * x)
        den = self.project_adjoint(w.expand_as(x))
        return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), num)

    def sync(self, x: torch.Tensor) -> torch.Tensor:
        """``P(U(x))``: the views made consistent through the canonical space."""
        return self.project(self.unproject(x))

    def sample_noise(self, generator: torch.Generator, dtype=torch.float32, device="cpu"):
        """Canonical noise ``z`` and unit-variance per-view noise ``x`` derived from it."""
        z = torch.randn(self.canonical_shape, generator=generator, dtype=dtype, device=device)
        return z, self.project(z)


def gather_views(z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Views that read one canonical texel per pixel: ``z: [C, H, W]``, ``index: [N, h, w]`` flat
    texel indices -> ``[N, C, h, w]`` (one gather)."""
    c = z.shape[0]
    n, h, w = index.shape
    flat = z.reshape(c, -1)[:, index.to(z.device).reshape(-1)]
    return flat.reshape(c, n, h, w).transpose(0, 1)


def scatter_views(x: torch.Tensor, index: torch.Tensor, canonical_shape: tuple[int, int, int]) -> torch.Tensor:
    """The adjoint of :func:`gather_views`: views ``[N, C, h, w]`` summed into ``canonical_shape``
    (one ``index_add_``)."""
    c = x.shape[1]
    out = torch.zeros(c, canonical_shape[1] * canonical_shape[2], dtype=x.dtype, device=x.device)
    out.index_add_(1, index.to(x.device).reshape(-1), x.transpose(0, 1).reshape(c, -1))
    return out.reshape(c, *canonical_shape[1:])
