"""One canvas over several processes against one, on this machine, and what that predicts for GPUs.

    python benchmarks/scaleout.py                      # model=mid, 512x3072, 4 steps, CPU
    python benchmarks/scaleout.py --syncs multidiffusion,synctweedies,syncdiffusion

For each sync, the same run as one process with 2 threads and as 2 processes (torchrun, gloo)
with 1 thread each, side by side: wall time of sampling, the bytes all-reduced per step and the
time spent in collectives against the time of a step. Then, from the measured bytes, the
expected speedup on 8 GPUs of one node (NVLink) and on 4 nodes (100 Gb/s) for a step whose
compute is the measured one divided by the number of GPUs (a model, written out below).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

# Interconnects, per direction: NVLink 4 (H100 SXM, 18 links) 450 GB/s; 100 Gb/s Ethernet or
# InfiniBand HDR100 12.5 GB/s. A ring all-reduce of B bytes over N ranks sends 2 (N - 1) / N · B
# per rank; latency per collective: ~10 µs inside a node (NCCL), ~30 µs across nodes.
LINKS = {"8 GPUs, one node (NVLink 450 GB/s)": (8, 450e9, 10e-6),
         "4 nodes x 1 GPU (100 Gb/s, 12.5 GB/s)": (4, 12.5e9, 30e-6)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], processes: int, threads: int, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    launch = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
               f"--master_port={free_port()}", "-m", "syncframe"] if processes > 1 else [sys.executable, "-m", "syncframe"])
    done = subprocess.run([*launch, "run", *args, f"out={out}"], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads((out / "run.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mid")
    parser.add_argument("--width", type=int, default=3072)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--syncs", default="multidiffusion,synctweedies,syncdiffusion")
    args = parser.parse_args()
    rows, folder = [], Path(tempfile.mkdtemp(prefix="scaleout-"))
    for sync in args.syncs.split(","):
        common = [f"model={args.model}", f"width={args.width}", "height=512", f"steps={args.steps}", "progress=false",
                  f"sync={sync}", "view_batch_size=4"]
        if sync == "syncdiffusion":
            common += ["sync.grad_through_unet=false"]
        one = run(common, 1, 2, folder / f"{sync}-1")
        two = run(common, 2, 1, folder / f"{sync}-2")
        report = two["distributed"]
        comm = max(r["communication_s"] for r in report["ranks"]) / args.steps
        step = one["timings_s"]["sample"] / args.steps
        rows.append((sync, one["timings_s"]["sample"], two["timings_s"]["sample"], report["bytes_reduced_per_step"],
                     report["ranks"][0]["bytes_broadcast"] // args.steps, comm, step, one["num_views"]))
    print(f"\nmodel={args.model}, 512x{args.width}, {args.steps} steps, view_batch_size=4, CPU (2 cores)\n")
    print("| sync | views | 1 process x 2 threads, s | 2 processes x 1 thread, s | 1 / 2 | all-reduced per step | "
          "broadcast per step | in collectives per step, s | one step (1 process), s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for sync, a, b, sent, cast, comm, step, views in rows:
        print(f"| {sync} | {views} | {a:.1f} | {b:.1f} | {a / b:.2f}x | {sent / 1e6:.2f} MB | {cast / 1e6:.2f} MB | "
              f"{comm:.3f} | {step:.2f} |")
    print("\nOn paper, from the measured bytes (a step's compute divided by N, plus its all-reduces):\n")
    print("| sync | interconnect | compute per step per GPU, ms (assumed) | communication per step, ms | "
          "expected speedup |")
    print("| --- | --- | ---: | ---: | ---: |")
    for sync, _, _, sent, cast, _, _, views in rows:
        for name, (n, bandwidth, latency) in LINKS.items():
            # SD 2 base, fp16, H100: ~15 ms per view-pair (CFG) at 64² latents, an estimate
            compute = 15e-3 * views / n
            reductions = 2  # numerator and denominator of one synchronization per step
            communication = reductions * latency + 2 * (n - 1) / n * sent / bandwidth + (cast / bandwidth)
            speedup = n * compute / (compute + communication)
            print(f"| {sync} | {name} | {compute * 1e3:.1f} | {communication * 1e3:.3f} | {speedup:.2f}x of {n} |")


if __name__ == "__main__":
    main()
