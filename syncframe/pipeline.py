"""The Python API: resolve a config, run the joint loop, return images + metadata, save a run folder."""
from __future__ import annotations

import copy
import json
import platform
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from . import __version__, distributed
from .config import dump, resolve, section
from .errors import ConfigError
from .images import read_image
from .messages import collecting, holding, quiet_libraries
from .models.cross_view import cross_view_attention
from .models.denoiser import ViewDenoiser, load_controlnet, pick_device, pick_dtype
from .models import adapters
from .models.hub import locate
from .models.presets import load_model, model_spec
from .models.spec import ModelSpec
from .outputs import RunFolder, default_out
from .registry import APPS, SYNCS
from .loop import sample
from .samplers import build_sampler


@dataclass
class Result:
    """Output files by name (PIL images, text or bytes), the canonical tensor, the final views, and metadata."""

    images: dict
    canonical: torch.Tensor
    views: torch.Tensor
    config: dict
    metadata: dict = field(default_factory=dict)

    def write(self, folder: RunFolder) -> Path:
        """Write the outputs, ``config.yaml`` and ``run.json`` (with the time the others took) into
        a claimed folder and publish it."""
        clock = time.perf_counter()

        def run_json():
            self.metadata["out"] = str(folder.target)
            self.metadata["timings_s"]["write"] = round(time.perf_counter() - clock, 4)
            return {"run.json": json.dumps(self.metadata, indent=2)}

        from .regions import mask_files

        config, masks = mask_files(self.config, folder.target)  # array masks of the Python API
        try:
            return folder.commit({**self.images, **masks, "config.yaml": dump(config)}, last=run_json)
        except OSError as exc:
            raise ConfigError(f"could not write the outputs to {folder.target} ({exc.strerror or exc}); "
                              "free some disk space or choose another out=") from None

    def save(self, out: str | Path) -> Path:
        """Write the run folder ``out`` (absent or empty) atomically: complete, or nothing."""
        folder = RunFolder(out).claim()
        try:
            return self.write(folder)
        except BaseException:
            folder.abandon()
            raise


def overrides_from_kwargs(args: tuple, kwargs: dict) -> list:
    """``generate("steps=5", sync={"name": "syncdiffusion", "weight": 10}, seed=1)`` -> override pairs."""
    pairs: list = []
    for arg in args:
        if isinstance(arg, str):
            pairs.append(arg)
        elif isinstance(arg, tuple) and len(arg) == 2 and isinstance(arg[0], str):
            pairs.append(arg)
        else:
            raise ConfigError(f"generate({_short(arg)}): a positional argument is a \"key=value\" string or a (key, value) "
                              "pair; pass options as keywords, e.g. generate(app=\"panorama\", steps=20)")
    for key, value in kwargs.items():
        if key == "regions" and isinstance(value, list):  # generate(regions=[{"prompt": ..., "mask": ...}])
            from .regions import api_regions

            pairs += [("regions", "layout"), ("regions.regions", api_regions(value))]
        elif isinstance(value, dict):
            options = dict(value)
            if "name" in options:
                pairs.append((key, options.pop("name")))
            pairs += [(f"{key}.{k}", v) for k, v in options.items()]
        else:
            pairs.append((key, value))
    return pairs


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load_denoiser(cfg: dict, spec: ModelSpec | None = None):
    """The run's model on its device, with its ControlNet and memory offloading."""
    spec = spec or model_spec(cfg)
    device = pick_device(cfg["device"])
    dtype = pick_dtype(cfg["dtype"], device)
    guidance = spec.defaults()["guidance"] if cfg["guidance"] is None else cfg["guidance"]
    denoiser = load_model(cfg, spec, device, dtype, guidance=guidance, view_batch_size=cfg["view_batch_size"])
    if cfg["controlnet"]:
        denoiser.controlnet = load_controlnet(cfg["controlnet"], denoiser.unet, device, dtype)
        denoiser.controlnet_scale = cfg["controlnet_scale"]
    denoiser.extras = adapters.apply(denoiser, cfg, spec.family)
    if cfg["offload"] != "none":
        offload(denoiser, cfg["offload"], device)
    return denoiser


def warm_up_compiled(denoiser, space, sampler) -> None:
    """Compile the backbone (``compile=true``) and run it once on the loop's batch shape, so the
    compile time is measured on its own and sampling starts compiled."""
    if not denoiser.compiled:
        adapters.compile_backbone(denoiser)
        denoiser.compiled = True
    batch = denoiser.resolve_batch_size(space.num_views)
    cond = denoiser.encode_prompts([""], "", [0] * batch)
    with torch.no_grad():
        denoiser.predict(torch.zeros(batch, *space.view_shape, device=denoiser.device), sampler.steps[0], cond,
                         batch_size=batch)


def offload(denoiser, how: str, device: torch.device) -> None:
    """accelerate's CPU offload hooks through the model's diffusers pipeline."""
    pipe = denoiser.pipe
    if pipe is None:
        raise ConfigError(f"offload={how} needs a diffusers model; model={denoiser.name} has no pipeline")
    try:
        if how == "model":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_sequential_cpu_offload(device=device)
    except (ImportError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"offload={how} failed ({exc}); pip install accelerate, or use offload=none") from None


def settle_model_defaults(cfg: dict, spec: ModelSpec) -> dict:
    """``steps``, ``guidance`` and ``sampler`` left to the model (null / auto) set to its family's;
    returns what was settled (for run.json). Changes ``cfg`` in place: config.yaml is what ran."""
    defaults, settled = spec.defaults(), {}
    for key in ("steps", "guidance"):
        if cfg[key] is None:
            cfg[key] = settled[key] = defaults[key]
    if cfg["sampler"]["name"] == "auto":
        name = defaults["sampler"]
        cfg["sampler"] = section("sampler", name)[1]
        settled["sampler"] = name
    return settled


def peak_memory_mb(device: torch.device) -> dict:
    peak = {"cpu_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        peak["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return peak


def generate(*overrides, denoiser=None, pipe=None, **kwargs) -> Result:
    """Run one job. Overrides as ``"key=value"`` strings and/or keyword arguments.

    ``denoiser`` reuses already-loaded components (e.g. across a sweep); its model must
    match ``cfg.model``. ``pipe``: a diffusers pipeline you built (SD 1.x/2.x, SDXL, SD3, FLUX,
    with its LoRAs, adapters, scheduler, device, dtype and offload hooks), used as it is.
    """
    if pipe is not None:
        return generate_with_pipe(pipe, overrides, kwargs, denoiser)
    cfg = resolve(overrides_from_kwargs(overrides, kwargs))
    return generate_from_config(cfg, denoiser)


def generate_with_pipe(pipe, overrides: tuple, kwargs: dict, denoiser=None) -> Result:
    """A run on the components of a diffusers pipeline the user built: its configs give the spec,
    its scheduler's config the sampler's schedule; nothing of it is reloaded, moved or changed.
    ``config.yaml`` names the repository it came from (``model=``), not what was done to it in
    Python: ``run.json`` lists its class and adapters."""
    from .models.from_pipe import denoiser_of

    if denoiser is not None:
        raise ConfigError("generate(pipe=..., denoiser=...): give one of the two")
    pairs = overrides_from_kwargs(overrides, kwargs)
    cfg = resolve(pairs)
    named = {key for key, _ in (p if isinstance(p, tuple) else p.split("=", 1) for p in pairs)}
    refused = sorted(named & {"model", "lora", "loras", "ip_adapter", "ip_image", "controlnet", "offload", "dtype",
                              "device"} | {k for k in named if k.startswith(("model.", "lora.", "ip_adapter."))})
    if refused:
        raise ConfigError(f"generate(pipe=...) uses the pipeline as it is; {', '.join(refused)} would load or move "
                          "something: do that on the pipeline itself (pipe.load_lora_weights, pipe.to, ...) and drop it")
    built, spec = denoiser_of(pipe, 7.5, cfg["view_batch_size"])
    cfg = resolve([*pairs, ("model", built.name)])  # what config.yaml names: the repository it came from
    return generate_from_config(cfg, built, prepare(cfg, spec))


@dataclass
class StepReport:
    """What ``on_step`` gets after each denoising step: how many of how many steps are done, the
    views ``[N, C, h, w]`` (latents, not to be changed) and the space they live in."""

    done: int
    total: int
    views: torch.Tensor
    space: object

    def canonical(self) -> torch.Tensor:
        """The views brought to the canonical space (the latent canvas, map or texture)."""
        with torch.no_grad():
            return self.space.unproject(self.views.float())


@dataclass
class Prepared:
    """Everything a run needs but the model's weights, built and checked."""

    spec: ModelSpec
    app: object
    sync: object
    sampler: object
    settled: dict
    cfg: dict  # the config as it will run: a copy of the one given, with what was left to the model settled


def prepare(cfg: dict, spec: ModelSpec | None = None) -> Prepared:
    """Check everything the config names and build the app (and its space), the synchronizer and
    the sampler; no weights are loaded. The model's spec comes first (its configs only, or
    ``spec`` when the model is already built): the window, channels and schedule every later
    piece follows. ``cfg`` itself is not changed."""
    cfg = copy.deepcopy(cfg)
    spec = spec or model_spec(cfg)
    if cfg["controlnet"] and cfg["controlnet"] != "tiny":
        locate(cfg["controlnet"], "controlnet")
    if cfg["controlnet"] and spec.family not in ("sd", "sdxl"):
        raise ConfigError(f"controlnet= works with UNet models (SD 1.x/2.x, SDXL); model={cfg['model']['name']} is "
                          f"{spec.family}: drop controlnet=")
    settled = settle_model_defaults(cfg, spec)
    app = APPS.get(cfg["app"]["name"])(cfg, spec)
    settled.update(app.settled)
    if cfg["controlnet"] and not app.can_control():
        raise ConfigError("controlnet= needs a control input, and this run has none: give one (e.g. app=panorama360 "
                          "depth=<equirect depth image>; app=mesh uses its rendered depth) or drop controlnet=")
    if app.control_given() and not cfg["controlnet"]:
        raise ConfigError("this run has a control input (depth=) but no ControlNet: set controlnet=<repo|folder> "
                          "or drop the control input")
    adapters.check(cfg, spec.family)
    sampler = build_sampler(cfg, spec)
    sync = SYNCS.get(cfg["sync"]["name"])(cfg, app.space)
    sync.check_domain(cfg["app"].get("domain") or "latent")
    sync.check_sampler(sampler)
    settled.update(sync.resolved())
    settled.update(settle_cross_view(cfg, spec, app))
    return Prepared(spec, app, sync, sampler, settled, cfg)


CROSS_VIEW_APPS = ("panorama", "panorama360", "mesh", "splats")  # where the official SyncTweedies code uses it


def settle_cross_view(cfg: dict, spec: ModelSpec, app) -> dict:
    """``attention.cross_view``: ``auto`` becomes ``neighbours`` where SyncTweedies' official code
    runs it (sync=synctweedies on its apps, a UNet, every view of a step in one model call: one
    process, no smaller view_batch_size) and ``none`` elsewhere; ``neighbours`` asked for where it
    cannot work is refused. Changes ``cfg`` in place (config.yaml is what ran); returns what auto became."""
    attention = cfg["attention"]
    asked = attention["cross_view"]
    official = cfg["sync"]["name"] == "synctweedies" and cfg["app"]["name"] in CROSS_VIEW_APPS
    if asked == "none" or (asked == "auto" and not official):
        attention["cross_view"] = "none"
        return {} if asked == "none" else {"attention.cross_view": "none"}
    num_views = app.space.num_views
    problems = []
    if spec.family not in ("sd", "sdxl"):
        problems.append(f"model={cfg['model']['name']} is {spec.family}, and it is a UNet's self-attention that reads "
                        "the neighbours: use an SD 1.x/2.x or SDXL model")
    if distributed.launched() or distributed.current() is not None:
        problems.append("this run is split over processes, and a view's neighbours may be in another: run it in one "
                        "process")
    if cfg["view_batch_size"] and cfg["view_batch_size"] < num_views:
        problems.append(f"view_batch_size={cfg['view_batch_size']} splits the {num_views} views into several model "
                        "calls, and neighbours must share one: drop view_batch_size")
    if attention["wrap"] != "always" and app.space.neighbours() is None:
        problems.append(f"the views of app={cfg['app']['name']}{' with regions=' if cfg['regions']['name'] != 'none' else ''}"
                        " have no neighbours (each sees the whole canvas): use attention.wrap=always for the "
                        "official ring, or attention.cross_view=none")
    if asked == "neighbours" and problems:
        raise ConfigError(f"attention.cross_view=neighbours: {problems[0]}")
    if asked != "auto":
        return {}
    attention["cross_view"] = "neighbours" if not problems and num_views > 1 else "none"
    return {"attention.cross_view": attention["cross_view"]}


def cross_view_plan(cfg: dict, space):
    """The run's :class:`~syncframe.models.cross_view.CrossViewPlan`, or None (attention.cross_view=none)."""
    from .models.cross_view import CrossViewPlan, ring

    attention = cfg["attention"]
    if attention["cross_view"] != "neighbours":
        return None
    neighbours = ring(space.num_views) if attention["wrap"] == "always" else space.neighbours()
    return CrossViewPlan(neighbours, [space.num_views // 2], attention["reference_until"])


def generate_from_config(cfg: dict, denoiser=None, prepared: Prepared | None = None, on_step=None) -> Result:
    """Run a resolved config (``denoiser``: reuse already-loaded weights of the same model).
    ``on_step(StepReport)`` is called after every denoising step (previews, progress); an
    exception it raises stops the run (``run`` then leaves no folder).

    Nothing of the caller's changes: the run settles a copy of ``cfg`` (``result.config`` is what
    ran), and a given denoiser gets the run's guidance only while the run goes on."""
    with collecting() as notes, quiet_libraries():
        with holding():  # a refused run says only its error
            prepared = prepared or prepare(cfg)
        app, spec, cfg = prepared.app, prepared.spec, prepared.cfg
        timings = {"build_space": app.build_s}
        clock = time.perf_counter()
        if denoiser is None:
            denoiser = load_denoiser(cfg, spec)
        elif not isinstance(denoiser, ViewDenoiser):
            raise ConfigError(f"denoiser={_short(denoiser)}: expected a loaded syncframe denoiser (from "
                              "syncframe.pipeline.load_denoiser or a previous run), or leave it out")
        elif adapters.wanted(cfg) != adapters.loaded(denoiser):
            raise ConfigError("this run names LoRAs or an IP-Adapter that the denoiser passed in was not loaded with; "
                              "a denoiser is used as it is: load it with them (load_denoiser(cfg)), or leave it out")
        with guidance_of(denoiser, cfg["guidance"]):
            return run_loaded(cfg, denoiser, prepared, notes, timings, clock, on_step)


@contextmanager
def guidance_of(denoiser: ViewDenoiser, guidance: float):
    """``denoiser`` with the run's guidance scale, restored afterwards."""
    saved, denoiser.guidance = denoiser.guidance, guidance
    try:
        yield denoiser
    finally:
        denoiser.guidance = saved


def run_loaded(cfg: dict, denoiser: ViewDenoiser, prepared: Prepared, notes: list, timings: dict,
               clock: float, on_step=None) -> Result:
    """The run once its model is loaded: conditioning, the joint loop, the outputs, ``run.json``."""
    app, sync, spec = prepared.app, prepared.sync, prepared.spec
    if denoiser.latent_scale != spec.scale or denoiser.latent_channels != spec.channels:
        raise ConfigError(f"model {cfg['model']['name']!r} has {denoiser.latent_channels} latent channels and "
                          f"VAE factor {denoiser.latent_scale}; its configs said {spec.channels} and {spec.scale}")
    if torch.cuda.is_available() and denoiser.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(denoiser.device)
    timings["load"] = time.perf_counter() - clock

    if cfg["compile"]:
        clock = time.perf_counter()
        warm_up_compiled(denoiser, app.space, prepared.sampler)
        timings["compile"] = time.perf_counter() - clock

    clock = time.perf_counter()
    prompts, view_prompt = app.view_conditioning()
    cond = denoiser.encode_prompts(prompts, cfg["negative_prompt"], view_prompt)
    if cfg["ip_image"]:  # one embedding of the image prompt, shared by every view
        embed = adapters.image_prompt_embeds(denoiser, read_image(cfg["ip_image"], "ip_image"))
        cond.tensors["ip_image"] = embed[None].expand(len(prompts), *embed.shape).to(denoiser.dtype)
    control = app.view_control() if denoiser.controlnet is not None else None
    if control is not None:
        cond.control = control.to(denoiser.device, denoiser.dtype)
    timings["encode"] = time.perf_counter() - clock

    generator = torch.Generator("cpu").manual_seed(cfg["seed"])
    init = None
    if app.init is not None and cfg["strength"] < 1:  # strength 1: from noise, as a plain run
        clock = time.perf_counter()
        with torch.no_grad():
            init = app.init_latents(denoiser, generator)
        timings["encode_init"] = time.perf_counter() - clock
    clock = time.perf_counter()
    group = distributed.current()
    stats: dict = {}
    callback = None
    if on_step is not None:
        done = iter(range(1, 1 << 62))
        callback = lambda step, views: on_step(StepReport(next(done), stats["steps"], views, app.space))  # noqa: E731
    with cross_view_attention(denoiser, cross_view_plan(cfg, app.space)):
        views = sample(app.space, denoiser, sync, cond, prepared.sampler, generator, progress=cfg["progress"],
                       callback=callback,
                       init=init, strength=1.0 if cfg["strength"] is None else cfg["strength"],
                       before_step=app.bootstrap_hook(denoiser), group=group, stats=stats)
    timings["sample"] = time.perf_counter() - clock
    num_views = app.space.num_views  # the views the loop ran (finish collapses regions' views)
    shares = None
    if group is not None:  # every rank's share, for run.json; only rank 0 finishes and writes
        shares = group.gather_objects({"rank": group.rank, "device": str(denoiser.device),
                                       "views": group.timings["views"], "sample_s": round(timings["sample"], 4),
                                       "bytes_reduced": group.timings["loop"][0],
                                       "reductions": group.timings["loop"][1],
                                       "communication_s": round(group.timings["loop"][2], 4),
                                       "bytes_broadcast": group.timings["loop"][3],
                                       "views_predicted": stats["views_predicted"]})
        if not group.leader:
            return Result({}, views.detach().cpu(), views.detach().cpu(), cfg, {"rank": group.rank})

    clock = time.perf_counter()
    images, canonical = app.finish(views, denoiser)
    timings["finalize"] = time.perf_counter() - clock

    metadata = {
        "app": cfg["app"]["name"], "sync": cfg["sync"]["name"], "model": cfg["model"]["name"],
        "seed": cfg["seed"], "steps": cfg["steps"], "num_views": num_views,
        # model calls of one view (CFG's pair counted once), over every process of the run
        "views_predicted": sum(s["views_predicted"] for s in shares) if shares else stats["views_predicted"],
        "view_batch_size": denoiser.resolve_batch_size(num_views),
        "device": str(denoiser.device), "dtype": str(denoiser.dtype).replace("torch.", ""),
        "gpu": torch.cuda.get_device_name(denoiser.device) if denoiser.device.type == "cuda" else None,
        "family": spec.family, "sampler": cfg["sampler"]["name"], "window_px": spec.window_px,
        "sizes": app.sizes(),
        "resolved": prepared.settled,
        **({"model_extras": denoiser.extras} if denoiser.extras else {}),
        **({"distributed": distributed_report(shares, len(prepared.sampler.steps))} if shares else {}),
        "notes": notes,
        "versions": {"syncframe": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "diffusers": _version("diffusers"), "transformers": _version("transformers")},
        "command": sys.argv if Path(sys.argv[0]).name in ("syncframe", "__main__.py") else None,
        "created": datetime.now().isoformat(timespec="seconds"),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "peak_memory": peak_memory_mb(denoiser.device),
        **({"metrics": app.report} if app.report else {}),
    }
    return Result(images, canonical.detach().cpu(), views.detach().cpu(), cfg, metadata)


def run(cfg: dict, out: str | Path | None = None, denoiser=None, on_step=None,
        root: str | Path = "outputs") -> tuple[Path | None, Result]:
    """Claim the output folder, check everything, generate, and publish the folder; a failed or
    interrupted run leaves nothing behind. In a distributed run rank 0 claims and writes the one
    folder (the others learn whether it could, and return no folder). Without ``out`` (nor
    ``cfg["out"]``) the folder is ``<root>/<app>/<date-time>``; ``on_step``: see
    ``generate_from_config``."""
    target = out or cfg["out"]
    group = distributed.current()
    if group is not None and not group.leader:
        refusal = group.broadcast_object(None)  # rank 0's claim: None, or its error line
        if refusal is not None:
            raise ConfigError(refusal)
        return None, generate_from_config(cfg, denoiser, on_step=on_step)
    try:
        folder = RunFolder(target or default_out(cfg["app"]["name"], root), explicit=target is not None).claim()
    except ConfigError as exc:
        if group is not None:
            group.broadcast_object(str(exc))
        raise
    try:
        if group is not None:
            group.broadcast_object(None)
        result = generate_from_config(cfg, denoiser, on_step=on_step)
        return result.write(folder), result
    except BaseException:
        folder.abandon()
        raise


def distributed_report(shares: list[dict], steps: int) -> dict:
    """What a distributed run records: the world size, each rank's views, device and sampling time,
    and the bytes all-reduced per step (each rank sends its canonical sums)."""
    sent = shares[0]["bytes_reduced"]
    return {"world_size": len(shares), "ranks": shares, "bytes_reduced_per_step": round(sent / max(steps, 1)),
            "reductions_per_step": round(shares[0]["reductions"] / max(steps, 1), 2)}


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
