"""The interface a plugin author sees: every hook declared on its base class with a default and a
docstring, and runs that change nothing of their caller's."""
import ast
import copy
import inspect
from pathlib import Path

import torch

from syncframe.config import resolve
from syncframe.methods import Method, Synchronizer, Trajectory
from syncframe.pipeline import generate_from_config
from syncframe.spaces import CanonicalSpace

PACKAGE = Path(__file__).resolve().parents[1] / "syncframe"


def test_every_hook_is_declared_with_a_default_and_a_docstring():
    for cls, hooks in ((Method, ["bind", "patches"]),
                       (Synchronizer, ["before_model", "after_prediction", "after_step"]),
                       (Trajectory, ["schedule", "init", "step", "views"]),
                       (CanonicalSpace, ["project", "project_adjoint", "view_weights", "unproject", "fill", "owned",
                                         "sync", "sample_noise", "bind", "capabilities", "capability", "view_costs",
                                         "distribute"])):
        for name in hooks:
            method = getattr(cls, name)
            assert inspect.getdoc(method), f"{cls.__name__}.{name} has no docstring"


def test_no_hook_is_discovered_with_hasattr():
    """Optional hooks are declared, never looked for: no hasattr / getattr with a default on the
    loop's own objects anywhere in the package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
                target = ast.unparse(node.args[0])
                if any(word in target for word in ("sync", "space", "app", "denoiser", "renderer", "self")):
                    found.append(f"{path.name}: {ast.unparse(node)}")
    assert not found, found


def test_a_run_changes_nothing_of_its_callers(tiny_denoiser):
    cfg = resolve(["model=tiny", "width=768", "height=512", "steps=2", "progress=false", "guidance=3"])
    before = copy.deepcopy(cfg)
    guidance = tiny_denoiser.guidance
    first = generate_from_config(cfg, tiny_denoiser)
    assert cfg == before  # the caller's config: steps/guidance/sizes not settled into it
    assert tiny_denoiser.guidance == guidance  # the denoiser's own guidance is back
    assert first.config["guidance"] == 3 and first.config["app"]["stride"] == 8  # what ran is in the result
    second = generate_from_config(cfg, tiny_denoiser)
    assert torch.equal(first.canonical, second.canonical)
