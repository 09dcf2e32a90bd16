"""A small attribute classifier of the procedural scenes, trained on the generator's labels (never on
the demo model's samples), and a sun/moon disc counter: what docs/benchmarks.md reads the demo
model's pictures with.

``load_classifier()`` trains it once (seeded, a few minutes on 2 cores) on scenes the demo model
never saw (seeds from ``HELD_OUT``) and caches it in ``build/demo_model/classifier.pt``. It reads
64x64 downsampled images: kind (landscape / material), time of day, terrain, material, lake, disc.
``features()`` (its penultimate layer) are what FID and KID are taken on.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import scenes  # noqa: E402

HELD_OUT = 10_000_000  # scene seeds from here on: never in the demo model's 0..32k training scenes
CACHE = HERE.parents[1] / "build" / "demo_model" / "classifier.pt"
HEADS = {"kind": 2, "time": len(scenes.TIMES), "terrain": len(scenes.TERRAINS),
         "material": len(scenes.MATERIALS), "lake": 2, "disc": 2}
SIDE = 64


class Classifier(nn.Module):
    """Four conv blocks (64 -> 4) and one linear head per attribute on a 256-wide feature."""

    def __init__(self):
        super().__init__()
        layers, width = [], 3
        for out in (32, 64, 128, 256):
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.trunk = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({name: nn.Linear(256, n) for name, n in HEADS.items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``images: [B, 3, H, W]`` in [-1, 1] (any size; read at 64²) -> ``[B, 256]``."""
        return self.trunk(F.interpolate(images.float(), size=(SIDE, SIDE), mode="area"))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(images)
        return {name: head(feats) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 256) -> dict[str, np.ndarray]:
        self.eval()
        parts = [self(images[i:i + batch]) for i in range(0, len(images), batch)]
        return {name: torch.cat([p[name] for p in parts]).argmax(-1).numpy() for name in HEADS}


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> ``[B, 3, H, W]`` in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def labelled(first: int, count: int, size: int = SIDE) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """``count`` generated scenes from seed ``first`` (rendered at 256, read at ``size``) and their labels."""
    images, labels = [], {name: [] for name in HEADS}
    for seed in range(first, first + count):
        image, _, found = scenes.example(seed)
        images.append(F.interpolate(to_tensor(image[None]), size=(size, size), mode="area")[0])
        for name in HEADS:
            labels[name].append(found[name])
    return torch.stack(images), {k: np.asarray(v) for k, v in labels.items()}


def masked_loss(logits: dict, labels: dict) -> torch.Tensor:
    """Cross-entropy of every head where its label applies (-1: the scene has no such attribute)."""
    total = 0
    for name, out in logits.items():
        target = torch.as_tensor(labels[name])
        keep = target >= 0
        if keep.any():
            total = total + F.cross_entropy(out[keep], target[keep])
    return total


def train(count: int = 12_000, steps: int = 3000, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    images, labels = labelled(HELD_OUT, count)
    model = Classifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 2e-3 * 0.5 * (1 + np.cos(np.pi * step / steps))
        index = torch.randint(count, (128,), generator=generator)
        batch = images[index]
        if torch.rand((), generator=generator) < 0.5:  # scenes are left-right symmetric in law
            batch = batch.flip(-1)
        loss = masked_loss(model(batch), {k: v[index.numpy()] for k, v in labels.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def load_classifier() -> Classifier:
    if CACHE.exists():
        model = Classifier()
        model.load_state_dict(torch.load(CACHE, weights_only=True))
        return model.eval()
    model = train()
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), CACHE)
    return model


def accuracy(model: Classifier, images: torch.Tensor, labels: dict) -> dict[str, float]:
    """Per attribute, the share of images (where it applies) the classifier reads right."""
    found = model.predict(images)
    return {name: float((found[name] == labels[name])[labels[name] >= 0].mean()) for name in HEADS}


# --- discs --------------------------------------------------------------------------------------

DISC_CACHE = CACHE.with_name("discs.pt")
DISC_SIDE = 128  # the disc finder reads images at this height


class DiscFinder(nn.Module):
    """Fully convolutional: each pixel's logit of being on a sun or moon disc, at any width (a whole
    panorama at once). Trained on the generator's own disc masks."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.Conv2d(24, 32, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=4, dilation=4), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=8, dilation=8),
            nn.ReLU(), nn.Conv2d(32, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)[:, 0]


def disc_data(first: int, count: int):
    images, masks = [], []
    for seed in range(first, first + count):
        scene = scenes.sample_scene(seed)
        images.append(F.interpolate(to_tensor(scenes.render(scene)[None]), size=DISC_SIDE, mode="area")[0])
        mask = torch.from_numpy(scenes.disc_mask(scene).astype(np.float32))[None, None]
        masks.append(F.interpolate(mask, size=DISC_SIDE, mode="area")[0, 0] > 0.5)
    return torch.stack(images), torch.stack(masks).float()


def load_disc_finder(count: int = 4000, steps: int = 2000, seed: int = 0) -> DiscFinder:
    model = DiscFinder()
    if DISC_CACHE.exists():
        model.load_state_dict(torch.load(DISC_CACHE, weights_only=True))
        return model.eval()
    torch.manual_seed(seed)
    images, masks = disc_data(HELD_OUT + 500_000, count)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    weight = torch.tensor(20.0)  # discs are a few hundred pixels of 16384
    for step in range(steps):
        index = torch.randint(count, (32,), generator=generator)
        loss = F.binary_cross_entropy_with_logits(model(images[index]), masks[index], pos_weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    DISC_CACHE.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), DISC_CACHE)
    return model.eval()


@torch.no_grad()
def count_discs(image: np.ndarray, finder: DiscFinder) -> int:
    """Sun or moon discs in ``image`` (uint8 ``[H, W, 3]``, any width): the finder's disc pixels, read
    at 128 px high, in connected pieces of a disc's size (more than 40 pixels: a radius above ~3.5%
    of the height; the generator's discs are 3–6%)."""
    from scipy import ndimage

    h, w = image.shape[:2]
    x = F.interpolate(to_tensor(image[None]), size=(DISC_SIDE, round(w * DISC_SIDE / h)), mode="area")
    mask = (finder(x)[0] > 0).numpy()
    labels, n = ndimage.label(mask)
    sizes = ndimage.sum(mask, labels, range(1, n + 1)) if n else []
    return int(sum(size > 40 for size in sizes))
