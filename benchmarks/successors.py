"""The methods that came after, measured side by side in one process.

    python benchmarks/successors.py --calls --steps 50     # SpotDiffusion vs MultiDiffusion (stride 8), mid, 512x3072
    python benchmarks/successors.py --sphere --seeds 3     # StochSync vs SyncTweedies on the 360 app, mixture prior

``--calls``: model calls (views predicted) and sampling seconds of each, in turn on the same
loaded model, and their ratios. ``--sphere``: the 360 app's seams and poles (the view-border
seam, the 0°/360° junction, the spread of the pole rows) on the analytic mixture prior.
"""
from __future__ import annotations

import argparse
import statistics

from syncframe.config import resolve
from syncframe.images import from_pil
from syncframe.metrics import equirect_seam, pole_spread, view_border_seam
from syncframe.pipeline import generate_from_config, load_denoiser, prepare


def calls(steps: int, repeats: int) -> None:
    """SpotDiffusion runs all ``steps`` (its last ``blend_steps`` cost twice the others);
    MultiDiffusion's steps all cost the same, so a few of them give its cost per step."""
    base = ["model=mid", "app=panorama", "width=3072", "height=512", "app.stride=8", "progress=false", "seed=0"]
    denoiser = load_denoiser(resolve(base))
    runs = {"multidiffusion": (min(steps, 3), []), "spotdiffusion": (steps, [])}
    for _ in range(repeats):  # in turn, so drift of the machine hits both
        for name, (count, rows) in runs.items():
            result = generate_from_config(resolve([*base, f"sync={name}", f"steps={count}"]), denoiser)
            rows.append((result.metadata["views_predicted"], result.metadata["timings_s"]["sample"]))
    print(f"model=mid, 512x3072, MultiDiffusion at stride 8 ({runs['multidiffusion'][0]} steps: each costs the same), "
          f"SpotDiffusion {steps} steps (blend_steps=3); {repeats} run(s) each in turn\n")
    print("| sync | model calls / step | sample s / step (median) |")
    print("| --- | ---: | ---: |")
    per = {}
    for name, (count, rows) in runs.items():
        per[name] = (statistics.mean(c for c, _ in rows) / count, statistics.median(s for _, s in rows) / count)
        print(f"| {name} | {per[name][0]:.1f} | {per[name][1]:.2f} |")
    md, spot = per["multidiffusion"], per["spotdiffusion"]
    print(f"\ncalls ratio {md[0] / spot[0]:.1f}x fewer, wall ratio {md[1] / spot[1]:.1f}x faster")


def sphere(seeds: int, steps: int) -> None:
    common = ["app=panorama360", "model=gaussian-mixture", "width=1024", "height=512", "app.viewer=false",
              "progress=false"]
    syncs = {"synctweedies": [f"steps={steps}"], "stochsync": ["steps=25"], "spotdiffusion": [f"steps={steps}"]}
    cameras = prepare(resolve(common)).app.cameras
    denoiser = load_denoiser(resolve(common))
    print(f"app=panorama360, model=gaussian-mixture, 1024x512, {seeds} seeds (stochsync: its 25 steps, others {steps})\n")
    print("| sync | view-border seam | 0°/360° seam | pole spread | model calls / run | s / run |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, extra in syncs.items():
        rows = []
        for seed in range(seeds):
            result = generate_from_config(resolve([*common, f"sync={name}", f"seed={seed}", *extra]), denoiser)
            image = from_pil(result.images["equirect.png"])
            rows.append((view_border_seam(image, cameras), equirect_seam(image), pole_spread(image),
                         result.metadata["views_predicted"], result.metadata["timings_s"]["sample"]))
        mean = [statistics.mean(column) for column in zip(*rows)]
        print(f"| {name} | {mean[0]:.3f} | {mean[1]:.3f} | {mean[2]:.3f} | {mean[3]:.0f} | {mean[4]:.1f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", action="store_true")
    parser.add_argument("--sphere", action="store_true")
    parser.add_argument("--steps", type=int, default=None, help="--calls: 50; --sphere: 50 (stochsync keeps 25)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    if not (args.calls or args.sphere):
        parser.error("give --calls, --sphere or both")
    if args.calls:
        calls(args.steps or 50, args.repeats)
    if args.sphere:
        sphere(args.seeds, args.steps or 50)


if __name__ == "__main__":
    main()
