"""``syncframe run key=value ...`` — one command for every app, Hydra-style overrides."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from . import __version__, distributed
from .config import (GROUPS, REGISTRIES, RunOptions, expand_multirun, group_entry, overrides_from_file,
                     parse_overrides, resolve)
from .errors import ConfigError
from .messages import phases
from .options import CONTROL, FolderPath, Options, Source, Text, field_help, option, resolve_options

USAGE = """usage: syncframe run [-m] [--config RUN/config.yaml] [key=value ...] [--help]
       syncframe eval runs=FOLDER out=TABLE.csv [metrics=all|a,b] [reference=FOLDER [reference.make=N]]
                      [metrics.features=inception|clip|vgg] [metrics.inception=FILE] [metrics.clip=CLIP]
                      [metrics.k=8] [lpips_weights=FILE] [crop=512] [seed=0]
       syncframe ui [key=value ...] [--host H] [--port P] [--share]   (the web page: pip install '.[ui]')
       syncframe --help | --version

  key=value          set a common key (prompt, seed, steps, width, ...)
  group=name         choose an app, model or sync (app=panorama sync=syncdiffusion)
  group.key=value    set an option of the chosen group (sync.weight=10 app.stride=16)
  --config FILE      start from a run's config.yaml (reproduces it; later key=value override it)
  -m, --multirun     sweep comma-separated values: -m seed=0,1,2 sync=multidiffusion,syncdiffusion
                     (one run folder per combination under out/, indexed in multirun.csv;
                     write \\, for a literal comma)
  run ... --help     the options of the chosen app, sync and model, with types and defaults
  eval               metrics of run folders (or images), grouped by the config keys that differ:
                     a CSV, a Markdown table beside it and one plot per metric
                     (per image: intra_lpips, intra_style, worst_column_step, equirect_seam,
                     pole_spread, giqa, clip_score; per group: fid, kid; run.json's always)
"""

def run_eval(args: list[str]) -> int:
    """``syncframe eval key=value ...`` (syncframe/evaluate.py; its options: ``EvalOptions``)."""
    from .evaluate import EvalOptions, evaluate

    if any(a in ("-h", "--help") for a in args):
        print(options_help("syncframe eval runs=FOLDER out=TABLE.csv [key=value ...]", EvalOptions))
        return 0
    pairs = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(f"syncframe eval: {printable(arg)!r} is not key=value: syncframe eval runs=outputs/panorama/ "
                              "out=table.csv (syncframe eval --help lists the keys)")
        pairs.append((key, value))
    given = {key for key, _ in pairs}
    for key in ("runs", "out"):
        if key not in given:
            raise ConfigError(f"syncframe eval needs {key}=: syncframe eval runs=outputs/panorama/ out=table.csv")
    done = evaluate(resolve_options(EvalOptions, pairs, "syncframe eval"))
    print(f"wrote {done['csv']} ({len(done['rows'])} images), {done['markdown']} and {len(done['plots'])} plot(s)"
          + (f"; {len(done['problems'])} not measured (listed in {done['markdown'].name})" if done["problems"] else ""))
    return 0


def options_help(usage: str, schema, spelled=lambda name: name) -> str:
    """``--help`` of a command whose options are ``schema`` (a section's keys as ``section.key``;
    ``spelled`` writes a key as the command takes it)."""
    from .options import section_of

    lines = [f"usage: {usage}", ""]
    for name, field in schema.model_fields.items():
        inner = section_of(field)
        if inner is None:
            lines.append(field_help(spelled(name), field))
            continue
        for key, sub in inner.model_fields.items():
            lines.append(field_help(name if key == getattr(inner, "primary", None) else f"{name}.{key}", sub))
    return "\n".join(lines)


class UiOptions(Options):
    """``syncframe ui``'s own options (``--host H`` / ``--host=H``; a bare ``--share`` is true); the
    ``key=value`` arguments are the defaults of every tab's controls, checked as a run's are."""

    host: str = option("127.0.0.1", "the address to listen on; another than this machine's own is warned about: "
                                    "anyone who reaches it can run models here")
    port: int = option(7860, "the port to listen on", ge=1, le=65535)
    share: bool = option(False, "a public Gradio link (warned about, as --host)")
    outputs: FolderPath = option("outputs", "where run folders go (outputs/<app>/<date-time>, as syncframe run)")
    taesd: Source | None = option(None, "TAESD weights (diffusers folder or repository id) for sharper previews of "
                                        "SD 1.x/2.x latents")
    preview_every: int = option(2, "decode a preview every this many steps", ge=1, le=1000)
    open: bool = option(False, "open the page in the browser")
    max_steps: int = option(100, "the most denoising steps a run from the page may take", ge=1, le=1000)
    max_views: int = option(256, "the most views a run from the page may have (its max_views=)", ge=1, le=100000)
    max_pixels: int = option(4096 * 2048, "the largest output (width x height) a run from the page may ask for",
                             ge=64 * 64)
    max_queue: int = option(8, "the most runs waiting for the page's one worker; more are refused", ge=1, le=10000)
    max_upload_mb: int = option(50, "the largest file a visitor may upload, in MB", ge=1, le=100000)
    auth: Text | None = option(None, "user:password that the page asks for (Gradio's login)")
    trust_paths: bool = option(False, "let the page's visitors name files and folders on this machine (out=, image=, "
                                      "model=<folder>, ...): only for a page no one else can reach")


def flag_pairs(args: list[str], schema) -> tuple[list[tuple[str, str]], list[str]]:
    """``--preview-every 2`` / ``--preview-every=2`` / a bare boolean ``--share`` -> ``(key, value)``
    pairs of ``schema``; the other arguments as they are. An unknown ``--flag``: one line."""
    pairs, rest, args = [], [], list(args)
    flags = {"--" + name.replace("_", "-"): name for name in schema.model_fields}
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            rest.append(arg)
            continue
        flag, sep, value = arg.partition("=")
        if flag not in flags:
            raise ConfigError(f"syncframe ui: unknown option {printable(flag)!r}; see syncframe ui --help")
        name = flags[flag]
        if not sep:
            is_bool = schema.model_fields[name].annotation is bool
            if is_bool or not args:
                value = "true" if is_bool else ""
            else:
                value = args.pop(0)
        pairs.append((name, value))
    return pairs, rest


def run_ui(args: list[str]) -> int:
    """``syncframe ui``: the web page (apps/ui, the ``ui`` extra)."""
    if any(a in ("-h", "--help") for a in args):
        print(options_help("syncframe ui [key=value ...] [--option value ...]", UiOptions,
                           lambda name: "--" + name.replace("_", "-")))
        print("\n  key=value: defaults of every tab's controls (model=sdxl, steps=20; without model= the page runs model=demo)")
        return 0
    pairs, rest = flag_pairs(args, UiOptions)
    if not any(a.startswith("model=") for a in rest):  # the page makes pictures offline unless told otherwise
        rest = ["model=demo", *rest]
    options = resolve_options(UiOptions, pairs, "syncframe ui", shown=lambda name: "--" + name.replace("_", "-"))
    resolve(parse_overrides(rest))  # the defaults are checked as a run's would be, before the page starts
    try:
        import gradio  # noqa: F401
        from syncframe_ui import launch
        from syncframe_ui.policy import PagePolicy, check_host
    except ImportError as exc:
        raise ConfigError(f"syncframe ui needs the ui extra ({exc.name or 'gradio'} is missing): "
                          "pip install -e '.[ui]'") from None
    auth = None
    if options.auth is not None:
        user, sep, password = options.auth.partition(":")
        if not sep or not user or not password:
            raise ConfigError("syncframe ui: --auth expects user:password (both non-empty)")
        auth = (user, password)
    outputs = Path(options.outputs).absolute()
    existing = next(p for p in (outputs, *outputs.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"syncframe ui: --outputs={printable(options.outputs)!r}: {existing} is a file; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"syncframe ui: --outputs={printable(options.outputs)!r} cannot be written by this user; "
                          "give a folder you can write")
    check_host(options.host)
    try:  # the server would make it at start; a failure here is one line, not a traceback from inside Gradio
        outputs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"syncframe ui: --outputs={printable(options.outputs)!r} cannot be made ({exc.strerror}); "
                          "give a folder you can write") from None
    public = options.share or options.host not in ("127.0.0.1", "localhost", "::1")
    if public:
        where = "through a public Gradio link" if options.share else f"at {options.host}"
        print(f"syncframe: warning: the page will be reachable {where}; anyone who reaches it can run models "
              f"here{' (no --auth given)' if auth is None else ''}", file=sys.stderr)
    if options.trust_paths:
        print("syncframe: warning: --trust-paths: the page's visitors may read and write any file this user can "
              "(out=, image=, mesh=, model=<folder>)", file=sys.stderr)
    policy = PagePolicy(max_steps=options.max_steps, max_views=options.max_views, max_pixels=options.max_pixels,
                        max_queue=options.max_queue, max_upload_mb=options.max_upload_mb,
                        trust_paths=options.trust_paths)
    launch(rest, options.host, options.port, options.share, options.outputs, options.taesd, options.preview_every,
           options.open, policy=policy, auth=auth)
    return 0


def describe() -> str:
    """``syncframe --help``: the common keys and every registered app, sync and model."""
    lines = [USAGE, "common keys:"]
    lines += [field_help(name, f) for name, f in RunOptions.model_fields.items()]
    for group in GROUPS:
        plural = group if group.endswith("s") else group + "s"
        lines.append(f"\n{plural} ({group}=NAME; `syncframe run {group}=NAME --help` shows its options):")
        for name in REGISTRIES[group].shown():  # the schemas behind the presets are not chosen by name
            lines.append(f"  {name:18s} {group_entry(group, name).summary}")
        if group == "model":
            lines.append(f"  {'<repo id|folder>':18s} any diffusers SD 1.x/2.x, SDXL, SD3 or FLUX repository id or "
                         "local folder")
    return "\n".join(lines)


def describe_run(args: list[str]) -> str:
    """``syncframe run app=mesh --help``: the options of the chosen groups, as chosen."""
    from_file, args = split_config(args)
    cfg = resolve([*from_file, *parse_overrides(args)])
    lines = [f"syncframe run {' '.join(args)}".rstrip(), ""]
    app = group_entry("app", cfg["app"]["name"])
    if app.inputs:
        lines.append(f"inputs of app={cfg['app']['name']} (top-level keys):")
        lines += [field_help(name, f) for name, f in app.inputs.model_fields.items()]
    if app.common:
        lines.append("common keys this app sets unless you do: "
                     + ", ".join(f"{k}={v}" for k, v in app.common.items()))
    for group in GROUPS:
        name = cfg[group]["name"]
        entry = group_entry(group, name)
        lines.append(f"\n{group}={name}: {entry.summary}")
        lines.append(f"options ({group}.KEY=VALUE), with this run's values:" if entry.options.model_fields
                     else "no options")
        lines += [field_help(key, f, cfg[group][key]) for key, f in entry.options.model_fields.items()]
    return "\n".join(lines)


def split_config(args: list[str]) -> tuple[list, list[str]]:
    """``--config FILE`` (or ``--config=FILE``) -> (its override pairs, the other arguments)."""
    pairs, rest, args = [], [], list(args)
    while args:
        arg = args.pop(0)
        if arg == "--config" or arg.startswith("--config="):
            path = arg.partition("=")[2] or (args.pop(0) if args else "")
            if not path:
                raise ConfigError("--config needs a file: --config outputs/<app>/<run>/config.yaml")
            pairs += overrides_from_file(path)
        else:
            rest.append(arg)
    return pairs, rest


def run_jobs(args: list[str], multirun: bool) -> int:
    from .launchers import launcher_options, run_local, run_ray, sweep_folder_names, write_index
    from .outputs import default_out
    from .pipeline import run

    from_file, args = split_config(args)
    launch = [a for a in args if a.split("=", 1)[0] == "launcher" or a.startswith("launcher.")]
    args = [a for a in args if a not in launch]
    options = launcher_options(parse_overrides(launch))
    if launch and not multirun:
        raise ConfigError("launcher= decides where a sweep's runs go: add -m (e.g. -m seed=0,1,2 launcher=ray)")
    jobs = expand_multirun(args) if multirun else [args]
    cfgs = [resolve([*from_file, *parse_overrides(job)]) for job in jobs]  # every job is checked before any runs
    sweep = multirun and len(cfgs) > 1
    if options["name"] == "ray" and distributed.launched():
        raise ConfigError("launcher=ray under torchrun: a sweep's runs go to Ray, or one run to torchrun's "
                          "processes, not both")
    group = distributed.init_from_environment(cfgs[0]["device"])  # under torchrun: one canvas, many processes
    shared = f"; {group.world} processes" if group is not None else ""
    if not sweep:
        out, result = run(cfgs[0])
        if out is not None:  # a distributed run's other ranks: rank 0 writes and speaks
            print(f"wrote {out} ({' '.join(jobs[0]) or 'defaults'}; {phases(result.metadata['timings_s'])}{shared})")
        return 0
    base = Path(cfgs[0]["out"] or default_out(cfgs[0]["app"]["name"]))
    for cfg, name in zip(cfgs, sweep_folder_names(jobs)):
        cfg["out"] = str(base / name)

    def report(outcome) -> None:
        if outcome.status == "ok" and outcome.folder is not None and outcome.metadata.get("timings_s"):
            print(f"wrote {outcome.folder} ({' '.join(outcome.job)}; {phases(outcome.metadata['timings_s'])}{shared})",
                  flush=True)
        elif outcome.status != "ok":
            print(f"syncframe: failed: {outcome.folder} ({' '.join(outcome.job)}): {printable(outcome.error)}",
                  file=sys.stderr, flush=True)

    outcomes = run_ray(cfgs, jobs, options, report) if options["name"] == "ray" else run_local(cfgs, jobs, report)
    if group is not None and not group.leader:
        return 0
    index = write_index(base, outcomes)
    failed = [o for o in outcomes if o.status != "ok"]
    print(f"wrote {index} ({len(outcomes)} runs, {len(failed)} failed)")
    if failed:
        print(f"syncframe: error: {len(failed)} of {len(outcomes)} runs of the sweep failed; multirun.csv says why",
              file=sys.stderr)
        return 1
    return 0


INTERRUPTED = {128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGHUP}


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: the same clean-up as Ctrl-C (nothing half-written is left), and the
    shell's exit status for the signal (128 + its number)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame):
    raise Terminated(signum)


def printable(text: str) -> str:
    """``text`` on one line with control characters (newlines, terminal escapes) shown as escapes:
    what a user typed is never sent raw to their terminal."""
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def main(argv: list[str] | None = None) -> int:
    code = run_command(argv)
    group = distributed.current()
    if group is not None:  # leave the process group; after a failure its teardown could wait for the dead
        if code == 0:
            import torch.distributed as dist

            dist.destroy_process_group()
        else:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return code


def command() -> None:
    """The ``syncframe`` executable: ``main`` and its exit status.

    After an interrupt the process leaves at once (``os._exit``; the run's clean-up has already run)
    with 128 + the signal's number. Leaving through the interpreter's shutdown instead, a CI run once
    ended with status -2 (killed by SIGINT) after the "interrupted" line was printed; nothing the run
    needs happens at shutdown, so it is skipped."""
    code = main()
    # A distributed rank leaves the same way once its process group is destroyed: a rank of a
    # finished torchrun run sometimes aborted at interpreter shutdown (SIGABRT, "terminate called
    # without an active exception": some C++ thread destroyed while joinable; which one, not found).
    if code in INTERRUPTED or distributed.current() is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def run_command(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V", "version"):
        print(f"syncframe {__version__}")
        return 0
    wants_help = any(a in ("-h", "--help") for a in argv)
    try:
        if not argv:
            print(USAGE, file=sys.stderr)
            return 2
        if argv[0] == "ui":
            return run_ui(argv[1:])
        if argv[0] in ("-h", "--help", "help") or (wants_help and argv[0] not in ("run", "eval")):
            print(describe())
            return 0
        if argv[0] == "eval":
            return run_eval(argv[1:])
        if argv[0] != "run":
            raise ConfigError(f"unknown command {argv[0]!r}; use `syncframe run key=value ...`, `syncframe eval "
                              "runs=... out=...` (or --help)")
        args = [a for a in argv[1:] if a not in ("-h", "--help")]
        if wants_help:
            print(describe_run(args))
            return 0
        multirun = any(a in ("-m", "--multirun") for a in args)
        args = [a for a in args if a not in ("-m", "--multirun")]
        previous = {s: signal.signal(s, _terminate) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            code = run_jobs(args, multirun)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    except ConfigError as exc:
        distributed.report_failure(str(exc))
        print(f"syncframe: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # torchrun ends the other ranks with SIGTERM when one fails: say which one and why, not "interrupted"
        peer = distributed.peer_failure() if isinstance(exc, Terminated) else None
        if peer is not None:
            print(f"syncframe: error: stopped because {printable(peer)}; nothing was written", file=sys.stderr)
        else:
            print("syncframe: interrupted; no output was written for the unfinished run", file=sys.stderr)
        return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)
    except distributed.PeerFailed as exc:
        rank = distributed.current().rank if distributed.current() is not None else 0
        peer = distributed.peer_failure()
        said = f"stopped because {printable(peer)}" if peer else (
            f"another process of this distributed run failed or left (rank {rank} saw: {printable(str(exc))[:160]})")
        print(f"syncframe: error: {said}; nothing was written", file=sys.stderr)
        return 1
    except Exception as exc:
        distributed.report_failure(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        raise
    return code


if __name__ == "__main__":
    sys.exit(main())
