"""Notes for the user: said once, in words, on stderr, and kept for the run's ``run.json``.

Python's ``warnings`` print a source line and a category name; a user of the command line needs
the sentence only, once.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

_printed: set[str] = set()
_collector: list[str] | None = None


def note(text: str) -> None:
    """Print ``syncframe: note: text`` to stderr the first time this text comes up in the process,
    and add it to the notes of the run being collected (every time)."""
    if _collector is not None and text not in _collector:
        _collector.append(text)
    if text not in _printed:
        _printed.add(text)
        print(f"syncframe: note: {text}", file=sys.stderr, flush=True)


@contextmanager
def collecting():
    """``with collecting() as notes:`` — the notes said inside, for one run's metadata."""
    global _collector
    previous, _collector = _collector, []
    try:
        yield _collector
    finally:
        _collector = previous
