import json

import pytest
import yaml
from PIL import Image

from syncframe.cli import main

FAST = ["app=panorama", "model=tiny", "width=640", "steps=2", "progress=false", "app.stride=32"]


def test_run_writes_image_config_and_run_json(tmp_path):
    out = tmp_path / "run"
    assert main(["run", *FAST, "prompt=a photo, with a comma", "sync=synctweedies", f"out={out}"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "panorama.png", "run.json"]
    assert Image.open(out / "panorama.png").size == (640, 512)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["prompt"] == "a photo, with a comma" and cfg["sync"]["name"] == "synctweedies"
    meta = json.loads((out / "run.json").read_text())
    assert meta["seed"] == 0 and meta["num_views"] == 2  # windows at 0 and 16 (flush)
    assert set(meta["timings_s"]) >= {"load", "encode", "sample", "finalize", "write"}
    assert meta["peak_memory"]["cpu_max_rss_mb"] > 0 and meta["versions"]["torch"]


def test_multirun_sweeps_the_product(tmp_path):
    out = tmp_path / "sweep"
    assert main(["run", "-m", *FAST, "seed=0,1", "sync=none,multidiffusion", f"out={out}"]) == 0
    runs = sorted(out.iterdir())
    assert [p.name for p in runs] == ["0", "1", "2", "3"]
    seen = {(c["seed"], c["sync"]["name"]) for c in (yaml.safe_load((p / "config.yaml").read_text()) for p in runs)}
    assert seen == {(0, "none"), (0, "multidiffusion"), (1, "none"), (1, "multidiffusion")}


@pytest.mark.parametrize("args, message", [
    (["app=nope"], "unknown app 'nope'; choose one of: mesh, panorama, panorama360"),
    (["sync=nope"], "unknown sync 'nope'"),
    (["width=1004"], "width=1004 is not a multiple of 8"),
    (["height=256"], "height=256 is smaller than one window"),
    (["steps=0"], "steps=0 must be a positive integer"),
    (["steps=many"], "steps='many': expected an integer"),
    (["app.stride=64"], "stride=64 must be in 1..63"),
    (["colour=red"], "unknown config key 'colour'"),
    (["sync.weight=3"], "unknown config key 'sync.weight' for sync=multidiffusion"),
    (["sync=syncdiffusion", "sync.loss=mse"], "sync.loss='mse' is not one of"),
    (["eta=2"], "eta=2.0 must be in [0, 1]"),
    (["prompt"], "is not key=value"),
])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert main(["run", *FAST, f"out={out}", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("syncframe: error:") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_existing_output_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["run", *FAST, f"out={tmp_path}"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_help_lists_apps_syncs_and_options(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for word in ("panorama", "syncdiffusion", "synctweedies", "multidiffusion", "eps-averaging",
                 "canonical-x0", "weight=20.0", "stride=8", "tiny", "-m"):
        assert word in text


def test_python_api_has_the_same_power():
    import syncframe

    result = syncframe.generate(*FAST, sync={"name": "syncdiffusion", "weight": 5.0, "loss_resolution": 64}, seed=2)
    assert result.images["panorama.png"].size == (640, 512)
    assert result.config["sync"]["weight"] == 5.0 and result.metadata["seed"] == 2
    assert result.canonical.shape == (4, 64, 80)
