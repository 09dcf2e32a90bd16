"""What the demo model (``model=demo``) makes, measured with a classifier of the generator's labels.

    python benchmarks/demo_model.py quality --samples 240 --fid 500
    python benchmarks/demo_model.py coherence --seeds 20 --picture docs/images/demo_coherence.png

``quality``: the attribute classifier's accuracy on held-out generated scenes; the model's prompt
adherence (``--samples`` single windows from captions naming every attribute, read by the
classifier); FID and KID of ``--fid`` single windows against as many held-out scenes on the
classifier's features, beside the ``tiny`` twin's noise and the scenes against themselves.

``coherence``: SyncDiffusion's claim on a learned model: over ``--seeds`` panoramas of a prompt that
names no time of day, the share whose windows disagree on it (the classifier on each 256-px window)
and the sun/moon discs per panorama (the disc finder) for every synchronizer; Intra-LPIPS and the
worst column step through ``syncframe eval``; model calls and seconds per run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "demo_model"))
import classifier as cl  # noqa: E402
import scenes  # noqa: E402

from syncframe.config import resolve  # noqa: E402
from syncframe.pipeline import generate_from_config, load_denoiser, run  # noqa: E402

SYNCS = {"none": ["sync=none"], "multidiffusion": ["sync=multidiffusion"], "synctweedies": ["sync=synctweedies"],
         "syncdiffusion": ["sync=syncdiffusion", "sync.loss=lpips-alex", "sync.loss_resolution=128"],
         "stochsync": ["sync=stochsync", "steps=25"], "spotdiffusion": ["sync=spotdiffusion"],
         "syncsde": ["sync=syncsde"], "mixture-of-diffusers": ["sync=multidiffusion", "app.weights=gaussian"]}


def full_caption(scene: scenes.Scene) -> str:
    """A caption naming every attribute the classifier reads (nothing dropped)."""
    if scene.kind == "material":
        return scenes.MATERIAL_WORDS[scene.material][0]
    extras = [e for e, present in (("a lake", scene.lake),) if present]
    text = f"{scenes.TERRAIN_WORDS[scene.terrain][0]} {scenes.TIME_WORDS[scene.time][0]}"
    return text + (f" with {extras[0]}" if extras else "")


def windows(model: str, prompts: list[str], seeds: list[int], steps: int | None = None) -> torch.Tensor:
    """Single windows of ``model`` for each (prompt, seed), ``[N, 3, H, W]`` in [-1, 1]."""
    denoiser, out = None, []
    for prompt, seed in zip(prompts, seeds):
        window = 256 if model == "demo" else 512
        cfg = resolve([f"model={model}", "app=panorama", "sync=none", f"prompt={prompt}", f"seed={seed}",
                       f"width={window}", f"height={window}", "progress=false", *([f"steps={steps}"] if steps else [])])
        denoiser = denoiser or load_denoiser(cfg)
        image = np.asarray(generate_from_config(cfg, denoiser).images["panorama.png"])
        out.append(cl.to_tensor(image[None])[0])
    return torch.stack(out)


def quality(args) -> None:
    model = cl.load_classifier()
    images, labels = cl.labelled(cl.HELD_OUT + 100_000, args.held_out)
    print("Classifier accuracy on held-out generated scenes:",
          {k: round(v, 3) for k, v in cl.accuracy(model, images, labels).items()})
    picked = [scenes.sample_scene(cl.HELD_OUT + 200_000 + i) for i in range(args.samples)]
    clock = time.perf_counter()
    made = windows("demo", [full_caption(s) for s in picked], list(range(args.samples)), args.steps)
    seconds = (time.perf_counter() - clock) / args.samples
    truth = {name: np.asarray([s.labels()[name] for s in picked]) for name in ("kind", "time", "terrain", "material",
                                                                              "lake")}
    found = model.predict(made)
    print(f"\nPrompt adherence of model=demo ({args.samples} windows, {seconds:.2f} s each):")
    for name, expected in truth.items():
        keep = expected >= 0
        print(f"  {name}: {float((found[name][keep] == expected[keep]).mean()):.3f} over {int(keep.sum())}")
    fid_against(model, args)


def fid_against(model, args) -> None:
    from syncframe.set_metrics import fid, kid

    def feats(images):
        with torch.no_grad():
            return torch.cat([model.features(images[i:i + 256]) for i in range(0, len(images), 256)]).double()

    real, _ = cl.labelled(cl.HELD_OUT + 300_000, args.fid)
    other, _ = cl.labelled(cl.HELD_OUT + 400_000, args.fid)
    prompts = [scenes.caption(scenes.sample_scene(cl.HELD_OUT + 300_000 + i)) for i in range(args.fid)]
    demo = windows("demo", prompts, list(range(1000, 1000 + args.fid)), args.steps)
    tiny = windows("tiny", prompts[:args.fid_tiny], list(range(args.fid_tiny)), 10)
    rows = [("procedural vs procedural (another 500)", feats(other)), ("model=demo", feats(demo)),
            (f"model=tiny (noise; {args.fid_tiny} windows)", feats(tiny))]
    reference = feats(real)
    print(f"\nFID / KID against {args.fid} held-out procedural scenes (classifier features):")
    for name, fake in rows:
        mean, sd = kid(reference, fake)
        print(f"  {name}: FID {fid(reference, fake):.2f}, KID {mean:.4f} ± {sd:.4f}")


def time_disagreement(model, image: np.ndarray) -> tuple[bool, list[int]]:
    """Whether the 256-px windows of a panorama (every 128 px) disagree on the time of day."""
    x = cl.to_tensor(image[None])[0]
    h = x.shape[1]
    crops = torch.stack([x[:, :, left:left + h] for left in range(0, x.shape[2] - h + 1, h // 2)])
    times = model.predict(crops)["time"].tolist()
    return len(set(times)) > 1, times


def coherence(args) -> None:
    model, finder = cl.load_classifier(), cl.load_disc_finder()
    syncs = args.syncs.split(",")
    base = ["model=demo", f"prompt={args.prompt}", "progress=false", *args.extra]
    denoiser = load_denoiser(resolve(base))
    root = Path(args.runs)
    rows, pictures = {}, {}
    for name in syncs:
        mixed, discs, seconds, calls = [], [], [], []
        for seed in range(args.seeds):
            out = root / name / f"seed{seed}"
            if not (out / "run.json").exists():  # a stopped benchmark goes on where it was
                run(resolve([*base, *SYNCS[name], f"seed={seed}", f"out={out}"]), denoiser=denoiser)
            meta = json.loads((out / "run.json").read_text())
            calls.append(meta["views_predicted"])
            seconds.append(meta["timings_s"]["sample"])
            image = np.asarray(Image.open(out / "panorama.png").convert("RGB"))
            disagree, _ = time_disagreement(model, image)
            mixed.append(disagree)
            discs.append(cl.count_discs(image, finder))
            if seed == args.picture_seed:
                pictures[name] = out / "panorama.png"
        rows[name] = dict(mixed=np.mean(mixed), discs=statistics.mean(discs), discs_sd=statistics.pstdev(discs),
                          calls=statistics.mean(calls), seconds=statistics.mean(seconds))
    eval_rows = {name: intra_lpips(root / name) for name in rows}
    print(f"\nmodel=demo, prompt={args.prompt!r}, {args.seeds} seeds, {' '.join(args.extra)}")
    print("| sync | windows disagree on the time of day | sun/moon discs per panorama | Intra-LPIPS | "
          "worst column step | model calls / run | s / run |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        lp, step = eval_rows[name]
        print(f"| {name} | {100 * r['mixed']:.0f}% | {r['discs']:.2f} ± {r['discs_sd']:.2f} | "
              f"{lp if lp is None else f'{lp:.3f}'} | {step if step is None else f'{step:.2f}'} | "
              f"{r['calls']:.0f} | {r['seconds']:.1f} |")
    if args.picture:
        from coherence import picture  # benchmarks/coherence.py

        picture({name: Image.open(path) for name, path in pictures.items()}).save(args.picture)
        print(f"wrote {args.picture}")


def intra_lpips(folder: Path) -> tuple[float, float]:
    """Intra-LPIPS and the worst column step of one method's runs, through syncframe eval (256-px windows)."""
    from syncframe.evaluate import eval_options, evaluate

    done = evaluate(eval_options(folder, folder / "table.csv", ["intra_lpips", "worst_column_step"], crop=256,
                                 progress=False))
    (row,) = done["table"]
    return row["intra_lpips"][0], row["worst_column_step"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--samples", type=int, default=240)
    q.add_argument("--held-out", type=int, default=2000)
    q.add_argument("--fid", type=int, default=500)
    q.add_argument("--fid-tiny", type=int, default=100)
    q.add_argument("--steps", type=int, default=None)
    c = sub.add_parser("coherence")
    c.add_argument("--seeds", type=int, default=20)
    c.add_argument("--syncs", default=",".join(SYNCS))
    c.add_argument("--prompt", default="a mountain range with a lake")
    c.add_argument("--runs", default="outputs/demo-coherence")
    c.add_argument("--picture", default=None)
    c.add_argument("--picture-seed", type=int, default=0)
    c.add_argument("extra", nargs="*", help="more overrides for every run (width=..., steps=...)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    (quality if args.command == "quality" else coherence)(args)


if __name__ == "__main__":
    main()
