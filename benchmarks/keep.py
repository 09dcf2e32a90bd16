"""keep=: how exactly the kept region stays, and whether anyone can see where it ends.

    python benchmarks/keep.py                          # model=demo and the gaussian-mixture prior, CPU
    python benchmarks/keep.py --models demo --syncs multidiffusion

For each model a source panorama (three windows wide: 768x256 for the demo model) is made first, then
regenerated twice from it: *outpainting* (its left third kept, the rest generated) and *inpainting*
(everything kept but a block in the middle), once per synchronizer and ``keep.resample``. Per run:

- ``kept PSNR``: the output against the source on the kept pixels at least 16 px from the border,
  beside the autoencoder's own ceiling there (the source through encode and decode);
- ``border``: :func:`syncframe.metrics.keep_border_seam`, the step across the keep mask's border
  over the step everywhere (≈1: no visible border), beside the same measure of the source itself
  (what the border's pixels step when nothing was regenerated).

Prints a Markdown table (copy it into docs/benchmarks.md) and writes a picture of every run
(``--out``, default benchmarks/keep_out/).

    python benchmarks/keep.py --photo-360 docs/images/photo_to_360.png

makes the README's picture instead: one demo-model photo, then ``app=panorama360 image=<it>``, the
photo beside the panorama with its footprint outlined.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SIZE = {"demo": (768, 256)}  # three windows by one; 1536x512 for the 512-pixel windows of the others
PROMPT = {"demo": "a photo of snowy mountains at sunset with a lake", "gaussian-mixture": "a photo of hills"}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def masks(width: int, height: int) -> dict[str, np.ndarray]:
    """White where the source is kept: outpainting keeps the left third, inpainting all but a block."""
    out = np.zeros((height, width), bool)
    out[:, : width // 3] = True
    inpaint = np.ones((height, width), bool)
    inpaint[height // 4: 3 * height // 4, 3 * width // 8: 5 * width // 8] = False
    return {"outpaint": out, "inpaint": inpaint}


def far_inside(kept: np.ndarray, margin: int) -> np.ndarray:
    """Kept pixels at least ``margin`` pixels from anything not kept."""
    from scipy.ndimage import binary_erosion

    return binary_erosion(kept, iterations=margin, border_value=1)


def photo_to_360(target: Path, out: Path) -> None:
    """The README's photo -> 360° picture on model=demo (prompts in its vocabulary)."""
    import syncframe
    from syncframe.images import from_pil
    from syncframe.spaces.equirect import place_photo

    common = ["model=demo", "progress=false", "seed=3"]
    photo = syncframe.generate(*common, "app=panorama", "width=256", "height=256", "sync=none",
                               "prompt=a photo of snowy mountains at sunset with a lake").images["panorama.png"]
    photo.save(out / "photo.png")
    fov, yaw = 75.0, 0.0
    clock = time.perf_counter()
    result = syncframe.generate(*common, "app=panorama360", f"image={out / 'photo.png'}", f"image.fov={fov}",
                                f"image.yaw={yaw}", "prompt=a photo of snowy mountains at sunset with a lake",
                                "app.viewer=false")
    print(f"photo -> 360: {time.perf_counter() - clock:.0f} s, config in the run: {result.config['image']}")
    equirect = result.images["equirect.png"]
    _, covered = place_photo(from_pil(photo).double(), yaw, 0.0, fov, equirect.height, equirect.width)
    from scipy.ndimage import binary_dilation

    outline = binary_dilation(covered.numpy(), iterations=2) & ~covered.numpy()
    pixels = np.asarray(equirect).copy()
    pixels[outline] = (255, 255, 255)
    gap = 16
    sheet = Image.new("RGB", (photo.width + gap + equirect.width, equirect.height), (255, 255, 255))
    sheet.paste(photo, (0, (equirect.height - photo.height) // 2))
    sheet.paste(Image.fromarray(pixels), (photo.width + gap, 0))
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target, optimize=True)
    print(f"wrote {target}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,gaussian-mixture")
    parser.add_argument("--syncs", default="none,multidiffusion,synctweedies,syncdiffusion")
    parser.add_argument("--resample", default="0,4", help="keep.resample values (RePaint's resampling), each run")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "keep_out"))
    parser.add_argument("--photo-360", default=None, help="write the README's photo -> 360° picture here instead")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.photo_360:
        (Path(args.out)).mkdir(parents=True, exist_ok=True)
        photo_to_360(Path(args.photo_360), Path(args.out))
        return 0
    import syncframe
    from syncframe.config import resolve
    from syncframe.images import from_pil
    from syncframe.metrics import keep_border_seam
    from syncframe.pipeline import load_denoiser

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models.split(","):
        common = [f"model={model}", f"prompt={PROMPT.get(model, 'a photo of mountains')}", "progress=false",
                  *(f"{k}={v}" for k, v in zip(("width", "height"), SIZE.get(model, (1536, 512))))]
        denoiser = load_denoiser(resolve(common))
        source = syncframe.generate(*common, "sync=synctweedies", "seed=0", denoiser=denoiser).images["panorama.png"]
        source.save(out / f"{model}-source.png")
        pixels = np.asarray(source)
        # the autoencoder's ceiling: the source through strength=0 (encoded and decoded, nothing generated)
        ceiling = np.asarray(syncframe.generate(*common, f"init={out / f'{model}-source.png'}", "strength=0",
                                                denoiser=denoiser).images["panorama.png"])
        for case, kept in masks(*source.size).items():
            Image.fromarray(kept.astype(np.uint8) * 255).save(out / f"{case}-mask.png")
            inside = far_inside(kept, 16)
            for sync, resample in [(s, int(r)) for s in args.syncs.split(",") for r in args.resample.split(",")]:
                clock = time.perf_counter()
                result = syncframe.generate(*common, f"sync={sync}", "seed=1", f"init={out / f'{model}-source.png'}",
                                            f"keep={out / f'{case}-mask.png'}", f"keep.resample={resample}",
                                            denoiser=denoiser)
                seconds = time.perf_counter() - clock
                image = result.images["panorama.png"]
                image.save(out / f"{model}-{case}-{sync}-r{resample}.png")
                array = np.asarray(image)
                row = {"model": model, "case": case, "sync": sync, "resample": resample, "seconds": round(seconds, 1),
                       "kept_psnr": round(psnr(array[inside], pixels[inside]), 2),
                       "ceiling_psnr": round(psnr(ceiling[inside], pixels[inside]), 2),
                       "border": round(keep_border_seam(from_pil(image), torch.from_numpy(kept)), 3),
                       "source_border": round(keep_border_seam(from_pil(source), torch.from_numpy(kept)), 3)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    (out / "keep.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n| model | case | sync | keep.resample | kept PSNR (dB) | VAE ceiling (dB) | border step | source's border "
          "step | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['case']} | {r['sync']} | {r['resample']} | {r['kept_psnr']} | {r['ceiling_psnr']} | {r['border']} | "
              f"{r['source_border']} | {r['seconds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
