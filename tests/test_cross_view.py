"""SyncTweedies' cross-view attention (sync.cross_view): the attention each view computes, by
hand on two and three views and inside one step of the tiny model; off leaves every run as it was."""
import math

import pytest
import torch

from syncframe.config import resolve
from syncframe.errors import ConfigError
from syncframe.loop import ViewModel
from syncframe.models.cross_view import CrossViewPlan, attend, cross_view_attention, ring
from syncframe.pipeline import generate_from_config, prepare
from syncframe.spaces.panorama import PanoramaSpace


def softmax_attention(q, k, v):
    """``q: [L, d]``, ``k, v: [M, d]``: plain softmax(q kᵀ / √d) v."""
    weights = torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v


def by_hand(q, k, v, neighbours, reference, weight, branches):
    """The specification, written per view and head: view i (in its CFG half) attends to the
    concatenated tokens of its neighbours, averaged with its attention to the reference view."""
    batch, heads = q.shape[:2]
    n = batch // branches
    out = torch.zeros_like(q)
    for row in range(batch):
        branch, view = divmod(row, n)
        rows = [branch * n + u for u in neighbours[view]]
        for h in range(heads):
            keys = torch.cat([k[r, h] for r in rows])
            values = torch.cat([v[r, h] for r in rows])
            a = softmax_attention(q[row, h], keys, values)
            if weight:
                ref = branch * n + reference[0]
                a = (a + weight * softmax_attention(q[row, h], k[ref, h], v[ref, h])) / (1 + weight)
            out[row, h] = a
    return out


@pytest.mark.parametrize("views,neighbours", [(2, [[0, 1], [0, 1]]), (3, [[0, 1], [0, 1, 2], [1, 2]])])
@pytest.mark.parametrize("t,weight", [(900, 1.0), (500, 0.0)])
def test_each_view_attends_to_its_neighbours_and_early_to_the_reference(views, neighbours, t, weight):
    torch.manual_seed(0)
    branches = 2
    q, k, v = (torch.randn(branches * views, 2, 5, 8) for _ in range(3))
    plan = CrossViewPlan(neighbours, [views // 2], until=0.2)
    plan.begin(torch.arange(views), branches, t)
    assert plan.weight == weight  # t > 1000 (1 - 0.2) = 800 reads the reference
    expected = by_hand(q, k, v, neighbours, [views // 2], weight, branches)
    assert torch.allclose(attend(q, k, v, plan), expected, atol=1e-5)


def test_a_call_with_some_views_reads_only_the_neighbours_it_holds():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 1, 4, 8) for _ in range(3))
    plan = CrossViewPlan(ring(4), [2], until=0.2)
    plan.begin(torch.tensor([0, 1]), 1, 900)  # views 3 and 2 (its left, the reference) are not in the call
    assert plan.weight == 0.0
    expected = by_hand(q, k, v, [[0, 1], [0, 1]], [0], 0.0, 1)
    assert torch.allclose(attend(q, k, v, plan), expected, atol=1e-5)


def test_one_step_of_the_tiny_model_attends_as_specified(tiny_denoiser):
    """Inside a real UNet call: the first self-attention layer's output, given its input, is the
    hand-computed cross-view attention of three views in both CFG halves."""
    from syncframe.samplers import Step

    d = tiny_denoiser
    cfg = resolve(["model=tiny", "width=768", "steps=4", "sync=synctweedies"])
    cond = d.encode_prompts(["a", "b", "c"], "", [0, 1, 2])
    x = torch.randn(3, 4, 64, 64, generator=torch.Generator().manual_seed(2))
    step = Step(0, 900, 0.1, 0.99, 0.2, 0.98, 0.0, 4)
    neighbours = [[0, 1], [0, 1, 2], [1, 2]]
    plan = CrossViewPlan(neighbours, [1], until=0.2)
    name, attn = next((n, m) for n, m in d.backbone.named_modules() if n.endswith("attn1"))
    seen = {}
    hook = attn.register_forward_hook(lambda m, args, kwargs, out: seen.update(x=args[0], out=out), with_kwargs=True)
    model = ViewModel(d, cond, 3, batch_size=1)  # the patch puts the three views in one call all the same
    try:
        with cross_view_attention(model, plan):
            model(x, step)
    finally:
        hook.remove()
    assert model.batch_size == 1 and not model.observers  # the patch is undone
    hidden = seen["x"]
    batch, tokens, _ = hidden.shape
    assert batch == 6  # three views, two CFG halves, one call
    heads = attn.heads
    q, k, v = (f(hidden).view(batch, tokens, heads, -1).transpose(1, 2) for f in (attn.to_q, attn.to_k, attn.to_v))
    expected = by_hand(q, k, v, neighbours, [1], 1.0, 2).transpose(1, 2).reshape(batch, tokens, -1)
    expected = attn.to_out[0](expected)
    assert torch.allclose(seen["out"], expected, atol=1e-5), (seen["out"] - expected).abs().max()
    assert cfg["sync"]["cross_view"] == "auto"  # synctweedies on the panorama app: the official setting


def test_off_is_unchanged_bit_for_bit_and_the_processors_come_back(tiny_denoiser, small_cfg):
    cfg = small_cfg("sync=synctweedies", "seed=3", "sync.cross_view=none", "steps=2")
    before = generate_from_config(cfg, tiny_denoiser).canonical
    processors = dict(tiny_denoiser.backbone.attn_processors)
    on = generate_from_config(small_cfg("sync=synctweedies", "seed=3", "steps=2"), tiny_denoiser)
    assert on.metadata["resolved"]["sync.cross_view"] == "neighbours"
    assert not torch.equal(on.canonical, before)  # it does something
    assert tiny_denoiser.backbone.attn_processors == processors
    assert torch.equal(generate_from_config(cfg, tiny_denoiser).canonical, before)


def test_wrap_follows_the_loop_unless_always():
    plain = PanoramaSpace(64, 128, window=8, stride=4)
    loop = PanoramaSpace(64, 128, window=8, stride=4, loop=True)
    grid = PanoramaSpace(128, 128, window=8, stride=4)
    assert plain.neighbours() == [[0, 1], [0, 1, 2], [1, 2]]  # the ends are not neighbours
    assert loop.neighbours() == [[0, 1, 3], [0, 1, 2], [1, 2, 3], [0, 2, 3]]  # around the seam
    assert grid.neighbours()[4] == [1, 3, 4, 5, 7]  # left, right, above, below
    assert ring(4)[0] == [3, 0, 1]  # sync.wrap=always: the official ring


@pytest.mark.parametrize("wrap,loop", [("always", False), ("auto", False), ("auto", True)])
def test_the_run_reads_the_neighbours_its_wrap_says(wrap, loop):
    prepared = prepare(resolve(["model=tiny", "width=1024", "sync=synctweedies", f"sync.wrap={wrap}",
                                f"app.loop={str(loop).lower()}"]))
    space, plan = prepared.app.space, prepared.sync.cross_view
    expected = ring(space.num_views) if wrap == "always" else space.neighbours()
    assert plan.neighbours == expected
    assert (plan.neighbours[0] == ring(space.num_views)[0]) == (wrap == "always" or loop) or sorted(
        plan.neighbours[0]) == sorted(ring(space.num_views)[0])


@pytest.mark.parametrize("extra,expected", [
    (["sync=synctweedies"], "neighbours"),
    (["sync=synctweedies", "model=tiny-sd3"], "none"),
    (["sync=synctweedies", "view_batch_size=2"], "none"),
])
def test_auto_is_what_the_papers_ran(extra, expected):
    prepared = prepare(resolve(["model=tiny", "width=768", *extra]))
    assert prepared.cfg["sync"]["cross_view"] == expected
    assert prepared.settled["sync.cross_view"] == expected


def test_other_methods_and_apps_leave_it_off():
    assert prepare(resolve(["model=tiny", "width=768", "sync=multidiffusion"])).cfg["sync"]["cross_view"] == "none"
    upscale = prepare(resolve(["model=tiny", "app=upscale", "image=assets/landscape.png", "sync=synctweedies"]))
    assert upscale.cfg["sync"]["cross_view"] == "none" and upscale.sync.cross_view is None


@pytest.mark.parametrize("extra,words", [
    (["model=tiny-sd3"], "UNet"),
    (["view_batch_size=2"], "drop view_batch_size"),
    (["app=anagram", "width=512", "views=[{prompt: a}, {transform: rot180, prompt: b}]"], "sync.wrap=always"),
])
def test_neighbours_where_it_cannot_work_is_refused(extra, words):
    with pytest.raises(ConfigError, match=words):
        prepare(resolve(["model=tiny", "width=768", "height=512", "sync=synctweedies", "sync.cross_view=neighbours",
                         *extra]))


def test_attention_kernels_keep_their_short_form_and_the_moved_keys_say_where_they_went():
    assert resolve(["attention=sdpa"])["attention"] == dict(kernels="sdpa")
    with pytest.raises(ConfigError, match="attention.cross_view= is now sync.cross_view="):
        resolve(["attention.cross_view=none"])


def test_neighbours_under_torchrun_is_refused_and_auto_is_off(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(ConfigError, match="run it in one process"):
        prepare(resolve(["model=tiny", "width=768", "sync=synctweedies", "sync.cross_view=neighbours"]))
    assert prepare(resolve(["model=tiny", "width=768", "sync=synctweedies"])).cfg["sync"]["cross_view"] == "none"
