"""configs/: every file resolves and prepares (model=tiny in place of the weights), and the papers'
settings are what the papers say."""
from pathlib import Path

import pytest

from syncframe.config import overrides_from_file, resolve
from syncframe.pipeline import prepare

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def test_there_are_configs_for_every_method():
    names = {p.relative_to(ROOT / "configs").parts[0] for p in CONFIGS}
    assert {"syncdiffusion", "synctweedies", "stochsync", "spotdiffusion", "syncsde", "presets"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_each_config_resolves_and_prepares(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # their mesh= paths are relative to the checkout
    pairs = overrides_from_file(path)
    cfg = resolve([*pairs, ("model", "tiny"), *([("controlnet", "tiny")] if dict(pairs).get("controlnet") else [])])
    prepared = prepare(cfg)
    app = dict(pairs)["app"]
    assert prepared.cfg["app"]["name"] == (app if isinstance(app, str) else app["name"])


def test_syncdiffusion_is_the_papers_setting():
    cfg = resolve(overrides_from_file(ROOT / "configs" / "syncdiffusion" / "panorama.yaml"))
    assert cfg["model"]["name"] == "sd2-base" and (cfg["width"], cfg["height"]) == (3072, 512)
    assert cfg["app"]["stride"] == 8 and cfg["steps"] == 50 and cfg["sampler"]["name"] == "ddim"
    sync = cfg["sync"]
    assert (sync["name"], sync["weight"], sync["decay"], sync["freq"], sync["loss"]) == (
        "syncdiffusion", 20, 0.95, 1, "lpips-vgg")
