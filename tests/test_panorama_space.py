import pytest
import torch

from syncframe.errors import ConfigError
from syncframe.spaces.panorama import PanoramaSpace, window_starts


def test_last_window_is_flush_with_the_border():
    assert window_starts(100, 64, 16) == [0, 16, 32, 36]
    assert window_starts(96, 64, 8) == [0, 8, 16, 24, 32]
    space = PanoramaSpace(512, 3072, stride=16)
    assert space.windows[-1] == (0, 384 - 64)
    assert space.num_views == 21


@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("size", [(512, 768), (640, 1000), (512, 3072)])
def test_unproject_inverts_project(loop, size):
    space = PanoramaSpace(*size, stride=16, loop=loop)
    z = torch.randn(space.canonical_shape, dtype=torch.float64)
    assert torch.allclose(space.unproject(space.project(z)), z, atol=1e-12)


@pytest.mark.parametrize("loop", [False, True])
def test_adjoint_consistency(loop):
    space = PanoramaSpace(576, 1024, stride=24, loop=loop)
    z = torch.randn(space.canonical_shape, dtype=torch.float64)
    x = torch.randn(space.num_views, *space.view_shape, dtype=torch.float64)
    lhs = (space.project(z) * x).sum()
    rhs = (z * space.project_adjoint(x)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12)


def test_project_is_a_crop_and_loop_windows_wrap():
    space = PanoramaSpace(512, 1024, stride=32, loop=True)
    z = torch.arange(4 * 64 * 128, dtype=torch.float32).reshape(4, 64, 128)
    views = space.project(z)
    top, left = space.windows[1]
    assert torch.equal(views[1], z[:, top:top + 64, left:left + 64])
    # The last window starts at 96 and wraps: its right half is the canvas's left edge.
    assert space.windows[-1] == (0, 96)
    assert torch.equal(views[-1][:, :, 32:], z[:, :, :32])


def test_initial_noise_is_unit_variance_per_view():
    space = PanoramaSpace(512, 3072)
    _, x = space.sample_noise(torch.Generator().manual_seed(0))
    assert x.shape == (41, 4, 64, 64)
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1) < 0.01


@pytest.mark.parametrize("kwargs, message", [
    (dict(height=512, width=1004), "width=1004 is not a multiple of 8"),
    (dict(height=256, width=1024), "smaller than one window"),
    (dict(height=512, width=1024, stride=64), "stride=64"),
    (dict(height=512, width=1024, stride=0), "stride=0"),
])
def test_bad_sizes_are_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PanoramaSpace(**kwargs)


@pytest.mark.parametrize("loop", [False, True])
def test_unproject_is_the_plain_mean_of_the_windows_that_see_a_latent(loop):
    """MultiDiffusion's average (eq. 5), by hand: every canvas latent is the unweighted mean of the
    values the windows containing it give it, whatever the views hold (they disagree here)."""
    space = PanoramaSpace(512, 1024, stride=24, loop=loop)
    x = torch.randn(space.num_views, *space.view_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _, h, w = space.canonical_shape
    total = torch.zeros(space.canonical_shape, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    for view, (top, left) in zip(x, space.windows):
        cols = [(left + j) % w for j in range(space.window)]
        total[:, top:top + space.window, cols] += view
        count[top:top + space.window, cols] += 1
    assert count.min() >= 1
    assert torch.allclose(space.unproject(x), total / count, atol=1e-12)
    # and the fading option (the upscale's) really weights: it differs from the plain mean
    fading = PanoramaSpace(512, 1024, stride=24, loop=loop, weights="fading")
    assert not torch.allclose(fading.unproject(x), total / count, atol=1e-3)
