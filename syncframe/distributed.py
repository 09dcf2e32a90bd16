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
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_environment(device: str = "auto") -> Group | None:
    """Join the process group a launcher describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``): ``nccl`` on CUDA, ``gloo`` on the CPU. None outside one."""
    global _group
    if _group is not None or not launched():
        return _group
    import torch.distributed as dist

    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"WORLD_SIZE is set but the launcher's RANK/LOCAL_RANK are not usable ({exc}); start "
                          "distributed runs with torchrun (or srun torchrun)") from None
    if not os.environ.get("MASTER_ADDR"):
        raise ConfigError("WORLD_SIZE is set but MASTER_ADDR is not: start distributed runs with torchrun, which sets "
                          "both")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and local_rank >= torch.cuda.device_count():
        raise ConfigError(f"rank {rank} has LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} "
                          "CUDA devices; start one process per GPU (torchrun --nproc_per_node=<GPUs>)")
    where = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(where)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    _group = Group(rank, world, local_rank, where)
    return _group


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
