"""Train the demo model (``model=demo``) from nothing on this project's procedural scenes.

    python scripts/demo_model/train.py            # every stage, resumable: rerun to go on

Stages, each resumable from the files it leaves in ``--work`` (default ``build/demo_model``):

1. ``data``: ``--images`` scenes (scenes.py) at 256², in shards of 1000 (uint8 + the scene parameters);
2. ``autoencoder``: an f=8, 4-channel ``AutoencoderKL`` trained on random crops (it is
   convolutional, so crops teach it the whole frame at a fraction of the cost): L1 + MSE + image
   gradients, a small KL weight;
3. ``latents``: every image encoded once (posterior mean and std, fp16); the VAE's
   ``scaling_factor`` set to 1/std of the latents, as Stable Diffusion's was;
4. ``unet``: a small ``UNet2DConditionModel`` and a small CLIP text encoder trained together on the
   cached latents: ε-prediction on Stable Diffusion's noise schedule, Min-SNR-γ weighting (γ = 5),
   10% empty captions (classifier-free guidance), captions drawn anew each epoch (the scene's
   parts dropped at random, scenes.OMIT), an EMA of the weights;
5. ``export``: the EMA weights as a diffusers ``StableDiffusionPipeline`` folder in fp16
   safetensors (``syncframe/models/demo``), its model card with every file's sha256, and the loss
   curves (docs/images/demo_model_loss.png).

Seeded throughout; a stage's checkpoint holds its optimizer, EMA, step and generator states.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import scenes  # noqa: E402
from tokenizer import build_tokenizer  # noqa: E402

SHARD = 1000
WINDOW = 256
# the architecture (sizes chosen for a 2-core CPU and a 10 MB package: see docs/demo_model.md)
UNET = dict(sample_size=WINDOW // 8, in_channels=4, out_channels=4, block_out_channels=(32, 64, 112),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
            cross_attention_dim=96, attention_head_dim=8, norm_num_groups=16)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 64, 64),
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           layers_per_block=1, norm_num_groups=8, sample_size=WINDOW)
TEXT = dict(hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
            max_position_embeddings=32)
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- 1. data --------------------------------------------------------------------------------------

def make_shard(args) -> str:
    path, first, count = args
    images, params = [], []
    for seed in range(first, first + count):
        scene = scenes.sample_scene(seed)
        images.append(scenes.render(scene, WINDOW))
        params.append(scenes.describe(scene))
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=np.stack(images), scenes=json.dumps(params))
    tmp.rename(path)
    return path.name


def stage_data(work: Path, count: int, workers: int, shard: int = SHARD) -> list[Path]:
    folder = work / "data"
    folder.mkdir(parents=True, exist_ok=True)
    shards = [(folder / f"shard_{k:03d}.npz", k * shard, shard) for k in range(math.ceil(count / shard))]
    todo = [s for s in shards if not s[0].exists()]
    if todo:
        log(f"data: {len(todo)} of {len(shards)} shards of {shard} scenes to draw")
        if workers > 1:
            with Pool(workers) as pool:
                for _ in tqdm(pool.imap_unordered(make_shard, todo), total=len(todo), desc="data"):
                    pass
        else:
            for job in tqdm(todo, desc="data"):
                make_shard(job)
    return [s[0] for s in shards]


def load_shard(path: Path) -> tuple[np.ndarray, list[dict]]:
    with np.load(path) as data:
        return data["images"], json.loads(str(data["scenes"]))


# --- 2. autoencoder -------------------------------------------------------------------------------

def new_vae(seed: int | None = None):
    from diffusers import AutoencoderKL

    if seed is not None:  # its initial weights (the shipped model's autoencoder was drawn before this seed was set)
        torch.manual_seed(seed)
    return AutoencoderKL(**VAE)


def image_loss(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 + MSE + L1 of the horizontal and vertical differences (keeps edges and stars sharp)."""
    grad = lambda t: (t[..., 1:, :] - t[..., :-1, :], t[..., :, 1:] - t[..., :, :-1])  # noqa: E731
    (oy, ox), (xy, xx) = grad(out), grad(x)
    return (out - x).abs().mean() + F.mse_loss(out, x) + 0.5 * ((oy - xy).abs().mean() + (ox - xx).abs().mean())


def perceptual_loss():
    """LPIPS-AlexNet with real weights when this machine has them (syncframe's weight search), else
    None: the autoencoder then trains on L1 + MSE + gradients alone."""
    from syncframe.models.perceptual import lpips_from
    from syncframe.weights import find_weight

    path = find_weight("lpips/alex.safetensors")
    return None if path is None else lpips_from("alex", path).eval().requires_grad_(False)


def stage_autoencoder(work: Path, shards: list[Path], steps: int, batch: int, crop: int, seed: int,
                      lpips_weight: float = 0.3, progress: bool = True) -> None:
    path = work / "autoencoder.pt"
    vae = new_vae(seed)
    lpips = perceptual_loss() if lpips_weight else None
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    state = {"step": 0, "losses": []}
    generator = torch.Generator().manual_seed(seed)
    if path.exists():
        saved = torch.load(path, weights_only=False)
        vae.load_state_dict(saved["model"]), opt.load_state_dict(saved["opt"])
        state, generator = saved["state"], generator.set_state(saved["generator"])
    if state["step"] >= steps:
        return
    pool = np.concatenate([load_shard(p)[0] for p in shards[:4]])  # 4 shards (4000 images): crops of them all
    log(f"autoencoder: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M parameters, from step {state['step']}"
        f"{'' if lpips is None else f', LPIPS-alex weight {lpips_weight}'}")
    vae.train()
    bar = tqdm(range(state["step"], steps), desc="autoencoder", initial=state["step"], total=steps,
               disable=not progress)
    for step in bar:
        lr = 1e-3 * min(1.0, (step + 1) / 200) * (0.5 + 0.5 * math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr
        index = torch.randint(len(pool), (batch,), generator=generator)
        top, left = torch.randint(WINDOW - crop + 1, (2, batch), generator=generator)
        x = torch.stack([torch.from_numpy(pool[i, t:t + crop, l:l + crop]) for i, t, l in zip(index, top, left)])
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1
        posterior = vae.encode(x).latent_dist
        out = vae.decode(posterior.sample(generator)).sample
        loss = image_loss(out, x) + 1e-6 * posterior.kl().mean()
        if lpips is not None:  # sharper than pixel losses alone: edges, mortar lines, the moon's colour
            loss = loss + lpips_weight * lpips(out, x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        state["losses"].append(loss.item())
        state["step"] = step + 1
        bar.set_postfix(loss=f"{np.mean(state['losses'][-50:]):.4f}")
        if state["step"] % 250 == 0 or state["step"] == steps:
            save(path, model=vae.state_dict(), opt=opt.state_dict(), state=state, generator=generator.get_state())


def save(path: Path, **payload) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def trained_vae(work: Path):
    vae = new_vae()
    vae.load_state_dict(torch.load(work / "autoencoder.pt", weights_only=False)["model"])
    return vae.eval()


# --- 3. latents -----------------------------------------------------------------------------------

def stage_latents(work: Path, shards: list[Path], progress: bool = True) -> None:
    folder = work / "latents"
    folder.mkdir(exist_ok=True)
    todo = [p for p in shards if not (folder / p.name).exists()]
    if not todo:
        return
    vae = trained_vae(work)
    for path in tqdm(todo, desc="latents", disable=not progress):
        images, params = load_shard(path)
        means, stds = [], []
        with torch.no_grad():
            for k in range(0, len(images), 50):
                x = torch.from_numpy(images[k:k + 50]).permute(0, 3, 1, 2).float() / 127.5 - 1
                posterior = vae.encode(x).latent_dist
                means.append(posterior.mean.half()), stds.append(posterior.std.half())
        tmp = (folder / path.name).with_suffix(".tmp.npz")
        np.savez(tmp, mean=torch.cat(means).numpy(), std=torch.cat(stds).numpy(), scenes=json.dumps(params))
        tmp.rename(folder / path.name)


def load_latents(work: Path, shards: list[Path]):
    means, stds, params = [], [], []
    for path in shards:
        with np.load(work / "latents" / path.name) as data:
            means.append(data["mean"]), stds.append(data["std"])
            params += json.loads(str(data["scenes"]))
    return torch.from_numpy(np.concatenate(means)), torch.from_numpy(np.concatenate(stds)), params


def scaling_factor(means: torch.Tensor) -> float:
    """1 / the standard deviation of the latents (Stable Diffusion's 0.18215 was found the same way)."""
    return float(1 / means[:4000].float().std())


# --- 4. UNet and text encoder ---------------------------------------------------------------------

def new_denoiser(tokenizer, seed: int):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**UNET)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **TEXT))
    return unet, text_encoder


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def min_snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    """Min-SNR-γ loss weights for ε-prediction: min(SNR, γ) / SNR (Hang et al. 2023)."""
    snr = alphas_cumprod[t] / (1 - alphas_cumprod[t])
    return torch.clamp(snr, max=gamma) / snr


def epoch_captions(params: list[dict], epoch: int) -> list[str]:
    return [scenes.caption(scenes.Scene(**p), seed=p["seed"] * 1000 + epoch) for p in params]


class UNetTraining:
    """The UNet stage's state: models, EMA copies, optimizer, generator, step and losses."""

    def __init__(self, work: Path, seed: int, lr: float, ema_decay: float):
        from diffusers import DDPMScheduler

        self.path = work / "unet.pt"
        self.tokenizer = build_tokenizer(work / "tokenizer")
        self.unet, self.text_encoder = new_denoiser(self.tokenizer, seed)
        self.params = [*self.unet.parameters(), *self.text_encoder.parameters()]
        self.ema = [p.detach().clone() for p in self.params]
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=0.01)
        self.lr, self.ema_decay = lr, ema_decay
        self.scheduler = DDPMScheduler(**{k: v for k, v in SCHEDULE.items() if k not in ("set_alpha_to_one",)})
        self.generator = torch.Generator().manual_seed(seed)
        self.state = {"step": 0, "losses": []}
        if self.path.exists():
            saved = torch.load(self.path, weights_only=False)
            self.unet.load_state_dict(saved["unet"]), self.text_encoder.load_state_dict(saved["text_encoder"])
            self.opt.load_state_dict(saved["opt"])
            self.ema = saved["ema"]
            self.state = saved["state"]
            self.generator.set_state(saved["generator"])

    def save(self) -> None:
        save(self.path, unet=self.unet.state_dict(), text_encoder=self.text_encoder.state_dict(),
             opt=self.opt.state_dict(), ema=self.ema, state=self.state, generator=self.generator.get_state())

    def step(self, latents: torch.Tensor, ids: torch.Tensor, total: int, noise_offset: float = 0.05) -> float:
        step = self.state["step"]
        lr = self.lr * min(1.0, (step + 1) / 500) * (0.55 + 0.45 * math.cos(math.pi * min(step / total, 1.0)))
        for group in self.opt.param_groups:
            group["lr"] = lr
        b = latents.shape[0]
        t = torch.randint(0, 1000, (b,), generator=self.generator)
        noise = torch.randn(latents.shape, generator=self.generator)
        # offset noise: a little per-channel constant, so night skies can be as dark as they are
        noise = noise + noise_offset * torch.randn(b, latents.shape[1], 1, 1, generator=self.generator)
        noisy = self.scheduler.add_noise(latents, noise, t)
        states = self.text_encoder(ids)[0]
        eps = self.unet(noisy, t, encoder_hidden_states=states).sample
        weights = min_snr_weights(self.scheduler.alphas_cumprod, t)
        loss = (weights * (eps - noise).pow(2).mean((1, 2, 3))).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        decay = min(self.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, [p.detach() for p in self.params], 1 - decay)
        self.state["losses"].append(loss.item())
        self.state["step"] = step + 1
        return self.state["losses"][-1]


def stage_unet(work: Path, shards: list[Path], steps: int, batch: int, seed: int, lr: float = 4e-4,
               ema_decay: float = 0.999, checkpoint_every: int = 250, progress: bool = True) -> UNetTraining:
    training = UNetTraining(work, seed, lr, ema_decay)
    if training.state["step"] >= steps:
        return training
    means, stds, params = load_latents(work, shards)
    scale = scaling_factor(means)
    log(f"unet: {sum(p.numel() for p in training.unet.parameters()) / 1e6:.2f} M + text encoder "
        f"{sum(p.numel() for p in training.text_encoder.parameters()) / 1e6:.2f} M parameters on {len(means)} "
        f"latents (scaling factor {scale:.4f}), from step {training.state['step']}")
    per_epoch, captions_of = len(means) // batch, {}
    bar = tqdm(range(training.state["step"], steps), desc="unet", initial=training.state["step"], total=steps,
               disable=not progress)
    for step in bar:
        epoch, k = divmod(step, per_epoch)
        order = torch.randperm(len(means), generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        index = order[k * batch:(k + 1) * batch]
        if epoch not in captions_of:  # each epoch draws every scene's caption anew (its parts dropped at random)
            captions_of.clear()
            captions_of[epoch] = epoch_captions(params, epoch)
        captions = ["" if torch.rand((), generator=training.generator) < 0.1 else captions_of[epoch][i]
                    for i in index]
        sample = means[index].float() + stds[index].float() * torch.randn(means[index].shape,
                                                                            generator=training.generator)
        training.step(sample * scale, tokenize(training.tokenizer, captions), steps)
        bar.set_postfix(loss=f"{np.mean(training.state['losses'][-100:]):.4f}")
        if training.state["step"] % checkpoint_every == 0 or training.state["step"] == steps:
            training.save()
    return training


# --- 5. export ------------------------------------------------------------------------------------

def stage_export(work: Path, shards: list[Path], out: Path, seed: int) -> None:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    training = UNetTraining(work, seed, 0.0, 0.0)
    with torch.no_grad():
        for p, e in zip(training.params, training.ema):
            p.copy_(e)
    means, _, _ = load_latents(work, shards[:4])
    vae = trained_vae(work)
    vae.register_to_config(scaling_factor=round(scaling_factor(means), 5))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=training.text_encoder, tokenizer=training.tokenizer,
                                   unet=training.unet, scheduler=DDIMScheduler(**SCHEDULE), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    out.mkdir(parents=True, exist_ok=True)
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    write_model_card(out, training, work)
    plot_losses(work, ROOT / "docs" / "images" / "demo_model_loss.png")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_model_card(out: Path, training: UNetTraining, work: Path) -> None:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "README.md")
    ae = torch.load(work / "autoencoder.pt", weights_only=False)["state"]
    rows = "\n".join(f"| `{p.relative_to(out)}` | {p.stat().st_size:,} | `{sha256(p)}` |" for p in files)
    timing = json.loads((work / "timings.json").read_text()) if (work / "timings.json").exists() else {}
    (out / "README.md").write_text(f"""# syncframe demo model

A small text-to-image latent diffusion model trained from nothing by `scripts/demo_model/train.py` on
procedural scenes (landscapes by time of day, terrain, water, sun or moon; material textures) that
the same folder generates. It makes pictures on any CPU: `syncframe run model=demo ...`.
Its captions' vocabulary and grammar, how it was trained and what it scores: `docs/demo_model.md`.

- Stable Diffusion architecture (a diffusers `StableDiffusionPipeline`): f=8 `AutoencoderKL` with 4
  latent channels, `UNet2DConditionModel` (block widths {UNET['block_out_channels']}), a
  {TEXT['num_hidden_layers']}-layer CLIP text encoder of width {TEXT['hidden_size']} with a
  {len(training.tokenizer)}-token BPE tokenizer, ε-prediction, DDIM.
- Window: {WINDOW}x{WINDOW} pixels ({WINDOW // 8}x{WINDOW // 8} latents).
- Trained: autoencoder {ae['step']} steps, UNet and text encoder {training.state['step']} steps
  (EMA weights); final mean loss over the last 500 steps {np.mean(training.state['losses'][-500:]):.4f}.
- Time on 2 CPU cores: {json.dumps(timing)}.
- Weights: fp16 safetensors. Licence: Apache-2.0, as syncframe.

| file | bytes | sha256 |
| --- | ---: | --- |
{rows}
""")


def plot_losses(work: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {"autoencoder (L1 + MSE + gradients; LPIPS added at 4000)": torch.load(work / "autoencoder.pt", weights_only=False)["state"],
              "UNet (Min-SNR-weighted ε MSE)": torch.load(work / "unet.pt", weights_only=False)["state"]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, (name, state) in zip(axes, curves.items()):
        losses = np.asarray(state["losses"])
        ax.plot(losses, alpha=0.25, lw=0.6, color="tab:blue")
        window = max(1, len(losses) // 100)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(len(smooth)) + window // 2, smooth, color="tab:blue")
        ax.set(title=name, xlabel="step", yscale="log")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def short_run(work: Path, seed: int = 0) -> dict[str, list[float]]:
    """Three steps of each training stage on 64 scenes (shards of 16), pixel losses only (no ../shared
    weights), from ``seed``: the losses tests/ compares with short_run.json (a training that changed)."""
    shards = stage_data(work, 64, 1, shard=16)
    stage_autoencoder(work, shards, 3, 4, 32, seed, lpips_weight=0.0, progress=False)
    stage_latents(work, shards, progress=False)
    training = stage_unet(work, shards, 3, 4, seed, checkpoint_every=3, progress=False)
    autoencoder = torch.load(work / "autoencoder.pt", weights_only=False)["state"]["losses"]
    return {"autoencoder": [round(v, 5) for v in autoencoder],
            "unet": [round(v, 5) for v in training.state["losses"]]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", default="all", choices=["all", "data", "autoencoder", "latents", "unet", "export"])
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "demo_model")
    parser.add_argument("--out", type=Path, default=ROOT / "syncframe" / "models" / "demo")
    parser.add_argument("--images", type=int, default=32000)
    parser.add_argument("--ae-steps", type=int, default=12000)
    parser.add_argument("--ae-lpips", type=float, default=0.3, help="LPIPS-alex weight (0: pixel losses only)")
    parser.add_argument("--ae-batch", type=int, default=16)
    parser.add_argument("--ae-crop", type=int, default=64)
    parser.add_argument("--unet-steps", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    timings_path = args.work / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    def timed(name, fn, *a, **k):
        clock = time.perf_counter()
        result = fn(*a, **k)
        timings[name] = round(timings.get(name, 0) + time.perf_counter() - clock, 1)
        timings_path.write_text(json.dumps(timings))
        return result

    stages = ["data", "autoencoder", "latents", "unet", "export"] if args.stage == "all" else [args.stage]
    shards = timed("data_s", stage_data, args.work, args.images, args.workers) if "data" in stages else \
        [args.work / "data" / f"shard_{k:03d}.npz" for k in range(math.ceil(args.images / SHARD))]
    if "autoencoder" in stages:
        timed("autoencoder_s", stage_autoencoder, args.work, shards, args.ae_steps, args.ae_batch, args.ae_crop,
              args.seed, args.ae_lpips)
    if "latents" in stages:
        timed("latents_s", stage_latents, args.work, shards)
    if "unet" in stages:
        timed("unet_s", stage_unet, args.work, shards, args.unet_steps, args.batch, args.seed)
    if "export" in stages:
        stage_export(args.work, shards, args.out, args.seed)
        log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
