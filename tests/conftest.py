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
