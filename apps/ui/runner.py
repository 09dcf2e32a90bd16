"""Runs for the page: one model kept loaded between runs (another model unloads it), each run in
a worker thread that reports previews and can be cancelled before any model call. No Gradio here.

A cancelled run raises :class:`Cancelled` inside the loop's step callback; ``pipeline.run`` then
abandons its claimed folder, so nothing half-written is left under ``outputs/``.
"""
from __future__ import annotations

import gc
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from syncframe.errors import ConfigError
from syncframe.models.presets import model_spec
from syncframe.pipeline import load_denoiser, run
from syncframe.preview import Previewer

PREVIEW_BUDGET = 0.05  # previews may take this share of a run; beyond it they fall back to the linear map
# What the loaded weights depend on; everything else (guidance too) is per run.
MODEL_KEYS = ("model", "device", "dtype", "lora", "loras", "lora_fuse", "ip_adapter", "controlnet", "compile",
              "offload", "vae", "view_batch_size", "attention")


class Cancelled(Exception):
    """Raised in the step callback once Cancel was pressed: the run stops and leaves no folder."""


class Models:
    """One loaded model at a time: a run of the same model reuses it; another model unloads it
    first (so two never share the GPU's memory)."""

    def __init__(self):
        self.key: str | None = None
        self.denoiser = None
        self.loads = 0  # how many times a model was loaded (tests: reuse)
        self.lock = threading.Lock()

    @staticmethod
    def key_of(cfg: dict) -> str:
        return json.dumps({k: cfg.get(k) for k in MODEL_KEYS}, sort_keys=True, default=str)

    def get(self, cfg: dict):
        key = self.key_of(cfg)
        if key != self.key:
            self.unload()
            self.denoiser = load_denoiser(cfg)
            self.key = key
            self.loads += 1
        return self.denoiser

    def unload(self) -> None:
        self.denoiser, self.key = None, None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@dataclass
class Job:
    """One run: ``start()`` it, read ``events`` (``("preview", done, total, image)``, ``("done",
    folder, seconds)``, ``("error", line)``, ``("cancelled",)``), ``cancel()`` it."""

    cfg: dict
    models: Models
    root: Path = Path("outputs")
    preview_every: int = 2
    taesd: str | None = None
    events: queue.Queue = field(default_factory=queue.Queue)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    timings: dict = field(default_factory=dict)
    accept: Callable | None = None  # run's accept(Prepared): the page's caps on the settled run

    def start(self) -> "Job":
        self.thread = threading.Thread(target=self._work, name="syncframe-ui-run", daemon=True)
        self.timings["started"] = time.perf_counter()
        self.thread.start()
        return self

    def cancel(self) -> None:
        self.stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _work(self) -> None:
        try:
            with self.models.lock:  # one run at a time on the one model
                if self.stop.is_set():
                    raise Cancelled()
                denoiser = self.models.get(self.cfg)
                previewer = Previewer.for_model(denoiser, model_spec(self.cfg), self.taesd)
                self.timings["loaded"] = time.perf_counter()
                # Cancel is also read before every model call (a view batch), not only between steps:
                # one step of a large canvas can take minutes on a CPU.
                hooks = [m.register_forward_pre_hook(self._check) for m in denoiser.children()] \
                    if isinstance(denoiser, torch.nn.Module) else []
                try:
                    folder, _ = run(self.cfg, None, denoiser, on_step=lambda report: self._step(report, previewer),
                                    root=self.root, accept=self.accept)
                finally:
                    for hook in hooks:
                        hook.remove()
            self.events.put(("done", folder, time.perf_counter() - self.timings["started"]))
        except Cancelled:
            self.events.put(("cancelled",))
        except ConfigError as exc:
            self.events.put(("error", str(exc)))
        except Exception as exc:  # noqa: BLE001 - shown in the page as one line, never a traceback
            self.events.put(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))

    def _check(self, module, args) -> None:
        if self.stop.is_set():
            raise Cancelled()

    def _step(self, report, previewer: Previewer) -> None:
        if self.stop.is_set():
            raise Cancelled()
        if report.done % self.preview_every == 0 or report.done == report.total or report.done == 1:
            clock = time.perf_counter()
            # The previews' budget: the previewer's own decoder (TAESD) only while what the previews
            # cost so far stays under PREVIEW_BUDGET of the run's time; else the free linear map.
            elapsed = clock - self.timings["loaded"]
            spent = self.timings.get("preview_s", 0.0)
            image = previewer(report.canonical(), cheap=spent > PREVIEW_BUDGET * elapsed or report.done == 1)
            self.timings.setdefault("first_preview", time.perf_counter())
            self.timings["preview_s"] = spent + time.perf_counter() - clock
            self.events.put(("preview", report.done, report.total, image))
        if self.stop.is_set():
            raise Cancelled()
