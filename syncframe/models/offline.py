"""Offline twins of every family, with seeded random weights: ``tiny`` and ``mid`` (SD 1/2),
``tiny-sdxl``, ``tiny-sd3``, ``tiny-flux``.

They make noise, not pictures: they exist so every app, synchronizer and sampler runs end to end
on a CPU, and so each family's loop is proven equal to diffusers' own pipeline on the same
components (tests). Each twin has its family's architecture and conditioning at toy widths; the
new families' twins have a native window of 32 latents (256 px), not their real 128, which
also checks that every space takes its window from the model. The CLIP tokenizer (the real
vocabulary when ``../shared/weights/clip_tokenizer`` is present, else one built over single bytes)
also stands in for T5's.
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

SDXL_SCHEDULE = {**SD_SCHEDULE, "timestep_spacing": "leading"}  # SDXL ships an Euler config with this spacing
FLOW_SCHEDULE = dict(num_train_timesteps=1000, shift=3.0)
FLUX_SCHEDULE = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                     base_image_seq_len=256, max_image_seq_len=4096)
TWIN_WINDOW = 32  # native latent window of the tiny SDXL / SD3 / FLUX twins

SIZES = {
    # UNet widths, text width, VAE widths
    "tiny": dict(unet=(16, 32), heads=2, text=32, text_layers=2, vae=(8, 16, 16, 16)),
    # An inpainting UNet's input: latents, the mask and the masked image's latents (4 + 1 + 4 channels).
    "tiny-inpaint": dict(unet=(16, 32), heads=2, text=32, text_layers=2, vae=(8, 16, 16, 16), in_channels=9),
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
    with tempfile.TemporaryDirectory(prefix="syncframe-tokenizer-") as name:  # read in __init__, then removed
        folder = Path(name)
        (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def load_tokenizer():
    from transformers import CLIPTokenizer

    path = find_weight("clip_tokenizer")
    return CLIPTokenizer.from_pretrained(str(path)) if path else generated_tokenizer()


def offline_spec(builder: str, prediction_type: str = "epsilon"):
    """The :class:`~syncframe.models.spec.ModelSpec` of a twin, without building it."""
    return TWINS[builder][1](prediction_type)


def build_offline(builder: str, seed: int = 0, prediction_type: str = "epsilon", **kwargs):
    """The twin's denoiser (its family's class over seeded random components)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TWINS[builder][2](builder, seed, prediction_type, **kwargs)


def sd_spec(prediction_type: str):
    from ..samplers import VP
    from .spec import ModelSpec

    return ModelSpec("sd", 64, 4, 8, VP, {**SD_SCHEDULE, "prediction_type": prediction_type})


def sd_inpaint_spec(prediction_type: str):
    from dataclasses import replace

    return replace(sd_spec(prediction_type), inpaint=True)


def sdxl_spec(prediction_type: str):
    from ..samplers import VP
    from .spec import ModelSpec

    return ModelSpec("sdxl", TWIN_WINDOW, 4, 8, VP, {**SDXL_SCHEDULE, "prediction_type": prediction_type})


def sd3_spec(prediction_type: str):
    from ..samplers import FLOW
    from .spec import ModelSpec

    return ModelSpec("sd3", TWIN_WINDOW, 16, 8, FLOW, dict(FLOW_SCHEDULE))


def flux_spec(prediction_type: str):
    from ..samplers import FLOW
    from .spec import ModelSpec

    return ModelSpec("flux", TWIN_WINDOW, 16, 8, FLOW, dict(FLUX_SCHEDULE), distilled_guidance=True,
                     flow_sigmas="linspace")


def build_sd(builder: str, seed: int, prediction_type: str, **kwargs):
    from .unet import UNetDenoiser

    return UNetDenoiser.from_components(**build_components(builder, seed, prediction_type), **kwargs)


def clip_config(tokenizer, hidden: int, layers: int = 2, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=tokenizer.vocab_size + len(tokenizer.get_added_vocab()), hidden_size=hidden,
                          intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
                          max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **extra)


def t5_encoder(tokenizer, width: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=tokenizer.vocab_size + len(tokenizer.get_added_vocab()), d_model=width,
                                   d_ff=2 * width, d_kv=16, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
                                   eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=0))


def latent_vae(channels: int, **scaling):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=channels, block_out_channels=(8, 16, 16, 16),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, norm_num_groups=8, sample_size=TWIN_WINDOW * 8, **scaling)


def build_sdxl(builder: str, seed: int, prediction_type: str, **kwargs):
    """SDXL's UNet (added pooled-text and time-id embedding), two CLIP encoders, an SD VAE."""
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from .unet import UNetDenoiser

    tokenizer = load_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=TWIN_WINDOW, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=80, norm_num_groups=8)
    vae = latent_vae(4, scaling_factor=0.13025)
    text_encoder = CLIPTextModel(clip_config(tokenizer, 32))
    # a width of its own, as SDXL's (768 and 1280): single-file loading tells the two encoders apart by it
    text_encoder_2 = CLIPTextModelWithProjection(clip_config(tokenizer, 48, projection_dim=32))
    scheduler = EulerDiscreteScheduler.from_config({**SDXL_SCHEDULE, "prediction_type": prediction_type})
    return UNetDenoiser.from_components(unet, vae, text_encoder, tokenizer, scheduler, text_encoder_2=text_encoder_2,
                                        tokenizer_2=tokenizer, **kwargs)


def build_sd3(builder: str, seed: int, prediction_type: str, **kwargs):
    """SD3's transformer on 16 latent channels, CLIP-L + CLIP-G (pooled 64) + T5, flow matching."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    from .sd3 import SD3Denoiser

    tokenizer = load_tokenizer()
    transformer = SD3Transformer2DModel(sample_size=TWIN_WINDOW, patch_size=2, in_channels=16, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=4, joint_attention_dim=64,
                                        caption_projection_dim=32, pooled_projection_dim=64, out_channels=16,
                                        pos_embed_max_size=32)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**FLOW_SCHEDULE),
        vae=latent_vae(16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModelWithProjection(clip_config(tokenizer, 32, projection_dim=32)), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(clip_config(tokenizer, 32, projection_dim=32)), tokenizer_2=tokenizer,
        text_encoder_3=t5_encoder(tokenizer, 64), tokenizer_3=tokenizer)
    return SD3Denoiser(pipe, **kwargs)


def build_flux(builder: str, seed: int, prediction_type: str, **kwargs):
    """FLUX's transformer (dev-like: guidance embedded) on 2x2-packed 16-channel latents, CLIP + T5."""
    from diffusers import FluxPipeline, FluxTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextModel

    from .flux import FluxDenoiser

    tokenizer = load_tokenizer()
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=64,
                                         pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=(4, 6, 6))
    pipe = FluxPipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULE),
        vae=latent_vae(16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModel(clip_config(tokenizer, 32)), tokenizer=tokenizer,
        text_encoder_2=t5_encoder(tokenizer, 64), tokenizer_2=tokenizer)
    return FluxDenoiser(pipe, **kwargs)


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
            sample_size=64, in_channels=spec.get("in_channels", 4), out_channels=4, block_out_channels=widths,
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


# builder -> (family, its spec, its build), the one table of the twins
TWINS = {"tiny": ("sd", sd_spec, build_sd), "mid": ("sd", sd_spec, build_sd),
         "tiny-inpaint": ("sd", sd_inpaint_spec, build_sd),
         "tiny-sdxl": ("sdxl", sdxl_spec, build_sdxl), "tiny-sd3": ("sd3", sd3_spec, build_sd3),
         "tiny-flux": ("flux", flux_spec, build_flux)}
