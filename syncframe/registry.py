"""One registry for synchronizers, apps, models, samplers and region layouts (an app builds its space).

Built-ins and third-party plugins register the same way: a module listed in the
``syncframe.plugins`` entry-point group is imported, and its ``@register_*`` decorators
fill these tables. syncframe's own ``pyproject.toml`` lists ``syncframe.builtins`` there,
so every run goes through the plugin path.

An entry is a factory plus its schema (:mod:`syncframe.options`): ``options`` is the section's
pydantic model, ``preset`` the values this name sets in it (``multidiffusion`` and ``synctweedies``
are presets of one averaging schema), ``common`` the common keys an app sets unless the user does
(its default sync, width, height), ``inputs`` an app's own top-level keys (``mesh=``, ``depth=``).
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

from .errors import ConfigError
from .messages import note
from .options import Options, infer_options

ENTRY_POINT_GROUP = "syncframe.plugins"


@dataclass
class Entry:
    factory: Callable[..., Any]
    options: type[Options]
    preset: dict = field(default_factory=dict)
    common: dict = field(default_factory=dict)
    inputs: type[Options] | None = None
    summary: str = ""  # one line for --help; the factory's docstring's first line by default
    facts: Any = None  # an app's declared facts (syncframe.apps.base.AppFacts)
    hidden: bool = False  # a schema behind presets, never chosen by name in lists (--help, the page)


class Registry:
    """Name -> :class:`Entry`."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, options: type[Options] | None = None, preset: dict | None = None,
                 common: dict | None = None, inputs: type[Options] | None = None, defaults: dict | None = None,
                 summary: str | None = None, facts: Any = None, hidden: bool = False):
        """Decorator. ``defaults``: for plugins without a schema, option defaults whose types become it;
        ``facts``: what an app declares about itself (``AppFacts``: its main image, what the page may
        paint, each method's published settings on it, ...)."""
        def decorator(factory):
            if name in self._entries and self._entries[name].factory is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            schema = options or infer_options(name, defaults or {})
            line = summary or (factory.__doc__ or "").strip().split("\n")[0]
            self._entries[name] = Entry(factory, schema, dict(preset or {}), dict(common or {}), inputs, line, facts,
                                        hidden)
            return factory

        return decorator

    def entry(self, name: str) -> Entry:
        load_plugins()
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), self._entries, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{hint}; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def get(self, name: str) -> Callable[..., Any]:
        return self.entry(name).factory

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def shown(self) -> list[str]:
        """The names a user chooses from (schemas behind presets left out)."""
        return [name for name in self.names() if not self._entries[name].hidden]

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name in self._entries


SYNCS = Registry("sync")
APPS = Registry("app")
MODELS = Registry("model")
SAMPLERS = Registry("sampler")
REGIONS = Registry("regions")
register_sync = SYNCS.register
register_app = APPS.register
register_model = MODELS.register
register_sampler = SAMPLERS.register
register_regions = REGIONS.register

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
            note(f"plugin {ep.name!r} ({ep.value}) failed to load and is skipped: {exc}")
    if "builtin" not in names:
        # Running from a source tree that was never pip-installed: no entry points exist.
        importlib.import_module("syncframe.builtins")
