"""LPIPS with real weights against the reference values in ../shared/weights/README.md.

The photographs are scikit-image's bundled ``astronaut.png`` and ``coffee.png``; the README's
checks resize to 256², blur with σ=2 at full resolution, and shift by 8 pixels with zero fill.
"""
import numpy as np
import pytest
import torch

from syncframe.models.perceptual import LPIPS, load_lpips
from syncframe.weights import find_weight
from conftest import need_weight

skimage = pytest.importorskip("skimage", reason="scikit-image (test extra) provides the photographs")


def as_tensor(array):
    return torch.from_numpy(np.asarray(array, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]


def photo(name, blur=0.0):
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    image = np.asarray(Image.open(f"{skimage.data_dir}/{name}").convert("RGB")).astype(np.float64)
    if blur:
        image = np.clip(gaussian_filter(image, (blur, blur, 0)), 0, 255)
    return np.asarray(Image.fromarray(image.astype(np.uint8)).resize((256, 256), Image.BICUBIC))


def shifted(image, pixels=8):
    out = np.zeros_like(image)
    out[:, pixels:] = image[:, :-pixels]
    return out


@pytest.mark.parametrize("net, blur_ref, shift_ref", [("vgg", 0.12, 0.36), ("alex", 0.17, 0.19)])
def test_reference_values(net, blur_ref, shift_ref):
    path = need_weight(f"lpips/{net}.safetensors", f"LPIPS-{net} weights")
    model = load_lpips(net, path)
    astronaut = photo("astronaut.png")
    with torch.no_grad():
        same = model(as_tensor(astronaut), as_tensor(astronaut)).item()
        unrelated = model(as_tensor(astronaut), as_tensor(photo("coffee.png"))).item()
        blurred = model(as_tensor(astronaut), as_tensor(photo("astronaut.png", blur=2))).item()
        shift = model(as_tensor(astronaut), as_tensor(shifted(astronaut))).item()
    assert same == 0.0
    assert 0.71 - 0.01 <= unrelated <= 0.77 + 0.01
    assert abs(blurred - blur_ref) <= 0.01
    assert abs(shift - shift_ref) <= 0.01


def test_state_dict_keys_match_the_lpips_package_layout():
    keys = set(LPIPS("vgg").state_dict())
    assert "net.slice1.0.weight" in keys and "net.slice5.28.bias" in keys and "lin4.model.1.weight" in keys
    assert len([k for k in keys if k.startswith("net.")]) == 26  # 13 convs x (weight, bias)


def test_lpips_is_a_differentiable_distance():
    model = load_lpips("alex", allow_random=True) if find_weight("lpips/alex.safetensors") is None \
        else load_lpips("alex")
    a = torch.rand(2, 3, 64, 64) * 2 - 1
    b = (a + 0.3 * torch.randn_like(a)).clamp(-1, 1).requires_grad_(True)
    d = model(a, b)
    assert d.shape == (2,) and (d > 0).all()
    d.sum().backward()
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
