"""One canvas over two processes (torchrun, gloo, CPU): the result equals the one-process run, for
every app and the three methods; a rank killed mid-run takes the others down cleanly."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from syncframe.config import resolve
from syncframe.pipeline import generate_from_config

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
# Cross-view attention needs every view in one process: a distributed run leaves it off (auto), so
# the one-process references do too.
BASE = ["model=tiny", "steps=3", "progress=false", "seed=4"]
SYNCTWEEDIES = ["sync=synctweedies", "sync.cross_view=none"]
SYNCDIFFUSION = ["sync=syncdiffusion", "sync.loss_resolution=64", "sync.grad_through_unet=false", "sync.weight=5"]
APPS = {
    "panorama": ["app=panorama", "width=1024", "height=512", "app.stride=16"],
    "panorama360": ["app=panorama360", "width=256", "height=128", "app.viewer=false",
                    "app.rings=[{pitch: 0, count: 4, fov: 90}, {pitch: 90, count: 1, fov: 90}]"],
    "mesh": ["app=mesh", f"mesh={ASSETS / 'vase.obj'}", "app.viewer=false", "app.heldout_views=0", "width=256", "height=256",
             "app.views=[{elevation: 0, count: 4}]"],
    "splats": ["app=splats", f"splats={ASSETS / 'vase_splats.ply'}", "width=128", "height=128", "app.viewer=false",
               "app.views=[{elevation: 0, count: 3}]", "app.novel_views=0"],
}
SYNCS = {"multidiffusion": ["sync=multidiffusion"], "synctweedies": SYNCTWEEDIES, "syncdiffusion": SYNCDIFFUSION}
CASES = {f"{app}-{sync}": [*BASE, *args, *extra] for app, args in APPS.items() for sync, extra in SYNCS.items()}
CASES["panorama-regions-syncdiffusion"] = [*BASE, *APPS["panorama"], *SYNCDIFFUSION, f"regions={ASSETS / 'layout.yaml'}"]
CASES["splats-lsq-synctweedies"] = [*BASE, *APPS["splats"], *SYNCTWEEDIES, "app.unproject=lsq"]
CASES["panorama-spotdiffusion"] = [*BASE, *APPS["panorama"], "sync=spotdiffusion", "sync.blend_steps=1"]
# SyncSDE reads other views' x_t through the space's fits (view_sum): each rank's share, all-reduced
CASES["panorama-syncsde"] = [*BASE, *APPS["panorama"], "sync=syncsde"]
CASES["mesh-syncsde"] = [*BASE, *APPS["mesh"], "sync=syncsde"]
CASES["panorama360-stochsync"] = [*BASE, *APPS["panorama360"], "sync=stochsync", "sync.warmup=1", "sync.seam_removal=1",
                                  "sync.ode_steps=3", "sync.seam_ode_steps=3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={free_port()}", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    process = torchrun(str(ROOT / "tests" / "dist_worker.py"), json.dumps(CASES), str(out), cwd=ROOT)
    stdout, stderr = process.communicate(timeout=1500)
    assert process.returncode == 0, stderr[-3000:]
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_equal_one(two_process_runs, name):
    saved = torch.load(two_process_runs / f"{name}.pt", weights_only=False)
    one = generate_from_config(resolve(CASES[name]))
    scale = one.views.abs().max()
    assert ((saved["views"] - one.views).abs().max() / scale).item() < 1e-5, name
    report = saved["metadata"]["distributed"]
    assert report["world_size"] == 2 and sum(r["views"] for r in report["ranks"]) == one.metadata["num_views"]
    assert all(r["views"] >= 1 for r in report["ranks"]) and report["bytes_reduced_per_step"] > 0


def test_the_command_line_writes_one_folder_equal_to_one_process(tmp_path):
    args = ["run", "model=tiny", "steps=2", "width=1024", "progress=false"]
    process = torchrun("-m", "syncframe", *args, f"out={tmp_path / 'two'}", cwd=tmp_path)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-2000:]
    assert stdout.count("wrote ") == 1 and "2 processes" in stdout  # rank 0 speaks, and writes
    done = subprocess.run([sys.executable, "-m", "syncframe", *args, f"out={tmp_path / 'one'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    from PIL import Image
    import numpy as np

    a, b = (np.asarray(Image.open(tmp_path / name / "panorama.png")).astype(int) for name in ("one", "two"))
    assert np.abs(a - b).max() <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    meta = json.loads((tmp_path / "two" / "run.json").read_text())
    assert meta["distributed"]["world_size"] == 2


def test_a_rank_killed_mid_run_takes_every_rank_down_and_leaves_nothing(tmp_path):
    process = torchrun("-m", "syncframe", "run", "model=tiny", "steps=40", "width=2048", "progress=false",
                       f"out={tmp_path / 'run'}", cwd=tmp_path)
    deadline = time.monotonic() + 180
    while not (tmp_path / "run.partial").exists():  # rank 0 has claimed the folder: the run is on
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    time.sleep(3)
    victims = [pid for pid in ranks_of(process.pid) if rank_of(pid) == 1]
    assert victims, "rank 1 not found"
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode != 0
    ours = [line for line in stderr.splitlines() if line.startswith("syncframe:")]
    # the survivor says which rank ended the run and why, not "interrupted"
    assert len(ours) == 1 and "stopped because rank 1 (process" in ours[0] and "killed by a signal" in ours[0], \
        stderr[-2000:]
    assert "Traceback" not in "\n".join(ours)
    assert list(tmp_path.iterdir()) == []  # no folder, no .partial


def ranks_of(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(entry.name))
    return children


def rank_of(pid: int) -> int | None:
    try:
        env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    except OSError:
        return None
    return int(env["RANK"]) if "RANK" in env else None


@pytest.mark.parametrize("env,words", [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' is not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29400"}, "RANK=5 is not below"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "abc"}, "MASTER_PORT='abc' is not"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "99999"}, "from 1 to 65535"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "garbage.invalid", "MASTER_PORT": "29400"}, "does not resolve"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "SYNCFRAME_JOIN_TIMEOUT": "4"},
     "1 never started"),  # the lone rank of two: rank 1 never comes
    ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "SYNCFRAME_JOIN_TIMEOUT": "4"},
     "found no rendezvous"),  # rank 0 never comes
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "busy"}, "set MASTER_PORT to a free"),
])
def test_a_launcher_environment_that_cannot_work_is_one_line_within_seconds(tmp_path, env, words):
    env = {**os.environ, "MASTER_PORT": str(free_port()), **env}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        if env["MASTER_PORT"] == "busy":
            env["MASTER_PORT"] = str(busy.getsockname()[1])
        clock = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "syncframe", "run", "model=tiny", "steps=1", "progress=false",
                               f"out={tmp_path / 'run'}"], env=env, capture_output=True, text=True, timeout=120)
    ours = [line for line in done.stderr.splitlines() if line.startswith("syncframe: error:")]
    assert done.returncode == 2 and len(ours) == 1 and words in ours[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()
    assert time.monotonic() - clock < 60


def test_a_lone_rank_answers_sigterm_while_it_waits(tmp_path):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    process = subprocess.Popen([sys.executable, "-m", "syncframe", "run", "model=tiny", "steps=1", "progress=false",
                                f"out={tmp_path / 'run'}"], env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(12)  # imports done: it waits for rank 1
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr[-2000:]
