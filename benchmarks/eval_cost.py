"""What `syncframe eval` costs next to generating the runs it measures, side by side in one process.

    python benchmarks/eval_cost.py --model mid --runs 2 --steps 10
    python benchmarks/eval_cost.py --flops     # the same ratio for SD 2 at the paper's 50 steps, by FLOPs

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
from syncframe.evaluate import eval_options, evaluate, make_reference
from syncframe.pipeline import load_denoiser, run


def flops() -> None:
    """FLOPs of one SD 2 UNet call on a window (classifier-free guidance: a batch of 2) and of
    `mid`'s, against eval's per run (the VGG trunk on six 512² windows, the protocol's networks):
    what the CPU timing above predicts for the real model at the paper's 50 steps."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.panorama import sd2_base_random
    from syncframe.models.perceptual import load_lpips

    def count(fn) -> float:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            fn()
        return counter.get_total_flops()

    latents, text = torch.randn(2, 4, 64, 64), torch.randn(2, 77, 1024)
    sd2 = sd2_base_random("cpu", torch.float32).unet
    per_call = {"sd2": count(lambda: sd2(latents, 500, encoder_hidden_states=text))}
    del sd2
    mid = load_denoiser(resolve(["model=mid"])).unet
    per_call["mid"] = count(lambda: mid(latents, 500, encoder_hidden_states=torch.randn(2, 77, mid.config.cross_attention_dim)))
    lpips = load_lpips("vgg", None)
    per_eval = count(lambda: lpips.features(torch.randn(6, 3, 512, 512)))
    windows, steps = 21, 50  # 512x3072 at SyncDiffusion's stride 16; the paper's steps
    print("| model | TFLOPs / window call | TFLOPs / run (21 windows, 50 steps) | eval TFLOPs / run | eval / run |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, call in per_call.items():
        run_flops = call * windows * steps
        print(f"| {name} | {call / 1e12:.3f} | {run_flops / 1e12:.0f} | {per_eval / 1e12:.2f} | "
              f"{100 * per_eval / run_flops:.2f} % |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mid")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=3072)
    parser.add_argument("--stride", type=int, default=16, help="latents between windows (SyncDiffusion's: 16)")
    parser.add_argument("--flops", action="store_true", help="count FLOPs for SD 2 and mid instead of timing")
    args = parser.parse_args(argv)
    if args.flops:
        return flops()
    cfg = resolve(["app=panorama", f"model={args.model}", f"steps={args.steps}", f"width={args.width}",
                   f"app.stride={args.stride}", "progress=false"])
    denoiser = load_denoiser(cfg)
    root = Path(tempfile.mkdtemp(prefix="eval-cost-"))
    clock = time.perf_counter()
    for seed in range(args.runs):
        run({**cfg, "seed": seed}, root / "runs" / str(seed), denoiser)
    generating = (time.perf_counter() - clock) / args.runs
    from syncframe.evaluate import find_items

    make_reference(find_items(root / "runs")[0], root / "reference", args.runs, 512, False, denoiser)
    metrics = ["intra_lpips", "intra_style", "worst_column_step", "fid", "kid", "giqa"]
    sets = dict(reference=str(root / "reference"), features="vgg")
    clock = time.perf_counter()
    evaluate(eval_options(root / "runs", root / "one.csv", metrics, crop=512, progress=False, **sets))
    once = time.perf_counter() - clock  # networks loaded, then every run
    clock = time.perf_counter()
    evaluate(eval_options(root / "runs", root / "two.csv", metrics, crop=512, progress=False, **sets))
    again = time.perf_counter() - clock
    per_run = once / args.runs  # an upper bound: the fixed cost spread over few runs
    print(f"model={args.model}, {args.runs} panoramas 512x{args.width} (stride {args.stride}), {args.steps} steps; "
          "SyncDiffusion's protocol "
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
