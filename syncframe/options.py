"""The schema of the config tree: every option has a declared type, range and one-line description.

Each section of the tree (the common keys, an app, a synchronizer, a model) is a pydantic model
derived from :class:`Options`: strict types, no unknown keys. Values given on the command line are
strings; :func:`parse_value` turns them into Python values by the option's declared type (YAML for
numbers, lists and mappings; text options keep the string as typed), and :func:`validate` checks a
section and turns pydantic's errors into one :class:`ConfigError` line that names the option,
the value and what it accepts.
"""
from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

import annotated_types as at
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo

from .errors import ConfigError


class Options(BaseModel):
    """Base of every section: strict types (no silent conversions), unknown keys refused."""

    model_config = ConfigDict(strict=True, extra="forbid", validate_default=True)

    def settle(self, facts) -> dict:
        """The options this section left to ``null`` / ``auto`` and what they become for this run
        (:class:`~syncframe.plan.RunFacts`), as ``{option: value}``; pure, applied by the caller in one
        place and recorded in config.yaml and run.json alike. Nothing by default."""
        return {}


class TextMark:
    """Marks free text (prompts): a command-line value is taken as typed, never parsed as YAML."""


class PathMark:
    """Marks a path (``what``: "file", "folder", "file or folder", ...) for messages and help."""

    def __init__(self, what: str):
        self.what = what


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _no_control_characters(value: str) -> str:
    found = CONTROL.search(value)
    if found:
        raise ValueError(f"holds the control character {found.group()!r}; paths and names with control characters "
                         "(newlines, escapes) are refused: rename it")
    return value


Text = Annotated[str, TextMark()]
FilePath = Annotated[str, PathMark("path to a file"), AfterValidator(_no_control_characters)]
FolderPath = Annotated[str, PathMark("folder path"), AfterValidator(_no_control_characters)]
Source = Annotated[str, PathMark("repository id or local folder"), AfterValidator(_no_control_characters)]


def option(default: Any, description: str, **constraints) -> Any:
    """A field with its default, description and pydantic constraints (ge, le, min_length, ...)."""
    return Field(default, description=description, **constraints)


def infer_options(name: str, defaults: dict) -> type[Options]:
    """A schema for a plugin that ships only default values: each key takes its default's type."""
    fields = {}
    for key, value in defaults.items():
        kind = Any if value is None else float if isinstance(value, float) else type(value)
        fields[key] = (kind, Field(value, description=f"(plugin option; default {value!r})"))
    return create_model(f"{name}Options", __base__=Options, **fields)


# -- command-line values ----------------------------------------------------------------------

def parse_value(annotation: Any, raw: str, metadata: list | tuple = ()) -> Any:
    """A command-line string -> the Python value to validate against ``annotation`` (with the
    field's ``metadata``, where pydantic keeps the marks of a top-level ``Annotated``)."""
    if any(isinstance(m, TextMark) for m in metadata) or has_mark(annotation, TextMark):
        return raw
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw
    if isinstance(value, str) and (any(isinstance(m, PathMark) for m in metadata) or has_mark(annotation, PathMark)):
        return raw  # a path as typed: YAML would fold a newline into a space and drop a " #..." tail
    if isinstance(value, str) and _accepts(annotation, float):
        try:  # YAML 1.1 reads 1e-3 as a string
            return float(value)
        except ValueError:
            pass
    return value


MAX_YAML_BYTES = 16 * 2**20


def read_yaml(path: Path, label: str, what: str) -> Any:
    """The YAML file ``path`` (``label``: how the user gave it, e.g. ``--config run/config.yaml``),
    read with ``safe_load``; any error (unreadable, bad syntax, a ``!!python/...`` tag, which is never
    constructed) is one ConfigError line with the file, line and column, saying it should be ``what``."""
    try:
        with open(path, "rb") as file:  # bounded: /dev/zero or a huge file is refused, not read into memory
            data = file.read(MAX_YAML_BYTES + 1)
        if len(data) > MAX_YAML_BYTES:
            raise ConfigError(f"{label}: larger than {MAX_YAML_BYTES // 2**20} MB, which no config is; give {what}")
        return yaml.safe_load(data.decode("utf-8"))
    except RecursionError:
        raise ConfigError(f"{label}: nested too deeply to read; give {what}") from None
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such file; give {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read it ({getattr(exc, 'strerror', None) or exc}); give {what}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        if "python/" in problem:
            problem += " (Python tags are never run)"
        raise ConfigError(f"{label}{where}: not valid YAML: {problem}; give {what}") from None


def plain(value: Any) -> Any:
    """Python-API values in the types the schema expects: paths as strings, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


# -- validation and messages ------------------------------------------------------------------

def validate(cls: type[Options], data: dict, prefix: str = "") -> dict:
    """Check ``data`` against ``cls``; returns the validated plain dict or raises one ConfigError."""
    try:
        return cls.model_validate(data).model_dump()
    except ValidationError as exc:
        raise ConfigError(error_line(cls, exc.errors()[0], prefix)) from None


def validated(cls: type[Options], data: dict, prefix: str = "") -> Options:
    """:func:`validate`, returning the section itself (typed) rather than its plain dict."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(error_line(cls, exc.errors()[0], prefix)) from None


def section_of(field) -> type[Options] | None:
    """The section (an Options subclass) a field holds, if it holds one."""
    annotation = field.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, Options) else None


def resolve_options(schema: type[Options], pairs: list[tuple[str, str]], command: str,
                    shown: Callable[[str], str] | None = None) -> Options:
    """``key=value`` pairs (command-line strings) -> the validated ``schema``: ``key`` sets a field,
    ``section.key`` a field of a nested section, ``section=value`` its primary key (``reference=DIR``
    with ``reference.make=N``). Every mistake is one ConfigError line naming ``command``'s keys, each
    as the user typed it (``shown``: ``port`` -> ``--port`` for flags)."""
    values: dict = {}
    keys = [f"{name}.{inner}" if section_of(f) and inner != getattr(section_of(f), "primary", None) else name
            for name, f in schema.model_fields.items()
            for inner in (section_of(f).model_fields if section_of(f) else [None])]
    for key, raw in pairs:
        head, _, rest = key.partition(".")
        field = schema.model_fields.get(head)
        inner = section_of(field) if field is not None else None
        target = inner.model_fields.get(rest) if inner is not None and rest else None
        if field is None or (rest and target is None):
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{command}: unknown key {key!r}{hint}; valid keys: {', '.join(k + '=' for k in keys)}")
        if rest:
            values.setdefault(head, {})[rest] = parse_value(target.annotation, raw, target.metadata)
        elif inner is not None and "primary" in inner.__class_vars__:
            primary = inner.model_fields[inner.primary]
            values.setdefault(head, {})[inner.primary] = parse_value(primary.annotation, raw, primary.metadata)
        else:
            values[head] = parse_value(field.annotation, raw, field.metadata)
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        line = error_line(schema, error, "")
        key = ".".join(str(p) for p in error["loc"] if not isinstance(p, int))
        if shown is not None and line.startswith(key):
            line = f"{command}: {shown(key)}{line[len(key):]}"
        raise ConfigError(line) from None


def error_line(cls: type[Options], error: dict, prefix: str) -> str:
    loc = [p for p in error["loc"]]
    if error["type"] == "extra_forbidden":
        key = _dotted(prefix, loc)
        return f"unknown config key {key!r}; valid keys: {', '.join(cls.model_fields)}"
    field, path = _field_at(cls, loc)
    key = _dotted(prefix, path)
    if field is None:
        return f"{key or 'config'}: {error['msg'].removeprefix('Value error, ')}"
    wanted = expectation(*_item(field, path))
    if error["type"] == "missing":
        message = f"{key} is missing: give {wanted}"
    elif error["type"] in ("value_error", "assertion_error"):
        message = f"{key}={_show(error.get('input'))}: {error['msg'].removeprefix('Value error, ')}"
    else:
        message = f"{key}={_show(error.get('input'))}: expected {wanted}"
    return message + (f" ({field.description})" if field.description else "")


def _item(field, path: list) -> tuple[Any, list]:
    """(annotation, metadata) of what ``path`` names: the field, or an item of a list field."""
    annotation, metadata = field.annotation, field.metadata
    for part in reversed(path):
        if not isinstance(part, int):
            break
        inner = [a for a in (_args(annotation) if typing.get_origin(annotation) is not list else [annotation])
                 if typing.get_origin(a) is list]
        if not inner:
            break
        annotation, metadata = typing.get_args(inner[0])[0], []
    return annotation, metadata


def _show(value: Any, limit: int = 80) -> str:
    """A value as the user would type it (YAML flow style), shortened past ``limit`` characters."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    text = repr(value)
    if not isinstance(value, str) and _plain_data(value):
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
    text = " ".join(text.split("\n"))  # one line, whatever came in
    return text if len(text) < limit else text[:limit - 3] + "..."


def _plain_data(value: Any) -> bool:
    """Whether YAML shows ``value`` as a user would type it (numbers, booleans, text, lists, mappings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_data(v) for k, v in value.items())
    return False


def _dotted(prefix: str, loc: list) -> str:
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _field_at(cls: type[BaseModel], loc: list):
    """The deepest field named by a pydantic error location, and the location up to it."""
    field, path, current = None, [], cls
    for part in loc:
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel) \
                and part in current.model_fields:
            field = current.model_fields[part]
            path.append(part)
            current = model_inside(field.annotation)
        elif isinstance(part, int) and field is not None:
            path.append(part)
        else:
            break
    return field, path


def model_inside(annotation: Any):
    """The pydantic model a field holds (directly, in a list or an Optional), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in _args(annotation):
        inner = model_inside(arg)
        if inner is not None:
            return inner
    return None


def _args(annotation: Any) -> tuple:
    if typing.get_origin(annotation) is Annotated:
        return (typing.get_args(annotation)[0],)
    return typing.get_args(annotation)


def has_mark(annotation: Any, mark: type) -> bool:
    if typing.get_origin(annotation) is Annotated:
        if any(isinstance(m, mark) for m in typing.get_args(annotation)[1:]):
            return True
    return any(has_mark(a, mark) for a in _args(annotation) if a is not type(None))


def _accepts(annotation: Any, kind: type) -> bool:
    if annotation is kind:
        return True
    return any(_accepts(a, kind) for a in _args(annotation))


def expectation(annotation: Any, metadata: list | tuple = ()) -> str:
    """What an option accepts, in words: "an integer >= 1, or null", "one of fp32, fp16"."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner, *marks = typing.get_args(annotation)
        expanded = [m for mark in marks for m in (mark.metadata if isinstance(mark, FieldInfo) else [mark])]
        return expectation(inner, [*expanded, *metadata])
    if origin in (Union, types.UnionType):
        members = typing.get_args(annotation)
        words = [expectation(m, metadata) for m in members if m is not type(None)]
        if type(None) in members:
            words.append("null")
        return ", or ".join(words)
    for mark in metadata:
        if isinstance(mark, PathMark):
            return f"a {mark.what}"
    if origin is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation)
        return f"a list{_bounds(metadata, 'items')} of {_plural(expectation(item))}"
    if annotation is bool:
        return "true or false"
    if annotation in (int, float):
        multiple = [m.multiple_of for m in metadata if isinstance(m, at.MultipleOf)]
        kind = "an integer" + (f" multiple of {multiple[0]}" if multiple else "") if annotation is int else "a number"
        return kind + _bounds(metadata, "")
    if annotation is str:
        return "a string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        keys = ", ".join(annotation.model_fields)
        return f"a mapping with keys {{{keys}}}"
    return "any value"


def _plural(words: str) -> str:
    if words.startswith("a mapping"):
        return "mappings" + words.removeprefix("a mapping")
    return words.removeprefix("an ").removeprefix("a ") + ("s" if not words.startswith("one of") else "")


def _bounds(metadata, unit: str) -> str:
    """" in [1, 100]", " >= 0", " (at least 1 items)" from the constraints of a field."""
    low = high = None
    sizes = []
    for mark in metadata:
        if isinstance(mark, at.MinLen) and mark.min_length:
            sizes.append(f"at least {mark.min_length} {unit}")
        elif isinstance(mark, at.MaxLen):
            sizes.append(f"at most {mark.max_length} {unit}")
        elif isinstance(mark, (at.Ge, at.Gt)):
            low = ("[" if isinstance(mark, at.Ge) else "(", getattr(mark, "ge", getattr(mark, "gt", None)))
        elif isinstance(mark, (at.Le, at.Lt)):
            high = ("]" if isinstance(mark, at.Le) else ")", getattr(mark, "le", getattr(mark, "lt", None)))
    if sizes:
        return f" ({', '.join(sizes)})"
    if low and high:
        return f" in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f" {'<=' if high[0] == ']' else '<'} {high[1]}"
    return ""


_UNSET = object()


def _normalized(field) -> Any:
    """A field's default as validation returns it (nested mappings with every key)."""
    adapter = TypeAdapter(field.annotation)
    try:
        return adapter.dump_python(adapter.validate_python(field.default))
    except ValidationError:
        return field.default


def field_help(name: str, field, value: Any = _UNSET) -> str:
    """Help for one option: ``name = default  [what it accepts]`` (with this run's ``value`` when
    given) and its description on the next line."""
    if value is _UNSET and field.is_required():
        return f"  {name} = (required)   [{expectation(field.annotation, field.metadata)}]\n      {field.description or ''}"
    shown = _show(field.default if value is _UNSET else value)
    if value is not _UNSET and value != _normalized(field):
        shown += f"  (default {_show(field.default)})"
    return f"  {name} = {shown}   [{expectation(field.annotation, field.metadata)}]\n      {field.description or ''}"
