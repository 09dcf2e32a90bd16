"""What a run will need, estimated from its sizes before anything is allocated, and the limits.

The estimate counts the tensors the loop and the app hold (views, canonical tensors, decoded
images, rasterizations), not the model's weights, which are not known before loading. It is
meant to refuse runs that cannot fit by far (a 200000x200000 canvas), not to predict the peak
to the megabyte.
"""
from __future__ import annotations

import os

from .errors import ConfigError

FLOAT = 4
# Copies of the per-view state alive in one step: x_t, ε (CFG halves), x0, x_{t-1}, noise,
# the synchronizer's temporaries and the model's batch input.
VIEW_STATE_COPIES = 12


def view_state_bytes(channels: int, size: int) -> int:
    """Bytes of the loop's state for one view of ``channels`` x ``size``² latents."""
    return VIEW_STATE_COPIES * channels * size * size * FLOAT


def available_bytes(device: str) -> int:
    """Memory free now: the GPU's for a CUDA device, else the machine's available RAM."""
    if device.startswith("cuda"):
        import torch

        index = int(device.partition(":")[2] or 0) if ":" in device else torch.cuda.current_device()
        return torch.cuda.mem_get_info(index)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def gigabytes(n: float) -> str:
    return f"{n / 2**30:.1f} GB"


def check_run_size(num_views: int, parts: dict[str, int], what: str, run) -> None:
    """Refuse a run with more views than ``max_views`` or an estimate above the memory limit.

    ``parts``: bytes per named part of the estimate; ``what`` names the sizes that set them; ``run``:
    the common keys (``max_views``, ``max_memory_gb``, ``device``).
    """
    if num_views > run.max_views:
        raise ConfigError(f"this run has {num_views} views per step ({what}), above max_views={run.max_views}; "
                          "make it smaller, or raise max_views if you mean it")
    need = sum(parts.values())
    if run.max_memory_gb is not None:
        limit, source = run.max_memory_gb * 2**30, f"max_memory_gb={run.max_memory_gb:g}"
    else:
        from .models.denoiser import pick_device

        device = str(pick_device(run.device))
        limit, source = 0.9 * available_bytes(device), f"the {gigabytes(available_bytes(device))} available now"
    if need > limit:
        biggest = max(parts, key=parts.get)
        raise ConfigError(f"this run needs about {gigabytes(need)} ({what}; most of it {biggest}: "
                          f"{gigabytes(parts[biggest])}) but the limit is {source}; make it smaller, or set "
                          "max_memory_gb=<GB> to run anyway")

