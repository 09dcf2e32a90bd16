"""Offline SD-like components with seeded random weights (``model=tiny`` and ``model=mid``).

They make noise, not pictures: they exist so every app runs end to end on a CPU, for tests,
smoke runs and for timing the framework's own overhead.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from ..weights import find_weight

SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                   beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                   steps_offset=1, prediction_type="epsilon")

SIZES = {
    # UNet widths, text width, VAE widths
    "tiny": dict(unet=(16, 32), heads=2, text=32, text_layers=2, vae=(8, 16, 16, 16)),
    # Mid-size: enough UNet work that the framework's overhead can be compared on a CPU.
    "mid": dict(unet=(64, 128, 256), heads=8, text=128, text_layers=4, vae=(32, 64, 64, 64)),
}


def byte_level_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the 256 byte values."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = (b for b in range(256) if b not in printable)
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + i) for i, b in enumerate(extra)})
    return [mapping[b] for b in range(256)]


def generated_tokenizer():
    """A CLIP BPE tokenizer over single bytes, for machines without the real vocabulary."""
    from transformers import CLIPTokenizer

    chars = byte_level_alphabet()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    folder = Path(tempfile.mkdtemp(prefix="syncframe-tokenizer-"))
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def load_tokenizer():
    from transformers import CLIPTokenizer

    path = find_weight("clip_tokenizer")
    return CLIPTokenizer.from_pretrained(str(path)) if path else generated_tokenizer()


def build_components(size: str = "tiny", seed: int = 0, prediction_type: str = "epsilon"):
    """UNet, VAE (downsampling 8), text encoder, tokenizer and DDIM scheduler with seeded weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    spec = SIZES[size]
    tokenizer = load_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        widths = spec["unet"]
        # Attention only below full latent resolution: 4096-token self-attention would
        # dominate a CPU run without telling us anything more.
        down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(widths) - 1)
        up = ("CrossAttnUpBlock2D",) * (len(widths) - 1) + ("UpBlock2D",)
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, block_out_channels=widths,
            down_block_types=down, up_block_types=up, layers_per_block=1,
            cross_attention_dim=spec["text"], attention_head_dim=spec["heads"], norm_num_groups=8)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=spec["vae"],
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1, norm_num_groups=8, sample_size=512, scaling_factor=0.18215)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=tokenizer.vocab_size + len(tokenizer.get_added_vocab()), hidden_size=spec["text"],
            intermediate_size=2 * spec["text"], num_hidden_layers=spec["text_layers"],
            num_attention_heads=4, max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
    scheduler = DDIMScheduler(**{**SD_SCHEDULE, "prediction_type": prediction_type})
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
