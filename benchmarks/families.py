"""Every model family's twin through syncframe's loop, timed side by side with diffusers, in one run.

    python benchmarks/families.py

Per family (the offline tiny twins, CPU): (1) one window, `sync=none`, against the family's own
diffusers pipeline on the same components, seed and steps — the loop's overhead per step over a
plain pipeline call; (2) a panorama of several windows with `sync=multidiffusion`, against
diffusers' `StableDiffusionPanoramaPipeline` where one exists (SD 1/2 only). Both at equal
batching. Prints a Markdown table (copy it into docs/benchmarks.md with the date).

    python benchmarks/families.py --own-models

The user's own model on `model=mid` (CPU): one denoising step of a batch of views (CFG, both halves
in one call) without a LoRA, with a rank-8 LoRA on every attention projection unfused and fused
(lora_fuse=true), and eager against torch.compile (the compile time apart), side by side in one run.
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


def step_seconds(denoiser, views: int, repeats: int) -> float:
    """Best-of seconds of one model call on ``views`` 64² latent views (CFG: two halves, one batch)."""
    from syncframe.samplers import DDIM

    step = DDIM(denoiser.scheduler.config, 50).steps[25]
    cond = denoiser.encode_prompts(["a castle"], "", [0] * views)
    x = torch.randn(views, 4, 64, 64, generator=torch.Generator().manual_seed(0))

    def once():
        start = time.perf_counter()
        with torch.no_grad():
            denoiser.predict(x, step, cond, batch_size=views)
        return time.perf_counter() - start

    once()  # warm-up
    return best(once, repeats)


def own_models(views: int, repeats: int) -> None:
    import tempfile

    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    base = ["model=mid", "progress=false"]
    plain = load_denoiser(resolve(base))
    folder = tempfile.mkdtemp(prefix="bench-lora-")
    maker = load_denoiser(resolve(base))
    maker.unet.add_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                      init_lora_weights="gaussian"))
    type(maker.pipe).save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(maker.unet))
    rows = [("no LoRA", step_seconds(plain, views, repeats), None)]
    rows.append(("rank-8 LoRA, unfused", step_seconds(load_denoiser(resolve([*base, f"lora={folder}"])), views,
                                                        repeats), None))
    clock = time.perf_counter()
    fused = load_denoiser(resolve([*base, f"lora={folder}", "lora_fuse=true"]))
    rows.append(("rank-8 LoRA, fused (lora_fuse=true)", step_seconds(fused, views, repeats), time.perf_counter() - clock))
    compiled = load_denoiser(resolve(base))
    clock = time.perf_counter()
    compiled.unet.compile()
    step_seconds(compiled, views, 1)  # the first call compiles
    compile_s = time.perf_counter() - clock
    rows.append(("eager (the same model as 'no LoRA')", rows[0][1], None))
    rows.append(("compile=true (torch.compile of the UNet)", step_seconds(compiled, views, repeats), compile_s))
    print(f"\nmodel=mid, one step of {views} views with CFG, best of {repeats}, CPU, torch {torch.__version__}\n")
    print("| model | seconds per step | vs no LoRA / eager | one-off cost s |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds, once in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / rows[0][1]:.2f}x | {'' if once is None else f'{once:.1f}'} |")


if __name__ == "__main__":
    import sys

    if "--own-models" in sys.argv:
        own_models(views=4, repeats=5)
    else:
        main()
