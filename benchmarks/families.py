"""Every model family's twin through syncframe's loop, timed side by side with diffusers, in one run.

    python benchmarks/families.py

Per family (the offline tiny twins, CPU): (1) one window, `sync=none`, against the family's own
diffusers pipeline on the same components, seed and steps — the loop's overhead per step over a
plain pipeline call; (2) a panorama of several windows with `sync=multidiffusion`, against
diffusers' `StableDiffusionPanoramaPipeline` where one exists (SD 1/2 only). Both at equal
batching. Prints a Markdown table (copy it into docs/benchmarks.md with the date).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from syncframe.config import resolve
from syncframe.pipeline import generate_from_config, load_denoiser, prepare

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from benchmarks.reference import diffusers_panorama_pipeline  # noqa: E402

TWINS = ["tiny", "tiny-sdxl", "tiny-sd3", "tiny-flux"]


def ours(d, cfg) -> float:
    timings = generate_from_config(cfg, d).metadata["timings_s"]
    return timings["encode"] + timings["sample"]  # what a pipeline does with output_type="latent"


def theirs(pipe, prompt, size, steps, guidance, **extra) -> float:
    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    pipe(prompt, height=size[0], width=size[1], num_inference_steps=steps, guidance_scale=guidance,
         generator=torch.Generator().manual_seed(0), output_type="latent", **extra)
    return time.perf_counter() - start


def best(fn, repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windows", type=int, default=4, help="panorama width in windows")
    args = parser.parse_args()
    rows = []
    for model in TWINS:
        spec = prepare(resolve([f"model={model}"])).spec
        px = spec.window_px
        base = [f"model={model}", f"steps={args.steps}", "progress=false", "view_batch_size=8", "prompt=a castle"]
        d = load_denoiser(resolve(base))
        one = resolve([*base, "sync=none", f"width={px}", f"height={px}"])
        generate_from_config(resolve([*base, "sync=none", f"width={px}", f"height={px}", "steps=1"]), d)  # warm-up
        ours_one = best(lambda: ours(d, resolve([*base, "sync=none", f"width={px}", f"height={px}"])), args.repeats)
        one = prepare(one).cfg  # with the family's guidance settled
        theirs_one = best(lambda: theirs(d.pipe, "a castle", (px, px), args.steps, one["guidance"]), args.repeats)
        rows.append((model, "one window, sync=none", f"{type(d.pipe).__name__}", ours_one, theirs_one))
        if model == "tiny":
            wide = resolve([*base, "sync=multidiffusion", f"width={px * args.windows}", f"height={px}"])
            ours_wide = best(lambda: ours(d, resolve([*base, "sync=multidiffusion", f"width={px * args.windows}",
                                                      f"height={px}"])), args.repeats)
            wide = prepare(wide).cfg
            pano = diffusers_panorama_pipeline(d)
            theirs_wide = best(lambda: theirs(pano, "a castle", (px, px * args.windows), args.steps, wide["guidance"],
                                              view_batch_size=8), args.repeats)
            rows.append((model, f"{args.windows}-window panorama, multidiffusion", "StableDiffusionPanoramaPipeline",
                         ours_wide, theirs_wide))
    print(f"\n{args.steps} steps, best of {args.repeats}, CPU, torch {torch.__version__}\n")
    print("| model | run | diffusers reference | syncframe s | diffusers s | syncframe / diffusers |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for model, run, ref, a, b in rows:
        print(f"| {model} | {run} | {ref} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
