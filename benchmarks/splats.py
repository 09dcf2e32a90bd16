"""The splat app's costs, side by side with what they are measured against.

    python benchmarks/splats.py [--device cuda] [--model mid]

1. One view's compositing weights W: random splats in a unit cube (scales 0.5–3% of it,
   opacities around 0.7) seen by a 45° camera at distance 3, at 64² (latent views) and 512² (RGB
   views), 10k and 50k splats, best of 3.
2. The app's costs against one denoising step of ``--model`` (10 views of the demo vase scene at
   64² latents, CFG): building all views' W, one synchronization (adjoint and least squares),
   best of 3 each, in one run.
3. Whole runs of ``app=splats`` on ``--run-model`` (both domains, 20 steps), timings from run.json.

Prints Markdown tables (copy them into docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from syncframe.geometry.splat_raster import compositing_weights, look_at_camera

ROOT = Path(__file__).resolve().parents[1]


def scene(n: int, device: str):
    g = torch.Generator().manual_seed(0)
    means = torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.empty(n, 3, dtype=torch.float64).uniform_(0.01, 0.06, generator=g)
    opacities = torch.sigmoid(torch.randn(n, generator=g, dtype=torch.float64) + 1)
    return [t.to(device) for t in (means, quats, scales, opacities)]


def best_of(fn, repeats: int = 3, device: str = "cpu") -> float:
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def against_a_step(model: str, device: str) -> None:
    """Building the views and one sync, against one denoising step of the loop on ``model``."""
    from syncframe.config import resolve
    from syncframe.pipeline import load_denoiser, prepare
    from syncframe.samplers import build_sampler

    cfg = resolve(["app=splats", f"splats={ROOT / 'assets' / 'vase_splats.ply'}", f"model={model}", f"device={device}",
                   "progress=false"])
    prepared = prepare(cfg)
    app, space = prepared.app, prepared.app.space
    denoiser = load_denoiser(cfg, prepared.spec)
    prompts, index = app.view_conditioning()
    cond = denoiser.encode_prompts(prompts, "", index)
    sampler = build_sampler(cfg, prepared.spec)
    step = sampler.steps[len(sampler.steps) // 2]
    x = torch.randn(space.num_views, *space.view_shape, device=denoiser.device)
    batch = denoiser.resolve_batch_size(space.num_views)
    with torch.no_grad():
        step_s = best_of(lambda: denoiser.predict(x, step, cond, batch_size=batch), device=device)
    build_s = best_of(lambda: app.make_renderer(app.cameras(prepared.cfg["width"] // prepared.spec.scale)), device=device)
    lsq = type(space)(space.renderer, app.geometry[0], space.canonical_shape[0], "lsq", 20)
    sync_s = best_of(lambda: space.sync(x), device=device)
    lsq_s = best_of(lambda: lsq.sync(x), device=device)
    print(f"\n{space.num_views} views of {space.canonical_shape[1]} splats at {space.view_shape[1]}² latents, "
          f"model={model} on {device} (W: {space.renderer.nnz} non-zeros)\n")
    print("| part | seconds | of one denoising step |")
    print("| --- | ---: | ---: |")
    print(f"| one denoising step (all views, CFG) | {step_s:.3f} | 1 |")
    for name, seconds in (("building every view's W", build_s), ("one sync, app.unproject=adjoint", sync_s),
                          ("one sync, app.unproject=lsq (20 CG iterations)", lsq_s)):
        print(f"| {name} | {seconds:.4f} | {seconds / step_s:.2%} |", flush=True)


def whole_runs(model: str, device: str) -> None:
    from syncframe.cli import main as cli

    print(f"\nWhole runs, model={model} on {device}, 20 steps, 10 views, default sizes\n")
    print("| app.domain | build views s | sample s | finalize s | reprojection error |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for domain in ("latent", "rgb"):
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "run"
            cli(["run", "app=splats", f"splats={ROOT / 'assets' / 'vase_splats.ply'}", f"model={model}",
                 f"device={device}", "steps=20", "progress=false", f"app.domain={domain}", f"out={out}"])
            meta = json.loads((out / "run.json").read_text())
        t = meta["timings_s"]
        print(f"| {domain} | {t['build_space']:.1f} | {t['sample']:.1f} | {t['finalize']:.1f} | "
              f"{meta['metrics']['reprojection_error']} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="mid", help="the model whose denoising step the sync is compared with")
    parser.add_argument("--run-model", default="tiny", help="the model of the whole runs")
    args = parser.parse_args()
    against_a_step(args.model, args.device)
    whole_runs(args.run_model, args.device)
    print("\n| splats | view | build W s | non-zeros | mean alpha |")
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
