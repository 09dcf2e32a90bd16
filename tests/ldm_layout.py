"""Write a diffusers pipeline's weights in the original single-file layout (CompVis / Stability:
``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.*`` / ``conditioner.*``),
the layout A1111 and ComfyUI checkpoints use. Test-only: it is the inverse of the key layout
diffusers' single-file loader reads (its naming facts), written here so a test can make a
checkpoint from the offline twins and load it back through ``from_single_file``."""
from __future__ import annotations

import torch

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
          ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def unet_keys(state: dict, config) -> dict:
    """diffusers UNet2DConditionModel keys -> ``model.diffusion_model.*`` keys."""
    per_level = config.layers_per_block + 1  # resnets of a down level, and its downsampler (or not)
    out = {}

    def put(key, value):
        out["model.diffusion_model." + key] = value

    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
    up_attention = {int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k}
    for key, value in state.items():
        head, _, tail = key.rpartition(".")  # tail: weight / bias
        parts = key.split(".")
        if head in fixed:
            put(f"{fixed[head]}.{tail}", value)
        elif parts[0] == "down_blocks":
            level = int(parts[1])
            if parts[2] == "downsamplers":
                put(f"input_blocks.{1 + level * per_level + config.layers_per_block}.0.op.{tail}", value)
                continue
            block = 1 + level * per_level + int(parts[3])
            rest = ".".join(parts[4:])
            put(f"input_blocks.{block}.{0 if parts[2] == 'resnets' else 1}.{resnet(rest) if parts[2] == 'resnets' else rest}",
                value)
        elif parts[0] == "mid_block":
            index = {"resnets": {0: 0, 1: 2}, "attentions": {0: 1}}[parts[1]][int(parts[2])]
            rest = ".".join(parts[3:])
            put(f"middle_block.{index}.{resnet(rest) if parts[1] == 'resnets' else rest}", value)
        elif parts[0] == "up_blocks":
            level = int(parts[1])
            if parts[2] == "upsamplers":
                slot = 2 if level in up_attention else 1
                put(f"output_blocks.{level * per_level + config.layers_per_block}.{slot}.conv.{tail}", value)
                continue
            block = level * per_level + int(parts[3])
            rest = ".".join(parts[4:])
            put(f"output_blocks.{block}.{0 if parts[2] == 'resnets' else 1}.{resnet(rest) if parts[2] == 'resnets' else rest}",
                value)
        else:
            raise KeyError(f"no single-file name for UNet key {key}")
    return out


def resnet(rest: str) -> str:
    for new, old in RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    return rest


def vae_keys(state: dict, config) -> dict:
    """diffusers AutoencoderKL keys -> ``first_stage_model.*`` keys (attention projections as 1x1 convs)."""
    out = {}
    levels = len(config.block_out_channels)
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for key, value in state.items():
        name = (key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
                .replace("mid_block.resnets.0", "mid.block_1").replace("mid_block.resnets.1", "mid.block_2"))
        if "mid_block.attentions.0." in name:
            inner = name.split("mid_block.attentions.0.")[1]
            layer, _, tail = inner.rpartition(".")
            name = name.split("mid_block")[0] + f"mid.attn_1.{attention[layer]}.{tail}"
            if layer != "group_norm" and tail == "weight":
                value = value[:, :, None, None]  # a linear layer here is a 1x1 convolution there
        parts = name.split(".")
        if parts[1] == "down_blocks":
            level = int(parts[2])
            if parts[3] == "downsamplers":
                name = f"encoder.down.{level}.downsample.{'.'.join(parts[5:])}"
            else:
                name = f"encoder.down.{level}.block.{'.'.join(parts[4:])}"
        elif parts[1] == "up_blocks":
            level = levels - 1 - int(parts[2])  # the decoder's levels are numbered from the bottom there
            if parts[3] == "upsamplers":
                name = f"decoder.up.{level}.upsample.{'.'.join(parts[5:])}"
            else:
                name = f"decoder.up.{level}.block.{'.'.join(parts[4:])}"
        out["first_stage_model." + name] = value
    return out


def clip_keys(state: dict, prefix: str) -> dict:
    """A Hugging Face CLIP text model's keys under ``prefix`` (SD 1.x's and SDXL's first encoder),
    always with their ``text_model.`` part (transformers 5 leaves it out of CLIPTextModel's keys)."""
    return {prefix + (key if key.startswith("text_model.") else "text_model." + key): value
            for key, value in state.items() if not key.endswith("position_ids")}


def open_clip_keys(state: dict, prefix: str) -> dict:
    """A Hugging Face CLIP text model with projection -> OpenCLIP keys under ``prefix`` (SDXL's
    second encoder): fused q/k/v projections, transposed text projection."""
    out, fused = {}, {}
    names = [(".layer_norm1", ".ln_1"), (".layer_norm2", ".ln_2"), (".mlp.fc1.", ".mlp.c_fc."),
             (".mlp.fc2.", ".mlp.c_proj."), (".self_attn.out_proj", ".attn.out_proj")]
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key == "text_model.embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out[prefix + "ln_final." + key.rpartition(".")[2]] = value
        elif key.startswith("text_model.encoder.layers."):
            layer = key.split(".")[3]
            name = f"transformer.resblocks.{layer}." + key[len(f"text_model.encoder.layers.{layer}."):]
            if ".self_attn.q_proj." in key or ".self_attn.k_proj." in key or ".self_attn.v_proj." in key:
                which, tail = key.split(".self_attn.")[1].split(".")
                fused.setdefault((layer, tail), {})[which[0]] = value
                continue
            for old, new in names:
                name = name.replace(old, new)
            out[prefix + name] = value
        else:
            raise KeyError(f"no OpenCLIP name for {key}")
    for (layer, tail), parts in fused.items():
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{tail}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def single_file_state(pipe) -> dict:
    """The whole checkpoint of an SD 1.x or SDXL pipeline in the single-file layout."""
    state = {**unet_keys(pipe.unet.state_dict(), pipe.unet.config), **vae_keys(pipe.vae.state_dict(), pipe.vae.config)}
    if getattr(pipe, "text_encoder_2", None) is None:  # SD 1.x
        state.update(clip_keys(pipe.text_encoder.state_dict(), "cond_stage_model.transformer."))
    else:
        state.update(clip_keys(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        state.update(open_clip_keys(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    return {k: v.detach().contiguous().clone() for k, v in state.items()}
