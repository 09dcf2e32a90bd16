"""The two kinds of synchronization method, and what every method is handed.

- :class:`Synchronizer`: hooks on per-view trajectories. The loop owns the state (the views
  ``x_t``), calls the model once per view and step and runs the sampler's update; the method
  changes ``x_t`` before the model, ``(x0, ε)`` after it and ``x_{t-1}`` after the update
  (MultiDiffusion, SyncTweedies, ε-averaging, SyncDiffusion, ``none``).
- :class:`Trajectory`: a method that owns the trajectory's state (one canonical ``z_t``,
  StochSync's clean estimate, SpotDiffusion's canvas): :meth:`Trajectory.init` makes the
  state, :meth:`Trajectory.step` advances it by one step (calling the model as it likes), and
  :meth:`Trajectory.views` shows it as the space's views. The loop computes nothing for it.

Both declare every hook with a no-op default (docs/plugins.md lists them). A method learns about
the run through :class:`MethodContext` (``bind``): the space, the model (``ViewModel``: all
cross-process traffic goes through it and the space's ``view_sum``), the run's generator; it asks
the space for what it needs beyond the core (``space.capability("canvas")``, ...) and may patch
the model for its run (:meth:`Method.patches`).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from .samplers import Sampler, Step
from .spaces import CanonicalSpace


@dataclass
class MethodContext:
    """What :meth:`Method.bind` gets: the run's space, model (a :class:`~syncframe.loop.ViewModel`),
    sampler and generator (draws of the method's own, StochSync's fresh noise and SpotDiffusion's
    offsets, follow the seed)."""

    space: CanonicalSpace
    model: Any
    sampler: Sampler
    generator: torch.Generator


class Method:
    """What both kinds share."""

    def bind(self, ctx: MethodContext) -> None:
        """Called once before the first step (the space, the model, the sampler, the generator)."""

    def patches(self, model) -> Any:
        """A context manager the run's sampling happens inside (a method that changes the model for its
        run, SyncTweedies' cross-view attention, installs it here and removes it on exit); ``model`` is
        the run's :class:`~syncframe.loop.ViewModel`. Nothing by default."""
        return nullcontext()


class Synchronizer(Method):
    """Hooks on per-view trajectories, each a no-op by default: the base class leaves the views
    independent (``sync=none``)."""

    def before_model(self, x_t: torch.Tensor, step: Step) -> torch.Tensor:
        """The views ``x_t: [N, C, h, w]`` just before the model sees them (SyncDiffusion's guidance)."""
        return x_t

    def after_prediction(self, x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, step: Step):
        """``(x0, ε)`` of every view after the model's prediction (x0- and ε-averaging)."""
        return x0, eps

    def after_step(self, x_t: torch.Tensor, x_prev: torch.Tensor, step: Step) -> torch.Tensor:
        """The views ``x_prev`` after the sampler's update from ``x_t`` (the views the model saw):
        x_{t-1}-averaging, SyncSDE's correction by the views' disagreement at ``x_t``."""
        return x_prev


class Trajectory(Method):
    """A method that owns its state; subclasses implement :meth:`init`, :meth:`step` and :meth:`views`."""

    def schedule(self, steps: list[Step]) -> list[Step]:
        """The steps the loop runs, given the sampler's (StochSync anneals its own levels); the sampler's
        by default."""
        return steps

    def init(self, z_T: torch.Tensor, x_T: torch.Tensor) -> Any:
        """The state before the first step, from the canonical noise ``z_T`` and its projection ``x_T``
        (both at the first step's level; an SDEdit start already holds the content)."""
        raise NotImplementedError

    def step(self, state: Any, step: Step, model) -> Any:
        """The state after ``step``; ``model`` predicts ``(x0, ε)`` (a :class:`~syncframe.loop.ViewModel`)."""
        raise NotImplementedError

    def views(self, state: Any) -> torch.Tensor:
        """The state as the space's views ``[N, C, h, w]`` (previews, and the run's result at the end)."""
        raise NotImplementedError
