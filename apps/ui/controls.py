"""The page's controls, generated from the config schema: one :class:`Control` per option of the
common keys, the app's inputs and options, and every sync's options. A new option, sync or app
(a plugin's too) appears in the page without UI code. Pure: no Gradio here.

A control turns its value back into the ``key=value`` override the command line takes; a value
equal to the resolved default gives no override, so the command a run shows is the shortest one.
"""
from __future__ import annotations

import shlex
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

import yaml
from pydantic.fields import FieldInfo

from syncframe.config import REGISTRIES, RunOptions, group_entry, group_names, resolve
from syncframe.keep import KeepOptions
from syncframe.registry import APPS
from syncframe.options import Options, PathMark, TextMark

# The common keys a tab shows first, in this order; the others go under "More options".
MAIN_KEYS = ("prompt", "negative_prompt", "model", "sync", "sampler", "steps", "seed", "width", "height",
             "guidance")
# Keys the page sets itself or that only make sense on a command line.
PAGE_KEYS = {"app", "out", "progress", "regions"}


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a page maps each to its widget
class Control:
    """One option: its override key, what kind of widget it needs, its default and help."""

    key: str
    kind: str  # prompt | text | int | float | bool | choice | file | yaml
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    free_choice: bool = False  # a dropdown that also takes a typed value (model: any repository id)

    @property
    def label(self) -> str:
        return self.key.replace("_", " ")


def _bounds(field: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for mark in field.metadata:
        low = getattr(mark, "ge", None) if getattr(mark, "ge", None) is not None else low
        low = getattr(mark, "gt", None) if low is None and getattr(mark, "gt", None) is not None else low
        high = getattr(mark, "le", None) if getattr(mark, "le", None) is not None else high
        high = getattr(mark, "lt", None) if high is None and getattr(mark, "lt", None) is not None else high
    return low, high


def _marks(annotation: Any) -> list:
    if typing.get_origin(annotation) is typing.Annotated:
        return list(typing.get_args(annotation)[1:])
    return [m for arg in typing.get_args(annotation) for m in _marks(arg)]


def _bare(annotation: Any) -> tuple[Any, bool]:
    """``int | None`` -> ``(int, True)``; ``Annotated[str, ...]`` -> ``(str, False)``."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _bare(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner, _ = _bare(members[0]) if len(members) == 1 else (annotation, False)
        return inner, type(None) in typing.get_args(annotation)
    return annotation, False


def control_of(key: str, field: FieldInfo, default: Any) -> Control:
    """The widget an option needs, from its type: Literal -> choice, bool, int, float, text (a
    prompt when marked so), a file when it is a path to a file; anything else is typed as YAML."""
    marks = [*field.metadata, *_marks(field.annotation)]
    kind_of, nullable = _bare(field.annotation)
    low, high = _bounds(field)
    text = field.description or ""
    if typing.get_origin(kind_of) is Literal:
        return Control(key, "choice", default, text, tuple(typing.get_args(kind_of)), nullable=nullable)
    if kind_of is bool:
        return Control(key, "bool", default, text, nullable=nullable)
    if kind_of is int:
        return Control(key, "int", default, text, minimum=low, maximum=high, nullable=nullable)
    if kind_of is float:
        return Control(key, "float", default, text, minimum=low, maximum=high, nullable=nullable)
    if kind_of is str:
        if any(isinstance(m, TextMark) for m in marks):
            return Control(key, "prompt", default, text, nullable=nullable)
        path = next((m for m in marks if isinstance(m, PathMark)), None)
        if path is not None and ("file" in path.what or "image" in path.what) and "folder" not in path.what:
            return Control(key, "file", default, text, nullable=True)
        return Control(key, "text", default, text, nullable=nullable)
    return Control(key, "yaml", default, text, nullable=nullable)


def schema_controls(schema: type[Options] | None, prefix: str, values: dict, skip=()) -> list[Control]:
    """Controls of every field of ``schema`` (keys ``prefix + name``), defaults from ``values``; a
    section with a primary key gets one control per field, the primary one under the section's own
    key (``image=`` of app=panorama360, then ``image.yaw``, ...)."""
    if schema is None:
        return []
    controls = []
    for name, field in schema.model_fields.items():
        if name in skip or name == "name":
            continue
        section, _ = _bare(field.annotation)
        if isinstance(section, type) and issubclass(section, Options) and "primary" in section.__class_vars__:
            controls += primary_section_controls(section, prefix + name, values.get(name) or {})
        else:
            controls.append(control_of(prefix + name, field, values.get(name, field.default)))
    return controls


def primary_section_controls(section: type[Options], key: str, values: dict) -> list[Control]:
    """``keep=<mask>`` then ``keep.blur``, ``keep.resample``: the primary field named by the section's key."""
    fields = section.model_fields
    first = control_of(key, fields[section.primary], values.get(section.primary, fields[section.primary].default))
    return [first, *schema_controls(section, f"{key}.", values, skip=(section.primary,))]


@dataclass(frozen=True)
class TabControls:
    """What one app's tab shows: the main common keys, the app's inputs and options, the other
    common keys, and each sync's options (shown when that sync is chosen)."""

    app: str
    main: list[Control]
    inputs: list[Control]
    app_options: list[Control]
    more: list[Control]
    sync_options: dict[str, list[Control]]
    defaults: dict  # the resolved config of the tab with nothing changed


def tab_controls(app: str, base: list[str] = ()) -> TabControls:
    """The controls of ``app=...``'s tab; ``base``: ``key=value`` defaults given to ``syncframe ui``."""
    cfg = resolve([f"app={app}", *base])
    common = RunOptions.model_fields
    entry = group_entry("app", app)
    values = {key: cfg.get(key) for key in common}
    values.update({"model": cfg["model"]["name"], "sync": cfg["sync"]["name"], "sampler": cfg["sampler"]["name"]})
    main = []
    for key in MAIN_KEYS:
        if key in ("model", "sync", "sampler"):
            names = REGISTRIES[key].shown()
            main.append(Control(key, "choice", values[key], common[key].description or "", tuple(names),
                                free_choice=key == "model"))
        else:
            main.append(control_of(key, common[key], values[key]))
    inputs = schema_controls(entry.inputs, "", cfg)
    if APPS.get(app).keep_frame is not None:  # keep= (a mask of what init= keeps), beside the app's inputs
        inputs += primary_section_controls(KeepOptions, "keep", cfg["keep"])
    app_options = schema_controls(entry.options, "app.", cfg["app"])
    more = [control_of(key, field, values[key]) for key, field in common.items()
            if key not in MAIN_KEYS and key not in PAGE_KEYS and _is_plain(field)]
    syncs = {}
    for name in group_names("sync"):
        defaults = cfg["sync"] if name == cfg["sync"]["name"] else resolve([f"app={app}", *base, f"sync={name}"])["sync"]
        syncs[name] = schema_controls(group_entry("sync", name).options, "sync.", defaults)
    return TabControls(app, main, inputs, app_options, more, syncs, cfg)


def _is_plain(field: FieldInfo) -> bool:
    """Nested sections (lora, metrics, attention, ...) are typed as key=value under More options."""
    kind, _ = _bare(field.annotation)
    return not (isinstance(kind, type) and issubclass(kind, Options)) and typing.get_origin(kind) is not list


def as_text(value: Any) -> str:
    """A value as the command line writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def override(control: Control, value: Any) -> str | None:
    """``key=value`` when ``value`` differs from the control's default, else None. Blank numbers
    and files are null; numbers the widget returns as floats stay integers for int options."""
    if control.kind in ("int", "float") and isinstance(value, str):  # a nullable number's text box
        text = value.strip()
        if text in ("", "null", "none", "None"):
            value = None
        else:
            try:
                value = int(text) if control.kind == "int" and text.lstrip("+-").isdigit() else float(text)
            except ValueError:
                return f"{control.key}={text}"  # refused by the config with the command line's message
    if control.kind in ("int", "float") and value in ("", None):
        value = None
    if control.kind == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    if control.kind == "file" and not value:
        value = None
    if control.kind == "yaml":
        value = None if value in ("", None) else value
        if value is not None and value == as_text(control.default):
            return None
        return None if value is None and control.default is None else f"{control.key}={value if value else 'null'}"
    if control.kind in ("text", "prompt") and value is None:
        value = ""
    if value == control.default or (value is None and control.default is None):
        return None
    if control.kind in ("text", "prompt") and value == "" and control.default is None:
        return None
    return f"{control.key}={as_text(value)}"


def command(overrides: list[str]) -> str:
    """The ``syncframe run`` line that reproduces a run of these overrides, each value quoted for
    a POSIX shell (``prompt='a red barn'``: the same argument as quoting the whole)."""
    words = []
    for line in overrides:
        key, sep, value = line.partition("=")
        safe_key = sep and shlex.quote(key) == key
        words.append(f"{key}={shlex.quote(value)}" if safe_key else shlex.quote(line))
    return " ".join(["syncframe", "run", *words])


def parse_more(text: str) -> list[str]:
    """The "more overrides" box: ``key=value`` per line or separated by spaces (shell quoting)."""
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out += shlex.split(line)
    return out
