"""One canvas over many processes: the views of a run split across the ranks of ``torch.distributed``.

Under ``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``: ``srun`` on
SLURM, ``torchrun --nnodes`` across nodes) every rank builds the same run (same config, same
canonical noise from the same seed), loads the model on its own device (``cuda:LOCAL_RANK``; the
CPU with the ``gloo`` backend) and denoises only its own views. Everything a synchronizer needs
from the other views goes through one seam: the sums over views of the normalised adjoint
(``CanonicalSpace.view_sum``), all-reduced, so every rank holds the same canonical tensor and a
fill after it runs identically everywhere. Rank 0 gathers the final views, finishes and writes the
one run folder; the other ranks write nothing. Outside a launcher nothing here is used.

Collectives are waited on in short polls, so a rank blocked in one still answers Ctrl-C and
SIGTERM (torchrun sends it when another rank fails) and cleans up.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch

from .errors import ConfigError

TIMEOUT = timedelta(minutes=30)  # a collective waits this long for a rank that is still loading


class PeerFailed(RuntimeError):
    """Another rank of the run failed or went away."""


@dataclass
class Group:
    """This process's place in a distributed run, and the collectives the run uses."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    bytes_reduced: int = 0  # what this rank sent to all-reduces (the canonical sums), for run.json
    reductions: int = 0
    communication_s: float = 0.0  # wall time spent in collectives (waiting for the slowest rank included)
    bytes_broadcast: int = 0  # SyncDiffusion's anchor targets
    timings: dict = field(default_factory=dict)
    store: object = field(default=None, repr=False)  # the rendezvous store: where a failing rank leaves its reason

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over every rank (a new tensor; the input is left as it is)."""
        import torch.distributed as dist

        out = tensor.detach().contiguous().clone()
        clock = time.perf_counter()
        wait(dist.all_reduce(out, async_op=True))
        self.communication_s += time.perf_counter() - clock
        self.bytes_reduced += out.numel() * out.element_size()
        self.reductions += 1
        return out

    def broadcast(self, tensor: torch.Tensor, source: int) -> torch.Tensor:
        """``tensor`` of rank ``source`` on every rank (same shape and dtype everywhere)."""
        import torch.distributed as dist

        out = tensor.detach().contiguous().clone()
        clock = time.perf_counter()
        wait(dist.broadcast(out, source, async_op=True))
        self.communication_s += time.perf_counter() - clock
        self.bytes_broadcast += out.numel() * out.element_size()
        return out

    def broadcast_object(self, obj, source: int = 0):
        import torch.distributed as dist

        box = [obj]
        try:
            dist.broadcast_object_list(box, source)
        except RuntimeError as exc:
            raise PeerFailed(str(exc)) from None
        return box[0]

    def gather_objects(self, obj) -> list:
        import torch.distributed as dist

        boxes = [None] * self.world
        try:
            dist.all_gather_object(boxes, obj)
        except RuntimeError as exc:
            raise PeerFailed(str(exc)) from None
        return boxes


def wait(work) -> None:
    """Wait for a collective in short polls (signal handlers run between them); a peer's failure
    becomes :class:`PeerFailed`."""
    try:
        while not work.is_completed():
            time.sleep(0.0005)
        work.wait()
    except RuntimeError as exc:  # gloo / nccl: a connection closed, a timeout
        raise PeerFailed(" ".join(str(exc).split())[:200]) from None


_group: Group | None = None


def current() -> Group | None:
    """The run's process group, or None outside a launcher."""
    return _group


def launched() -> bool:
    """Whether a launcher started this process as one of several (``WORLD_SIZE`` above 1)."""
    return env_int("WORLD_SIZE", 1, low=1) > 1


def env_int(name: str, default: int | None = None, low: int = 0, high: int | None = None) -> int:
    """A launcher's integer variable, or one line naming it and what was wrong."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ConfigError(f"WORLD_SIZE is set but {name} is not: start distributed runs with torchrun (or srun "
                              "torchrun), which sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT together")
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        also = "" if name == "WORLD_SIZE" else " (and WORLD_SIZE)"
        raise ConfigError(f"{name}={raw!r} is not a whole number {bounds}: set it to one, or unset it{also} for a "
                          "one-process run; torchrun sets these variables itself")
    return value


JOIN_TIMEOUT_S = 300.0  # SYNCFRAME_JOIN_TIMEOUT: how long a rank waits for the others to start
JOIN_REPORT_S = 15.0  # a line every this many seconds while waiting
ATTEMPT_S = 5.0  # one connection attempt; signals are handled between attempts


def join_timeout() -> float:
    raw = os.environ.get("SYNCFRAME_JOIN_TIMEOUT", "")
    try:
        value = float(raw) if raw else JOIN_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"SYNCFRAME_JOIN_TIMEOUT={raw!r} is not a positive number of seconds; unset it for "
                          f"{JOIN_TIMEOUT_S:.0f} s")
    return value


def address_from_environment() -> tuple[str, int]:
    """``MASTER_ADDR`` resolved and ``MASTER_PORT`` checked, before anything waits on them."""
    import socket

    host = os.environ.get("MASTER_ADDR", "")
    if not host:
        raise ConfigError("WORLD_SIZE is set but MASTER_ADDR is not: start distributed runs with torchrun, which sets "
                          "both")
    port = env_int("MASTER_PORT", None, low=1, high=65535)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"MASTER_ADDR={host!r} does not resolve ({exc}); set it to the address of rank 0's machine "
                          "(127.0.0.1 on one machine)") from None
    return host, port


def connect(host: str, port: int, rank: int, world: int, agent: bool, deadline: float, say) -> "object":
    """The rendezvous store: rank 0 serves it (or torchrun's agent does, ``agent``); the others connect,
    in attempts of a few seconds so that Ctrl-C and SIGTERM are answered while rank 0 is not up yet."""
    import torch.distributed as dist

    start = time.monotonic()
    if rank == 0 and not agent:
        try:
            return dist.TCPStore(host, port, world, is_master=True, wait_for_workers=False,
                                 timeout=timedelta(seconds=ATTEMPT_S), multi_tenant=True)
        except RuntimeError as exc:  # DistNetworkError: EADDRINUSE and the like
            raise ConfigError(f"rank 0 cannot serve the rendezvous on port {port} ({' '.join(str(exc).split())[:160]})"
                              f"; set MASTER_PORT to a free port") from None
    import socket

    reported = start
    while True:  # probe the port from Python first: TCPStore's own retries log C++ stacks and hold signals
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            break
        except OSError as exc:
            now = time.monotonic()
            if now >= deadline:
                raise ConfigError(f"rank {rank} found no rendezvous at {host}:{port} in {now - start:.0f} s ({exc}); "
                                  "start rank 0 (torchrun starts every rank), check MASTER_ADDR/MASTER_PORT, or unset "
                                  "WORLD_SIZE for a one-process run") from None
            if now - reported >= JOIN_REPORT_S:
                say(f"rank {rank}: waiting for rank 0's rendezvous at {host}:{port} ({now - start:.0f} s of "
                    f"{deadline - start:.0f})")
                reported = now
            time.sleep(0.5)
    try:
        return dist.TCPStore(host, port, world, is_master=False, timeout=timedelta(seconds=30))
    except RuntimeError as exc:
        raise ConfigError(f"rank {rank} reached {host}:{port} but it is not a rendezvous ("
                          f"{' '.join(str(exc).split())[:120]}); check MASTER_ADDR/MASTER_PORT") from None


def gather_ranks(store, rank: int, world: int, deadline: float, say) -> None:
    """Wait, in short polls, until every rank has checked in on ``store``; one line every few seconds
    while some are missing, one line when the deadline passes."""
    import socket

    prefix = f"syncframe/{os.environ.get('TORCHELASTIC_RUN_ID', '')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}"
    store.set(f"syncframe/process/{rank}", f"{socket.gethostname()} {os.getpid()}")  # who to look for if it dies
    store.add(f"{prefix}/joined", 1)
    start = reported = time.monotonic()
    while (joined := store.add(f"{prefix}/joined", 0)) < world:
        now = time.monotonic()
        if now >= deadline:
            raise ConfigError(f"rank {rank} waited {now - start:.0f} s for the other processes of WORLD_SIZE={world}; "
                              f"{world - joined} never started. Start them all (torchrun --nproc_per_node={world} "
                              "starts every rank), or unset WORLD_SIZE and RANK for a one-process run")
        if now - reported >= JOIN_REPORT_S:
            say(f"rank {rank}: waiting for {world - joined} of {world} processes to join ({now - start:.0f} s of "
                f"{deadline - start:.0f})")
            reported = now
        time.sleep(0.2)


def say_waiting(line: str) -> None:
    import sys

    print(f"syncframe: {line}", file=sys.stderr, flush=True)


def init_from_environment(device: str = "auto") -> Group | None:
    """Join the process group a launcher describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``): ``nccl`` on CUDA, ``gloo`` on the CPU. None outside one.

    Every variable is checked before anything waits, and the rendezvous is syncframe's own loop
    (not ``init_process_group``'s 30-minute wait in C++): a rank whose peers never start says so
    every few seconds and gives up after ``SYNCFRAME_JOIN_TIMEOUT`` seconds, answering Ctrl-C and
    SIGTERM all along."""
    global _group
    if _group is not None or not launched():
        return _group
    import torch.distributed as dist

    world = env_int("WORLD_SIZE", 1, low=1)
    rank = env_int("RANK", None, low=0)
    if rank >= world:
        raise ConfigError(f"RANK={rank} is not below WORLD_SIZE={world}: ranks are 0 to {world - 1}; start distributed "
                          "runs with torchrun, which numbers them")
    local_rank = env_int("LOCAL_RANK", rank, low=0)
    host, port = address_from_environment()
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and local_rank >= torch.cuda.device_count():
        raise ConfigError(f"rank {rank} has LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} "
                          "CUDA devices; start one process per GPU (torchrun --nproc_per_node=<GPUs>)")
    deadline = time.monotonic() + join_timeout()
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent serves the store
    store = connect(host, port, rank, world, agent, deadline, say_waiting)
    gather_ranks(store, rank, world, deadline, say_waiting)
    store.set_timeout(TIMEOUT)
    where = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(where)
    dist.init_process_group("nccl" if cuda else "gloo", store=dist.PrefixStore("syncframe/pg", store), rank=rank,
                            world_size=world, timeout=TIMEOUT)
    _group = Group(rank, world, local_rank, where, store=store)
    return _group


def report_failure(message: str) -> None:
    """Leave this rank's failure on the rendezvous store, where the other ranks read it when the run
    ends under them (best effort: the store may be gone)."""
    group = _group
    if group is None or group.store is None:
        return
    try:
        group.store.set("syncframe/failure", f"rank {group.rank}: {message}"[:400])
    except Exception:  # noqa: BLE001 - the store's server (rank 0 or the agent) is gone
        pass


def peer_failure() -> str | None:
    """Which other rank ended the run and why: what it left with :func:`report_failure`, or else a
    rank on this machine whose process is gone (killed, out of memory, a crash in native code: it
    could not say). None when neither is known (the store is gone, the rank ran elsewhere)."""
    group = _group
    if group is None or group.store is None:
        return None
    try:
        if group.store.check(["syncframe/failure"]):
            return group.store.get("syncframe/failure").decode("utf-8", "replace")
        import socket

        here = socket.gethostname()
        for rank in range(group.world):
            if rank != group.rank and group.store.check([f"syncframe/process/{rank}"]):
                host, pid = group.store.get(f"syncframe/process/{rank}").decode().rsplit(" ", 1)
                if host == here and not alive(int(pid)):
                    return (f"rank {rank} (process {pid}) ended without a word: killed by a signal, out of memory, "
                            "or a crash in native code")
    except Exception:  # noqa: BLE001 - the store's server is gone, or its contents are not ours
        return None
    return None


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by its launcher, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not Path("/proc").is_dir()  # no /proc: the signal is all we know
    return state not in ("Z", "X")


def partition(costs: list[float], world: int) -> list[list[int]]:
    """The views ``0..N-1`` of ``costs`` split into ``world`` contiguous runs of about equal total
    cost (neighbouring views stay together, every rank gets at least one view when N ≥ world)."""
    total, runs, start = sum(costs), [], 0
    for rank in range(world):
        left = world - rank
        if rank == world - 1:
            runs.append(list(range(start, len(costs))))
            break
        budget, end, spent = (total - sum(costs[:start])) / left, start, 0.0
        while end < len(costs) - (left - 1) and (spent + costs[end] / 2 <= budget or end == start):
            spent += costs[end]
            end += 1
        runs.append(list(range(start, end)))
        start = end
    return runs
