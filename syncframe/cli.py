"""``syncframe run key=value ...`` — one command for every app, Hydra-style overrides."""
from __future__ import annotations

import sys
from pathlib import Path

from .config import base_config, expand_multirun, group_options, load_group, resolve
from .errors import ConfigError

USAGE = """usage: syncframe run [-m] [key=value ...]
       syncframe --help | syncframe run --help

  key=value          set a common key (prompt, seed, steps, width, ...)
  group=name         choose an app, model or sync (app=panorama sync=syncdiffusion)
  group.key=value    set an option of the chosen group (sync.weight=10 app.stride=16)
  -m, --multirun     sweep comma-separated values: -m seed=0,1,2 sync=multidiffusion,syncdiffusion
                     (one run folder per combination under out/; write \\, for a literal comma)
"""


def describe() -> str:
    lines = [USAGE, "common keys (configs/config.yaml):"]
    lines += [f"  {k}={v!r}" for k, v in base_config().items()]
    for group in ("app", "sync", "model"):
        lines.append(f"\n{group}s ({group}=NAME, options as {group}.KEY=VALUE):")
        for name in group_options(group):
            try:
                options = load_group(group, name)
            except ConfigError as exc:
                lines.append(f"  {name}: unavailable ({exc})")
                continue
            options.pop("name")
            shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
            lines.append(f"  {name}: {shown}" if shown else f"  {name}")
    return "\n".join(lines)


def run_jobs(args: list[str], multirun: bool) -> None:
    from .pipeline import run

    jobs = expand_multirun(args) if multirun else [args]
    cfgs = [resolve(job) for job in jobs]  # every job is checked before any runs
    if multirun and len(cfgs) > 1:
        from .pipeline import default_out

        base = Path(cfgs[0]["out"] or default_out(cfgs[0]))
        for i, cfg in enumerate(cfgs):
            cfg["out"] = str(base / str(i))
    for job, cfg in zip(jobs, cfgs):
        out, result = run(cfg)
        timing = result.metadata["timings_s"]
        print(f"wrote {out} ({' '.join(job) or 'defaults'}; sample {timing['sample']:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help") or "--help" in argv or "-h" in argv:
        print(describe())
        return 0
    if argv[0] != "run":
        print(f"syncframe: error: unknown command {argv[0]!r}; use `syncframe run key=value ...`", file=sys.stderr)
        return 2
    args = argv[1:]
    multirun = any(a in ("-m", "--multirun") for a in args)
    args = [a for a in args if a not in ("-m", "--multirun")]
    try:
        run_jobs(args, multirun)
    except ConfigError as exc:
        print(f"syncframe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("syncframe: interrupted; no output was written for the unfinished run", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
