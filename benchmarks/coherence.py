"""Coherence of wide panoramas from the analytic mixture prior, per synchronizer, over many seeds.

    python benchmarks/coherence.py --seeds 20 --picture docs/images/coherence.png
    python benchmarks/coherence.py --seeds 4 --syncs none,multidiffusion,stochsync,spotdiffusion
    python benchmarks/coherence.py --seeds 6 --protocol outputs/coherence --reference 24

``--protocol DIR`` also saves every run as a run folder under DIR and measures them with
``syncframe eval``, SyncDiffusion's protocol: Intra-LPIPS and Intra-Style-L (VGG, 128-px windows
on a CPU; ``--crop 512`` is the paper's), and FID, KID and KNN-GIQA of one random crop per run
against ``--reference`` single-window generations of the prior, on the LPIPS VGG trunk's features
(the papers' Inception weights are not on an offline machine: ``syncframe eval
metrics.features=inception`` where they are). It prints the eval's table and the seconds it took
against the seconds the runs took.

Prints a Markdown table (scene incoherence, share of runs that mix scenes, Intra-LPIPS, the
worst column step: a seam anywhere, model calls and seconds per run) and writes the side-by-side
picture of every synchronizer on one seed.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from PIL import Image, ImageDraw

from syncframe.config import resolve
from syncframe.images import from_pil
from syncframe.metrics import panorama_coherence, worst_column_step
from syncframe.models.perceptual import load_lpips
from syncframe.pipeline import generate_from_config, load_denoiser

# The synchronizers compared on the analytic mixture prior, with the overrides each needs on a
# CPU: SyncDiffusion with LPIPS-AlexNet at 128 px (the paper's VGG at 512 px costs ~20 s per
# step on 2 cores for 21 windows; the analytic decoder only upsamples, so 128 px loses little).
COHERENCE_SYNCS = {
    "none": ["sync=none"],
    "multidiffusion": ["sync=multidiffusion"],
    "synctweedies": ["sync=synctweedies"],
    "syncdiffusion": ["sync=syncdiffusion", "sync.loss=lpips-alex", "sync.loss_resolution=128"],
    "stochsync": ["sync=stochsync", "steps=25"],  # its published schedule: 25 steps of 25-step trajectories
    "spotdiffusion": ["sync=spotdiffusion"],
    "syncsde": ["sync=syncsde"],  # the panorama app's official wide-image settings, λ⁻¹ = 5
    "mixture-of-diffusers": ["sync=multidiffusion", "app.weights=gaussian"],
}


def coherence_runs(overrides: list[str], seeds, denoiser, lpips=None):
    """Generate one panorama per seed with an analytic ``denoiser`` and measure it: yields
    ``(seed, result, panorama_coherence(...))``."""
    for seed in seeds:
        result = generate_from_config(resolve([*overrides, f"seed={seed}"]), denoiser)
        image = from_pil(result.images["panorama.png"])
        metrics = panorama_coherence(result.canonical, image, denoiser.classify, lpips)
        yield seed, result, {**metrics, "worst_column_step": worst_column_step(image)}


def picture(rows: dict[str, Image.Image], width: int = 1536) -> Image.Image:
    label_h, pad = 22, 6
    scaled = {name: im.resize((width, im.height * width // im.width)) for name, im in rows.items()}
    height = sum(im.height + label_h + pad for im in scaled.values())
    sheet = Image.new("RGB", (width, height), "white")
    draw, y = ImageDraw.Draw(sheet), 0
    for name, im in scaled.items():
        draw.text((4, y + 4), name, fill="black")
        sheet.paste(im, (0, y + label_h))
        y += im.height + label_h + pad
    return sheet


def protocol(args, denoiser, generating: float) -> None:
    """SyncDiffusion's protocol over the saved runs, through ``syncframe eval``."""
    from syncframe.evaluate import eval_options, evaluate

    clock = time.perf_counter()
    evaluate(eval_options(args.protocol / "runs", args.protocol / "reference-make.csv", ["fid"], crop=args.crop,
                          progress=False, reference=str(args.protocol / "reference"), make=args.reference,
                          features="vgg"), denoiser=denoiser)  # makes the reference set once (its time is generation, not eval)
    making = time.perf_counter() - clock
    clock = time.perf_counter()
    done = evaluate(eval_options(args.protocol / "runs", args.protocol / "table.csv",
                                 ["intra_lpips", "intra_style", "worst_column_step", "fid", "kid", "giqa"],
                                 crop=args.crop, progress=False, reference=str(args.protocol / "reference"),
                                 features="vgg"))
    seconds = time.perf_counter() - clock
    print(f"\nsyncframe eval, SyncDiffusion's protocol ({args.crop}-px windows; FID, KID, GIQA on VGG features "
          f"against {args.reference} single windows of the prior, made in {making:.0f} s):\n")
    print(done["markdown"].read_text())
    runs = len(done["rows"])
    print(f"eval: {seconds:.1f} s for {runs} runs ({seconds / runs:.2f} s each) against {generating:.0f} s generating "
          f"them: {100 * seconds / generating:.1f} %")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--width", type=int, default=3072)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--picture-seed", type=int, default=0)
    parser.add_argument("--picture", type=Path, default=None)
    parser.add_argument("--syncs", default=",".join(COHERENCE_SYNCS), help="comma-separated, of: " + ", ".join(COHERENCE_SYNCS))
    parser.add_argument("--protocol", type=Path, default=None, help="save the runs here and measure them with "
                                                                     "syncframe eval (SyncDiffusion's protocol)")
    parser.add_argument("--reference", type=int, default=24, help="single-window generations for FID/KID/GIQA")
    parser.add_argument("--crop", type=int, default=128, help="eval's window side (the paper's: 512)")
    args = parser.parse_args(argv)
    unknown = set(args.syncs.split(",")) - set(COHERENCE_SYNCS)
    if unknown:
        parser.error(f"--syncs: unknown {', '.join(sorted(unknown))}; use some of {', '.join(COHERENCE_SYNCS)}")
    base = ["app=panorama", "model=gaussian-mixture", f"width={args.width}", f"steps={args.steps}",
            f"app.stride={args.stride}", "progress=false"]
    denoiser = load_denoiser(resolve(base))
    lpips = load_lpips("alex", None, allow_random=False)
    rows, shown, generating = [], {}, 0.0
    if args.protocol and args.protocol.exists() and any(args.protocol.iterdir()):
        parser.error(f"--protocol {args.protocol}: exists and is not empty; choose another folder")
    for name in args.syncs.split(","):
        incoherence, intra, seams, calls, clock = [], [], [], [], time.perf_counter()
        for seed, result, m in coherence_runs([*base, *COHERENCE_SYNCS[name]], range(args.seeds),
                                              denoiser, lpips):
            incoherence.append(m["scene_incoherence"])
            intra.append(m["intra_lpips"])
            seams.append(m["worst_column_step"])
            calls.append(result.metadata["views_predicted"])
            if seed == args.picture_seed:
                shown[name] = result.images["panorama.png"]
            if args.protocol:
                result.save(args.protocol / "runs" / f"{name}-{seed}")
        generating += time.perf_counter() - clock
        seconds = (time.perf_counter() - clock) / args.seeds
        rows.append((name, statistics.mean(incoherence), statistics.mean(i > 0 for i in incoherence),
                     statistics.mean(intra), statistics.stdev(intra) if len(intra) > 1 else 0.0,
                     statistics.mean(seams), statistics.mean(calls), seconds))
    print(f"{args.seeds} seeds, {args.steps} DDIM steps (stochsync: 25), {args.width}x512, stride {args.stride}\n")
    print("| sync | scene incoherence (mean) | runs mixing scenes | Intra-LPIPS (alex) mean ± sd | worst column step "
          "| model calls / run | s / run |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, inc, mixed, il, il_sd, seam, calls, sec in rows:
        print(f"| {name} | {inc:.3f} | {mixed:.2f} | {il:.3f} ± {il_sd:.3f} | {seam:.2f} | {calls:.0f} | {sec:.1f} |")
    if args.protocol:
        protocol(args, denoiser, generating)
    if args.picture:
        args.picture.parent.mkdir(parents=True, exist_ok=True)
        picture(shown).save(args.picture)
        print(f"\nwrote {args.picture}")


if __name__ == "__main__":
    main()
