import csv
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
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    names = ["seed=0,sync=none", "seed=0,sync=multidiffusion", "seed=1,sync=none", "seed=1,sync=multidiffusion"]
    assert sorted(p.name for p in runs) == sorted(names)  # named by what varies, as Hydra's override_dirname
    seen = {(c["seed"], c["sync"]["name"]) for c in (yaml.safe_load((p / "config.yaml").read_text()) for p in runs)}
    assert seen == {(0, "none"), (0, "multidiffusion"), (1, "none"), (1, "multidiffusion")}
    index = list(csv.DictReader((out / "multirun.csv").open()))
    assert [row["folder"] for row in index] == names
    for row in index:  # each row's overrides are the ones its folder's config was made from
        cfg = yaml.safe_load((out / row["folder"] / "config.yaml").read_text())
        assert f"seed={cfg['seed']}" in row["overrides"] and f"sync={cfg['sync']['name']}" in row["overrides"]


def test_existing_output_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["run", *FAST, f"out={tmp_path}"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_help_lists_apps_syncs_models_and_common_keys(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for word in ("panorama", "panorama360", "mesh", "syncdiffusion", "synctweedies", "multidiffusion", "eps-averaging",
                 "canonical-x0", "tiny", "gaussian-mixture", "-m", "--config"):
        assert word in text
    # every common key with its default, what it accepts and a description
    assert "  steps = null   [an integer in [1, 1000], or null]\n      denoising steps; null = the model family's" in text
    assert "  width = null   [an integer in [8, 1048576], or null]" in text


def test_run_help_shows_the_chosen_groups_options(capsys):
    assert main(["run", "app=mesh", "sync=syncdiffusion", "sync.weight=5", "--help"]) == 0
    text = capsys.readouterr().out
    assert "inputs of app=mesh" in text and "  mesh = null   [a path to a file, or null]" in text
    assert "  weight = 5.0  (default 20.0)   [a number in [0, 10000.0]]" in text  # this run's value
    assert "  cosine_power = 1.0   [a number in [0, 16]]" in text
    assert "  stride" not in text  # panorama's options are not the mesh app's


def test_version_and_python_dash_m(capsys):
    import subprocess
    import sys

    from syncframe import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"syncframe {__version__}"
    done = subprocess.run([sys.executable, "-m", "syncframe", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"syncframe {__version__}"


def test_python_api_has_the_same_power():
    import syncframe

    result = syncframe.generate(*FAST, sync={"name": "syncdiffusion", "weight": 5.0, "loss_resolution": 64}, seed=2)
    assert result.images["panorama.png"].size == (640, 512)
    assert result.config["sync"]["weight"] == 5.0 and result.metadata["seed"] == 2
    assert result.canonical.shape == (4, 64, 80)


def test_config_file_reproduces_a_run_bit_for_bit(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["run", *FAST, "sync=syncdiffusion", "seed=5", "prompt=a test, with: yaml", f"out={first}"]) == 0
    assert main(["run", "--config", str(first / "config.yaml"), f"out={second}"]) == 0
    assert (first / "panorama.png").read_bytes() == (second / "panorama.png").read_bytes()
    a, b = (yaml.safe_load((p / "config.yaml").read_text()) for p in (first, second))
    assert {**a, "out": None} == {**b, "out": None} and a["prompt"] == "a test, with: yaml"
    # later key=value override the file
    third = tmp_path / "third"
    assert main(["run", f"--config={first / 'config.yaml'}", "seed=6", f"out={third}"]) == 0
    assert yaml.safe_load((third / "config.yaml").read_text())["seed"] == 6
    assert (first / "panorama.png").read_bytes() != (third / "panorama.png").read_bytes()


def test_offline_without_the_model_is_one_line(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_HUB_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there: the hub is unreachable
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache
    done = subprocess.run([sys.executable, "-m", "syncframe", "run", "prompt=hi"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and "model=stabilityai/stable-diffusion-2-base is not in the local Hugging Face cache" in line
    assert "127.0.0.1 cannot be reached" in line and "model=tiny" in line and "HF_HUB_OFFLINE=1" in line
    assert list(tmp_path.iterdir()) == [tmp_path / "hf"] or list(tmp_path.iterdir()) == []


def test_syncdiffusion_settles_auto_by_device_and_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *FAST, "sync=syncdiffusion", f"out={out}"]) == 0
    meta = json.loads((out / "run.json").read_text())
    assert {"sync.loss": "lpips-alex", "sync.loss_resolution": 128}.items() <= meta["resolved"].items()  # CPU
    assert any("sync=syncdiffusion on a CPU" in n for n in meta["notes"])
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["sync"]["loss"] == "lpips-alex" and saved["sync"]["loss_resolution"] == 128  # what ran
    assert saved["steps"] == 2 and saved["guidance"] == 7.5 and saved["sampler"] == {"name": "ddim", "eta": 0.0}


def test_an_unreachable_hub_is_asked_once_not_retried(monkeypatch, tmp_path):
    """The hub client's own retries took ~28 s; locate() asks the hub's host once, with a timeout,
    and never calls the hub client's download when that fails."""
    import socket

    import huggingface_hub

    from syncframe.errors import ConfigError
    from syncframe.models import hub

    attempts = []

    def refuse(address, timeout=None):
        attempts.append((address, timeout))
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(ConfigError, match="cannot be reached"):
        hub.locate("someone/some-model", "model")
    assert len(attempts) == 1 and attempts[0][1] == hub.PROBE_TIMEOUT_S


def test_sweep_folders_are_named_by_what_varies():
    from syncframe.launchers import sweep_folder_names

    jobs = [["seed=0", "mesh=assets/a b.obj", "steps=2"], ["seed=0", "mesh=/x/y/a b.obj", "steps=2"],
            ["seed=1", "mesh=assets/c.obj", "steps=2"]]
    assert sweep_folder_names(jobs) == ["seed=0,mesh=a_b.obj", "seed=0,mesh=a_b.obj-2", "seed=1,mesh=c.obj"]
    assert sweep_folder_names([["prompt=../../etc"], ["prompt=.x"]]) == ["prompt=etc", "prompt=.x"]  # never a path
    assert sweep_folder_names([["prompt=" + "a" * 500], ["prompt=" + "a" * 499]]) == ["prompt=" + "a" * 113,
                                                                                       "prompt=" + "a" * 113 + "-2"]
