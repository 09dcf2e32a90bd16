"""How well each anagram transform commutes with a VAE decoder: decode(T(z)) against T(decode(z)).

    python benchmarks/anagram.py

For every transform of the anagram app, on the tiny twin's VAE and on the SD 2 VAE architecture
(random weights: the architecture's own equivariance, not what training learned), the mean
|decode(T z) − T decode(z)| relative to the mean |decode(z)|, over random latents. T on pixels is
the same permutation at pixel resolution (pieces and discs scaled by 8; negate: colour inversion).
Prints a Markdown table (copy it into docs/benchmarks.md).
"""
from __future__ import annotations

import torch

from syncframe.spaces.anagram import TRANSFORMS, permutation

OPTIONS = {"jigsaw": dict(piece=8), "inner-rotate": dict(angle=90, radius=0.5)}


def pixel_options(name: str, scale: int) -> dict:
    options = dict(OPTIONS.get(name, {}))
    if "piece" in options:
        options["piece"] *= scale
    return options


def apply(z: torch.Tensor, name: str, **options) -> torch.Tensor:
    """A transform of ``z: [B, C, s, s]`` (the anagram space's permutation and sign)."""
    size = z.shape[-1]
    index, sign = permutation(name, size, **options)
    flat = z.reshape(*z.shape[:2], -1)[..., index]
    return sign * flat.reshape(z.shape)


def commutation_errors(decode, channels: int, size: int, scale: int = 8, samples: int = 2,
                       latents: torch.Tensor | None = None) -> dict[str, float]:
    z = latents if latents is not None else torch.randn(samples, channels, size, size,
                                                         generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        image = decode(z)
        errors = {}
        for name in TRANSFORMS:
            options = OPTIONS.get(name, {})
            left = decode(apply(z, name, **options))
            right = apply(image, name, **pixel_options(name, scale))
            errors[name] = ((left - right).abs().mean() / image.abs().mean()).item()
    return errors


def sd2_vae():
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                             down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def taesd_errors(size: int = 512, crops: int = 3) -> dict[str, float] | None:
    """The trained TAESD (``../shared/weights/taesd``) on latents of real-looking images (``crops``
    squares of the landscape asset resized to ``size``, encoded by TAESD itself): what a trained
    decoder does."""
    from pathlib import Path

    from diffusers import AutoencoderTiny
    from PIL import Image

    from syncframe.images import from_pil
    from syncframe.weights import find_weight

    path = find_weight("taesd")
    if path is None:
        return None
    taesd = AutoencoderTiny.from_pretrained(str(path)).float().eval()
    landscape = Image.open(Path(__file__).resolve().parents[1] / "assets" / "landscape.png")
    squares = torch.stack([from_pil(landscape.crop((x, 0, x + 512, 512)).resize((size, size), Image.LANCZOS))
                           for x in (0, 512, 1024)[:crops]])
    with torch.no_grad():
        z = taesd.encode(squares).latents
    decode = (lambda latents: taesd.decode(latents).sample)
    return commutation_errors(decode, 4, size // 8, latents=z)


def main():
    from syncframe.config import resolve
    from syncframe.pipeline import load_denoiser

    tiny = load_denoiser(resolve(["model=tiny"]))
    vae = sd2_vae().eval()
    rows = {"tiny VAE (random)": commutation_errors(tiny.decode, 4, 16),
            "SD 2 VAE architecture (random)": commutation_errors(lambda z: vae.decode(z).sample, 4, 16)}
    trained = taesd_errors()
    if trained is not None:
        rows["TAESD (trained), landscape latents"] = trained
    print("\n| transform | " + " | ".join(rows) + " |")
    print("| --- |" + " ---: |" * len(rows))
    for name in TRANSFORMS:
        print(f"| {name} | " + " | ".join(f"{errors[name]:.3f}" for errors in rows.values()) + " |")


if __name__ == "__main__":
    main()
