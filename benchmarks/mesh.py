"""Where the time of a mesh texturing run goes, measured side by side in one process.

    python benchmarks/mesh.py                                  # CPU, mid-size random-weight model
    python benchmarks/mesh.py --model tiny --mesh assets/figure.obj

Prints a Markdown table (copy it into docs/benchmarks.md with the date): one-off geometry work
(rasterization at latent and RGB resolution), the cost of one synchronization through the
``mesh_uv`` space, and the joint loop with no synchronization against SyncTweedies and
MultiDiffusion on the same model, seed and rig.
"""
from __future__ import annotations

import argparse
import time

import torch

from syncframe.config import resolve
from syncframe.pipeline import generate_from_config, load_denoiser, prepare
from syncframe.geometry.raster import rasterize


def seconds(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mid", choices=["tiny", "mid"])
    parser.add_argument("--mesh", default="assets/vase.obj")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    base = [f"model={args.model}", "app=mesh", f"mesh={args.mesh}", f"steps={args.steps}", f"device={args.device}",
            "progress=false"]
    cfg = resolve(base)
    app = prepare(cfg).app
    n, latent = app.space.num_views, app.space.view_shape[-1]
    rows = [
        (f"rasterize {n} views at {latent}² (embree)",
         seconds(lambda: rasterize(app.mesh, app.cameras, app.frame, latent))),
        (f"rasterize {n} views at {8 * latent}² (embree)",
         seconds(lambda: rasterize(app.mesh, app.cameras, app.frame, 8 * latent))),
    ]
    x = torch.randn(n, *app.space.view_shape)
    rows.append((f"one sync P(U(x)) of {n} latent views (texture {app.space.canonical_shape[-1]}²)",
                 seconds(lambda: app.space.sync(x), repeat=20)))

    denoiser = load_denoiser(cfg)
    generate_from_config(resolve([*base, "steps=1"]), denoiser)  # warm-up: first calls allocate
    loops = {}
    for sync in ("none", "synctweedies", "multidiffusion"):
        result = generate_from_config(resolve([*base, f"sync={sync}"]), denoiser)
        loops[sync] = result.metadata["timings_s"]["sample"]
        if sync == "synctweedies":
            finalize = result.metadata["timings_s"]["finalize"]
    rows += [(f"joint loop, {args.steps} steps, sync={s}", t) for s, t in loops.items()]
    rows.append(("finalize (decode, RGB unproject, fill, dilate, GLB)", finalize))

    print(f"| {args.model}, {args.mesh}, {n} views | seconds | relative to the loop without sync |")
    print("| --- | ---: | ---: |")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {t / loops['none']:.3f}x |")


if __name__ == "__main__":
    main()
