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
from tqdm.auto import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import scenes  # noqa: E402

HELD_OUT = 10_000_000  # scene seeds from here on: never in the demo model's 0..32k training scenes
CACHE = HERE.parents[1] / "build" / "demo_model" / "classifier.pt"
HEADS = {"kind": 2, "time": len(scenes.TIMES), "terrain": len(scenes.TERRAINS),
         "material": len(scenes.MATERIALS), "lake": 2, "disc": 2}
SIDE = 64


class Classifier(nn.Module):
    """Four conv blocks (64 -> 4, widths 16 to 128: what 2 CPU cores train in minutes) and one linear
    head per attribute on a 128-wide feature."""

    def __init__(self):
        super().__init__()
        layers, width = [], 3
        for out in (16, 32, 64, 128):
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.trunk = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({name: nn.Linear(128, n) for name, n in HEADS.items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``images: [B, 3, H, W]`` in [-1, 1] (any size; read at 64²) -> ``[B, 128]``."""
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


def _small(seed_size: tuple[int, int]) -> tuple[np.ndarray, dict]:
    seed, size = seed_size
    image, _, found = scenes.example(seed)
    small = F.interpolate(to_tensor(image[None]), size=(size, size), mode="area")[0]
    return small.numpy(), {name: found[name] for name in HEADS}


def labelled(first: int, count: int, size: int = SIDE) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """``count`` generated scenes from seed ``first`` (rendered at 256, read at ``size``) and their labels;
    drawn by two processes (the generator is pure numpy, one scene at a time), in seed order."""
    import multiprocessing

    jobs = [(seed, size) for seed in range(first, first + count)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        made = list(tqdm(pool.imap(_small, jobs, chunksize=64), total=count, desc="scenes", leave=False,
                         disable=count < 500))
    labels = {name: np.asarray([found[name] for _, found in made]) for name in HEADS}
    return torch.from_numpy(np.stack([image for image, _ in made])), labels


def masked_loss(logits: dict, labels: dict) -> torch.Tensor:
    """Cross-entropy of every head where its label applies (-1: the scene has no such attribute)."""
    total = 0
    for name, out in logits.items():
        target = torch.as_tensor(labels[name])
        keep = target >= 0
        if keep.any():
            total = total + F.cross_entropy(out[keep], target[keep])
    return total


def training_data(count: int) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The classifier's training scenes, drawn once and cached beside it (drawing is most of the cost)."""
    path = CACHE.with_name(f"classifier_data_{count}.pt")
    if path.exists():
        saved = torch.load(path, weights_only=False)
        return saved["images"], saved["labels"]
    images, labels = labelled(HELD_OUT, count)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"images": images.half(), "labels": labels}, path)
    return images.half(), labels


def train(count: int = 12_000, steps: int = 2000, batch_size: int = 64, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    images, labels = training_data(count)
    model = Classifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    for step in tqdm(range(steps), desc="classifier", mininterval=10):
        for group in opt.param_groups:
            group["lr"] = 2e-3 * 0.5 * (1 + np.cos(np.pi * step / steps))
        index = torch.randint(count, (batch_size,), generator=generator)
        batch = images[index].float()
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


def _disc_example(seed: int) -> tuple[np.ndarray, np.ndarray]:
    scene = scenes.sample_scene(seed)
    image = F.interpolate(to_tensor(scenes.render(scene)[None]), size=DISC_SIDE, mode="area")[0]
    mask = torch.from_numpy(scenes.disc_mask(scene).astype(np.float32))[None, None]
    return image.numpy(), (F.interpolate(mask, size=DISC_SIDE, mode="area")[0, 0] > 0.5).numpy()


def disc_data(first: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` scenes at 128² and their disc masks (drawn by two processes, in seed order)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        made = list(tqdm(pool.imap(_disc_example, range(first, first + count), chunksize=64), total=count,
                         desc="disc scenes", leave=False))
    return (torch.from_numpy(np.stack([image for image, _ in made])),
            torch.from_numpy(np.stack([mask for _, mask in made])).float())


def disc_crops(images: torch.Tensor, masks: torch.Tensor, index: torch.Tensor, generator: torch.Generator,
               side: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``side``² crops of ``images[index]`` and their masks, half of them centred near a disc pixel
    (discs are rare in random crops: a few hundred pixels of 16384); the finder is convolutional,
    so crops teach it what whole frames would, at a quarter of the cost."""
    out_images, out_masks = [], []
    h, w = images.shape[-2:]
    for i in index.tolist():
        on = masks[i].nonzero()
        if len(on) and torch.rand((), generator=generator) < 0.5:
            cy, cx = on[torch.randint(len(on), (), generator=generator)].tolist()
            top = min(max(cy - side // 2 + int(torch.randint(-16, 17, (), generator=generator)), 0), h - side)
            left = min(max(cx - side // 2 + int(torch.randint(-16, 17, (), generator=generator)), 0), w - side)
        else:
            top = int(torch.randint(h - side + 1, (), generator=generator))
            left = int(torch.randint(w - side + 1, (), generator=generator))
        out_images.append(images[i, :, top:top + side, left:left + side])
        out_masks.append(masks[i, top:top + side, left:left + side])
    return torch.stack(out_images), torch.stack(out_masks)


def load_disc_finder(count: int = 4000, steps: int = 1500, batch_size: int = 32, seed: int = 0) -> DiscFinder:
    model = DiscFinder()
    if DISC_CACHE.exists():
        model.load_state_dict(torch.load(DISC_CACHE, weights_only=True))
        return model.eval()
    torch.manual_seed(seed)
    images, masks = disc_data(HELD_OUT + 500_000, count)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    weight = torch.tensor(20.0)  # discs are a few hundred pixels of 16384
    for step in tqdm(range(steps), desc="disc finder", mininterval=10):
        for group in opt.param_groups:
            group["lr"] = 2e-3 * 0.5 * (1 + np.cos(np.pi * step / steps))
        index = torch.randint(count, (batch_size,), generator=generator)
        crops, crop_masks = disc_crops(images, masks, index, generator)
        loss = F.binary_cross_entropy_with_logits(model(crops), crop_masks, pos_weight=weight)
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


if __name__ == "__main__":  # train both once (cached), and say how well the classifier reads held-out scenes
    import time

    clock = time.perf_counter()
    classifier = load_classifier()
    print(f"classifier ready in {time.perf_counter() - clock:.0f} s")
    clock = time.perf_counter()
    load_disc_finder()
    print(f"disc finder ready in {time.perf_counter() - clock:.0f} s")
    held, truth = labelled(HELD_OUT + 100_000, 2000)
    print("held-out accuracy:", {k: round(v, 3) for k, v in accuracy(classifier, held, truth).items()})
