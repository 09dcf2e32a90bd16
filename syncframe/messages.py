"""Notes for the user: said once per run, in words, on stderr, and kept for the run's ``run.json``.

Python's ``warnings`` print a source line and a category name; a user of the command line needs
the sentence only, once. The libraries syncframe drives speak only of errors while a run goes on.
"""
from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager

_printed: set[str] = set()
_collector: list[str] | None = None


_held: list[str] | None = None


def note(text: str) -> None:
    """Print ``syncframe: note: text`` to stderr the first time this text comes up in the run being
    collected (in the process, outside a run), and add it to that run's notes."""
    if _collector is not None:
        if text in _collector:
            return
        _collector.append(text)
    elif text in _printed:
        return
    _printed.add(text)
    if _held is not None:
        _held.append(text)
    else:
        _say(text)


def _say(text: str) -> None:
    print(f"syncframe: note: {text}", file=sys.stderr, flush=True)


@contextmanager
def holding():
    """Notes said inside are printed when the block ends normally and dropped when it raises: a
    run refused while it is checked says its one error line, not notes about a run that never starts."""
    global _held
    previous, _held = _held, []
    try:
        yield
    except BaseException:
        _held = previous
        raise
    held, _held = _held, previous
    for text in held:
        if _held is not None:
            _held.append(text)
        else:
            _say(text)


@contextmanager
def collecting():
    """``with collecting() as notes:`` — the notes said inside, for one run's metadata."""
    global _collector
    previous, _collector = _collector, []
    try:
        yield _collector
    finally:
        _collector = previous


@contextmanager
def quiet_libraries():
    """While a run goes on, diffusers' and transformers' own log lines (e.g. that an image processor
    "requires torchvision", which syncframe never needs) and their FutureWarnings are kept to errors;
    their verbosity and the warning filters are restored afterwards."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    saved = transformers_logging.get_verbosity(), diffusers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    diffusers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"(diffusers|transformers)\..*")
            yield
    finally:
        transformers_logging.set_verbosity(saved[0])
        diffusers_logging.set_verbosity(saved[1])


def phases(timings: dict) -> str:
    """``load 2.1 s, sample 7.5 s, finalize 186.0 s; 196.0 s in all``: every phase that took a
    tenth of a second or more, in the order the run went through them (a long finalize shows)."""
    shown = [f"{name} {seconds:.1f} s" for name, seconds in timings.items()
             if isinstance(seconds, (int, float)) and seconds >= 0.1 and name != "total"]
    total = sum(v for k, v in timings.items() if isinstance(v, (int, float)) and k != "total")
    return f"{', '.join(shown) or 'sample 0.0 s'}; {total:.1f} s in all"
