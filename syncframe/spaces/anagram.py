"""Ambiguous images (visual anagrams): one square canonical latent seen through fixed transforms.

Every transform is a permutation of latent pixels, possibly with a sign flip (``negate``), so
``project`` and its adjoint are exact and ``unproject`` is the mean of the inverse-transformed
views. Shapes: canonical ``[C, w, w]``, views ``[N, C, w, w]``.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .base import CanonicalSpace

TRANSFORMS = ("identity", "flip-h", "flip-v", "rot90", "rot180", "rot270", "transpose", "negate", "jigsaw",
              "inner-rotate")


def permutation(name: str, size: int, piece: int = 1, angle: int = 90, radius: float = 0.5,
                seed: int = 0) -> tuple[torch.Tensor, float]:
    """(flat source index ``[size²]`` of every view pixel, sign) of a transform of a ``size``² grid:
    view[p] = sign · canonical[index[p]]. ``piece``: jigsaw pieces in latents; ``angle``: the
    inner disc's rotation; ``radius``: the disc's radius as a fraction of the half-width."""
    grid = torch.arange(size * size).reshape(size, size)
    if name in ("identity", "negate"):
        out = grid
    elif name == "flip-h":
        out = grid.flip(1)
    elif name == "flip-v":
        out = grid.flip(0)
    elif name in ("rot90", "rot180", "rot270"):
        out = torch.rot90(grid, int(name[3:]) // 90, dims=(0, 1))
    elif name == "transpose":
        out = grid.T
    elif name == "jigsaw":
        if size % piece:
            raise ConfigError(f"jigsaw pieces of {piece} latents do not tile a view of {size}; use a divisor of {size}")
        count = size // piece
        order = torch.randperm(count * count, generator=torch.Generator().manual_seed(seed))
        pieces = grid.reshape(count, piece, count, piece).permute(0, 2, 1, 3).reshape(count * count, piece, piece)
        out = pieces[order].reshape(count, count, piece, piece).permute(0, 2, 1, 3).reshape(size, size)
    elif name == "inner-rotate":
        centre = (size - 1) / 2
        y, x = torch.meshgrid(torch.arange(size) - centre, torch.arange(size) - centre, indexing="ij")
        disc = (x**2 + y**2) <= (radius * size / 2) ** 2  # invariant under 90° turns about the centre
        out = torch.where(disc, torch.rot90(grid, angle // 90, dims=(0, 1)), grid)
    else:
        raise ConfigError(f"unknown transform {name!r}; choose one of {', '.join(TRANSFORMS)}")
    return out.reshape(-1).contiguous(), -1.0 if name == "negate" else 1.0


class AnagramSpace(CanonicalSpace):
    """Canonical ``[C, size, size]``; view i = ``signs[i]`` · canonical permuted by ``indices[i]``."""

    def __init__(self, transforms: list[tuple[torch.Tensor, float]], size: int, channels: int = 4):
        self.indices = torch.stack([index for index, _ in transforms])  # [N, size²]
        self.signs = torch.tensor([sign for _, sign in transforms])
        self.num_views, self.canonical_shape = len(transforms), (channels, size, size)
        self.view_shape = (channels, size, size)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        c = z.shape[0]
        flat = z.reshape(c, -1)[:, self.indices.to(z.device)]  # [C, N, size²]
        views = flat.transpose(0, 1) * self.signs.to(z.device, z.dtype)[:, None, None]
        return views.reshape(self.num_views, c, *self.canonical_shape[1:])

    def capabilities(self) -> dict[str, object]:
        """The default ones but ``neighbours``: every view is the whole image, transformed, so no view
        is nearer to one than to another."""
        return {name: value for name, value in super().capabilities().items() if name != "neighbours"}

    def project_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        signed = (x * self.signs.to(x.device, x.dtype)[:, None, None, None]).transpose(0, 1).reshape(c, -1)
        out = torch.zeros(c, self.indices[0].numel(), dtype=x.dtype, device=x.device)
        out.index_add_(1, self.indices.to(x.device).reshape(-1), signed)
        return out.reshape(c, *self.canonical_shape[1:])
