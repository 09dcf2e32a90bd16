"""The shape of the package, counted: what docs/design.md says of it, checked against the code.

    python scripts/structure.py          # prints the counts; exit 1 when a limit is broken

- method names (``synctweedies``, ``stochsync``, ...) in the loop, the pipeline, the samplers and the
  denoiser, and in any module but the method's own file (registrations, configs and docs aside);
- the hooks of ``CanonicalSpace``, ``Synchronizer``, ``Trajectory`` and ``App``;
- model-family names compared (``== "sd"``, ``in ("sd", "sdxl")``) outside the family table;
- functions over 60 lines and files over 400 lines in ``syncframe/``.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "syncframe"
METHODS = {"multidiffusion": "syncs/averaging.py", "synctweedies": "syncs/averaging.py",
           "eps-averaging": "syncs/averaging.py", "canonical-x0": "syncs/averaging.py",
           "canonical-eps": "syncs/averaging.py", "syncdiffusion": "syncs/syncdiffusion.py",
           "stochsync": "syncs/stochsync.py", "spotdiffusion": "syncs/spotdiffusion.py"}
CORE = ["loop.py", "pipeline.py", "samplers.py", "models/denoiser.py", "methods.py", "plan.py"]
FAMILIES = ("sd", "sdxl", "sd3", "flux", "analytic")
MAX_FUNCTION, MAX_FILE = 60, 400


def decisions(path: Path) -> list[tuple[int, str]]:
    """The string literals a module decides by: compared (``==``, ``in``) or looked up (``x["..."]``);
    a registration's values (an app's default sync, its ``sync_defaults``) name a method without
    deciding anything by it, and are left out."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        parts = []
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
        elif isinstance(node, ast.Subscript) and not (isinstance(node.value, ast.Name) and node.value.id == "Literal"):
            parts = [node.slice]  # a lookup (a Literal[...] type states values, it decides nothing)
        for part in parts:
            elements = part.elts if isinstance(part, (ast.Tuple, ast.List, ast.Set)) else [part]
            out += [(e.lineno, e.value) for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return out


def method_mentions() -> dict[str, list[str]]:
    """Where code decides by a method's name outside the method's own file."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        for line, text in decisions(path):
            for name, home in METHODS.items():
                if text == name and relative != home:
                    found.setdefault(relative, []).append(f"{relative}:{line} {name!r}")
    return found


def family_comparisons() -> list[str]:
    """Code deciding by a family's name (``x == "sd"``, ``x in ("sd", "sdxl")``, ``TABLE["sdxl"]``)
    outside models/families.py."""
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        if relative != "models/families.py":
            hits += [f"{relative}:{line} {text!r}" for line, text in decisions(path) if text in FAMILIES]
    return hits


def hooks(module: str, cls: str) -> list[str]:
    tree = ast.parse((PACKAGE / module).read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls)
    return [f.name for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")]


def long_functions() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION:
                    out.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)")
    return out


def long_files() -> list[str]:
    return [f"{p.relative_to(PACKAGE)} ({n} lines)" for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_FILE]


def main() -> int:
    mentions = method_mentions()
    core = [hit for name in CORE for hit in mentions.get(name, [])]
    elsewhere = [hit for name, hits in mentions.items() if name not in CORE for hit in hits]
    families, functions, files = family_comparisons(), long_functions(), long_files()
    print(f"method names in the loop, pipeline, samplers, denoiser, methods, plan: {len(core)}")
    print(f"method names in other modules than the method's own: {len(elsewhere)}")
    for line in elsewhere:
        print(f"  {line}")
    for module, cls in (("spaces/base.py", "CanonicalSpace"), ("methods.py", "Method"),
                        ("methods.py", "Synchronizer"), ("methods.py", "Trajectory"), ("apps/base.py", "App")):
        names = hooks(module, cls)
        print(f"{cls} methods: {len(names)} ({', '.join(names)})")
    print(f"model-family names compared outside models/families.py: {len(families)}")
    for line in families:
        print(f"  {line}")
    print(f"functions over {MAX_FUNCTION} lines in syncframe/: {len(functions)}")
    for line in functions:
        print(f"  {line}")
    print(f"files over {MAX_FILE} lines in syncframe/: {len(files)}")
    for line in files:
        print(f"  {line}")
    return 1 if core or elsewhere or families or functions or files else 0


if __name__ == "__main__":
    sys.exit(main())
