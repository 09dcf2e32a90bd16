"""The one joint sampling loop every app shares, with a body for each kind of method
(:mod:`syncframe.methods`).

Shapes: views ``x: [N, C, h, w]``; the step's path coefficients ``a``, ``s`` (``x_t = a x0 + s ε``)
come from the sampler (:mod:`syncframe.samplers`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .errors import ConfigError
from .keep import Keep, KeptViews
from .methods import Method, MethodContext, Synchronizer, Trajectory
from .models.denoiser import Conditioning
from .samplers import Sampler, Step
from .spaces import CanonicalSpace


class ViewModel:
    """The run's model as a method calls it, and the only way a method reaches other processes.

    ``model(x, step)`` predicts ``(x0, ε)`` of the views ``x: [N, C, h, w]``: this process's
    share of them in a distributed run (other rows are zero); ``views=`` (``[N]`` bool) narrows
    that to some views. :meth:`predict` predicts given rows (gradients flow when asked for);
    :meth:`windows` predicts latents that are none of the space's views (SpotDiffusion's tiles),
    split over the processes and summed back so every process holds them all. :meth:`owns` and
    :meth:`share` tell which process denoises a view and hand its tensor to the others.
    ``predicted`` counts views predicted (one model call per view, both halves of CFG included)."""

    def __init__(self, denoiser, cond: Conditioning, num_views: int, batch_size: int | None = None, group=None,
                 owner: list[int] | None = None):
        self.denoiser, self.cond, self.group, self.owner = denoiser, cond, group, owner
        everything = torch.arange(num_views)
        self.mine = everything if group is None else everything[torch.tensor([o == group.rank for o in owner])]
        self.batch_size = batch_size or denoiser.resolve_batch_size(max(1, len(self.mine)))
        self.predicted = 0
        # Called with (view ids [B], CFG branches, step) before each model call: a method's patch
        # (cross-view attention) learns which view each batch row holds.
        self.observers: list = []

    def run(self, x: torch.Tensor, step: Step, view_ids: torch.Tensor, batch_size: int):
        """The model on rows ``x`` (the views ``view_ids``), ``batch_size`` views per call."""
        self.predicted += len(view_ids)
        branches = 2 if self.denoiser.uses_cfg else 1
        if not self.observers:
            return self.denoiser.predict(x, step, self.cond, view_ids=view_ids, batch_size=batch_size)
        parts = []
        for i in range(0, len(view_ids), batch_size):
            for observer in self.observers:
                observer(view_ids[i:i + batch_size], branches, step)
            parts.append(self.denoiser.predict(x[i:i + batch_size], step, self.cond,
                                               view_ids=view_ids[i:i + batch_size], batch_size=batch_size))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def __call__(self, x: torch.Tensor, step: Step, views: torch.Tensor | None = None):
        ids = self.mine if views is None else self.mine[views.cpu()[self.mine]]
        if len(ids) == x.shape[0]:
            return self.run(x, step, ids, self.batch_size)
        x0, eps = torch.zeros_like(x), torch.zeros_like(x)
        if len(ids):
            rows = ids.to(x.device)
            x0[rows], eps[rows] = self.run(x[rows], step, ids, self.batch_size)
        return x0, eps

    def predict(self, x: torch.Tensor, step: Step, view_ids: torch.Tensor):
        """``(x0, ε)`` of ``x: [B, C, h, w]``, the views ``view_ids`` (``[B]``), in one call; differentiable."""
        return self.run(x, step, view_ids, len(view_ids))

    def windows(self, x: torch.Tensor, step: Step, like: int = 0):
        """``(x0, ε)`` of ``x: [B, C, h, w]``, latents of the model's window size, each conditioned as
        view ``like``; in a distributed run each process predicts a contiguous share and the shares
        are summed, so every process gets every row."""
        from .distributed import partition

        rows = torch.arange(x.shape[0]) if self.group is None else torch.tensor(
            partition([1.0] * x.shape[0], self.group.world)[self.group.rank], dtype=torch.long)
        ids = torch.full((len(rows),), like, dtype=torch.long)
        if self.group is None:
            return self.run(x, step, ids, self.batch_size)
        x0, eps = torch.zeros_like(x), torch.zeros_like(x)
        if len(rows):
            x0[rows], eps[rows] = self.run(x[rows], step, ids, self.batch_size)
        both = self.group.all_reduce(torch.stack([x0, eps]))
        return both[0], both[1]

    def owns(self, view: int) -> bool:
        """Whether this process denoises ``view`` (every view in one process)."""
        return self.group is None or self.owner[view] == self.group.rank

    def share(self, tensor: torch.Tensor, view: int) -> torch.Tensor:
        """The process that owns ``view`` hands ``tensor`` to every other (the others pass a tensor of the
        same shape); ``tensor`` itself in one process."""
        return tensor if self.group is None else self.group.broadcast(tensor, self.owner[view])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, C, h, w]`` -> images ``[B, 3, H, W]`` in [-1, 1] (not clamped)."""
        return self.denoiser.decode(latents)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1] -> latents (the VAE posterior's mode)."""
        return self.denoiser.encode(images)

    def x0_slope(self, step: Step) -> float:
        """∂x0/∂x_t with the model's output held constant (SyncDiffusion's cheap gradient)."""
        return self.denoiser.x0_slope(step)

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def latent_scale(self) -> int:
        return int(self.denoiser.latent_scale)


@dataclass
class Start:
    """Where sampling starts: the steps to run and the canonical noise ``z_T`` and views ``x_T`` at
    the first one (plain noise, or SDEdit's content noised to that level); ``x_noise`` the views'
    unit noise they were drawn from (``keep=`` noises the kept content with it)."""

    steps: list[Step]
    z_T: torch.Tensor
    x_T: torch.Tensor
    x_noise: torch.Tensor


def start(space: CanonicalSpace, steps: list[Step], sampler: Sampler, generator: torch.Generator, device,
          init: torch.Tensor | None = None) -> Start:
    """The first state. ``init`` (a canonical latent, SDEdit): x = a x0 + s ε with the space's own
    view-consistent noise ε at the first of ``steps``."""
    z_noise, x_noise = (v.to(device) for v in space.sample_noise(generator))
    if init is None:
        return Start(steps, z_noise * sampler.initial_scale, x_noise * sampler.initial_scale, x_noise)
    init = init.to(device)
    if not steps:  # strength 0: the content itself
        return Start(steps, init, space.project(init), x_noise)
    a, s = steps[0].a, steps[0].s
    return Start(steps, a * init + s * z_noise, a * space.project(init) + s * x_noise, x_noise)


def view_model(space: CanonicalSpace, denoiser, cond: Conditioning, group=None) -> ViewModel:
    """The run's :class:`ViewModel`. In a distributed run (``group``) the views are split into
    contiguous runs balanced by :meth:`~syncframe.spaces.base.CanonicalSpace.view_costs`, and the space
    completes its sums over views across the group (undone by :func:`undistribute`)."""
    owner = None
    if group is not None:
        from .distributed import partition

        group.bytes_reduced = group.reductions = group.bytes_broadcast = 0
        group.communication_s = 0.0
        owner = [rank for rank, run in enumerate(partition(space.view_costs(), group.world)) for _ in run]
        space.distribute(torch.tensor([rank == group.rank for rank in owner]), group)
    return ViewModel(denoiser, cond, space.num_views, group=group, owner=owner)


def undistribute(space: CanonicalSpace, model: ViewModel) -> None:
    if model.group is not None:
        space.distribute(None, None)


def sample(space: CanonicalSpace, model: ViewModel, method: Method, sampler: Sampler, generator: torch.Generator,
           init: torch.Tensor | None = None, strength: float = 1.0, progress: bool = True,
           callback=None, keep: Keep | None = None) -> torch.Tensor:
    """Run the joint loop; returns the final views ``x_0: [N, C, h, w]``.

    ``init``: a canonical latent to start from part-way (SDEdit, the last ``strength`` of the steps).
    ``keep``: content kept exactly where its mask says (per-view methods only), blended into the
    views after every step (:mod:`syncframe.keep`).
    ``callback(step, views, total)`` after each step, with the views (read only) and how many steps
    the method runs. In a distributed run (``model.group``) the rows of views this process does not
    denoise are not read; the final views are gathered."""
    space.bind(model.denoiser)
    method.bind(MethodContext(space, model, sampler, generator))
    planned = sampler.steps if init is None else sampler.steps_from(strength)
    steps = method.schedule(planned) if isinstance(method, Trajectory) else planned
    first = start(space, steps, sampler, generator, model.device, init)
    if keep is not None and isinstance(method, Trajectory):
        raise ConfigError(f"keep= blends the kept content into per-view trajectories, and {type(method).__name__} "
                          "owns its state")  # prepare() refuses it first, in the sync's words
    kept = keep.bind(space, first.x_noise) if keep is not None else None
    bar = tqdm(steps, desc="denoising", disable=not progress or (model.group is not None and not model.group.leader))
    report = (lambda step, x: callback(step, x, len(steps))) if callback is not None else (lambda step, x: None)
    with method.patches(model):
        if not steps:
            x = first.x_T
        elif isinstance(method, Trajectory):
            x = run_trajectory(method, first, bar, model, report)
        else:
            x = run_hooks(method, first.x_T, bar, space, sampler, model, generator, report, kept)
    return gather(x, model)


def run_hooks(sync: Synchronizer, x: torch.Tensor, steps, space: CanonicalSpace, sampler: Sampler, model: ViewModel,
              generator: torch.Generator, report, kept: KeptViews | None = None) -> torch.Tensor:
    """Per-view trajectories: the model and the sampler's update on every view, the method's hooks
    between; ``kept`` content blended in after each step, and with its ``resample`` each step but
    the last taken again that many times from the result noised back to the step's level (RePaint)."""
    memory: dict = {}  # a multistep sampler's history of the views
    for number, step in enumerate(steps, 1):
        last = number == len(steps)
        x_t, history = x, dict(memory)
        for again in range(1 + (kept.resample if kept is not None and not last else 0)):
            if again:  # the same step again, from its result with fresh noise; the history as it was
                x_t = kept.renoise(x, step, space.sample_noise(generator)[1].to(x.device))
                memory.clear()
                memory.update(history)
            x = one_step(sync, x_t, step, space, sampler, model, generator, memory)
            if kept is not None:
                x = kept.blend(x, step, last)
        report(step, x)
    return x


def one_step(sync: Synchronizer, x: torch.Tensor, step: Step, space: CanonicalSpace, sampler: Sampler,
             model: ViewModel, generator: torch.Generator, memory: dict) -> torch.Tensor:
    """The views after ``step`` from ``x``: the method's hooks around the model and the sampler's update."""
    x = sync.before_model(x, step)
    with torch.no_grad():
        x0, eps = model(x, step)
    x0, eps = sync.after_prediction(x, x0, eps, step)
    noise = None
    if sampler.stochastic:  # drawn through the space, so views share it where they overlap
        noise = space.sample_noise(generator)[1].to(x.device)
    return sync.after_step(x, sampler.update(x, x0, eps, step, noise, memory), step)


def run_trajectory(method: Trajectory, first: Start, steps, model: ViewModel, report) -> torch.Tensor:
    """A method that owns its state: it advances the state, the loop reports its views."""
    state = method.init(first.z_T, first.x_T)
    for step in steps:
        state = method.step(state, step, model)
        report(step, method.views(state))
    return method.views(state)


def gather(x: torch.Tensor, model: ViewModel) -> torch.Tensor:
    """Every view's final row, from the process that denoised it (``x`` itself in one process)."""
    if model.group is None:
        return x
    rows = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    rows[model.mine.to(x.device)] = True
    return model.group.all_reduce(torch.where(rows.reshape(-1, 1, 1, 1), x, torch.zeros_like(x)))
