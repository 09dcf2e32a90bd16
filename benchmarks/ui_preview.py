"""What the page's live previews cost: seconds from Generate to the first preview, and the share
of the denoising loop the previews take, measured side by side in one process on one loaded model.

    python benchmarks/ui_preview.py --model mid --width 1024 --steps 10
    python benchmarks/ui_preview.py --model mid --taesd ../shared/weights/taesd

Each setting runs the page's own job (apps/ui/runner.py) on the same warm model: no previews
(``pipeline.run`` without a step callback), previews every 2 steps (the page's default) and every
step; the loop's seconds come from run.json, the previews' own seconds from the job. Then the
page itself (Gradio, gradio_client): seconds from submitting Generate to the first preview.
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

from syncframe.config import resolve
from syncframe.pipeline import run
from syncframe_ui.runner import Job, Models


def sample_seconds(folder: Path) -> float:
    return json.loads((folder / "run.json").read_text())["timings_s"]["sample"]


def job_run(cfg, models, root, every, taesd) -> tuple[float, float, float]:
    """(loop seconds, preview seconds, seconds from start to the first preview) of one job."""
    job = Job(cfg, models, root, every, taesd).start()
    job.join()
    events = []
    while not job.events.empty():
        events.append(job.events.get())
    kind = events[-1][0]
    if kind != "done":
        raise SystemExit(f"the run failed: {events[-1]}")
    first = job.timings["first_preview"] - job.timings["started"]
    return sample_seconds(Path(events[-1][1])), job.timings.get("preview_s", 0.0), first


def through_the_page(base: list[str], root: Path, width: int) -> float:
    """Seconds from gradio_client's submit to the first preview in the outputs (model warm)."""
    from gradio_client import Client

    from syncframe_ui.app import build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app(base, root, preview_every=2)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                allowed_paths=[str(root)])
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate_panorama"]["parameters"]
    values = [None if p["component"] == "Imageeditor" else p.get("parameter_default") for p in params]
    values[[p["label"] for p in params].index("width")] = str(width)
    seconds = []
    for _ in range(2):  # the first loads the model; the second is what a user sees run after run
        clock = time.perf_counter()
        job = client.submit(*values, api_name="/generate_panorama")
        while not any("step" in str(o[0]) for o in job.outputs()):
            time.sleep(0.01)
        seconds.append(time.perf_counter() - clock)
        job.result()
    demo.close()
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mid")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--taesd", default=None)
    args = parser.parse_args(argv)
    base = [f"model={args.model}", f"steps={args.steps}", "progress=false"]
    cfg = resolve(["app=panorama", *base, f"width={args.width}"])
    models = Models()
    root = Path(tempfile.mkdtemp(prefix="ui-preview-"))
    models.get(cfg)  # warm: every setting below runs on the loaded model
    rows = {"none": [], "every 2": [], "every 1": []}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits every setting alike
        folder, _ = run(cfg, None, models.denoiser, root=root)
        rows["none"].append((sample_seconds(folder), 0.0, None))
        for every, name in ((2, "every 2"), (1, "every 1")):
            rows[name].append(job_run(cfg, models, root, every, args.taesd))
    base_loop = statistics.median(r[0] for r in rows["none"])
    print(f"model={args.model}, panorama {args.width}x512, {args.steps} steps, previews "
          f"{'TAESD' if args.taesd else 'linear'}; median of {args.repeats}\n")
    print("| previews | loop s | loop s / step | preview s | preview share of the loop | loop vs none | "
          "start to first preview s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, runs in rows.items():
        loop = statistics.median(r[0] for r in runs)
        preview = statistics.median(r[1] for r in runs)
        first = statistics.median(r[2] for r in runs) if runs[0][2] is not None else None
        print(f"| {name} | {loop:.2f} | {loop / args.steps:.3f} | {preview:.3f} | {100 * preview / loop:.2f} % | "
              f"{loop / base_loop:.3f} | {'' if first is None else f'{first:.2f}'} |")
    cold, warm = through_the_page(base, root, args.width)
    print(f"\nthrough the page (Gradio, gradio_client): Generate to first preview {cold:.2f} s with the model "
          f"loading, {warm:.2f} s with it loaded")


if __name__ == "__main__":
    main()
