"""model=demo: the procedural data is deterministic, the model loads from the package with no network
and no weights from outside the repository, it follows its prompts (a night is darker than a day),
and a short training run from a fixed seed reproduces its recorded losses (CI never trains the model:
three steps of each stage on 64 scenes check that the recipe did not change)."""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "demo_model"))
import scenes  # noqa: E402

from syncframe.config import resolve  # noqa: E402
from syncframe.models.presets import DEMO  # noqa: E402
from syncframe.pipeline import generate_from_config, load_denoiser  # noqa: E402

RECORDED = ROOT / "tests" / "demo_short_run.json"


def test_the_generator_is_deterministic_and_its_captions_name_the_scene():
    for seed in (0, 7, 123):
        image, caption, labels = scenes.example(seed)
        again, caption_again, labels_again = scenes.example(seed)
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        assert np.array_equal(image, again) and caption == caption_again and labels == labels_again
    scene = scenes.Scene("landscape", 5, time="night", terrain="desert", disc=True, clouds=False)
    words = [scenes.caption(scene, seed=k) for k in range(40)]
    assert any("at night" in w for w in words) and any("the moon" in w for w in words)
    assert not any("the sun" in w for w in words)  # a night's disc is the moon
    assert all(any(t in w for t in ("a desert", "desert dunes", "a landscape")) for w in words)
    material = scenes.Scene("material", 9, material="wood")
    assert all("wood" in scenes.caption(material, seed=k) for k in range(10))
    night, day = (scenes.render(scenes.Scene("landscape", 3, time=t, terrain="sea")) for t in ("night", "day"))
    assert night[:85].mean() < 0.4 * day[:85].mean()  # the data's own night sky is dark


def test_the_demo_model_loads_from_the_package_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert (DEMO / "model_index.json").is_file() and DEMO.is_relative_to(ROOT / "syncframe")
    card = (DEMO / "README.md").read_text()
    for path in sorted(p for p in DEMO.rglob("*") if p.is_file() and p.name != "README.md"):
        assert hashlib.sha256(path.read_bytes()).hexdigest() in card, f"{path}: its sha256 is not in the card"
    assert sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file()) <= 10 * 1024 * 1024
    from syncframe.models.presets import model_spec

    cfg = resolve(["model=demo", "app=panorama"])
    spec = model_spec(cfg)
    assert (spec.family, spec.window, spec.window_px, spec.own_latents) == ("sd", 32, 256, True)
    denoiser = load_denoiser(cfg)
    assert type(denoiser.pipe).__name__ == "StableDiffusionPipeline"


@pytest.fixture(scope="module")
def demo_windows():
    """One 256² window per prompt and seed (sync=none), as images in [0, 1]."""
    cfg = resolve(["model=demo", "app=panorama", "width=256", "height=256", "sync=none"])
    denoiser = load_denoiser(cfg)
    out = {}
    for prompt in ("the sea at night", "the sea during the day"):
        images = []
        for seed in range(3):
            result = generate_from_config(resolve(["model=demo", "app=panorama", "width=256", "height=256",
                                                   "sync=none", f"seed={seed}", f"prompt={prompt}",
                                                   "progress=false"]), denoiser)
            images.append(np.asarray(result.images["panorama.png"], dtype=np.float32) / 255)
        out[prompt] = np.stack(images)
    return out


@pytest.mark.slow
def test_a_night_is_darker_than_a_day_in_its_top_third(demo_windows):
    night, day = demo_windows["the sea at night"], demo_windows["the sea during the day"]
    top = slice(0, 256 // 3)
    # Seed for seed, and on average by a margin. The model's nights are dim, not dark (0.53 against 0.63 on
    # this test's seeds, where the data's night skies are about a tenth of its days': docs/demo_model.md).
    nights, days = night[:, top].mean((1, 2, 3)), day[:, top].mean((1, 2, 3))
    assert (nights < days).all() and days.mean() - nights.mean() > 0.05, (nights, days)
    # and the day's sky is blue, as the data's: more blue than red in its top third
    assert day[:, top, :, 2].mean() > day[:, top, :, 0].mean()


@pytest.mark.slow
def test_a_short_training_run_reproduces_its_recorded_losses(tmp_path):
    import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the recorded losses were taken on one thread
    try:
        losses = train.short_run(tmp_path / "work", seed=0)
    finally:
        torch.set_num_threads(threads)
    recorded = json.loads(RECORDED.read_text())
    for stage in ("autoencoder", "unet"):
        assert np.allclose(losses[stage], recorded[stage], rtol=2e-3), (stage, losses[stage], recorded[stage])
