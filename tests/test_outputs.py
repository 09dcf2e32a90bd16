"""Run folders are complete or absent: interrupts, two runs at one folder, stale claims, clashing
default names. The interrupt and race tests run real ``syncframe`` processes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from syncframe.errors import ConfigError
from syncframe.outputs import RunFolder

# Long enough (~15 s on 2 cores) to be interrupted or raced while sampling.
SLOW = ["run", "model=tiny", "steps=15", "width=1536", "progress=false"]


def start(args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "syncframe", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def assert_complete(out: Path, seed: int) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "panorama.png", "run.json"]
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == seed
    assert json.loads((out / "run.json").read_text())["seed"] == seed


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_leaves_nothing(tmp_path, sig, code):
    out = tmp_path / "runs" / "one"
    process = start([*SLOW, f"out={out}"], tmp_path)
    wait_for(out.with_name("one.partial"), process)
    time.sleep(1.0)  # into the sampling loop
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err  # the shell's 128 + signal number
    assert "interrupted; no output was written" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no folder, no .partial, not even the parent it created


def test_two_runs_at_one_folder_one_wins_the_other_is_refused_at_once(tmp_path):
    out = tmp_path / "same"
    first = start([*SLOW, "seed=1", f"out={out}"], tmp_path)
    wait_for(tmp_path / "same.partial", first)
    second = subprocess.run([sys.executable, "-m", "syncframe", *SLOW, "seed=2", f"out={out}"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "another run is writing out=" in second.stderr, second.stderr
    assert first.poll() is None  # refused while the first still runs: at the claim, before any sampling
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_complete(out, seed=1)  # the folder is all the first run's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same"]


def test_a_claim_left_by_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "again"
    first = start([*SLOW, "seed=1", f"out={out}"], tmp_path)
    wait_for(tmp_path / "again.partial", first)
    first.kill()  # SIGKILL: no clean-up is possible, the .partial stays
    first.communicate()
    assert (tmp_path / "again.partial").exists() and not out.exists()
    done = subprocess.run([sys.executable, "-m", "syncframe", "run", "model=tiny", "steps=2", "width=640",
                           "progress=false", "seed=3", f"out={out}"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 3


def test_default_names_that_clash_move_on_and_named_ones_are_refused(tmp_path):
    target = tmp_path / "outputs" / "panorama" / "2026-01-01_00-00-00"
    a = RunFolder(target, explicit=False).claim()
    b = RunFolder(target, explicit=False).claim()  # same second, same name: the next free one
    assert a.target == target and b.target == target.with_name(target.name + "-1")
    with pytest.raises(ConfigError, match="another run is writing"):
        RunFolder(target, explicit=True).claim()
    b.commit({"x.txt": "b"})
    a.commit({"x.txt": "a"})
    assert (target / "x.txt").read_text() == "a" and (b.target / "x.txt").read_text() == "b"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name, b.target.name]


def test_abandon_removes_the_claim_and_the_parents_it_made(tmp_path):
    folder = RunFolder(tmp_path / "a" / "b" / "run").claim()
    assert (tmp_path / "a" / "b" / "run.partial").is_dir()
    folder.abandon()
    assert list(tmp_path.iterdir()) == []


def test_an_empty_existing_folder_is_filled_atomically(tmp_path):
    (tmp_path / "empty").mkdir()
    folder = RunFolder(tmp_path / "empty").claim()
    folder.commit({"a.txt": "1", "b.txt": "2"})
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["a.txt", "b.txt"]
    assert not (tmp_path / "empty.partial").exists() and os.listdir(tmp_path) == ["empty"]


def test_a_claim_without_an_owner_file_says_no_run_owns_it(tmp_path):
    partial = tmp_path / "orphan.partial"
    partial.mkdir()
    os.utime(partial, (time.time() - 60, time.time() - 60))  # killed a minute ago, between mkdir and the file
    with pytest.raises(ConfigError, match=r"was left by a run that was killed as it started, and no run owns it; "
                                          r"remove it \(rm -r '.*orphan.partial'\)"):
        RunFolder(tmp_path / "orphan").claim()
    partial.rmdir()
    partial.mkdir()  # just created: a run that is starting, not an orphan
    with pytest.raises(ConfigError, match="another run is writing"):
        RunFolder(tmp_path / "orphan").claim()


def test_a_claim_whose_pid_now_names_another_process_is_taken_over(tmp_path):
    import socket

    partial = tmp_path / "reused.partial"
    partial.mkdir()
    # our own pid, alive, but with a start time it never had: the owner died and its pid was reused
    (partial / ".syncframe-owner").write_text(f"{socket.gethostname()} {os.getpid()} 1")
    folder = RunFolder(tmp_path / "reused").claim()
    assert folder.partial == partial and (partial / ".syncframe-owner").read_text().split()[1] == str(os.getpid())
    folder.abandon()
    (partial).mkdir()
    (partial / ".syncframe-owner").write_text(f"{socket.gethostname()} {os.getpid()} "
                                             f"{Path(f'/proc/{os.getpid()}/stat').read_text().rsplit(')', 1)[1].split()[19]}")
    with pytest.raises(ConfigError, match=f"another run is writing .*process {os.getpid()}"):
        RunFolder(tmp_path / "reused").claim()  # the same pid and start: that run is alive
