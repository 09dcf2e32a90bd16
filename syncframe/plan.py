"""What a component may know about its run besides its own options: :class:`RunFacts`.

Each component (an app, a synchronizer, a sampler, a model) is handed its own validated section of
the config and these facts, never the whole config tree. Facts are read, never changed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class RunFacts:
    """The run as a component sees it.

    ``sync``, ``app``: the chosen names (for messages); ``family``: the model family's descriptor
    (:mod:`syncframe.models.families`); ``spec``: the model's spec (window, channels, schedule);
    ``device``: ``cpu``, ``cuda`` or ``mps``; ``world_size``: processes the views are split over;
    ``steps``: the run's denoising steps; ``sampler``: the built sampler; ``space``: the app's built
    canonical space (None before it is built); ``view_batch_size``, ``regions``, ``controlnet``,
    ``domain``: the common keys of those names; ``weights``: whether the model has trained weights
    (an offline twin or an analytic prior has none, so helpers may be random too)."""

    sync: str
    app: str
    family: Any
    spec: Any
    device: str
    world_size: int = 1
    steps: int = 50
    sampler: Any = None
    space: Any = None
    view_batch_size: int | None = None
    regions: bool = False
    controlnet: bool = False
    domain: str = "latent"
    weights: bool = True

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def app_label(self) -> str:
        """``app=<name>`` (``with regions=`` when the run has them), for messages."""
        return f"app={self.app}{' with regions=' if self.regions else ''}"


GROUPS = ("app", "model", "sync", "sampler", "regions")


@dataclass(frozen=True)
class Plan:
    """A resolved config as typed sections, one per component: ``run`` the common keys, ``inputs`` the
    app's own top-level keys (None when it takes none), and one section per group, each its
    registered schema's instance; ``names`` the chosen name of each group. :meth:`config` is the
    config tree again (what config.yaml holds); :meth:`settled` applies what a component settled."""

    run: Any
    inputs: Any
    app: Any
    model: Any
    sync: Any
    sampler: Any
    regions: Any
    names: dict

    @classmethod
    def of(cls, cfg: dict) -> "Plan":
        """The typed sections of a resolved (already validated) config."""
        from .config import RunOptions, group_entry

        run = RunOptions.model_validate({k: (cfg[k]["name"] if k in GROUPS else cfg[k]) for k in RunOptions.model_fields})
        names = {g: cfg[g]["name"] for g in GROUPS}
        entries = {g: group_entry(g, names[g]) for g in GROUPS}
        app_inputs = entries["app"].inputs
        inputs = None if app_inputs is None else app_inputs.model_validate(
            {k: cfg[k] for k in app_inputs.model_fields})
        sections = {g: entries[g].options.model_validate({k: v for k, v in cfg[g].items() if k != "name"})
                    for g in GROUPS}
        return cls(run, inputs, names=names, **sections)

    def config(self) -> dict:
        """The config tree: the common keys, the app's inputs, ``{"name": ..., **options}`` per group."""
        tree = self.run.model_dump()
        if self.inputs is not None:
            tree.update(self.inputs.model_dump())
        for group in GROUPS:
            tree[group] = {"name": self.names[group], **getattr(self, group).model_dump()}
        return tree

    def settled(self, values: dict) -> "Plan":
        """A new plan with ``values`` applied: ``{"steps": 50}`` (a common key or an input),
        ``{"app.stride": 8}`` (a group's option), ``{"sampler": "ddim"}`` (a group's choice: its
        section's defaults and preset)."""
        if not values:
            return self
        from .config import section

        tree = self.config()
        for key, value in values.items():
            head, _, rest = key.partition(".")
            if head in GROUPS and not rest:
                tree[head] = section(head, value)[1]
            elif head in GROUPS:
                tree[head][rest] = value
            else:
                tree[key] = value
        return Plan.of(tree)


@dataclass
class Prepared:
    """Everything a run needs but the model's weights, built and checked: the settled plan, what was
    settled (``{"steps": 50, "app.stride": 8, "sync.loss": "lpips-alex"}``, for run.json), the model's
    spec, the app (and its space), the method and the sampler."""

    plan: Plan
    settled: dict
    spec: Any
    app: Any
    sync: Any  # the method (syncframe.methods): per-view hooks or a trajectory of its own
    sampler: Any

    @property
    def cfg(self) -> dict:
        """The config as it will run (config.yaml)."""
        return self.plan.config()


def prepare(cfg: dict, spec=None) -> Prepared:
    """Check everything the config names and build the app (and its space), the synchronizer and the
    sampler; no weights are loaded. The model's spec comes first (its configs only, or ``spec`` when
    the model is already built): the window, channels and schedule every later piece follows. Each
    component settles what was left to it (``null`` / ``auto``) in its own ``settle()``, applied here,
    in order; ``cfg`` itself is not changed."""
    from .models.presets import model_spec
    from .registry import APPS

    plan = Plan.of(cfg)
    spec = spec or model_spec(plan)
    check_model(plan, spec)
    facts = run_facts(plan, spec)
    settled = plan.run.settle(facts)  # 1. steps, guidance, sampler: the model's
    plan = plan.settled(settled)
    app = APPS.get(plan.names["app"])(plan, spec)  # 2. the app reads its inputs and settles its sizes
    app_settled = app.settle()
    settled.update(app.recorded(app_settled))
    plan = plan.settled(app_settled)
    app.build(plan)
    note_twin_window(plan, spec, app)
    check_control(plan, app)
    from .models import adapters
    from .samplers import build_sampler

    adapters.check(plan.run, spec.family)
    sampler = build_sampler(plan, spec)  # 3. the sampler, 4. the method, on the built space
    facts = replace(facts, steps=plan.run.steps, sampler=sampler, space=app.space)
    method, sync_settled = build_method(plan, facts)
    settled.update(sync_settled)
    plan = plan.settled(sync_settled)
    app.use(plan)
    check_keep(plan, method, spec, app)
    return Prepared(plan, settled, spec, app, app.with_regions(method), sampler)


def check_keep(plan: Plan, method, spec, app) -> None:
    """``keep=`` is blended into per-view trajectories (a method that owns its state is refused), and an
    inpainting model reads its mask: it needs one, on an app that can make its masked image."""
    from .errors import ConfigError
    from .methods import Synchronizer

    keep, model = plan.run.keep, plan.names["model"]
    if spec.inpaint and not app.keeps():
        raise ConfigError(f"model={model} is an inpainting model: its UNet reads a mask of what to generate; give "
                          "init=<image> and keep=<mask> (white = kept), or use a text-to-image model")
    if not app.keeps():
        return
    if keep.scheme in ("model", "both") and not spec.inpaint:
        raise ConfigError(f"keep.scheme={keep.scheme} feeds the mask to an inpainting model's own input channels, and "
                          f"model={model} has none (a 4-channel UNet): use keep.scheme=blend, or an inpainting model "
                          "(SD 2 inpainting, SDXL inpainting)")
    if spec.inpaint and not app.makes_masked_latents:
        raise ConfigError(f"an inpainting model's masked image is built for app=panorama so far; on app={app.name} use a "
                          "text-to-image model with keep= (keep.scheme=blend)")
    if spec.inpaint and plan.run.controlnet:
        raise ConfigError("controlnet= with an inpainting model is not built (the ControlNet reads 4 latent channels, the "
                          "UNet 9): drop one of them")
    if not isinstance(method, Synchronizer):
        raise ConfigError(f"keep= replaces the kept region of every view after each step, and sync={plan.names['sync']} "
                          "owns its state (a canonical z_t, or its own trajectory): use sync=synctweedies, "
                          "multidiffusion, syncdiffusion, syncsde or none")


def note_twin_window(plan: Plan, spec, app) -> None:
    """An offline twin's window is smaller than its family's models', and every size left to the app
    follows the window: said before the run starts, with what the run will write."""
    from .messages import note
    from .models.families import family

    native = family(spec.family).window_px
    if getattr(plan.model, "kind", None) != "offline" or native in (None, spec.window_px):
        return
    sizes = app.sizes()
    if "texture_px" in sizes:
        writes = f"a {sizes['texture_px']}² texture from {sizes['view_px']}² views"
    elif "output_px" in sizes:
        writes = "x".join(map(str, sizes["output_px"]))
    else:
        writes = f"{sizes['view_px']}² views"
    note(f"model={plan.names['model']} is an offline twin (random weights: noise, not pictures) with a "
         f"{spec.window_px}-pixel window where {family(spec.family).label} models have {native}; sizes left to the "
         f"app follow the window: this run writes {writes}")


def check_model(plan: Plan, spec) -> None:
    """What the run asks of its model that the model cannot do."""
    from .errors import ConfigError
    from .models.families import family
    from .models.hub import locate

    controlnet = plan.run.controlnet
    if controlnet and controlnet != "tiny":
        locate(controlnet, "controlnet")
    if controlnet and not family(spec.family).can("controlnet"):
        raise ConfigError(f"controlnet= works with UNet models (SD 1.x/2.x, SDXL); model={plan.names['model']} is "
                          f"{spec.family}: drop controlnet=")


def check_control(plan: Plan, app) -> None:
    """A ControlNet needs a control input, and a control input a ControlNet."""
    from .errors import ConfigError

    if plan.run.controlnet and not app.can_control():
        raise ConfigError("controlnet= needs a control input, and this run has none: give one (e.g. app=panorama360 "
                          "depth=<equirect depth image>; app=mesh uses its rendered depth) or drop controlnet=")
    if app.control_given() and not plan.run.controlnet:
        raise ConfigError("this run has a control input (depth=) but no ControlNet: set controlnet=<repo|folder> "
                          "or drop the control input")


def run_facts(plan: Plan, spec) -> RunFacts:
    """The facts known before the app is built (the space and the sampler join them later)."""
    from . import distributed
    from .models.denoiser import pick_device
    from .models.families import family

    group = distributed.current()
    if group is not None:
        world = group.world
    else:  # prepared before the process group starts (the CLI checks every job first)
        world = 2 if distributed.launched() else 1
    run = plan.run
    return RunFacts(sync=plan.names["sync"], app=plan.names["app"], family=family(spec.family), spec=spec,
                    device=pick_device(run.device).type, world_size=world, steps=run.steps or 0,
                    view_batch_size=run.view_batch_size, regions=plan.names["regions"] != "none",
                    controlnet=bool(run.controlnet), domain=getattr(plan.app, "domain", "latent"),
                    weights=getattr(plan.model, "trained", True))


def build_method(plan: Plan, facts: RunFacts):
    """The run's method from its own section, its ``null`` / ``auto`` options settled first; returns it
    and what was settled (``{"sync.key": value}``)."""
    from .registry import SYNCS

    options = plan.sync
    settled = options.settle(facts)
    if settled:
        options = options.model_copy(update=settled)
    return SYNCS.get(plan.names["sync"])(options, facts), {f"sync.{key}": value for key, value in settled.items()}
