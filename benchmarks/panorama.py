"""Side-by-side timing of syncframe against diffusers' panorama pipeline, in one process.

    python benchmarks/panorama.py                       # CPU, mid-size random-weight model
    python benchmarks/panorama.py --model sd2 --device cuda --width 3072 --steps 50   # GPU

Every figure is measured in this run on the same components, seed and window layout, and
printed as a Markdown table with ratios (copy it into docs/benchmarks.md with the date).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from syncframe.config import resolve
from syncframe.pipeline import generate_from_config, load_denoiser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from benchmarks.reference import diffusers_panorama_pipeline  # noqa: E402


def sd2_base_random(device, dtype):
    """The SD 2 base architecture with random weights: the real model's cost, nothing to download."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from syncframe.models.offline import SD_SCHEDULE, load_tokenizer
    from syncframe.models.unet import UNetDenoiser

    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                                use_linear_projection=True)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, sample_size=512,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                                        num_attention_heads=16, projection_dim=512, hidden_act="gelu"))
    return UNetDenoiser.from_components(unet, vae, text, load_tokenizer(), DDIMScheduler(**SD_SCHEDULE),
                                        name="sd2-random").to(device, dtype)


# SyncDiffusion without the UNet backward and with LPIPS at 256 px.
VARIANTS = {"syncdiffusion-cheap": ["sync=syncdiffusion", "sync.grad_through_unet=false", "sync.loss_resolution=256"]}


def diffusers_seconds(d, cfg, view_batch_size):
    pipe = diffusers_panorama_pipeline(d)
    sync_device(d.device)
    start = time.perf_counter()
    pipe(cfg["prompt"], height=cfg["height"], width=cfg["width"], num_inference_steps=cfg["steps"],
         view_batch_size=view_batch_size, generator=torch.Generator().manual_seed(0), output_type="latent")
    sync_device(d.device)
    return time.perf_counter() - start


def ours_seconds(d, cfg):
    if d.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = generate_from_config(cfg, d)
    peak = torch.cuda.max_memory_allocated() / 2**30 if d.device.type == "cuda" else float("nan")
    timings = result.metadata["timings_s"]
    # Prompt encoding + the joint loop: what diffusers' pipeline does with output_type="latent".
    return timings["encode"] + timings["sample"], peak, result.metadata["num_views"]


def sync_device(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mid", choices=["tiny", "mid", "sd2"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--view-batch-size", type=int, default=8)
    parser.add_argument("--syncs", default="multidiffusion,synctweedies,syncdiffusion,syncdiffusion-cheap")
    parser.add_argument("--no-diffusers", action="store_true")
    args = parser.parse_args()

    base = ["model=tiny" if args.model == "sd2" else f"model={args.model}", f"width={args.width}", "height=512",
            f"steps={args.steps}", f"device={args.device}", f"view_batch_size={args.view_batch_size}",
            "progress=false"]
    cfg = resolve(base)
    device = torch.device(args.device)
    if args.model == "sd2":
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        d = sd2_base_random(device, dtype)
        d.view_batch_size = args.view_batch_size
    else:
        d = load_denoiser(cfg)
    generate_from_config(resolve([*base, "steps=1"]), d)  # warm-up (allocator, kernels)

    rows = []
    for name in args.syncs.split(","):
        seconds, peak, n_views = ours_seconds(d, resolve([*base, *VARIANTS.get(name, [f"sync={name}"])]))
        rows.append((f"syncframe {name}", seconds, peak))
    if not args.no_diffusers:
        rows.append(("diffusers panorama, view_batch_size=1 (its default)", diffusers_seconds(d, cfg, 1), float("nan")))
        rows.append((f"diffusers panorama, view_batch_size={args.view_batch_size}",
                     diffusers_seconds(d, cfg, args.view_batch_size), float("nan")))
    reference = rows[0][1]
    print(f"\nmodel={args.model} device={args.device} {cfg['height']}x{args.width} ({n_views} views), "
          f"{args.steps} DDIM steps, view_batch_size={args.view_batch_size}, torch {torch.__version__}\n")
    print("| run | seconds (encode + sampling) | relative to syncframe multidiffusion | peak GPU GiB |")
    print("| --- | ---: | ---: | ---: |")
    for label, seconds, peak in rows:
        print(f"| {label} | {seconds:.2f} | {seconds / reference:.2f}x | {peak:.1f} |")


if __name__ == "__main__":
    main()
