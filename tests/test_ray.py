"""Many runs over a cluster: a sweep on a real local Ray cluster (launcher=ray) gives the local
launcher's images and multirun.csv; a run that fails is reported and the others finish; sweeps
over files (glob:)."""
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from syncframe.cli import main

ray = pytest.importorskip("ray", reason="Ray is the optional extra launcher=ray uses (pip install -e '.[ray]')")
ASSETS = Path(__file__).resolve().parents[1] / "assets"
SWEEP = ["run", "-m", "model=tiny", "steps=2", "height=512", "progress=false", "seed=0,1", "width=512,768"]


def index(folder: Path) -> list[dict]:
    return list(csv.DictReader((folder / "multirun.csv").open()))


def test_a_sweep_on_ray_equals_the_local_launcher(tmp_path):
    assert main([*SWEEP, f"out={tmp_path / 'local'}"]) == 0
    assert main([*SWEEP, f"out={tmp_path / 'ray'}", "launcher=ray", "launcher.cluster_cpus=2"]) == 0
    local, remote = index(tmp_path / "local"), index(tmp_path / "ray")
    assert list(local[0]) == list(remote[0])  # the same columns, in the same order
    def same(row):  # all but where it was written
        return row["folder"], row["overrides"].split(" out=")[0], row["status"]

    assert [same(r) for r in local] == [same(r) for r in remote]
    assert all(r["status"] == "ok" for r in remote) and len(remote) == 4
    for row in local:  # a Ray task runs torch on its one CPU: other summation orders, the same image to 1/255
        a, b = (np.asarray(Image.open(tmp_path / where / row["folder"] / "panorama.png")).astype(int)
                for where in ("local", "ray"))
        assert np.abs(a - b).max() <= 1, row


def test_a_failing_run_fails_alone_with_its_line_in_the_csv(tmp_path, capsys):
    code = main(["run", "-m", "model=tiny", "steps=1", "progress=false", "height=512", "width=512,1004",
                 f"out={tmp_path}", "launcher=ray", "launcher.cluster_cpus=2"])
    assert code == 1
    rows = index(tmp_path)
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert "width=1004 is not a multiple of 8" in rows[1]["error"] and (tmp_path / "width=512" / "panorama.png").is_file()
    assert not (tmp_path / "width=1004").exists()
    err = capsys.readouterr().err
    assert "1 of 2 runs of the sweep failed" in err and "Traceback" not in err


def test_a_sweep_over_files(tmp_path, monkeypatch):
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    for name in ("vase.obj", "figure.obj"):
        shutil.copy(ASSETS / name, meshes / name)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "-m", "app=mesh", "model=tiny", "steps=1", "progress=false", "app.viewer=false",
                 "app.views=[{elevation: 0, count: 2}]", "mesh=glob:meshes/*.obj", "out=textured"]) == 0
    overrides = [r["overrides"] for r in index(tmp_path / "textured")]
    assert [o.split("mesh=")[-1].split()[0] for o in overrides] == ["meshes/figure.obj", "meshes/vase.obj"]
    assert main(["run", "-m", "app=mesh", "mesh=glob:nowhere/*.obj", "out=none"]) == 2


def test_a_reservation_the_cluster_cannot_place_is_one_line(tmp_path, capsys):
    """Ray would queue a task asking for a GPU on a CPU cluster forever, in silence."""
    for key, value in (("launcher.num_gpus", "1"), ("launcher.num_cpus", "64")):
        code = main([*SWEEP, f"out={tmp_path / key}", "launcher=ray", "launcher.cluster_cpus=2", f"{key}={value}"])
        err = capsys.readouterr().err
        assert code == 2 and f"{key}={value}: each run asks for" in err and "the Ray cluster has" in err, err
        assert "Traceback" not in err and not (tmp_path / key).exists()


def test_an_address_where_nothing_answers_is_one_line_at_once(tmp_path, capsys):
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = time.monotonic()
    code = main([*SWEEP, f"out={tmp_path / 'x'}", "launcher=ray", f"launcher.address=127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and "nothing answers there" in err and time.monotonic() - clock < 30, err
