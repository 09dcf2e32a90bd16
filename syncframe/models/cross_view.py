"""SyncTweedies' cross-view attention: each view's self-attention also reads its neighbours' tokens.

In every self-attention layer of the UNet (``attn1``), view i's queries attend to the keys and
values of its neighbour views (its own included) concatenated along the tokens; while the noise
level is high (``t > 1000 · (1 − reference_until)``) the result is averaged with the same queries'
attention to a reference view (the centre one): ``(A_neighbours + w A_reference) / (1 + w)``, w = 1.
Views attend within their own half of classifier-free guidance. The official code gives view i the
neighbours ``[(i − 1) mod N, i, (i + 1) mod N]`` on every app (``attention.wrap=always``); by default
(``auto``) the space says who neighbours whom (:meth:`~syncframe.spaces.base.CanonicalSpace.neighbours`),
so a plain panorama's two ends are not neighbours and a loop's are.

A diffusers attention processor (:class:`CrossViewProcessor`) on the ``attn1`` modules of the
UNet, installed for one run (:func:`cross_view_attention`) and told before each model call which
view each batch row holds (:meth:`CrossViewPlan.begin`); the run's model puts every view of a call
in one batch while it is installed (neighbours must be in the batch to be read).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

def ring(num_views: int) -> list[list[int]]:
    """The official neighbours: ``[(i − 1) mod N, i, (i + 1) mod N]`` (duplicates kept, as there)."""
    return [[(i - 1) % num_views, i, (i + 1) % num_views] for i in range(num_views)]


class CrossViewPlan:
    """Who attends to whom, shared by every processor of the UNet.

    ``neighbours[v]``: the views view v reads (itself included); ``reference``: the reference
    views; ``until``: the fraction of the noise levels, from the top, during which the reference
    is read. :meth:`begin` turns these into batch rows for one model call."""

    def __init__(self, neighbours: list[list[int]], reference: list[int], until: float, train_steps: int = 1000):
        self.neighbours, self.reference, self.until, self.train_steps = neighbours, reference, until, train_steps
        self.rows = self.mask = self.reference_rows = None
        self.weight = 0.0

    def begin(self, view_ids: torch.Tensor, branches: int, t: float) -> None:
        """The next model call holds ``branches`` copies (CFG halves) of the views ``view_ids``, in
        that order, at model timestep ``t``. Neighbours not in the call are not read."""
        views = [int(v) for v in view_ids]
        n = len(views)
        where = {v: i for i, v in enumerate(views)}
        lists, refs = [], []
        for branch in range(branches):
            for v in views:
                lists.append([branch * n + where[u] for u in self.neighbours[v] if u in where])
                refs.append([branch * n + where[u] for u in self.reference if u in where])
        width = max(len(row) for row in lists)
        self.rows = torch.tensor([row + [row[0]] * (width - len(row)) for row in lists])  # [B, M], padded
        self.mask = torch.tensor([[True] * len(row) + [False] * (width - len(row)) for row in lists])
        self.weight = 1.0 if t > self.train_steps * (1 - self.until) and all(refs) else 0.0
        self.reference_rows = torch.tensor(refs) if self.weight else None


def gathered(tensor: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``tensor: [B, H, L, d]``, ``rows: [B, M]`` -> ``[B, H, M·L, d]``: each row's listed rows' tokens."""
    b, h, length, d = tensor.shape
    picked = tensor[rows.to(tensor.device)]  # [B, M, H, L, d]
    return picked.permute(0, 2, 1, 3, 4).reshape(b, h, rows.shape[1] * length, d)


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, plan: CrossViewPlan) -> torch.Tensor:
    """``[B, H, L, d]`` each -> ``[B, H, L, d]``: the plan's attention (module docstring)."""
    length = key.shape[2]
    mask = plan.mask.to(query.device).repeat_interleave(length, dim=1)[:, None, None, :]  # [B, 1, 1, M·L]
    out = F.scaled_dot_product_attention(query, gathered(key, plan.rows), gathered(value, plan.rows),
                                         attn_mask=None if bool(mask.all()) else mask)
    if plan.weight:
        refs = plan.reference_rows
        seen = F.scaled_dot_product_attention(query, gathered(key, refs), gathered(value, refs))
        out = (out + plan.weight * seen) / (1 + plan.weight)
    return out


class CrossViewProcessor:
    """diffusers' ``AttnProcessor2_0`` for self-attention, with :func:`attend` in place of the
    per-sample attention."""

    def __init__(self, plan: CrossViewPlan):
        self.plan = plan

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        hidden_states = attend(query, key, value, self.plan)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextmanager
def cross_view_attention(model, plan: CrossViewPlan | None):
    """The run's model (a :class:`~syncframe.loop.ViewModel`) with the plan's processor on every ``attn1``
    of its UNet for the duration, every view of a call in one batch, and the plan told which view each
    batch row holds (nothing when ``plan`` is None); the processors it had are put back afterwards."""
    if plan is None:
        yield model
        return
    unet = model.denoiser.backbone
    saved, batch_size = unet.attn_processors, model.batch_size
    processor = CrossViewProcessor(plan)
    unet.set_attn_processor({name: processor if name.endswith("attn1.processor") else old
                             for name, old in saved.items()})
    observer = lambda view_ids, branches, step: plan.begin(view_ids, branches, step.t)  # noqa: E731
    model.observers.append(observer)
    model.batch_size = max(1, len(model.mine))  # neighbours must be in the batch to be read
    try:
        yield model
    finally:
        model.observers.remove(observer)
        model.batch_size = batch_size
        unet.set_attn_processor(saved)
