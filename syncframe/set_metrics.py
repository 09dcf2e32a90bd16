"""Metrics of a set of images against a reference set (SyncDiffusion's protocol, docs/design.md):
FID and KID (torchmetrics' implementations, on features we extract once), KNN-GIQA and CLIP-S
(equal to torchmetrics' ``CLIPScore``), with the crops and perspective views they are measured on.

Features are ``[N, D]`` float tensors from a feature network that takes ``[N, 3, H, W]`` uint8
images: Inception-v3 pool3 (``features=inception``, the papers'; torch-fidelity's network, as
torchmetrics uses it), a CLIP image tower (``features=clip``, clean-fid's CLIP-FID variant) or,
offline, the LPIPS VGG trunk (``features=vgg``: comparable among runs, not with the papers).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from .errors import ConfigError
from .images import from_pil

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"  # torch-fidelity's name for the FID Inception weights


def random_crop(image: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """``image: [3, H, W]`` -> one ``[3, size, size]`` crop at a random place (its height resized
    to ``size`` first when it is smaller or a single row of windows is meant: H != size)."""
    from .metrics import to_height

    image = to_height(image, size)
    left = int(torch.randint(0, image.shape[2] - size + 1, (1,), generator=generator))
    return image[:, :, left:left + size]


def perspective_views(equirect: torch.Tensor, yaws: list[float], size: int, pitch: float = 0.0,
                      fov: float = 60.0) -> torch.Tensor:
    """``equirect: [3, H, 2H]`` -> ``[len(yaws), 3, size, size]`` pinhole views (bilinear), the
    360° analogue of a panorama's windows: six 60° views at yaw 0, 60, ... tile the horizon."""
    from .spaces.equirect import Camera, EquirectSpace

    space = EquirectSpace(equirect.shape[1], equirect.shape[2], [Camera(y, pitch, fov) for y in yaws], size,
                          channels=3, mode="bilinear")
    return space.project(equirect.float())


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` in [-1, 1] -> uint8 in [0, 255] (what the feature networks take)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class Passthrough(nn.Module):
    """Features given to torchmetrics' FID/KID as their "images": the metric's own feature
    network is this identity, so its statistics run on features extracted (once) elsewhere."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to ``real: [N, D]`` and ``fake: [M, D]``
    (torchmetrics' ``FrechetInceptionDistance``)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=Passthrough(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (cubic polynomial kernel MMD², unbiased), mean and sd over
    ``subsets`` random subsets of ``min(subset_size, N, M)`` features (torchmetrics')."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError("KID needs at least two images in each set")
    metric = KernelInceptionDistance(feature=Passthrough(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):  # its subsets come from the global generator
        torch.manual_seed(seed)
        mean, sd = metric.compute()
    return float(mean), float(sd)


def knn_giqa(fake: torch.Tensor, real: torch.Tensor, k: int = 8) -> torch.Tensor:
    """KNN-GIQA (Gu et al., ECCV 2020), per image of ``fake: [M, D]``: the sum of the reciprocal L1
    distances to its ``k`` nearest features of ``real: [N, D]`` (the official scorer's sum; higher
    is closer to the reference set). -> ``[M]``."""
    distances = torch.cdist(fake.double(), real.double(), p=1)
    nearest = distances.topk(min(k, real.shape[0]), dim=1, largest=False).values
    return (1.0 / nearest.clamp_min(1e-12)).sum(dim=1)


class InceptionFeatures(nn.Module):
    """Inception-v3 pool3 features ``[N, 2048]`` of uint8 images, torch-fidelity's FID network as
    torchmetrics builds it, from a local weights file (``metrics.inception=``) or its download."""

    def __init__(self, weights: str | None = None):
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
            self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                          feature_extractor_weights_path=weights)
        except (ModuleNotFoundError, ImportError) as exc:
            raise ConfigError("FID, KID and GIQA on Inception features need torch-fidelity: pip install "
                              "'syncframe[fid]' (it brings torchvision: a GPU machine's install), or use "
                              "metrics.features=clip with metrics.clip=<CLIP folder>") from exc
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"the Inception weights could not be loaded ({str(exc).splitlines()[0][:120]}); "
                              f"offline, put {INCEPTION_FILE} somewhere and pass metrics.inception=<that file>") \
                from exc
        self.num_features = 2048

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).reshape(len(images), -1)


class VggFeatures(nn.Module):
    """VGG-16 features ``[N, 512]`` (the LPIPS trunk's last block, averaged over the image) of uint8
    images: ``features=vgg``, a stand-in that runs offline from ../shared/weights' LPIPS VGG. Its
    FID/KID/GIQA compare runs among themselves, never with the papers' Inception numbers."""

    def __init__(self, weights: str | None = None):
        super().__init__()
        from .models.perceptual import load_lpips

        self.lpips = load_lpips("vgg", weights, allow_random=False).eval()
        self.num_features = 512

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.lpips.features(images.float() / 127.5 - 1)[-1].mean(dim=(2, 3))


def load_clip(path: str):
    """``(CLIPModel, CLIPProcessor)`` from a diffusers/transformers folder or hub id."""
    from transformers import CLIPModel, CLIPProcessor

    try:
        return CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"metrics.clip={path}: not a CLIP model folder or hub id ({str(exc).splitlines()[0][:100]}); "
                          "give one such as openai/clip-vit-base-patch16 or a local copy of it") from exc


def embeddings(output) -> torch.Tensor:
    """transformers 5 returns CLIP's projected embeddings as a ``pooler_output``; 4.x as a tensor."""
    return (output if isinstance(output, torch.Tensor) else output.pooler_output).float()


class ClipFeatures(nn.Module):
    """CLIP image embeddings ``[N, D]`` of uint8 images (clean-fid's CLIP features for FID/KID)."""

    def __init__(self, model, processor):
        super().__init__()
        self.model, self.processor = model, processor
        self.num_features = model.config.projection_dim

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        return embeddings(self.model.get_image_features(pixel_values=pixels))


class ClipScore:
    """CLIP-S as SyncDiffusion reports it (Hessel et al. 2021, torchmetrics' ``CLIPScore``):
    100 · max(cos, 0) between the image's and the prompt's CLIP embeddings, per image. Computed
    here because torchmetrics 1.9 reads the embeddings as tensors, which transformers 5 no longer
    returns; tests/test_eval.py checks it equals torchmetrics' on the same weights."""

    def __init__(self, model, processor):
        self.model, self.processor = model, processor

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, prompt: str) -> float:
        """``image: [3, H, W]`` uint8."""
        pixels = self.processor(images=[image], return_tensors="pt")["pixel_values"]
        text = self.processor(text=[prompt], return_tensors="pt", padding=True, truncation=True,
                              max_length=self.model.config.text_config.max_position_embeddings)
        seen = embeddings(self.model.get_image_features(pixel_values=pixels))
        said = embeddings(self.model.get_text_features(input_ids=text["input_ids"],
                                                       attention_mask=text["attention_mask"]))
        cos = torch.nn.functional.cosine_similarity(seen, said, dim=-1)
        return float(100 * cos.clamp_min(0))


def features_of(net: nn.Module, images: list[torch.Tensor], batch: int = 16) -> torch.Tensor:
    """uint8 ``[3, s, s]`` images -> ``[N, D]`` features, ``batch`` at a time."""
    out = [net(torch.stack(images[i:i + batch])) for i in range(0, len(images), batch)]
    return torch.cat(out).float() if out else torch.zeros(0, getattr(net, "num_features", 1))


def reference_images(folder: Path) -> list[Path]:
    """The images of a reference folder (any depth): PNG/JPEG files."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def make_reference(items: list, folder: Path, count: int, size: int, progress: bool = True,
                   denoiser=None) -> list[Path]:
    """SyncDiffusion's reference set: ``count`` single-window generations (the model's window,
    512² for SD) of the runs' model, sampler, steps, guidance and prompts (spread evenly over the
    prompts; measured on ``size``² crops like the runs), into ``folder``
    as ``<prompt index>_<seed>.png``; images already there are kept (a stopped make resumes)."""
    from .config import overrides_from_file, resolve
    from .models.presets import model_spec
    from .pipeline import generate_from_config, load_denoiser

    kept = ("model", "sampler", "prompt", "negative_prompt", "guidance", "steps", "dtype", "device")
    settings: dict[str, list] = {}
    for item in items:
        if item.folder is None:
            continue
        pairs = [(k, v) for k, v in overrides_from_file(item.folder / "config.yaml")
                 if k.partition(".")[0] in kept and v is not None]
        settings.setdefault(json.dumps(pairs, default=str, sort_keys=True), pairs)
    if not settings:
        raise ConfigError("reference.make needs run folders (config.yaml) under runs= to know the model and prompts")
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    jobs = [(j, seed) for seed in range(-(-count // len(settings))) for j in range(len(settings))][:count]
    loaded = {}
    for j, seed in tqdm(jobs, desc="reference", disable=not progress):
        path = folder / f"{j:02d}_{seed:05d}.png"
        if not path.is_file():
            pairs = list(settings.values())[j]
            cfg = resolve(["app=panorama", *pairs, "sync=none", f"seed={seed}", "progress=false"])
            window = model_spec(cfg).window_px  # one window of the model: a plain generation
            cfg = resolve(["app=panorama", *pairs, f"width={window}", f"height={window}", "sync=none",
                           f"seed={seed}", "progress=false"])
            key = json.dumps(cfg["model"], default=str, sort_keys=True)
            if denoiser is None and key not in loaded:
                loaded.clear()  # one model in memory at a time
                loaded[key] = load_denoiser(cfg)
            image = generate_from_config(cfg, denoiser or loaded[key]).images["panorama.png"]
            partial = path.with_suffix(".partial.png")
            image.save(partial)
            partial.replace(path)  # never a half-written reference image
        made.append(path)
    return made


def set_metrics(rows: list[dict], crops_by_row: list[torch.Tensor], groups: dict[tuple, list[int]],
                names: list[str], opts, size: int, progress: bool,
                net: torch.nn.Module | None = None,
                lpips_weights: str | None = None) -> tuple[list[dict], dict, list[str]]:
    """Per row: GIQA and CLIP-S of its crops ``[k, 3, s, s]`` (one for an image; a mesh's or
    splats' held-out renders: their mean); per group: FID and KID of all its crops against the
    reference set's, on ``net``'s features (default: ``opts.features``). Returns
    ``(per row {metric: value}, {group: {metric: (value, sd)}}, problems)``."""
    problems, per_group, per_row = [], {}, [{} for _ in rows]
    model = processor = None
    if opts.metrics.clip:
        model, processor = load_clip(opts.metrics.clip)
    if "clip_score" in names:
        score = ClipScore(model, processor)
        for row, crops, found in zip(rows, crops_by_row, per_row):
            found["clip_score"] = statistics.mean(score(c, row["prompt"]) for c in to_uint8(crops)) \
                if row.get("prompt") else None
    if not {"fid", "kid", "giqa"} & set(names):
        return per_row, per_group, problems
    if net is None:
        net = {"clip": lambda: ClipFeatures(model, processor), "vgg": lambda: VggFeatures(lpips_weights),
               "inception": lambda: InceptionFeatures(opts.metrics.inception)}[opts.metrics.features]()
    generator = torch.Generator().manual_seed(opts.seed + 1)
    reference = []
    for path in tqdm(reference_images(Path(opts.reference.folder)), desc="reference crops", disable=not progress):
        try:
            reference.append(to_uint8(random_crop(from_pil(Image.open(path).convert("RGB")), size, generator)[None])[0])
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {exc}")
    if len(reference) < 2:
        raise ConfigError(f"reference={opts.reference.folder}: {len(reference)} readable image(s); FID, KID and GIQA need "
                          "at least two (the papers use 500: reference.make=500)")
    real = features_of(net, reference)
    fake = features_of(net, [c for crops in crops_by_row for c in to_uint8(crops)])
    owner = torch.tensor([i for i, crops in enumerate(crops_by_row) for _ in range(len(crops))])
    if "giqa" in names:
        scores = knn_giqa(fake, real, opts.metrics.k)
        for i, found in enumerate(per_row):
            found["giqa"] = scores[owner == i].mean().item()
    for values, rows_of_group in groups.items():
        entry = per_group[values] = {}
        members = torch.isin(owner, torch.tensor(rows_of_group)).nonzero().flatten()
        if len(members) < 2:
            problems.append(f"group {values}: one image; FID and KID need at least two")
            continue
        if "fid" in names:
            entry["fid"] = (fid(real, fake[members]), 0.0)
        if "kid" in names:
            entry["kid"] = kid(real, fake[members], seed=opts.seed)
    return per_row, per_group, problems
