"""Building one view's compositing weights W (the sparse linear renderer of fixed splats).

    python benchmarks/splats.py [--device cuda]

Random splats in a unit cube (scales 0.5–3% of it, opacities around 0.7) seen by a 45° camera
at distance 3; W built at 64² (latent views) and 512² (RGB views) for 10k and 50k splats, best
of 3. Prints a Markdown table (copy it into docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import time

import torch

from syncframe.geometry.splat_raster import compositing_weights, look_at_camera


def scene(n: int, device: str):
    g = torch.Generator().manual_seed(0)
    means = torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.empty(n, 3, dtype=torch.float64).uniform_(0.01, 0.06, generator=g)
    opacities = torch.sigmoid(torch.randn(n, generator=g, dtype=torch.float64) + 1)
    return [t.to(device) for t in (means, quats, scales, opacities)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print("| splats | view | build W s | non-zeros | mean alpha |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in (10_000, 50_000):
        splats = scene(n, args.device)
        for size in (64, 512):
            camera = look_at_camera([0.0, -1.0, 3.0], [0, 0, 0], [0, -1, 0], 45, size)
            camera = type(camera)(camera.viewmat.to(args.device), camera.K.to(args.device), size, size)
            best = float("inf")
            for _ in range(3):
                if args.device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                W = compositing_weights(*splats, camera)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
            alpha = torch.sparse.sum(W, dim=1).to_dense().mean().item()
            print(f"| {n} | {size}² | {best:.3f} | {W._nnz()} | {alpha:.3f} |", flush=True)


if __name__ == "__main__":
    main()
