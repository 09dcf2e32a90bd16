import os
import sys
from pathlib import Path

import pytest
import torch

# The checkout's root: tests share helpers with benchmarks/ and scripts/ (not part of the package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncframe.config import resolve  # noqa: E402
from syncframe.pipeline import load_denoiser  # noqa: E402

# Small but real: 768x512 canvas -> 5 windows at stride 8 (more at other strides).
SMALL = ["model=tiny", "width=768", "height=512", "steps=4", "progress=false"]


@pytest.fixture(scope="session")
def tiny_denoiser():
    torch.manual_seed(0)
    return load_denoiser(resolve(SMALL))


@pytest.fixture
def small_cfg():
    def make(*overrides):
        return resolve([*SMALL, *overrides])

    return make


class SmoothUNet(torch.nn.Module):
    """A stand-in UNet with spatial structure: ε = x − blur(x) pulls every window towards a
    smooth field, so continuity across a seam is measurable (random weights give white noise)."""

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.register_buffer("kernel", torch.ones(4, 1, 9, 9) / 81)

    def forward(self, x, t, encoder_hidden_states, **unused):
        from types import SimpleNamespace

        blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (4,) * 4, mode="replicate"),
                                             self.kernel, groups=4)
        return SimpleNamespace(sample=x - blurred)


@pytest.fixture(scope="session")
def smooth_denoiser(tiny_denoiser):
    from syncframe.models.unet import UNetDenoiser

    d = tiny_denoiser
    return UNetDenoiser.from_components(SmoothUNet(d.unet.config), d.vae, d.pipe.text_encoder, d.pipe.tokenizer,
                                        d.scheduler, guidance=1.0)


TWINS = ["tiny", "tiny-sdxl", "tiny-sd3", "tiny-flux"]


@pytest.fixture(scope="session")
def twins():
    """The offline twin of every family, loaded once."""
    return {name: load_denoiser(resolve([f"model={name}"])) for name in TWINS}


def need_weight(relative: str, what: str) -> Path:
    """The path of a small real weight under ``../shared/weights`` (or ``$SYNCFRAME_WEIGHTS``), or
    skip the test; with SYNCFRAME_REQUIRE_WEIGHTS=1 (CI sets it where the weights are) a missing
    weight fails instead, so a broken path cannot pass as a skip."""
    from syncframe.weights import find_weight

    path = find_weight(relative)
    if path is None:
        reason = f"{what} ({relative} under ../shared/weights or $SYNCFRAME_WEIGHTS) not present"
        if os.environ.get("SYNCFRAME_REQUIRE_WEIGHTS") == "1":
            pytest.fail(f"SYNCFRAME_REQUIRE_WEIGHTS=1 but {reason}")
        pytest.skip(reason)
    return path


def need_gpu(what: str) -> None:
    """Skip a GPU-only test on a machine without CUDA; with SYNCFRAME_REQUIRE_GPU=1 (the GPU run,
    benchmarks/gpu.py) fail instead. GPU-only tests also carry ``@pytest.mark.gpu``."""
    if not torch.cuda.is_available():
        if os.environ.get("SYNCFRAME_REQUIRE_GPU") == "1":
            pytest.fail(f"SYNCFRAME_REQUIRE_GPU=1 but there is no CUDA GPU for {what}")
        pytest.skip(f"{what} needs a CUDA GPU")


def need_module(name: str, what: str):
    """``pytest.importorskip``, failing instead under SYNCFRAME_REQUIRE_GPU=1 for GPU extras."""
    try:
        return __import__(name, fromlist=["_"])
    except ImportError as exc:
        if os.environ.get("SYNCFRAME_REQUIRE_GPU") == "1":
            pytest.fail(f"SYNCFRAME_REQUIRE_GPU=1 but {what} is not installed ({exc})")
        pytest.skip(f"{what} is not installed ({exc})")
