"""The user's own model, the way they load it: LoRAs of every family (made here with PEFT on the
offline twins, saved in diffusers' LoRA format), checked against the family's diffusers pipeline
with the same LoRA loaded; bad LoRAs are one line."""
import numpy as np
import pytest
import torch

from conftest import TWINS
from syncframe.config import resolve
from syncframe.errors import ConfigError
from syncframe.pipeline import generate_from_config, load_denoiser, prepare
from test_families import diffusers_latents, one_window
from test_sampler import diffusers_scheduler

SAMPLER = {"tiny": "ddim", "tiny-sdxl": "ddim", "tiny-sd3": "flow-euler", "tiny-flux": "flow-euler"}
TARGETS = {"tiny": ["to_q", "to_k", "to_v", "to_out.0"], "tiny-sdxl": ["to_q", "to_k", "to_v", "to_out.0"],
           "tiny-sd3": ["to_q", "to_k", "to_v", "to_out.0"], "tiny-flux": ["to_q", "to_k", "to_v", "to_out.0"]}


def make_lora(model: str, folder, seed: int = 0, rank: int = 4):
    """A LoRA of the twin ``model`` with random (non-zero) weights, saved by its pipeline class's
    ``save_lora_weights`` in diffusers' format; returns the folder."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    denoiser = load_denoiser(resolve([f"model={model}"]))
    backbone = denoiser.backbone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS[model],
                                        init_lora_weights="gaussian"))
        for name, parameter in backbone.named_parameters():
            if "lora_B" in name:  # gaussian init leaves B at zero: the LoRA must act
                torch.nn.init.normal_(parameter, std=0.2)
    layers = get_peft_model_state_dict(backbone)
    key = "unet_lora_layers" if model in ("tiny", "tiny-sdxl") else "transformer_lora_layers"
    type(denoiser.pipe).save_lora_weights(folder, **{key: layers})
    return folder


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    return {model: make_lora(model, tmp_path_factory.mktemp(f"lora-{model}")) for model in TWINS}


def run_window(model: str, *extra):
    cfg = one_window(model, f"sampler={SAMPLER[model]}", "steps=4", *extra)
    return generate_from_config(cfg), cfg


def diffusers_with(model: str, cfg, folders_and_scales):
    """The family's diffusers pipeline on a fresh twin with the LoRAs loaded as diffusers loads them."""
    denoiser = load_denoiser(resolve([f"model={model}"]))
    names = []
    for i, (folder, _) in enumerate(folders_and_scales):
        denoiser.pipe.load_lora_weights(folder, adapter_name=f"ref_{i}")
        names.append(f"ref_{i}")
    denoiser.pipe.set_adapters(names, adapter_weights=[scale for _, scale in folders_and_scales])
    ran = prepare(cfg).cfg
    return diffusers_latents(denoiser, ran, diffusers_scheduler(SAMPLER[model], denoiser.scheduler.config))


@pytest.mark.parametrize("model", TWINS)
def test_a_lora_equals_the_family_pipeline_with_the_same_lora(loras, model):
    result, cfg = run_window(model, f"lora={loras[model]}", "lora.scale=0.8")
    plain, _ = run_window(model)
    reference = diffusers_with(model, cfg, [(loras[model], 0.8)])
    assert torch.allclose(result.canonical, reference, atol=1e-4, rtol=1e-4), (result.canonical - reference).abs().max()
    assert (result.canonical - plain.canonical).abs().max() > 1e-2  # and it does act
    (record,) = result.metadata["model_extras"]["loras"]
    assert record["scale"] == 0.8 and len(record["sha256"]) == 64
    assert result.config["lora"]["path"] == str(loras[model])


def test_scale_zero_is_no_lora_and_two_loras_stack_as_diffusers_stacks_them(loras, tmp_path):
    model = "tiny"
    zero, _ = run_window(model, f"lora={loras[model]}", "lora.scale=0")
    plain, _ = run_window(model)
    assert torch.equal(zero.canonical, plain.canonical)
    second = make_lora(model, tmp_path / "second", seed=1)
    both, cfg = run_window(model, f"lora={loras[model]}", "lora.scale=0.8", f"loras=[{{path: {second}, scale: 0.5}}]")
    reference = diffusers_with(model, cfg, [(loras[model], 0.8), (second, 0.5)])
    assert torch.allclose(both.canonical, reference, atol=1e-4, rtol=1e-4)
    assert [r["scale"] for r in both.metadata["model_extras"]["loras"]] == [0.8, 0.5]


def test_a_fused_lora_gives_the_unfused_result(loras):
    unfused, _ = run_window("tiny", f"lora={loras['tiny']}", "lora.scale=0.7")
    fused, _ = run_window("tiny", f"lora={loras['tiny']}", "lora.scale=0.7", "lora_fuse=true")
    assert torch.allclose(fused.canonical, unfused.canonical, atol=1e-4)


def test_config_yaml_reproduces_a_run_with_loras(loras, tmp_path):
    from syncframe.cli import main

    out = tmp_path / "first"
    common = ["run", "model=tiny", "width=512", "height=512", "steps=2", "progress=false"]
    assert main([*common, f"lora={loras['tiny']}", "lora.scale=0.6", f"out={out}"]) == 0
    assert main(["run", f"--config={out / 'config.yaml'}", f"out={tmp_path / 'again'}"]) == 0
    assert (out / "panorama.png").read_bytes() == (tmp_path / "again" / "panorama.png").read_bytes()


def test_bad_loras_are_one_line(loras, tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "empty").mkdir()
    cases = [
        ([f"lora={tmp_path / 'missing.safetensors'}"], "no such file"),
        ([f"lora={tmp_path / 'broken.safetensors'}"], "is not a readable safetensors file"),
        ([f"lora={tmp_path / 'empty'}"], "holds no single LoRA file"),
        ([f"lora={loras['tiny-flux']}"], "is a LoRA for an SD3 or FLUX transformer, and this model is sd"),
        (["model=tiny-flux", f"lora={loras['tiny']}"], "is a LoRA for an SD 1/2 or SDXL UNet, and this model is flux"),
        (["lora=someone/not-a-cached-lora"], "lora=someone/not-a-cached-lora is not in the local Hugging Face cache"),
        (["lora.scale=20"], "lora.scale=20: expected a number in [-10, 10]"),
        (["ip_image=x.png"], "ip_image= needs an IP-Adapter"),
        (["ip_adapter=someone/ip"], "ip_adapter= needs an image prompt"),
        (["attention=xformers"], "attention=xformers needs the xformers package"),
    ]
    for args, message in cases:
        with pytest.raises(ConfigError) as caught:
            prepare(resolve(["model=tiny", *args]))
        assert message in str(caught.value), (args, str(caught.value))


def test_a_lora_for_another_model_size_is_one_line(loras, capfd):
    """A LoRA of the same kind of network but other shapes (SD's into SDXL's UNet): refused on load,
    without diffusers' sixty lines of size mismatches before it."""
    with pytest.raises(ConfigError, match="could not be loaded into this sdxl model"):
        load_denoiser(resolve(["model=tiny-sdxl", f"lora={loras['tiny']}"]))
    assert "size mismatch" not in capfd.readouterr().err


def test_a_lora_whose_keys_name_no_layer_is_one_line(loras, tmp_path):
    """Plausible names of layers the model does not have: diffusers loads what matches and warns; refused."""
    from safetensors.torch import load_file, save_file

    (file,) = loras["tiny"].glob("*.safetensors")
    renamed = {k.replace("attentions.0", "attentions.4"): v for k, v in load_file(str(file)).items()}
    save_file(renamed, str(tmp_path / "renamed.safetensors"))
    with pytest.raises(ConfigError, match=r"of its tensors name layers this sd model does not have"):
        load_denoiser(resolve(["model=tiny", f"lora={tmp_path / 'renamed.safetensors'}"]))


def test_a_lora_folder_with_an_upper_case_suffix_and_a_pickled_lora_load(loras, tmp_path, capfd):
    from safetensors.torch import load_file

    (file,) = loras["tiny"].glob("*.safetensors")
    (tmp_path / "upper").mkdir()
    (tmp_path / "upper" / "MINE.SAFETENSORS").write_bytes(file.read_bytes())
    (tmp_path / "pickled").mkdir()
    torch.save(load_file(str(file)), tmp_path / "pickled" / "pytorch_lora_weights.bin")
    reference = run_window("tiny", f"lora={loras['tiny']}")[0].canonical
    for folder in ("upper", "pickled"):
        assert torch.equal(run_window("tiny", f"lora={tmp_path / folder}")[0].canonical, reference), folder
    assert "Warning" not in capfd.readouterr().err


# -- IP-Adapter image prompts ---------------------------------------------------------------------
def make_ip_adapter(folder, unet, seed: int = 0):
    """An IP-Adapter for ``unet`` with random weights, in the layout diffusers' load_ip_adapter reads
    (h94/IP-Adapter's): models/ip-adapter.safetensors ("image_proj.*": 4 image tokens from the CLIP
    image embedding; "ip_adapter.<k>.to_k_ip/to_v_ip": one pair per cross-attention, k = 1, 3, 5, ...)
    and models/image_encoder (a tiny CLIP vision model with projection)."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    generator = torch.Generator().manual_seed(seed)
    cross, embed = unet.config.cross_attention_dim, 16
    tensors = {"image_proj.proj.weight": torch.randn(4 * cross, embed, generator=generator) * 0.2,
               "image_proj.proj.bias": torch.zeros(4 * cross),
               "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    key = 1
    for name, processor in unet.attn_processors.items():
        if name.endswith("attn2.processor"):
            block = int(name[len("down_blocks.")]) if name.startswith("down_blocks") else None
            widths = unet.config.block_out_channels
            hidden = (widths[-1] if name.startswith("mid_block") else list(reversed(widths))[int(name[len("up_blocks.")])]
                      if name.startswith("up_blocks") else widths[block])
            for part in ("to_k_ip", "to_v_ip"):
                tensors[f"ip_adapter.{key}.{part}.weight"] = torch.randn(hidden, cross, generator=generator) * 0.5
            key += 2
    (folder / "models").mkdir(parents=True)
    save_file(tensors, str(folder / "models" / "ip-adapter.safetensors"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=32, intermediate_size=37, projection_dim=embed, num_hidden_layers=2, num_attention_heads=4,
            image_size=224, patch_size=32))
    encoder.save_pretrained(folder / "models" / "image_encoder")
    return folder


def test_an_ip_adapter_image_prompt_reaches_every_view_computed_once(tmp_path):
    from PIL import Image

    unet = load_denoiser(resolve(["model=tiny"])).unet
    adapter = make_ip_adapter(tmp_path / "ip", unet)
    for name, colour in (("red", (230, 40, 30)), ("blue", (20, 60, 220))):
        Image.new("RGB", (300, 200), colour).save(tmp_path / f"{name}.png")
    common = ["model=tiny", "width=768", "height=512", "app.stride=32", "steps=3", "progress=false",
              f"ip_adapter={adapter}", "ip_adapter.weight_name=ip-adapter.safetensors"]
    runs = {}
    for name in ("red", "blue"):
        cfg = resolve([*common, f"ip_image={tmp_path / f'{name}.png'}"])
        denoiser = load_denoiser(cfg)
        calls = []
        denoiser.pipe.image_encoder.register_forward_hook(lambda *args: calls.append(1))
        runs[name] = generate_from_config(cfg, denoiser)
        assert calls == [1]  # the image embedding is computed once for all views
    plain = generate_from_config(resolve(common[:6]))
    per_view = (runs["red"].views - runs["blue"].views).flatten(1).abs().mean(1)
    assert len(per_view) == 2 and (per_view > 1e-3).all(), per_view  # the image reaches every view
    assert ((runs["red"].views - plain.views).flatten(1).abs().mean(1) > 1e-3).all()
    assert runs["red"].metadata["model_extras"]["ip_adapter"]["scale"] == 1.0
    half = generate_from_config(resolve([*common, f"ip_image={tmp_path / 'red.png'}", "ip_adapter.scale=0"]))
    assert torch.allclose(half.views, plain.views, atol=1e-5)  # scale 0: the adapter's attention adds nothing


# -- speed switches: the same numbers -----------------------------------------------------------------
def test_sdpa_attention_equals_the_classic_kernel_and_compile_equals_eager():
    from diffusers.models.attention_processor import AttnProcessor

    base = ["model=tiny", "width=512", "height=512", "steps=2", "progress=false"]
    sdpa = generate_from_config(resolve([*base, "attention=sdpa"]))
    classic = load_denoiser(resolve(base))
    classic.unet.set_attn_processor(AttnProcessor())  # the matmul-softmax kernel, not SDPA
    def close(a, b):  # within 1e-5 of the latent's scale (float32 kernels sum in other orders)
        return ((a - b).abs().max() / b.abs().max()).item() < 1e-5

    assert close(generate_from_config(resolve(base), classic).canonical, sdpa.canonical)
    compiled = generate_from_config(resolve([*base, "compile=true"]))
    assert close(compiled.canonical, sdpa.canonical)
    timings = compiled.metadata["timings_s"]
    assert "compile" in timings and "compile" not in sdpa.metadata["timings_s"]  # measured apart from sampling


# -- single-file checkpoints ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The tiny SD and SDXL twins as single files in the original key layout (.safetensors and
    .ckpt), with their configs in a diffusers folder that holds no weights at all."""
    from safetensors.torch import save_file

    from ldm_layout import single_file_state

    out = {}
    for model in ("tiny", "tiny-sdxl"):
        folder = tmp_path_factory.mktemp(f"single-{model}")
        pipe = load_denoiser(resolve([f"model={model}"])).pipe
        pipe.save_pretrained(folder / "configs")
        for weights in (folder / "configs").rglob("*.safetensors"):
            weights.unlink()  # the checkpoint alone carries the weights
        state = single_file_state(pipe)
        save_file(state, str(folder / "model.safetensors"))
        torch.save(state, folder / "model.ckpt")
        out[model] = folder
    return out


@pytest.mark.parametrize("model, suffix", [("tiny", "safetensors"), ("tiny", "ckpt"), ("tiny-sdxl", "safetensors")])
def test_a_single_file_checkpoint_equals_the_folder_model_bit_for_bit(checkpoints, model, suffix):
    folder = checkpoints[model]
    spec = prepare(one_window(model)).spec
    cfg = one_window(model, f"model={folder / f'model.{suffix}'}", f"model.config={folder / 'configs'}", "steps=3")
    loaded = prepare(cfg)
    assert loaded.spec.family == spec.family and loaded.spec.window == spec.window  # read from the keys and configs
    result = generate_from_config(cfg)
    twin = generate_from_config(one_window(model, "steps=3"))
    assert torch.equal(result.canonical, twin.canonical)


def test_a_checkpoint_with_an_upper_case_suffix_loads(checkpoints, tmp_path):
    folder = checkpoints["tiny"]
    (tmp_path / "X.SAFETENSORS").write_bytes((folder / "model.safetensors").read_bytes())
    cfg = one_window("tiny", f"model={tmp_path / 'X.SAFETENSORS'}", f"model.config={folder / 'configs'}", "steps=2")
    assert torch.equal(generate_from_config(cfg).canonical, generate_from_config(one_window("tiny", "steps=2")).canonical)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.SAFETENSORS"]  # the lower-case link is gone


def test_bad_single_files_are_one_line(checkpoints, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_file({"some.other.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    torch.save({"x": RunsCode()}, tmp_path / "code.ckpt")
    folder = checkpoints["tiny"]
    cases = [
        ([f"model={tmp_path / 'missing.safetensors'}"], "no such file; give a .safetensors or .ckpt checkpoint"),
        ([f"model={tmp_path / 'junk.safetensors'}"], "is not a readable checkpoint"),
        ([f"model={tmp_path / 'code.ckpt'}"], "is not a readable checkpoint"),
        ([f"model={tmp_path / 'other.safetensors'}"], "is a checkpoint of a layout syncframe does not know"),
        ([f"model={folder / 'model.safetensors'}"], "its pipeline's configs (sizes, scheduler, tokenizers) come from "
                                                    "model.config=<local diffusers folder|repo>"),
        (["model=tiny", f"model.config={folder / 'configs'}"], "unknown config key 'model.config' for model=tiny"),
        ([f"model={folder / 'model.safetensors'}", f"model.config={checkpoints['tiny-sdxl'] / 'configs'}"],
         "holds a StableDiffusionXLPipeline's configs, and model="),
        ([f"model={folder / 'model.safetensors'}", f"model.config={tmp_path}"], "has no model_index.json"),
    ]
    for args, message in cases:
        with pytest.raises(ConfigError) as caught:
            prepare(resolve(args))
        assert message in str(caught.value), (args, str(caught.value))


class RunsCode:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


# -- a pipeline you built, and SyncPipeline ------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """The tiny SD twin saved as a diffusers folder (what from_pretrained loads)."""
    folder = tmp_path_factory.mktemp("tiny-folder")
    load_denoiser(resolve(["model=tiny"])).pipe.save_pretrained(folder)
    return folder


def test_generate_with_a_pipeline_you_built_equals_the_same_folder_as_model(tiny_folder):
    from diffusers import StableDiffusionPipeline

    import syncframe

    pipe = StableDiffusionPipeline.from_pretrained(tiny_folder, safety_checker=None, requires_safety_checker=False)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    common = dict(width=768, height=512, steps=3, progress=False, seed=2)
    ours = syncframe.generate(pipe=pipe, **common)
    direct = syncframe.generate(model=str(tiny_folder), **common)
    assert torch.equal(ours.canonical, direct.canonical)
    assert ours.metadata["model_extras"]["pipeline"] == "StableDiffusionPipeline"
    assert pipe.unet.training is False and all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in before.items())
    img2img = syncframe.generate(pipe=__import__("diffusers").StableDiffusionImg2ImgPipeline.from_pipe(pipe), **common)
    assert torch.equal(img2img.canonical, direct.canonical)  # another pipeline class over the same components
    with pytest.raises(ConfigError, match=r"generate\(pipe=...\) uses the pipeline as it is; lora"):
        syncframe.generate(pipe=pipe, lora="x.safetensors", **common)


def test_sync_pipeline_one_window_equals_the_plain_pipeline_and_a_panorama_equals_syncframe_run(tiny_folder, tmp_path):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from syncframe import SyncPipeline

    pipe = SyncPipeline.from_pretrained(tiny_folder)
    assert pipe.unet is not None and pipe.transformer is None
    one = pipe("a lighthouse", width=512, height=512, num_inference_steps=4, generator=torch.Generator().manual_seed(3),
               sync="none", output_type="latent").images
    plain = StableDiffusionPipeline.from_pretrained(tiny_folder, safety_checker=None, requires_safety_checker=False)
    plain.scheduler = DDIMScheduler.from_config(plain.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    reference = plain("a lighthouse", width=512, height=512, num_inference_steps=4, output_type="latent",
                      generator=torch.Generator().manual_seed(3)).images
    assert torch.allclose(one, reference, atol=1e-4, rtol=1e-4)
    # the deprecated panorama pipeline's call, ported: same arguments, same meaning
    out = pipe("a photo of the dolomites", height=512, width=1024, num_inference_steps=3, guidance_scale=7.5,
               view_batch_size=2, circular_padding=True, generator=torch.Generator().manual_seed(1))
    run = __import__("syncframe").generate(model=str(tiny_folder), prompt="a photo of the dolomites", width=1024,
                                           height=512, steps=3, seed=1, progress=False, view_batch_size=2,
                                           **{"app": {"name": "panorama", "loop": True}})
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(run.images["panorama.png"]))
    arrays = pipe("x", width=512, height=512, num_inference_steps=2, output_type="np").images
    assert arrays.shape == (1, 512, 512, 3) and 0 <= arrays.min() and arrays.max() <= 1
    again = SyncPipeline.from_pipe(plain)  # components shared, no reload
    assert again.unet is plain.unet


def test_sync_pipeline_takes_the_panorama_pipelines_batch_arguments(tiny_folder):
    """A diffusers user's call, argument for argument, against StableDiffusionPanoramaPipeline: two prompts
    with their negative prompts and one generator each give the two panoramas that pipeline makes for each
    prompt alone (each generator draws its own panorama's noise). Run as one batch the reference itself
    pairs the views wrongly under guidance (latents repeat_interleave'd against [negatives, prompts]
    concatenated, diffusers 0.42 line 1100), so it is the reference one prompt at a time. guidance_scale is
    used; return_dict=False is the (images, nsfw) tuple."""
    from diffusers import DDIMScheduler, StableDiffusionPanoramaPipeline

    from syncframe import SyncPipeline

    pipe = SyncPipeline.from_pretrained(tiny_folder)
    prompts, negatives, seeds = ["a lighthouse", "a castle"], ["fog", "night"], (5, 6)
    call = dict(height=512, width=768, num_inference_steps=3, guidance_scale=4.0)
    ours = pipe(prompts, generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="latent",
                sync="multidiffusion", negative_prompt=negatives, **call).images
    panorama = StableDiffusionPanoramaPipeline.from_pretrained(tiny_folder, safety_checker=None,
                                                               requires_safety_checker=False)
    panorama.scheduler = DDIMScheduler.from_config(panorama.scheduler.config)
    panorama.set_progress_bar_config(disable=True)
    reference = torch.cat([panorama(prompt, generator=torch.Generator().manual_seed(seed), output_type="latent",
                                    negative_prompt=negative, **call).images
                           for prompt, negative, seed in zip(prompts, negatives, seeds)])
    assert ours.shape == reference.shape == (2, 4, 64, 96)
    assert torch.allclose(ours, reference, atol=1e-4, rtol=1e-4), (ours - reference).abs().max()
    other = pipe(prompts, generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="latent",
                 sync="multidiffusion", negative_prompt=negatives, **{**call, "guidance_scale": 1.0}).images
    assert not torch.allclose(ours, other, atol=1e-3)  # the guidance scale reaches the run
    images, nsfw = pipe("a lighthouse", num_images_per_prompt=2, height=512, width=512, num_inference_steps=2,
                        return_dict=False)
    assert len(images) == 2 and nsfw is None and images[0].size == (512, 512)


def test_sync_pipeline_calls_back_every_step_and_refuses_what_cannot_apply(tiny_folder):
    from syncframe import SyncPipeline

    pipe = SyncPipeline.from_pretrained(tiny_folder)
    seen = []
    pipe("x", height=512, width=512, num_inference_steps=3, output_type="latent",
         callback_on_step_end=lambda p, i, t, tensors: seen.append((i, t, tuple(tensors["latents"].shape))),
         callback_on_step_end_tensor_inputs=["latents"])
    assert [i for i, _, _ in seen] == [0, 1, 2] and seen[0][2] == (4, 64, 64) and seen[0][1] > seen[-1][1]
    for kwargs, words in ((dict(negative_prompt=["a", "b"]), "has batch size 2, but `prompt`"),
                          (dict(generator=[torch.Generator()] * 3), "list of generators of length 3"),
                          (dict(latents=torch.zeros(1)), "latents are not supported"),
                          (dict(callback_on_step_end_tensor_inputs=["noise"]), "has to be in \\['latents'\\]")):
        with pytest.raises(ConfigError, match=words):
            pipe("x", height=512, width=512, num_inference_steps=1, **kwargs)
