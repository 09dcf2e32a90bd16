"""The Python API: resolve a config, run the joint loop, return images + metadata, save a run folder."""
from __future__ import annotations

import itertools
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import distributed
from .config import dump, resolve
from .errors import ConfigError
from .images import read_image
from .keep import Keep
from .messages import collecting, holding, quiet_libraries
from .models.denoiser import ViewDenoiser, load_controlnet, pick_device, pick_dtype
from .models import adapters
from .models.presets import load_model, model_spec
from .models.spec import ModelSpec
from .outputs import RunFolder, default_out, run_record
from .loop import sample, undistribute, view_model
from .plan import Plan, Prepared, prepare


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


def load_denoiser(cfg, spec: ModelSpec | None = None):
    """The run's model (``cfg``: a config tree or a :class:`~syncframe.plan.Plan`) on its device, with
    its ControlNet, adapters and memory offloading."""
    plan = cfg if isinstance(cfg, Plan) else Plan.of(cfg)
    run = plan.run
    spec = spec or model_spec(plan)
    device = pick_device(run.device)
    dtype = pick_dtype(run.dtype, device)
    guidance = spec.defaults()["guidance"] if run.guidance is None else run.guidance
    denoiser = load_model(plan, spec, device, dtype, guidance=guidance, view_batch_size=run.view_batch_size)
    if run.controlnet:
        denoiser.controlnet = load_controlnet(run.controlnet, denoiser.unet, device, dtype)
        denoiser.controlnet_scale = run.controlnet_scale
    denoiser.extras = adapters.apply(denoiser, run, spec.family)
    if run.offload != "none":
        offload(denoiser, run.offload, device)
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


def generate(*overrides, denoiser=None, pipe=None, on_step=None, **kwargs) -> Result:
    """Run one job. Overrides as ``"key=value"`` strings and/or keyword arguments.

    ``denoiser`` reuses already-loaded components (e.g. across a sweep); its model must
    match ``cfg.model``. ``pipe``: a diffusers pipeline you built (SD 1.x/2.x, SDXL, SD3, FLUX,
    with its LoRAs, adapters, scheduler, device, dtype and offload hooks), used as it is. ``on_step``:
    see :func:`generate_from_config`.
    """
    if pipe is not None:
        return generate_with_pipe(pipe, overrides, kwargs, denoiser, on_step)
    cfg = resolve(overrides_from_kwargs(overrides, kwargs))
    return generate_from_config(cfg, denoiser, on_step=on_step)


def generate_with_pipe(pipe, overrides: tuple, kwargs: dict, denoiser=None, on_step=None) -> Result:
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
    built, spec = denoiser_of(pipe, cfg["view_batch_size"])
    cfg = resolve([*pairs, ("model", built.name)])  # what config.yaml names: the repository it came from
    return generate_from_config(cfg, built, prepare(cfg, spec), on_step)


@dataclass
class StepReport:
    """What ``on_step`` gets after each denoising step: how many of how many steps are done, the
    views ``[N, C, h, w]`` (latents, not to be changed) and the space they live in."""

    done: int
    total: int
    views: torch.Tensor
    space: object
    t: float = 0.0  # the step's model timestep (or flow time)

    def canonical(self) -> torch.Tensor:
        """The views brought to the canonical space (the latent canvas, map or texture)."""
        with torch.no_grad():
            return self.space.unproject(self.views.float())


def generate_from_config(cfg: dict, denoiser=None, prepared: Prepared | None = None, on_step=None,
                         accept=None) -> Result:
    """Run a resolved config (``denoiser``: reuse already-loaded weights of the same model).
    ``on_step(StepReport)`` is called after every denoising step (previews, progress); an
    exception it raises stops the run (``run`` then leaves no folder). ``accept(Prepared)`` is called
    once the run is settled and checked, before any weights load: its exception refuses the run.

    Nothing of the caller's changes: the run settles a copy of ``cfg`` (``result.config`` is what
    ran), and a given denoiser gets the run's guidance only while the run goes on."""
    with collecting() as notes, quiet_libraries():
        with holding():  # a refused run says only its error
            prepared = prepared or prepare(cfg)
            if accept is not None:  # the caller's last word on the settled run (the page's caps)
                accept(prepared)
        plan, spec = prepared.plan, prepared.spec
        timings = {"build_space": prepared.app.build_s}
        clock = time.perf_counter()
        if denoiser is None:
            denoiser = load_denoiser(plan, spec)
        elif not isinstance(denoiser, ViewDenoiser):
            raise ConfigError(f"denoiser={_short(denoiser)}: expected a loaded syncframe denoiser (from "
                              "syncframe.pipeline.load_denoiser or a previous run), or leave it out")
        elif adapters.wanted(plan.run) != adapters.loaded(denoiser):
            raise ConfigError("this run names LoRAs or an IP-Adapter that the denoiser passed in was not loaded with; "
                              "a denoiser is used as it is: load it with them (load_denoiser(cfg)), or leave it out")
        with guidance_of(denoiser, plan.run.guidance):
            return run_loaded(prepared, denoiser, notes, timings, clock, on_step)


@contextmanager
def guidance_of(denoiser: ViewDenoiser, guidance: float):
    """``denoiser`` with the run's guidance scale, restored afterwards."""
    saved, denoiser.guidance = denoiser.guidance, guidance
    try:
        yield denoiser
    finally:
        denoiser.guidance = saved


def run_loaded(prepared: Prepared, denoiser: ViewDenoiser, notes: list, timings: dict, clock: float,
               on_step=None) -> Result:
    """The run once its model is loaded, in numbered steps (as diffusers' ``__call__``)."""
    app, run = prepared.app, prepared.plan.run
    # 1. The loaded model against what its configs said
    check_loaded(prepared, denoiser)
    timings["load"] = time.perf_counter() - clock
    if run.compile:
        timings["compile"] = timed(warm_up_compiled, denoiser, app.space, prepared.sampler)[1]
    # 2. Conditioning: the prompts, an image prompt, ControlNet images
    cond, timings["encode"] = timed(encode_conditioning, run, denoiser, app)
    # 3. SDEdit's start (init=, strength < 1) and what keep= keeps: the canonical latent of the content
    generator = torch.Generator("cpu").manual_seed(run.seed)
    init = keep = None
    if app.keep_mask is not None and prepared.spec.inpaint:  # an inpainting model's mask and masked image
        with torch.no_grad():
            cond.extra, timings["encode_masked"] = timed(inpainting_channels, app, denoiser, run.seed)
    blend = app.keep_mask is not None and keep_scheme(run.keep.scheme, prepared.spec) != "model"
    if app.init is not None and (run.strength < 1 or blend):  # else from noise, a plain run
        with torch.no_grad():
            known, timings["encode_init"] = timed(app.init_latents, denoiser, generator)
        init = known if run.strength < 1 else None
        keep = Keep(known, app.keep_mask, run.keep.resample) if blend else None
    # 4. The joint loop over this process's views
    group = distributed.current()
    (views, model), timings["sample"] = timed(sample_views, prepared, denoiser, cond, generator, init, group, on_step,
                                              keep)
    # 5. A distributed run: every rank's share for run.json; only rank 0 finishes and writes
    shares = None
    if group is not None:
        shares = group.gather_objects(rank_share(group, denoiser, model, timings["sample"]))
        if not group.leader:
            return Result({}, views.detach().cpu(), views.detach().cpu(), prepared.cfg, {"rank": group.rank})
    num_views = app.space.num_views  # the views the loop ran (finish collapses regions' views)
    # 6. The app's files
    (images, canonical), timings["finalize"] = timed(app.finish, views, denoiser)
    # 7. What ran, for run.json
    predicted = sum(s["views_predicted"] for s in shares) if shares else model.predicted
    metadata = run_record(prepared, denoiser, num_views, predicted, notes, timings, shares)
    return Result(images, canonical.detach().cpu(), views.detach().cpu(), prepared.cfg, metadata)


def keep_scheme(scheme: str, spec: ModelSpec) -> str:
    """``keep.scheme=auto``: both (the model's channels and the blend) for an inpainting model, else blend."""
    return ("both" if spec.inpaint else "blend") if scheme == "auto" else scheme


def inpainting_channels(app, denoiser: ViewDenoiser, seed: int) -> torch.Tensor:
    """What an inpainting model reads beside each view's latents, ``[N, 1 + C, h, w]``: the view's mask
    (1 = generate; ``keep`` below one half) and the masked image's latents, both projected from the
    canonical. The masked image is encoded with a generator of its own, so the run's noise is the
    same as without it (diffusers draws the noise first)."""
    masked = app.masked_init_latents(denoiser, torch.Generator("cpu").manual_seed(seed + 2))
    generate = (app.keep_mask < 0.5).to(masked)
    masks = app.space.project(generate.expand(masked.shape[0], -1, -1))[:, :1]
    return torch.cat([masks, app.space.project(masked)], dim=1).to(denoiser.device, denoiser.dtype)


def timed(fn, *args):
    """``(fn(*args), the seconds it took)``."""
    clock = time.perf_counter()
    return fn(*args), time.perf_counter() - clock


def check_loaded(prepared: Prepared, denoiser: ViewDenoiser) -> None:
    """The loaded model has the latent layout its configs said; its CUDA peak counter starts now."""
    spec = prepared.spec
    if denoiser.latent_scale != spec.scale or denoiser.latent_channels != spec.channels:
        raise ConfigError(f"model {prepared.plan.names['model']!r} has {denoiser.latent_channels} latent channels "
                          f"and VAE factor {denoiser.latent_scale}; its configs said {spec.channels} and {spec.scale}")
    if prepared.plan.run.compile and denoiser.backbone is None:
        raise ConfigError(f"compile=true compiles the model's network, and model={prepared.plan.names['model']} is a "
                          "closed-form prior with none; drop compile=true")
    if torch.cuda.is_available() and denoiser.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(denoiser.device)


def encode_conditioning(run, denoiser: ViewDenoiser, app):
    """Every view's conditioning: its prompt's text states, the image prompt's embedding (computed
    once, shared by every view), its ControlNet image."""
    prompts, view_prompt = app.view_conditioning()
    cond = denoiser.encode_prompts(prompts, run.negative_prompt, view_prompt)
    if run.ip_image:
        embed = adapters.image_prompt_embeds(denoiser, read_image(run.ip_image, "ip_image"))
        cond.tensors["ip_image"] = embed[None].expand(len(prompts), *embed.shape).to(denoiser.dtype)
    control = app.view_control() if denoiser.controlnet is not None else None
    if control is not None:
        cond.control = control.to(denoiser.device, denoiser.dtype)
    return cond


def sample_views(prepared: Prepared, denoiser: ViewDenoiser, cond, generator, init, group, on_step, keep=None):
    """The joint loop (this process's share of the views in a distributed run): the final views and
    the run's :class:`~syncframe.loop.ViewModel` (what it predicted)."""
    app, run = prepared.app, prepared.plan.run
    model = view_model(app.space, denoiser, cond, group)
    callback = None
    if on_step is not None:
        done = itertools.count(1)
        callback = lambda step, views, total: on_step(StepReport(next(done), total, views, app.space, step.t))  # noqa: E731
    try:
        views = sample(app.space, model, prepared.sync, prepared.sampler, generator, init=init,
                       strength=1.0 if run.strength is None else run.strength, progress=run.progress,
                       callback=callback, keep=keep)
    finally:
        undistribute(app.space, model)
    return views, model


def rank_share(group, denoiser: ViewDenoiser, model, sample_s: float) -> dict:
    """What one rank of a distributed run did, for run.json."""
    return {"rank": group.rank, "device": str(denoiser.device), "views": len(model.mine),
            "sample_s": round(sample_s, 4), "bytes_reduced": group.bytes_reduced, "reductions": group.reductions,
            "communication_s": round(group.communication_s, 4), "bytes_broadcast": group.bytes_broadcast,
            "views_predicted": model.predicted}


def run(cfg: dict, out: str | Path | None = None, denoiser=None, on_step=None,
        root: str | Path = "outputs", accept=None) -> tuple[Path | None, Result]:
    """Claim the output folder, check everything, generate, and publish the folder; a failed or
    interrupted run leaves nothing behind. In a distributed run rank 0 claims and writes the one
    folder (the others learn whether it could, and return no folder). Without ``out`` (nor
    ``cfg["out"]``) the folder is ``<root>/<app>/<date-time>``; ``on_step``: see
    ``generate_from_config``; ``accept(Prepared)``: see there."""
    target = out or cfg["out"]
    group = distributed.current()
    if group is not None and not group.leader:
        refusal = group.broadcast_object(None)  # rank 0's claim: None, or its error line
        if refusal is not None:
            raise ConfigError(refusal)
        return None, generate_from_config(cfg, denoiser, on_step=on_step, accept=accept)
    try:
        folder = RunFolder(target or default_out(cfg["app"]["name"], root), explicit=target is not None).claim()
    except ConfigError as exc:
        if group is not None:
            group.broadcast_object(str(exc))
        raise
    try:
        if group is not None:
            group.broadcast_object(None)
        result = generate_from_config(cfg, denoiser, on_step=on_step, accept=accept)
        return result.write(folder), result
    except BaseException:
        folder.abandon()
        raise


