"""One registry for canonical spaces, synchronizers and apps.

Built-ins and third-party plugins register the same way: a module listed in the
``syncframe.plugins`` entry-point group is imported, and its ``@register_*`` decorators
fill these tables. syncframe's own ``pyproject.toml`` lists ``syncframe.builtins`` there,
so every run goes through the plugin path.
"""
from __future__ import annotations

import importlib
import warnings
from importlib.metadata import entry_points
from typing import Any, Callable

from .errors import ConfigError

ENTRY_POINT_GROUP = "syncframe.plugins"


class Registry:
    """Name -> factory, with optional default options for plugins that ship no YAML."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, tuple[Callable[..., Any], dict]] = {}

    def register(self, name: str, defaults: dict | None = None):
        def decorator(factory):
            if name in self._entries and self._entries[name][0] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = (factory, dict(defaults or {}))
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        load_plugins()
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return self._entries[name][0]

    def defaults(self, name: str) -> dict:
        self.get(name)
        return dict(self._entries[name][1])

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name in self._entries


SPACES = Registry("space")
SYNCS = Registry("sync")
APPS = Registry("app")
register_space = SPACES.register
register_sync = SYNCS.register
register_app = APPS.register

_loaded = False


def load_plugins() -> None:
    """Import every module of the entry-point group once (built-ins included)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    names = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        names.add(ep.name)
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not take the built-ins down
            warnings.warn(f"syncframe plugin {ep.name!r} ({ep.value}) failed to load: {exc}")
    if "builtin" not in names:
        # Running from a source tree that was never pip-installed: no entry points exist.
        importlib.import_module("syncframe.builtins")
