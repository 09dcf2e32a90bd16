"""LPIPS (AlexNet / VGG16, v0.1) and a Gram-matrix style loss, with no torchvision needed.

Module and parameter names follow the ``lpips`` package (``net.sliceK.N``, ``linJ.model.1``)
so its state dicts — and ``../shared/weights/lpips/*.safetensors`` — load unchanged.
Images are ``[B, 3, H, W]`` in [-1, 1].
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..messages import note
from ..weights import find_weight

# torchvision's VGG16 / AlexNet ``features`` layers, and where LPIPS cuts them into 5 slices.
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
VGG16_CUTS = (4, 9, 16, 23, 30)
ALEX_CUTS = (2, 5, 8, 10, 12)


def vgg16_layers() -> list[nn.Module]:
    layers, channels = [], 3
    for spec in VGG16:
        if spec == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, spec, 3, padding=1), nn.ReLU()]
            channels = spec
    return layers


def alexnet_layers() -> list[nn.Module]:
    return [nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU()]


class Trunk(nn.Module):
    """Feature trunk cut into ``slice1..slice5``; ``forward`` returns the five activations."""

    def __init__(self, net: str):
        super().__init__()
        layers, cuts = (vgg16_layers(), VGG16_CUTS) if net == "vgg" else (alexnet_layers(), ALEX_CUTS)
        start = 0
        for k, end in enumerate(cuts, 1):
            block = nn.Sequential()
            for i in range(start, end):
                block.add_module(str(i), layers[i])
            setattr(self, f"slice{k}", block)
            start = end
        self.channels = [m.out_channels for m in layers if isinstance(m, nn.Conv2d)]
        self.channels = [self.channels[i] for i in ((1, 3, 6, 9, 12) if net == "vgg" else (0, 1, 2, 3, 4))]

    def forward(self, x):
        feats = []
        for k in range(1, 6):
            x = getattr(self, f"slice{k}")(x)
            feats.append(x)
        return feats


class LinearHead(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """Learned perceptual distance; ``forward(a, b) -> [B]``."""

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in ("vgg", "alex"):
            raise ConfigError(f"LPIPS net {net!r} is not one of vgg, alex")
        self.net_name = net
        self.net = Trunk(net)
        for j, ch in enumerate(self.net.channels):
            setattr(self, f"lin{j}", LinearHead(ch))
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.net((image - self.shift) / self.scale)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features(a), self.features(b))

    def distance(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS ``[B]`` from the five activations of each side (``features``), so that many pairs
        of few images cost one trunk pass per image."""
        total = 0
        for j, (fa, fb) in enumerate(zip(feats_a, feats_b)):
            diff = (unit_normalize(fa) - unit_normalize(fb)) ** 2
            total = total + getattr(self, f"lin{j}").model(diff).mean(dim=(1, 2, 3))
        return total


class StyleLoss(nn.Module):
    """Σ over the five VGG slices of the squared Frobenius distance of Gram matrices."""

    def __init__(self, lpips_vgg: LPIPS):
        super().__init__()
        self.lpips = lpips_vgg

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.distance(self.lpips.features(a), self.lpips.features(b))

    @staticmethod
    def distance(feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> torch.Tensor:
        """The style distance ``[B]`` from the VGG activations of each side."""
        total = 0
        for fa, fb in zip(feats_a, feats_b):
            total = total + ((gram(fa) - gram(fb)) ** 2).sum(dim=(1, 2))
        return total


def unit_normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def gram(feat: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, C, C]``, normalised by C·H·W."""
    b, c, h, w = feat.shape
    flat = feat.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def read_lpips_state(path: Path, model: LPIPS, key: str) -> dict:
    """The state dict in ``path`` for ``model``, checked key by key and shape by shape; every way a
    file can be wrong (missing, a folder, not a tensor file, a pickle with code, other keys or
    shapes) is one ConfigError that says what a valid file is."""
    net = model.net_name
    valid = (f"a valid file is the lpips package's LPIPS(net='{net}').state_dict() (keys net.slice1.0.weight ... "
             "lin4.model.1.weight) saved with safetensors (.safetensors) or torch.save (.pth)")
    if not path.exists():
        raise ConfigError(f"{key}={path}: the LPIPS weights file does not exist; fix the path ({valid})")
    if not path.is_file():
        raise ConfigError(f"{key}={path} is a folder, not a weights file; {valid}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:  # weights_only: a pickle that would run code is refused, not run
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the outcome is what matters
                state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors' and pickle's errors have no common base
        if isinstance(exc, pickle.UnpicklingError):
            reason = "a pickle of Python objects, not of tensors alone: refused unread, as it could run code"
        else:
            words = " ".join(str(exc).split()) or type(exc).__name__
            reason = words if len(words) <= 160 else words[:160].rsplit(" ", 1)[0] + " ..."
        kind = "safetensors" if path.suffix == ".safetensors" else "a torch.save file"
        raise ConfigError(f"{key}={path} cannot be read as {kind} ({reason}); {valid}") from None
    expected = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{key}={path} holds {type(state).__name__}, not a state dict of tensors; {valid}")
    missing = [k for k in expected if k not in state]
    if missing:
        raise ConfigError(f"{key}={path} is not an LPIPS-{net} state dict: {len(missing)} of its {len(expected)} "
                          f"keys are missing (first: {missing[0]}); {valid}")
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise ConfigError(f"{key}={path}: {wrong[0]} has shape {tuple(state[wrong[0]].shape)}, LPIPS-{net} needs "
                          f"{tuple(expected[wrong[0]].shape)} (weights of another network?); {valid}")
    return {k: state[k] for k in expected}


def lpips_source(net: str = "vgg", weights: str | Path | None = None, allow_random: bool = False,
                 key: str = "sync.lpips_weights") -> Path | str:
    """Where LPIPS-``net``'s weights will come from, decided without loading them: ``weights`` (a
    ``.safetensors`` / ``.pth`` with the lpips package's keys; a safetensors file's keys are checked
    from its header), the ``lpips/{net}.safetensors`` of the local weights folder, ``"package"`` (the
    ``lpips`` package, where torchvision works), or ``"random"`` if ``allow_random``; else one error."""
    path = Path(weights) if weights else find_weight(f"lpips/{net}.safetensors")
    option, key = key, key if weights else "the LPIPS weights"
    if path is not None:
        check_lpips_file(path, LPIPS(net), key)
        return path
    try:
        import lpips  # noqa: F401  (needs a working torchvision; downloads the ImageNet trunk)
        return "package"
    except Exception as exc:  # ImportError, or torchvision present but unusable
        reason = f"{type(exc).__name__}: {exc}"
    if not allow_random:
        raise ConfigError(f"no LPIPS-{net} weights found ({reason}). Fix: pass {option}=<file with "
                          "the lpips package's state dict>, set SYNCFRAME_WEIGHTS to a folder holding "
                          f"lpips/{net}.safetensors, or pip install lpips torchvision")
    note(f"no LPIPS-{net} weights were found, so SyncDiffusion's loss uses random LPIPS weights (allowed for "
         "the offline models only; see the README to install real ones)")
    return "random"


def check_lpips_file(path: Path, model: "LPIPS", key: str) -> None:
    """:func:`read_lpips_state`'s checks without loading a safetensors file's tensors (its header names
    every key of ``model`` with its shape); another file (a torch.save pickle, read with weights_only)
    is read whole: it cannot be checked otherwise, and it is small."""
    if not path.exists() or not path.is_file() or path.suffix != ".safetensors":
        read_lpips_state(path, model, key)  # raises the one-line error, if any
        return
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except Exception:
        read_lpips_state(path, model, key)  # the same reading error, said once
        return
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if any(shapes.get(k) != shape for k, shape in expected.items()):
        read_lpips_state(path, model, key)  # says which key is missing or of which shape


def load_lpips(net: str = "vgg", weights: str | Path | None = None, allow_random: bool = False,
               key: str = "sync.lpips_weights") -> LPIPS:
    """LPIPS with real weights from a file, from torchvision + the ``lpips`` package, or random
    (:func:`lpips_source` says which; ``key``: the option that names the file, for its messages)."""
    return lpips_from(net, lpips_source(net, weights, allow_random, key))


def lpips_from(net: str, source: Path | str) -> LPIPS:
    """LPIPS-``net`` with its weights from ``source`` (a :func:`lpips_source`)."""
    model = LPIPS(net)
    if isinstance(source, Path):
        key = "the LPIPS weights" if source == find_weight(f"lpips/{net}.safetensors") else "sync.lpips_weights"
        model.load_state_dict(read_lpips_state(source, model, key))
        return model
    if source == "package":
        import lpips

        model.load_state_dict(lpips.LPIPS(net=net, verbose=False).state_dict(), strict=False)
        return model
    with torch.random.fork_rng(devices=[]):  # random, with positive heads: a loss that still measures something
        torch.manual_seed(0)
        random_model = LPIPS(net)
        for j in range(5):
            getattr(random_model, f"lin{j}").model[1].weight.data.abs_()
    return random_model
