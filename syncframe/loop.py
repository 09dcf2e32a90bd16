"""The one joint sampling loop every app shares (see DESIGN.md).

Shapes: views ``x: [N, C, h, w]``; the step's path coefficients ``a``, ``s`` (``x_t = a x0 + s ε``)
come from the sampler (:mod:`syncframe.samplers`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .models.denoiser import Conditioning
from .samplers import Sampler, Step
from .spaces import CanonicalSpace


@dataclass
class SampleContext:
    """What synchronizers that call the model themselves (SyncDiffusion) need. In a distributed run
    ``owner[i]`` is the rank that denoises view i and ``group`` the run's process group."""

    denoiser: object
    cond: Conditioning
    space: CanonicalSpace
    batch_size: int
    group: object = None
    owner: list[int] | None = None
    generator: torch.Generator | None = None  # the run's: draws of its own (StochSync's fresh noise) follow the seed

    def mine(self, view: int) -> bool:
        """Whether this process denoises ``view`` (every view in one process)."""
        return self.group is None or self.owner[view] == self.group.rank


class ViewModel:
    """The run's model as a synchronizer's :meth:`Synchronizer.predict` calls it.

    ``model(x, step)`` predicts ``(x0, ε)`` of the views ``x: [N, C, h, w]`` (this process's share
    of them in a distributed run; other rows are zero); ``views=`` (``[N]`` bool) narrows that to
    some views. :meth:`windows` predicts latents that are none of the space's views (SpotDiffusion's
    tiles), each conditioned as view ``like``. ``predicted`` counts views predicted (one model
    call per view, both halves of classifier-free guidance included), for ``run.json``."""

    def __init__(self, denoiser, cond: Conditioning, mine: torch.Tensor, batch_size: int):
        self.denoiser, self.cond, self.mine, self.batch_size = denoiser, cond, mine, batch_size
        self.predicted = 0

    def __call__(self, x: torch.Tensor, step: Step, views: torch.Tensor | None = None):
        ids = self.mine if views is None else self.mine[views.cpu()[self.mine]]
        self.predicted += len(ids)
        return predict_views(self.denoiser, x, step, self.cond, ids, self.batch_size)

    def windows(self, x: torch.Tensor, step: Step, like: int = 0):
        """``(x0, ε)`` of ``x: [B, C, h, w]``, latents of the model's window size, conditioned as view ``like``."""
        self.predicted += x.shape[0]
        ids = torch.full((x.shape[0],), like, dtype=torch.long)
        return self.denoiser.predict(x, step, self.cond, view_ids=ids, batch_size=self.batch_size)


class Synchronizer:
    """Every hook the joint loop calls, each with a no-op default: the base class leaves the views
    independent (``sync=none``). A plugin overrides the hooks it needs; the loop never looks for
    others (docs/plugins.md lists the whole contract and when each is called)."""

    def check_sampler(self, sampler: Sampler) -> None:
        """Raise :class:`~syncframe.errors.ConfigError` for a sampler this synchronizer cannot work
        with (called while the run is prepared, before any weights load)."""

    def check_domain(self, domain: str) -> None:
        """Raise :class:`~syncframe.errors.ConfigError` when this synchronizer cannot work with
        ``app.domain=<domain>`` (``latent`` or ``rgb``: views decoded, synchronized in pixels and
        encoded again, which only a clean quantity survives); called while the run is prepared."""

    def resolved(self) -> dict:
        """The options left to ``auto`` and what they became (``{"sync.loss": "lpips-alex"}``): listed
        under ``resolved`` in ``run.json``."""
        return {}

    def bind(self, ctx: SampleContext) -> None:
        """Called once before the first step with the denoiser, the conditioning, the space and the
        view batch size (for synchronizers that call the model themselves)."""

    def start(self, space: CanonicalSpace, z_T: torch.Tensor, x_T: torch.Tensor, sampler: Sampler) -> torch.Tensor:
        """The views the loop starts from, given the canonical noise ``z_T`` and its projection ``x_T``."""
        return x_T

    def schedule(self, steps: list[Step], sampler: Sampler) -> list[Step]:
        """The steps the loop runs, given the sampler's (StochSync anneals its own noise levels)."""
        return steps

    def before_model(self, x_t: torch.Tensor, step: Step) -> torch.Tensor:
        """The views ``x_t: [N, C, h, w]`` just before the model sees them (SyncDiffusion's guidance)."""
        return x_t

    def predict(self, x_t: torch.Tensor, step: Step, model: ViewModel) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0, ε)`` of the views at ``step``: one model call per view by default. A synchronizer
        may call ``model`` several times (StochSync's multi-step x0), on some views only, or on
        windows of its own (SpotDiffusion)."""
        return model(x_t, step)

    def after_prediction(self, x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, step: Step):
        """``(x0, ε)`` of every view after the model's prediction (x0- and ε-averaging)."""
        return x0, eps

    def after_step(self, x_prev: torch.Tensor, step: Step, noise) -> torch.Tensor:
        """The views after the sampler's update (x_{t-1}-averaging); ``noise``: the step's
        (canonical, views) noise for stochastic samplers, else None."""
        return x_prev


def sample(space: CanonicalSpace, denoiser, sync: Synchronizer, cond: Conditioning, sampler: Sampler,
           generator: torch.Generator, progress: bool = True, callback=None,
           init: torch.Tensor | None = None, strength: float = 1.0, before_step=None, group=None,
           stats: dict | None = None) -> torch.Tensor:
    """Run the joint loop; returns the final views ``x_0: [N, C, h, w]`` (float32).

    ``init``: a canonical latent to start from part-way (SDEdit): with the space's own
    view-consistent noise ε, x = a x0 + s ε at the first of the steps ``strength`` leaves.
    ``before_step(x, step) -> x``: changes the views at the start of each step (region
    bootstrapping). ``group`` (syncframe/distributed.py): this process denoises its share of the
    views; the view tensors keep every view's row (the rows of other processes are not read), the
    space completes its sums over views across the group, and the final views are gathered.
    ``stats`` (a dict) receives ``steps`` (how many the loop runs, once it starts) and
    ``views_predicted`` (how many views the model predicted). ``callback(step, x)`` after each
    step, with the views ``x`` (read only)."""
    from .distributed import partition

    device = denoiser.device
    owner = None
    if group is not None:
        group.bytes_reduced = group.reductions = group.bytes_broadcast = 0
        group.communication_s = 0.0
        runs = partition(space.view_costs(), group.world)
        owner = [rank for rank, run in enumerate(runs) for _ in run]
        local = torch.tensor([rank == group.rank for rank in owner])
        space.distribute(local, group)
        group.timings["views"] = int(local.sum())
    mine = torch.arange(space.num_views) if group is None else local.nonzero().flatten()
    batch_size = denoiser.resolve_batch_size(max(1, len(mine)))
    space.bind(denoiser)
    sync.bind(SampleContext(denoiser, cond, space, batch_size, group, owner, generator))
    model = ViewModel(denoiser, cond, mine, batch_size)
    try:
        return run_steps(space, sync, sampler, generator, progress, callback, init, strength, before_step, model,
                         group, device, stats)
    finally:
        if group is not None:
            space.distribute(None, None)
        if stats is not None:
            stats["views_predicted"] = model.predicted


def run_steps(space, sync, sampler, generator, progress, callback, init, strength, before_step, model: ViewModel,
              group, device, stats: dict | None = None) -> torch.Tensor:
    steps = sync.schedule(sampler.steps if init is None else sampler.steps_from(strength), sampler)
    if stats is not None:
        stats["steps"] = len(steps)  # the sync's schedule: what a progress bar counts to
    z_noise, x_noise = (v.to(device) for v in space.sample_noise(generator))
    if init is None:
        z_T, x_T = z_noise * sampler.initial_scale, x_noise * sampler.initial_scale
    elif not steps:  # strength 0: the content itself
        return space.project(init.to(device))
    else:
        a, s = steps[0].a, steps[0].s
        init = init.to(device)
        z_T, x_T = a * init + s * z_noise, a * space.project(init) + s * x_noise
    x = sync.start(space, z_T, x_T, sampler)
    memory: dict = {}  # a multistep sampler's history of the views
    for step in tqdm(steps, desc="denoising", disable=not progress or (group is not None and not group.leader)):
        if before_step is not None:
            x = before_step(x, step)
        x = sync.before_model(x, step)
        with torch.no_grad():
            x0, eps = sync.predict(x, step, model)
        x0, eps = sync.after_prediction(x, x0, eps, step)
        noise = None
        if sampler.stochastic:  # drawn through the space, so views share it where they overlap
            noise = tuple(v.to(device) for v in space.sample_noise(generator))
        x = sync.after_step(sampler.update(x, x0, eps, step, None if noise is None else noise[1], memory),
                            step, noise)
        if callback is not None:
            callback(step, x)
    if group is not None:  # every view's final row, from the process that denoised it
        group.timings["loop"] = (group.bytes_reduced, group.reductions, group.communication_s, group.bytes_broadcast)
        rows = torch.zeros(space.num_views, dtype=torch.bool, device=x.device)
        rows[model.mine.to(x.device)] = True
        x = group.all_reduce(torch.where(rows.reshape(-1, 1, 1, 1), x, torch.zeros_like(x)))
    return x


def predict_views(denoiser, x: torch.Tensor, step, cond: Conditioning, mine: torch.Tensor, batch_size: int):
    """(x0, ε) of the views ``mine`` (all of them in one process), as full ``[N, ...]`` tensors whose
    other rows are zero."""
    if len(mine) == x.shape[0]:
        return denoiser.predict(x, step, cond, batch_size=batch_size)
    x0, eps = torch.zeros_like(x), torch.zeros_like(x)
    if len(mine):
        ids = mine.to(x.device)
        x0[ids], eps[ids] = denoiser.predict(x[ids], step, cond, view_ids=mine, batch_size=batch_size)
    return x0, eps
