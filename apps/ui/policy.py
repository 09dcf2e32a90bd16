"""What a visitor of the page may ask for: the operator's caps and the keys the page refuses.

The command line trusts its user; the page does not know who types into it (``--share`` and
``--host`` put it before strangers). So a run from the page never names a server path (inputs
come by upload, under the outputs root's ``ui-inputs/``, or as the bundled examples in
``assets/``), never chooses where its folder goes, the device, or a guard, and stays under the
caps the operator set on the command line. ``--trust-paths`` gives a local user server paths back.
No Gradio here: the page calls :meth:`PagePolicy.check` on every run's overrides.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from syncframe.config import GROUPS, RunOptions, group_entry
from syncframe.errors import ConfigError
from syncframe.options import TextMark, has_mark, model_inside

ASSETS = Path(__file__).resolve().parents[2] / "assets"
# Keys a visitor never sets: where the folder goes, the hardware, the processes, and the guards the
# operator's caps stand behind (the page sets max_views itself).
REFUSED = {"out": "the page picks each run's folder under its outputs root",
           "device": "the operator's hardware is chosen where the page starts",
           "dtype": "the operator's hardware is chosen where the page starts",
           "offload": "the operator's hardware is chosen where the page starts",
           "compile": "the operator's hardware is chosen where the page starts",
           "view_batch_size": "a guard of the server's memory",
           "max_views": "the operator's cap (syncframe ui --max-views)",
           "max_memory_gb": "a guard of the server's memory",
           "launcher": "runs from the page stay in the page's process",
           "app.max_faces": "a guard of the server's time",
           "app.unwrap_timeout": "a guard of the server's time",
           "app.decode_batch_size": "a guard of the server's memory"}


@dataclass(frozen=True)
class PagePolicy:
    """The operator's caps (``syncframe ui --max-steps ...``) and whether server paths are trusted."""

    max_steps: int = 100
    max_views: int = 256
    max_pixels: int = 4096 * 2048
    max_queue: int = 8
    max_upload_mb: int = 50
    trust_paths: bool = False

    def describe(self) -> str:
        """The caps, for the page's header."""
        paths = "server paths allowed (--trust-paths)" if self.trust_paths else "inputs by upload"
        return (f"Limits of this page: up to {self.max_steps} steps, {self.max_views} views and "
                f"{self.max_pixels / 1e6:.1f} megapixels a run, {self.max_queue} runs waiting, uploads up to "
                f"{self.max_upload_mb} MB; {paths}.")

    def accept(self, prepared) -> None:
        """``pipeline.run``'s last check, on the run as the app settled it."""
        self.check_size(prepared.cfg)

    def forced(self) -> list[str]:
        """Overrides the page puts after the visitor's: the views cap as the run's own guard."""
        return [f"max_views={self.max_views}"]

    def check(self, cfg: dict, defaults: dict, root: Path) -> None:
        """Refuse, in one line, what a visitor may not ask for: ``cfg`` is the run as resolved,
        ``defaults`` the tab's defaults (the operator's; never refused), ``root`` the outputs root."""
        for key, value in changed_leaves(cfg, defaults):
            refused = next((why for k, why in REFUSED.items() if key == k or key.startswith(k + ".")), None)
            if refused is not None:
                raise ConfigError(f"{key}= cannot be set from the page ({refused}); use syncframe run on the "
                                  "server for it")
            if not self.trust_paths and isinstance(value, str) and not is_text(cfg, key) \
                    and names_a_path(value) and not inside(value, [root / "ui-inputs", ASSETS]):
                raise ConfigError(f"{key}= names a server path or a repository, which the page does not accept: "
                                  "upload the file instead (or name a bundled example or a preset); the operator can start syncframe ui "
                                  "--trust-paths to allow server paths")

    def check_size(self, cfg: dict) -> None:
        """``cfg``'s steps and size against the caps: before a run starts, what the visitor set, and
        once the app has settled the rest (``accept``), all of it."""
        steps, width, height = cfg.get("steps"), cfg.get("width"), cfg.get("height")
        if steps is not None and steps > self.max_steps:
            raise ConfigError(f"steps={steps} is over this page's cap of {self.max_steps} (syncframe ui --max-steps)")
        if width is not None and height is not None and width * height > self.max_pixels:
            raise ConfigError(f"{width}x{height} is {width * height / 1e6:.1f} megapixels, over this page's cap of "
                              f"{self.max_pixels / 1e6:.1f} (syncframe ui --max-pixels)")


def changed_leaves(cfg: Any, defaults: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of ``cfg`` that differs from ``defaults`` (a list that
    differs yields its items as ``key[i]``); a section whose ``name`` changed counts as all new."""
    if isinstance(cfg, dict):
        base = defaults if isinstance(defaults, dict) and defaults.get("name") == cfg.get("name") else {}
        for k, v in cfg.items():
            yield from changed_leaves(v, base.get(k, _MISSING), f"{key}.{k}" if key else k)
    elif isinstance(cfg, list):
        if cfg != defaults:
            for i, v in enumerate(cfg):
                yield from changed_leaves(v, _MISSING, f"{key}[{i}]")
    elif cfg != defaults and cfg is not None:
        yield key, cfg


_MISSING = object()


def is_text(cfg: dict, key: str) -> bool:
    """Whether ``key`` of ``cfg`` is free text (a prompt): its schema field carries TextMark."""
    parts = [p for p in re.split(r"\.|\[\d+\]", key) if p]
    head = parts[0]
    if head in GROUPS and len(parts) > 1:
        schema, parts = group_entry(head, cfg[head]["name"]).options, parts[1:]
    else:
        app = group_entry("app", cfg["app"]["name"])
        schema = RunOptions if head in RunOptions.model_fields or app.inputs is None else app.inputs
    annotation: Any = schema
    for part in parts:
        model = model_inside(annotation)
        if model is None or part not in model.model_fields:
            return False
        field = model.model_fields[part]
        if any(isinstance(m, TextMark) for m in field.metadata):
            return True
        annotation = field.annotation
    return has_mark(annotation, TextMark)


def names_a_path(value: str) -> bool:
    """Whether ``value`` reads as a path or repository id rather than a name (``tiny``, ``vase``):
    absolute, home-relative, dotted, with a separator, or a file or folder that exists here."""
    if not value:
        return False
    if value.startswith(("/", "~", ".", "\\")) or "/" in value or "\\" in value or re.match(r"^[A-Za-z]:", value):
        return True
    try:
        return os.path.lexists(value)
    except (OSError, ValueError):
        return True


def inside(value: str, folders: list[Path]) -> bool:
    """Whether the path ``value`` (symbolic links followed) lies inside one of ``folders``."""
    try:
        path = Path(value).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(path.is_relative_to(folder.resolve()) for folder in folders)


def scrub(message: str, root: Path) -> str:
    """``message`` without the server's own paths (its outputs root, working folder, temp folder,
    home), which a visitor has no business learning; the message's sense survives."""
    places = {str(root.resolve()): "<outputs>", str(Path.cwd()): "<server>", tempfile.gettempdir(): "<temp>",
              str(Path.home()): "<home>"}
    for place, name in sorted(places.items(), key=lambda kv: -len(kv[0])):
        if len(place) > 1:
            message = message.replace(place, name)
    return message


def check_host(host: str) -> None:
    """``--host`` names an address of this machine (or 0.0.0.0 / ::), checked before Gradio starts:
    Gradio's own error for a bad host blames the port."""
    import socket

    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"syncframe ui: --host {host!r} does not resolve ({exc}); give an address of this "
                          "machine: 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or its name") from None
    family, _, _, _, address = found[0]
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address[0], 0))
    except OSError as exc:
        raise ConfigError(f"syncframe ui: --host {host!r} is not an address of this machine ({exc.strerror})"
                          "; give 127.0.0.1, 0.0.0.0 or one of its own addresses") from None
