"""Run folders that are complete or absent: claimed before the run, written aside, renamed at the end.

A run writes into ``<out>.partial``, created exclusively: of two runs aimed at one folder, the
second is refused at once (or, for a default folder name, takes the next free name). The folder
appears by one ``rename`` when every file is written; a failed or interrupted run removes its
``.partial`` and any parent folders it created. A ``.partial`` left by a killed process (its pid is
gone, or now names a process started later) is taken over; one with no owner file (killed between
creating the folder and writing the file) is refused with how to remove it.
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import time
from datetime import datetime
from pathlib import Path

from .errors import ConfigError

OWNER = ".syncframe-owner"  # inside the .partial folder: "host pid start-time"


def check_parent(target: Path) -> None:
    """The nearest existing ancestor of ``target`` is a writable folder and nothing on the way is a file."""
    if (target.exists() or target.is_symlink()) and not target.is_dir():
        raise ConfigError(f"out={target} is a file, not a folder; choose a folder path for out=")
    check_ancestors(target, "no folder can be made under it", "choose a writable folder for out=")


def check_ancestors(target: Path, under: str, fix: str) -> None:
    """The nearest existing ancestor of ``out=target`` (not ``target`` itself) is a folder this user
    can write in; else one line: ``under`` says what cannot go under a file, ``fix`` what to do."""
    for parent in target.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ConfigError(f"out={target}: {parent} is a file, so {under}; choose another out=")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"out={target}: cannot write in {parent} (permission denied or read-only); {fix}")
            return


class RunFolder:
    """``claim()`` before the run, ``commit(files)`` after it, ``abandon()`` on any failure."""

    def __init__(self, target: str | Path, explicit: bool = True):
        self.target = Path(target)
        self.explicit = explicit  # a folder the user named is refused when taken; a default one moves on
        self.partial: Path | None = None
        self.created: list[Path] = []

    def claim(self) -> "RunFolder":
        base, k = self.target, 1
        while True:
            check_parent(self.target)
            reason = self._try_claim()
            if reason is None:
                return self
            if self.explicit:
                raise ConfigError(reason)
            self.target = base.with_name(f"{base.name}-{k}")
            k += 1

    def _try_claim(self) -> str | None:
        target = self.target
        if target.is_dir() and any(target.iterdir()):
            return f"output folder {target} exists and is not empty; choose another out="
        self._make_parents(target.parent)
        partial = target.with_name(target.name + ".partial")
        for _ in range(2):
            try:
                partial.mkdir()
                break
            except FileExistsError:
                owner = _owner(partial)
                if owner == "orphan":
                    return (f"out={target}: {partial} was left by a run that was killed as it started, and no run "
                            f"owns it; remove it (rm -r '{partial}') or choose another out=")
                if owner != "gone":
                    return (f"another run is writing out={target} now ({owner}; {partial} exists); wait for it to "
                            "finish or choose another out=")
                shutil.rmtree(partial, ignore_errors=True)
            except OSError as exc:
                raise ConfigError(f"out={target}: cannot create {partial} ({exc.strerror}); "
                                  "choose a writable folder for out=") from None
        else:
            return f"out={target}: could not claim {partial}; choose another out="
        (partial / OWNER).write_text(f"{socket.gethostname()} {os.getpid()} {process_start(os.getpid())}")
        self.partial = partial
        return None

    def _make_parents(self, folder: Path) -> None:
        missing = [p for p in [folder, *folder.parents] if not p.exists()]
        for path in reversed(missing):
            try:
                path.mkdir()
                self.created.append(path)
            except FileExistsError:
                pass
            except OSError as exc:
                raise ConfigError(f"out={self.target}: cannot create {path} ({exc.strerror}); "
                                  "choose a writable folder for out=") from None

    def commit(self, files: dict[str, object], last=None) -> Path:
        """Write ``files`` (name -> str, bytes, or an object with ``save(path)``), then the files
        ``last()`` returns (made after the others are written), and publish the folder."""
        assert self.partial is not None, "claim() first"
        self._write(files)
        if last is not None:
            self._write(last())
        (self.partial / OWNER).unlink()
        try:
            os.rename(self.partial, self.target)  # replaces an empty target folder atomically
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise ConfigError(f"output folder {self.target} was filled by something else during the run; "
                                  "nothing was written, choose another out=") from None
            raise
        self.partial, self.created = None, []
        return self.target

    def _write(self, files: dict[str, object]) -> None:
        for name, item in files.items():
            path = self.partial / name
            path.parent.mkdir(parents=True, exist_ok=True)  # heldout/novel_0.png
            if isinstance(item, str):
                path.write_text(item, encoding="utf-8")
            elif isinstance(item, bytes):
                path.write_bytes(item)
            else:
                item.save(path)

    def abandon(self) -> None:
        if self.partial is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            self.partial = None
        for path in reversed(self.created):
            try:
                path.rmdir()  # only if still empty: another run may be using it
            except OSError:
                break
        self.created = []


ORPHAN_AFTER_S = 10.0  # a .partial with no owner file this old was never finished being claimed


def process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from /proc), or "-" where unknown: with
    the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name
    except (OSError, IndexError):
        return "-"


def _owner(partial: Path) -> str:
    """Who holds a ``.partial`` folder: "gone" (its process ended, or its pid now names another
    process), "orphan" (no owner file, and not just being created), or a description of the live
    owner (or of one on another host, which cannot be checked)."""
    try:
        host, pid, *start = (partial / OWNER).read_text().split()
        pid = int(pid)
    except (OSError, ValueError):
        try:
            age = time.time() - partial.stat().st_mtime
        except OSError:
            return "a run that is starting"  # removed meanwhile: claim again later
        return "orphan" if age > ORPHAN_AFTER_S else "a run that is starting"
    if host != socket.gethostname():
        return f"process {pid} on host {host}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass
    if start and start[0] != "-" and process_start(pid) not in (start[0], "-"):
        return "gone"  # the pid was reused by another process
    return f"process {pid}"


def remove_stale_partials(root: str | Path, mine: bool = False) -> list[Path]:
    """Remove the ``.partial`` folders under ``root`` (its app folders) that no live process owns,
    and with ``mine`` those this process owns (a server that stops mid-run); the removed ones."""
    removed = []
    for partial in sorted(Path(root).glob("*/*.partial")):
        owner = _owner(partial)
        if owner in ("gone", "orphan") or (mine and owner == f"process {os.getpid()}"):
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
    return removed


def default_out(app: str, root: str | Path = "outputs") -> Path:
    """``<root>/<app>/<date-time>``; a clash moves on to ``-1``, ``-2``, ... when claimed."""
    return Path(root) / app / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def run_record(prepared, denoiser, num_views: int, predicted: int, notes: list, timings: dict,
               shares: list | None) -> dict:
    """``run.json``: what ran, on what, how long each phase took, what was settled and measured."""
    import platform
    import sys

    import torch

    from . import __version__

    plan, spec, app = prepared.plan, prepared.spec, prepared.app
    run, names = plan.run, plan.names
    return {
        "app": names["app"], "sync": names["sync"], "model": names["model"],
        "seed": run.seed, "steps": run.steps, "num_views": num_views,
        "views_predicted": predicted,  # model calls of one view (CFG's pair counted once), over every process
        "view_batch_size": denoiser.resolve_batch_size(num_views),
        "device": str(denoiser.device), "dtype": str(denoiser.dtype).replace("torch.", ""),
        "gpu": torch.cuda.get_device_name(denoiser.device) if denoiser.device.type == "cuda" else None,
        "family": spec.family, "sampler": names["sampler"], "window_px": spec.window_px,
        "sizes": app.sizes(),
        "resolved": prepared.settled,
        **({"model_extras": denoiser.extras} if denoiser.extras else {}),
        **({"distributed": distributed_report(shares, len(prepared.sampler.steps))} if shares else {}),
        "notes": notes,
        "versions": {"syncframe": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "diffusers": package_version("diffusers"), "transformers": package_version("transformers")},
        "command": sys.argv if Path(sys.argv[0]).name in ("syncframe", "__main__.py") else None,
        "created": datetime.now().isoformat(timespec="seconds"),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "peak_memory": peak_memory_mb(denoiser.device),
        **({"metrics": app.report} if app.report else {}),
    }


def distributed_report(shares: list[dict], steps: int) -> dict:
    """What a distributed run records: the world size, each rank's views, device and sampling time,
    and the bytes all-reduced per step (each rank sends its canonical sums)."""
    sent = shares[0]["bytes_reduced"]
    return {"world_size": len(shares), "ranks": shares, "bytes_reduced_per_step": round(sent / max(steps, 1)),
            "reductions_per_step": round(shares[0]["reductions"] / max(steps, 1), 2)}


def peak_memory_mb(device) -> dict:
    import resource

    import torch

    peak = {"cpu_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        peak["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return peak


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
