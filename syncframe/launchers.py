"""Where the runs of a sweep (``syncframe run -m ...``) go: this process, one after another
(``launcher=local``), or a Ray cluster, one task per run (``launcher=ray``).

A sweep is a list of resolved configs, each with its own run folder; the launcher only decides
where each runs. Both launchers record every run, failed or not, in the same ``multirun.csv``
(same columns, same order, a status column): a run that fails is reported and the others finish.
Ray is an optional extra (``pip install -e ".[ray]"``), imported when asked for.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .config import parse_overrides
from .errors import ConfigError
from .options import Options, option, parse_value, validate


class LauncherOptions(Options):
    name: Literal["local", "ray"] = option("local", "where a sweep's runs go: local (this process, one after "
                                                    "another) or ray (a Ray cluster, one task per run)")
    address: str = option("local", "ray: local (start a cluster on this machine), auto (join the running one) or "
                                   "ray://host:port")
    num_cpus: float = option(1.0, "ray: CPUs each run reserves", gt=0, le=1024)
    num_gpus: float = option(0.0, "ray: GPUs each run reserves (1 on a GPU cluster)", ge=0, le=64)
    cluster_cpus: int | None = option(None, "ray with address=local: the CPUs of the cluster started here; null = "
                                            "all", ge=1, le=4096)


def launcher_options(pairs: list[tuple[str, str]]) -> dict:
    """``launcher=ray launcher.address=auto ...`` (command-line pairs) -> the checked options."""
    values = {}
    fields = LauncherOptions.model_fields
    for key, raw in pairs:
        name = "name" if key == "launcher" else key.removeprefix("launcher.")
        if name not in fields:
            raise ConfigError(f"unknown config key {key!r}; valid keys: launcher, "
                              f"{', '.join('launcher.' + k for k in fields if k != 'name')}")
        values[name] = parse_value(fields[name].annotation, raw, fields[name].metadata)
    return validate(LauncherOptions, values, "launcher")


@dataclass
class Outcome:
    """One run of a sweep: its folder (or where it would have been), overrides, and what happened."""

    folder: Path
    job: list[str]
    status: str  # ok | failed
    metadata: dict
    error: str = ""


def run_one(cfg: dict, job: list[str]) -> Outcome:
    """A run as a sweep records it: a ConfigError is the run's failure, not the sweep's."""
    from .pipeline import run

    try:
        out, result = run(cfg)
    except ConfigError as exc:
        return Outcome(Path(cfg["out"]), job, "failed", {}, str(exc))
    return Outcome(out, job, "ok", result.metadata)


def run_local(cfgs: list[dict], jobs: list[list[str]], report) -> list[Outcome]:
    outcomes = []
    for cfg, job in zip(cfgs, jobs):
        outcome = run_one(cfg, job)
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def run_ray(cfgs: list[dict], jobs: list[list[str]], options: dict, report) -> list[Outcome]:
    """One Ray task per run (``num_cpus`` / ``num_gpus`` each); outcomes in the sweep's order."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"launcher=ray needs Ray ({exc}); pip install -e \".[ray]\", or use launcher=local") from None
    started = not ray.is_initialized()
    if started and options["address"] not in ("local", "auto"):
        reachable(options["address"])
    if started:
        kwargs = dict(log_to_driver=False, include_dashboard=False, logging_level="ERROR")
        try:
            if options["address"] == "local":
                ray.init(num_cpus=options["cluster_cpus"], **kwargs)
            else:
                ray.init(address=options["address"], **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"launcher.address={options['address']}: no Ray cluster to join ({str(exc).splitlines()[0]}"
                              "); start one (ray start --head) or use launcher.address=local") from None
    try:
        fits(ray.cluster_resources(), options)
        task = ray.remote(num_cpus=options["num_cpus"], num_gpus=options["num_gpus"])(run_one)
        pending = {task.remote(cfg, job): i for i, (cfg, job) in enumerate(zip(cfgs, jobs))}
        outcomes: list[Outcome | None] = [None] * len(cfgs)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(done[0])
            try:
                outcomes[i] = ray.get(done[0])
            except Exception as exc:  # the task's process died, or raised something not a ConfigError
                message = " ".join(str(exc).split())[-300:]
                outcomes[i] = Outcome(Path(cfgs[i]["out"]), jobs[i], "failed", {}, message)
            report(outcomes[i])
        return outcomes
    finally:
        if started:
            ray.shutdown()


def reachable(address: str, timeout_s: float = 3.0) -> None:
    """A cluster address (``host:port`` or ``ray://host:port``) that answers, or one line: Ray's own
    connection retries take minutes to give up on a closed port."""
    import socket

    hostport = address.removeprefix("ray://").rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"launcher.address={address!r} is not local, auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"launcher.address={address}: nothing answers there ({exc}); start the cluster "
                          "(ray start --head), check the address, or use launcher.address=local") from None


def fits(resources: dict, options: dict) -> None:
    """Each run's reservation within what the whole cluster has, or one line: Ray would queue a task
    that can never be placed, silently and forever."""
    for key, name in (("CPU", "num_cpus"), ("GPU", "num_gpus")):
        want, have = options[name], resources.get(key, 0.0)
        if want > have:
            raise ConfigError(f"launcher.{name}={want:g}: each run asks for {want:g} {key}s but the Ray cluster has "
                              f"{have:g}; ask for at most {have:g}" + (
                                  " (launcher.num_gpus=0 on a cluster without GPUs)" if key == "GPU" else
                                  " (or start a bigger cluster: launcher.cluster_cpus=, ray start --num-cpus=)"))


def sweep_folder_names(jobs: list[list[str]], limit: int = 120) -> list[str]:
    """The run folders of a sweep, named by the overrides that vary across it, as Hydra's
    ``override_dirname`` does: ``seed=1,sync=synctweedies``. A file's value is its name without
    the folder, characters a folder name should not hold become ``_``, a long name is cut to
    ``limit`` characters, and names that still collide get ``-2``, ``-3``, ..."""
    pairs = [parse_overrides(job) for job in jobs]
    keys = list(dict.fromkeys(k for job in pairs for k, _ in job))
    varying = [k for k in keys if len({dict(job).get(k) for job in pairs}) > 1]
    names, seen = [], set()
    for job in pairs:
        values = dict(job)
        parts = [f"{k}={Path(values[k]).name if '/' in values[k] else values[k]}" for k in varying if k in values]
        name = re.sub(r"[^A-Za-z0-9._=,+@-]", "_", ",".join(parts)).lstrip(".")[:limit] or "run"
        unique, n = name, 1
        while unique in seen or unique == "multirun.csv":
            n += 1
            unique = f"{name}-{n}"
        seen.add(unique)
        names.append(unique)
    return names


def write_index(base: Path, outcomes: list[Outcome]) -> Path:
    """``multirun.csv``: folder, overrides, status, sampling seconds, error, then every numeric metric."""
    metric_keys = sorted({k for o in outcomes for k, v in o.metadata.get("metrics", {}).items()
                          if isinstance(v, (int, float))})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["folder", "overrides", "status", "sample_s", "error", *metric_keys])
    for o in outcomes:
        metrics = o.metadata.get("metrics", {})
        writer.writerow([o.folder.name, " ".join(o.job), o.status, o.metadata.get("timings_s", {}).get("sample", ""),
                         o.error, *(metrics.get(k, "") for k in metric_keys)])
    path = base / "multirun.csv"
    base.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path
