"""Tiled upscaling against img2img on the whole canvas: seconds and peak memory, side by side.

    python benchmarks/upscale.py                 # mid model, CPU: 1024² -> 4096², and img2img at each size

Each run is its own process (its peak RSS is its own). syncframe's `app=upscale` runs
1024² -> 4096² (`scale=4`); diffusers' `StableDiffusionImg2ImgPipeline` runs on the whole canvas
at each size until it fails or passes the time limit — its memory grows with the canvas, ours is
set by the window and the batch. Prints a Markdown table (copy it into docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

OURS = """
import resource, sys, time
from syncframe.cli import main
start = time.perf_counter()
rc = main(["run", "app=upscale", "model={model}", "image={image}", "scale={scale}", "steps={steps}",
           "strength={strength}", "progress=false", "out={out}"])
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
sys.exit(rc)
"""

THEIRS = """
import resource, sys, time
import torch
from PIL import Image
from diffusers import StableDiffusionImg2ImgPipeline
from syncframe.config import resolve
from syncframe.pipeline import load_denoiser
d = load_denoiser(resolve(["model={model}"]))
p = d.pipe
pipe = StableDiffusionImg2ImgPipeline(vae=p.vae, text_encoder=p.text_encoder, tokenizer=p.tokenizer, unet=p.unet,
                                      scheduler=p.scheduler, safety_checker=None, feature_extractor=None,
                                      requires_safety_checker=False)
pipe.set_progress_bar_config(disable=True)
image = Image.open("{image}").resize(({size}, {size}), Image.LANCZOS)
start = time.perf_counter()
with torch.no_grad():
    out = pipe("a detailed photo", image=image, strength={strength}, num_inference_steps={steps},
               generator=torch.Generator().manual_seed(0)).images[0]
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def measure(code: str, timeout: float) -> tuple[str, float | None, float | None]:
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"over {timeout:.0f} s (stopped)", None, None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["killed"])[-1]
        return f"failed: {last[:80]}" if done.returncode > 0 else f"killed (signal {-done.returncode})", None, None
    seconds, rss = (float(v) for v in done.stdout.strip().splitlines()[-1].split())
    return "ok", seconds, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mid")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--strength", type=float, default=0.35)
    parser.add_argument("--sizes", default="1024,2048,4096")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="syncframe-upscale-"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_init import photo

    image = folder / "input.png"
    photo(1024, 1024).save(image)
    rows = []
    status, seconds, rss = measure(OURS.format(model=args.model, image=image, scale=4, steps=args.steps,
                                               strength=args.strength, out=folder / "ours"), args.timeout)
    if status == "ok":
        windows = json.loads((folder / "ours" / "run.json").read_text())["metrics"]["windows"]
        status = f"ok ({windows} windows)"
    rows.append(("syncframe app=upscale, 1024² -> 4096²", 4096, status, seconds, rss))
    for size in map(int, args.sizes.split(",")):
        status, seconds, rss = measure(THEIRS.format(model=args.model, image=image, size=size, steps=args.steps,
                                                     strength=args.strength), args.timeout)
        rows.append((f"diffusers img2img, whole canvas {size}²", size, status, seconds, rss))
        if status != "ok":
            break
    print(f"\nmodel={args.model}, {args.steps} steps, strength {args.strength}, CPU\n")
    print("| run | output | result | seconds | peak RSS MB |")
    print("| --- | ---: | --- | ---: | ---: |")
    for label, size, status, seconds, rss in rows:
        fmt = (lambda v, f: "—" if v is None else format(v, f))
        print(f"| {label} | {size}² | {status} | {fmt(seconds, '.1f')} | {fmt(rss, '.0f')} |")


if __name__ == "__main__":
    main()
