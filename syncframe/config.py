"""One config tree: ``configs/config.yaml`` + one file per choice of the groups app, model, sync.

Overrides are Hydra-style ``key=value`` strings: ``sync=syncdiffusion`` picks a group file,
``sync.weight=10`` sets a key inside it. Values are parsed by the type of the default
(a string stays a string), and unknown keys are an error that lists the valid ones.
"""
from __future__ import annotations

import copy
import itertools
import re
from importlib import resources
from typing import Any, Iterable

import yaml

from .errors import ConfigError
from .registry import APPS, SYNCS

GROUPS = ("app", "model", "sync")


def _configs():
    return resources.files("syncframe.configs")


def _read_yaml(node) -> dict:
    return yaml.safe_load(node.read_text()) or {}


def base_config() -> dict:
    return _read_yaml(_configs() / "config.yaml")


def group_options(group: str) -> list[str]:
    """Names with a YAML file in the group, plus registered plugins for app and sync."""
    names = {p.name[:-5] for p in (_configs() / group).iterdir() if p.name.endswith(".yaml")}
    if group == "app":
        names |= set(APPS.names())
    if group == "sync":
        names |= set(SYNCS.names())
    return sorted(names)


def load_group(group: str, name: str) -> dict:
    """The options of one group choice, with ``name`` first."""
    node = _configs() / group / f"{name}.yaml"
    if node.is_file():
        options = _read_yaml(node)
    elif group == "app" and name in APPS:
        options = APPS.defaults(name)
    elif group == "sync" and name in SYNCS:
        options = SYNCS.defaults(name)
    elif group == "model" and name not in ("",):
        # Any other value is a diffusers repository id or a local folder.
        options = {"repo": name}
    else:
        options = None
    if options is None:
        raise ConfigError(f"unknown {group} {name!r}; choose one of: {', '.join(group_options(group))}")
    return {"name": name, **options}


def parse_overrides(args: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not key=value (e.g. prompt=\"a castle\" or sync=syncdiffusion)")
        key, value = arg.split("=", 1)
        if not re.fullmatch(r"[A-Za-z_][\w-]*(\.[\w-]+)*", key):
            raise ConfigError(f"{key!r} is not a config key (write key=value, nested keys with dots)")
        pairs.append((key, value))
    return pairs


def coerce(key: str, value: Any, default: Any) -> Any:
    """Turn an override string into the type of ``default``; non-strings pass through (Python API)."""
    if not isinstance(value, str):
        return value
    if isinstance(default, str):
        return value
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        parsed = value
    if default is None or parsed is None:
        return parsed
    if isinstance(default, bool):
        if isinstance(parsed, bool):
            return parsed
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if isinstance(default, int):
        if isinstance(parsed, int) and not isinstance(parsed, bool):
            return parsed
        raise ConfigError(f"{key}={value!r}: expected an integer")
    if isinstance(default, float):
        if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
            return float(parsed)
        raise ConfigError(f"{key}={value!r}: expected a number")
    return parsed


def resolve(overrides: Iterable[tuple[str, Any]] | Iterable[str] = ()) -> dict:
    """Base config <- app defaults <- group choices <- key overrides, validated."""
    pairs = [p if isinstance(p, tuple) else parse_overrides([p])[0] for p in overrides]
    cfg = base_config()
    choices = {g: v for g, v in pairs if g in GROUPS}
    keys = [(k, v) for k, v in pairs if k not in GROUPS]
    app = load_group("app", str(choices.get("app", cfg["app"])))
    app_defaults = app.pop("defaults", {}) or {}
    for key, value in app_defaults.items():
        if cfg.get(key) is None:
            cfg[key] = value
    for group in GROUPS:
        name = app["name"] if group == "app" else str(choices.get(group, cfg[group]))
        cfg[group] = app if group == "app" else load_group(group, name)
    for key, value in keys:
        set_key(cfg, key, value)
    validate_common(cfg)
    return cfg


def set_key(cfg: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for i, part in enumerate(parents):
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"unknown config key {dotted!r}: {'.'.join(parents[:i + 1])} has no sub-keys")
        node = node[part]
    if leaf not in node or leaf == "name" and parents:
        where = ".".join(parents)
        valid = sorted(k for k in node if not (parents and k == "name"))
        label = f"{where}={node['name']}" if parents and "name" in node else "the top level"
        raise ConfigError(f"unknown config key {dotted!r} for {label}; valid keys: {', '.join(valid)}")
    node[leaf] = coerce(dotted, value, node[leaf])


def validate_common(cfg: dict) -> None:
    def need(cond, message):
        if not cond:
            raise ConfigError(message)

    need(isinstance(cfg["steps"], int) and cfg["steps"] > 0, f"steps={cfg['steps']} must be a positive integer")
    need(isinstance(cfg["seed"], int) and cfg["seed"] >= 0, f"seed={cfg['seed']} must be a non-negative integer")
    need(isinstance(cfg["guidance"], (int, float)) and cfg["guidance"] >= 0,
         f"guidance={cfg['guidance']} must be a number >= 0 (1 disables classifier-free guidance)")
    need(isinstance(cfg["eta"], (int, float)) and 0 <= cfg["eta"] <= 1, f"eta={cfg['eta']} must be in [0, 1]")
    for key in ("width", "height"):
        need(isinstance(cfg[key], int), f"{key}={cfg[key]} must be an integer number of pixels")
    vbs = cfg["view_batch_size"]
    need(vbs is None or isinstance(vbs, int) and vbs > 0, f"view_batch_size={vbs} must be a positive integer or null")
    need(isinstance(cfg["prompt"], str), "prompt must be a string")


def expand_multirun(args: list[str]) -> list[list[str]]:
    """``seed=0,1 sync=a,b`` -> the cartesian product of runs; ``\\,`` keeps a literal comma."""
    axes = []
    for key, value in parse_overrides(args):
        parts = [p.replace("\\,", ",") for p in re.split(r"(?<!\\),", value)]
        axes.append([f"{key}={p}" for p in parts])
    return [list(combo) for combo in itertools.product(*axes)] if axes else [[]]


def dump(cfg: dict) -> str:
    return yaml.safe_dump(copy.deepcopy(cfg), sort_keys=False, allow_unicode=True)
