"""What `syncframe eval` costs next to generating the runs it measures, side by side in one process.

    python benchmarks/eval_cost.py --model mid --runs 3 --steps 20

Generates ``--runs`` panoramas (512x3072, SyncDiffusion's size) on one loaded model, then measures
them with SyncDiffusion's protocol at its own sizes (Intra-LPIPS and Intra-Style-L on 512² windows,
the worst column step, FID, KID and GIQA of one 512² crop against a reference folder of
``--runs`` single windows made by the same model; VGG features, which run offline). Prints seconds
per run for each, their ratio, and what they predict for 100 runs (eval's fixed cost, loading its
networks, counted once).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from syncframe.config import resolve
from syncframe.evaluate import SetOptions, evaluate, make_reference
from syncframe.pipeline import load_denoiser, run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mid")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=3072)
    args = parser.parse_args(argv)
    cfg = resolve(["app=panorama", f"model={args.model}", f"steps={args.steps}", f"width={args.width}",
                   "progress=false"])
    denoiser = load_denoiser(cfg)
    root = Path(tempfile.mkdtemp(prefix="eval-cost-"))
    clock = time.perf_counter()
    for seed in range(args.runs):
        run({**cfg, "seed": seed}, root / "runs" / str(seed), denoiser)
    generating = (time.perf_counter() - clock) / args.runs
    from syncframe.evaluate import find_items

    make_reference(find_items(root / "runs")[0], root / "reference", args.runs, 512, False, denoiser)
    metrics = ["intra_lpips", "intra_style", "worst_column_step", "fid", "kid", "giqa"]
    sets = SetOptions(reference=str(root / "reference"), features="vgg")
    clock = time.perf_counter()
    evaluate(root / "runs", root / "one.csv", metrics, crop=512, progress=False, sets=sets)
    once = time.perf_counter() - clock  # networks loaded, then every run
    clock = time.perf_counter()
    evaluate(root / "runs", root / "two.csv", metrics, crop=512, progress=False, sets=sets)
    again = time.perf_counter() - clock
    per_run = once / args.runs  # an upper bound: the fixed cost spread over few runs
    print(f"model={args.model}, {args.runs} panoramas 512x{args.width}, {args.steps} steps; SyncDiffusion's protocol "
          "at 512 px (VGG features)\n")
    print("| | s / run | eval / generation |")
    print("| --- | ---: | ---: |")
    print(f"| generating | {generating:.1f} | |")
    print(f"| eval (fixed cost spread over {args.runs} runs) | {per_run:.2f} | {100 * per_run / generating:.2f} % |")
    print(f"\neval of the same runs twice: {once:.1f} s, then {again:.1f} s")
    print(f"100 runs: generating {100 * generating / 60:.0f} min, eval at most {100 * per_run / 60:.1f} min "
          f"({100 * per_run / generating:.2f} %)")


if __name__ == "__main__":
    main()
