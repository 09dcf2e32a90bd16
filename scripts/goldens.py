"""Golden outputs: every file of configs/ and every README command, on the offline twins at small sizes
and 2 steps, recorded so that a refactoring can prove it changed no behaviour.

    python scripts/goldens.py --write      # record tests/goldens.json on purpose (after a deliberate change)
    python scripts/goldens.py              # compare, print each case (what tests/test_goldens.py does)

Each case records the sha256 of the run's canonical tensor and final views (float32 bytes) and of
every image's pixels, and 32 fixed random projections of each (pixels in [0, 1]). Equal bytes pass;
otherwise every projection must lie within TOLERANCE of its scale: the bytes follow the machine (its
CPU kernels sum floats in their own order: up to 8e-6 of the scale between two machines, measured),
while a changed sign, weight or boundary moves them by 1e-3 or more. A failing case says how far it moved. The cases are fixed here (copied from configs/ and the
README when they were recorded), not re-read from them: the README may change its examples.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
GOLDENS = ROOT / "tests" / "goldens.json"
COMMON = ["steps=2", "progress=false"]

# (name, overrides): README usage commands on their family's twin, then every file of configs/
CASES = [
    ("readme/panorama-syncdiffusion", ["app=panorama", "prompt=a photo of a mountain range at twilight",
                                       "sync=syncdiffusion", "model=tiny", "width=1024",
                                       "sync.loss_resolution=64", "sync.grad_through_unet=false"]),
    ("readme/syncdiffusion-stride16", ["sync=syncdiffusion", "sync.weight=10", "app.stride=16", "model=tiny",
                                       "width=1024", "sync.loss_resolution=64", "sync.grad_through_unet=false"]),
    ("readme/sdxl-dpmpp", ["app=panorama", "model=tiny-sdxl", "prompt=a photo of a mountain range at twilight",
                           "sampler=dpmpp-2m"]),
    ("readme/flux-360", ["app=panorama360", "model=tiny-flux", "prompt=a cozy living room with a fireplace"]),
    ("readme/loop", ["app.loop=true", "width=1024", "model=tiny"]),
    ("readme/panorama360", ["app=panorama360", "prompt=a cozy living room with a fireplace", "model=tiny"]),
    ("readme/panorama360-depth", ["app=panorama360", "depth=assets/room_depth.png", "controlnet=tiny", "model=tiny"]),
    ("readme/mesh", ["app=mesh", "mesh=assets/vase.obj", "prompt=a wooden vase with carved flowers", "model=tiny"]),
    ("readme/mesh-controlnet", ["app=mesh", "mesh=assets/figure.obj", "prompt=a knight in armour", "controlnet=tiny",
                                "model=tiny"]),
    ("readme/splats", ["app=splats", "splats=assets/vase_splats.ply", "prompt=a wooden vase with carved flowers",
                       "model=tiny", "width=128", "height=128"]),
    ("readme/panorama-init", ["app=panorama", "init=assets/landscape.png", "strength=0.6",
                              "prompt=a mountain range at sunset, oil painting", "model=tiny"]),
    ("readme/mesh-init", ["app=mesh", "mesh=assets/figure.obj", "init=assets/landscape.png", "strength=0.7",
                          "prompt=a knight in armour", "model=tiny"]),
    ("readme/upscale", ["app=upscale", "image=assets/landscape.png", "scale=2", "prompt=a detailed photo of hills",
                        "strength=0.35", "model=tiny"]),
    ("readme/regions", ["app=panorama", "prompt=a sunny meadow", "regions=assets/layout.yaml", "model=tiny",
                        "width=1024"]),
    ("readme/anagram", ["app=anagram", 'views=[{"prompt":"an oil painting of a rabbit"},{"transform":"rot180",'
                                       '"prompt":"an oil painting of a duck"}]', "model=tiny"]),
    ("readme/sweep-synctweedies", ["seed=1", "sync=synctweedies", "model=tiny", "width=1024"]),
]
TOLERANCE = 1e-4  # of a projection's scale: 12x two machines' float order, 13x under x0 scaled by 1 + 1e-3
THREADS = 2  # what the goldens were recorded with (a float sum's order follows the thread count)
CONFIG_MODELS = {"panorama-sdxl.yaml": "tiny-sdxl", "panorama360-flux.yaml": "tiny-flux"}
CONFIGS = ["presets/mesh-sd.yaml", "presets/panorama-fast.yaml", "presets/panorama-sd.yaml",
           "presets/panorama-sdxl.yaml", "presets/panorama360-flux.yaml", "presets/panorama360-sd.yaml",
           "presets/stochsync-mesh.yaml", "presets/stochsync-panorama360.yaml",
           "spotdiffusion/panorama.yaml", "stochsync/mesh.yaml", "stochsync/panorama360.yaml",
           "syncdiffusion/panorama.yaml", "syncsde/anagram.yaml", "syncsde/mesh.yaml", "syncsde/panorama.yaml",
           "synctweedies/anagram.yaml", "synctweedies/mesh.yaml",
           "synctweedies/panorama.yaml", "synctweedies/panorama360.yaml"]


def hermetic() -> None:
    """No small real weights (SYNCFRAME_WEIGHTS an empty folder): the twins' byte-level tokenizer and
    random LPIPS, so the goldens are the same on a machine with ../shared/weights and one without."""
    empty = Path(tempfile.mkdtemp(prefix="syncframe-goldens-"))
    os.environ["SYNCFRAME_WEIGHTS"] = str(empty)
    # CPU kernels split their sums by thread: the same threads everywhere give the same floats
    torch.set_num_threads(THREADS)


def config_case(relative: str) -> tuple[str, list]:
    from syncframe.config import overrides_from_file

    pairs = overrides_from_file(ROOT / "configs" / relative)
    keys = dict(pairs)
    app = keys.get("app", "panorama")
    extra = [("model", CONFIG_MODELS.get(Path(relative).name, "tiny"))]
    if keys.get("controlnet"):
        extra.append(("controlnet", "tiny"))
    if app == "panorama":
        extra.append(("width", 1024))
    if app in ("mesh", "splats"):
        extra += [("width", 256), ("height", 256), ("app.heldout_views", 1)]
    if app == "mesh" and keys.get("app.texture_size"):
        extra.append(("app.texture_size", 256))
    if app == "panorama360" and keys.get("app.domain") == "rgb":  # the published 4096x2048 RGB map, smaller
        extra += [("width", 1024), ("height", 512)]
    if keys.get("sync") == "syncdiffusion":
        extra += [("sync.loss_resolution", 64), ("sync.grad_through_unet", False)]
    if keys.get("sync") == "stochsync":
        extra += [("steps", 9), ("sync.ode_steps", 3), ("sync.seam_ode_steps", 3)]
    else:
        extra.append(("steps", 2))
    return f"configs/{relative}", [*pairs, *extra]


def all_cases() -> list[tuple[str, list]]:
    return [*CASES, *[config_case(c) for c in CONFIGS]]


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def projections(tensor: torch.Tensor, k: int = 32) -> list[float]:
    flat = tensor.detach().double().flatten()
    basis = torch.randn(k, flat.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [round(float(v), 6) for v in basis @ flat / flat.numel() ** 0.5]


def run_case(overrides: list) -> dict:
    import syncframe
    from PIL import Image

    pairs = [o if isinstance(o, tuple) else tuple(o.split("=", 1)) for o in overrides]
    steps = [p for p in pairs if p[0] == "steps"][-1:] or [("steps", 2)]  # the case's last word on steps
    result = syncframe.generate(*[p for p in pairs if p[0] not in ("steps", "progress")], *steps, ("progress", False))
    pixels = {name: np.asarray(image) for name, image in sorted(result.images.items())
              if isinstance(image, Image.Image)}
    return {"canonical": digest(result.canonical), "views": digest(result.views),
            "projection": projections(result.canonical), "views_projection": projections(result.views),
            "images": {name: hashlib.sha256(array.tobytes()).hexdigest()[:16] for name, array in pixels.items()},
            "image_shapes": {name: list(array.shape) for name, array in pixels.items()},
            "image_projections": {name: projections(torch.from_numpy(array.astype(np.float64) / 255))
                                  for name, array in pixels.items()}}


def moved(recorded: list, now: list) -> float:
    """How far the projections ``now`` lie from ``recorded``, as a fraction of the recorded scale."""
    a, b = np.asarray(recorded), np.asarray(now)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))


def compare(recorded: dict, now: dict, tolerance: float = TOLERANCE) -> str | None:
    """None when ``now`` is ``recorded`` (the same bytes, or projections within ``tolerance`` of their
    scale); else what moved, in one line."""
    if recorded == now:
        return None
    if recorded["images"].keys() != now["images"].keys():
        return f"files {sorted(recorded['images'])} became {sorted(now['images'])}"
    if recorded["image_shapes"] != now["image_shapes"]:
        return f"image sizes {recorded['image_shapes']} became {now['image_shapes']}"
    distances = {"canonical": moved(recorded["projection"], now["projection"]),
                 "views": moved(recorded["views_projection"], now["views_projection"]),
                 **{name: moved(recorded["image_projections"][name], now["image_projections"][name])
                    for name in recorded["images"]}}
    far = {name: distance for name, distance in distances.items() if distance > tolerance}
    if not far:
        return None
    return "moved by more than {:.0e} of their scale: {}".format(
        tolerance, ", ".join(f"{name} {distance:.2e}" for name, distance in far.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="record the goldens anew")
    parser.add_argument("--only", default="", help="cases whose name contains this")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    hermetic()
    os.chdir(ROOT)  # the cases name files in assets/
    recorded = json.loads(GOLDENS.read_text()) if GOLDENS.exists() else {}
    results, failed = dict(recorded), 0
    for name, overrides in all_cases():
        if args.only not in name:
            continue
        torch.manual_seed(0)
        now = run_case(overrides)
        problem = None if args.write else compare(recorded[name], now) if name in recorded else "not recorded"
        results[name] = now
        failed += problem is not None
        # a new recording says how far it lies from the one it replaces (the chain back to the first)
        before = (f" (canonical {moved(recorded[name]['projection'], now['projection']):.2e} from the last recording)"
                  if args.write and name in recorded else "")
        print(f"{'FAIL' if problem else 'ok  '} {name}{': ' + problem if problem else ''}{before}", flush=True)
        if args.write:  # after every case: a long recording stopped half-way keeps what it made
            GOLDENS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if args.write:
        print(f"wrote {GOLDENS} ({len(results)} cases)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
