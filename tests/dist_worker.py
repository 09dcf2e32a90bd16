"""Run under torchrun by tests/test_distributed.py: each case of ``argv[1]`` (JSON: name -> overrides)
through the Python API in this process group; rank 0 saves the final views as ``<argv[2]>/<name>.pt``."""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from syncframe import distributed
from syncframe.config import resolve
from syncframe.pipeline import generate_from_config

if __name__ == "__main__":
    cases, out = json.loads(sys.argv[1]), Path(sys.argv[2])
    group = distributed.init_from_environment()
    for name, overrides in cases.items():
        result = generate_from_config(resolve(overrides))
        if group.leader:
            torch.save({"views": result.views, "metadata": result.metadata}, out / f"{name}.pt")
    dist.destroy_process_group()
