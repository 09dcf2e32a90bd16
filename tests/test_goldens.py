"""Behaviour unchanged: every file of configs/ and every README command as recorded before the redesign
(scripts/goldens.py; ``python scripts/goldens.py --write`` records them anew, on purpose)."""
import json
import os
from pathlib import Path

import pytest
import torch

from scripts import goldens

pytestmark = pytest.mark.slow
RECORDED = json.loads(goldens.GOLDENS.read_text())
CASES = goldens.all_cases()


def test_every_case_is_recorded():
    assert sorted(RECORDED) == sorted(name for name, _ in CASES)


@pytest.fixture(scope="module")
def hermetic(tmp_path_factory):
    """The weights-free setting the goldens were recorded in, and the checkout as the working folder."""
    saved, cwd, threads = os.environ.get("SYNCFRAME_WEIGHTS"), Path.cwd(), torch.get_num_threads()
    os.environ["SYNCFRAME_WEIGHTS"] = str(tmp_path_factory.mktemp("no-weights"))
    os.chdir(goldens.ROOT)
    torch.set_num_threads(goldens.THREADS)  # the floats of a CPU sum follow the thread count
    yield
    torch.set_num_threads(threads)
    os.chdir(cwd)
    if saved is None:
        os.environ.pop("SYNCFRAME_WEIGHTS")
    else:
        os.environ["SYNCFRAME_WEIGHTS"] = saved


@pytest.mark.parametrize("name,overrides", CASES, ids=[name for name, _ in CASES])
def test_the_case_gives_its_recorded_outputs(hermetic, name, overrides):
    torch.manual_seed(0)
    problem = goldens.compare(RECORDED[name], goldens.run_case(overrides))
    assert problem is None, f"{name}: {problem}"
