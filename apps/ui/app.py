"""The Gradio page: one tab per registered app, its controls generated from the config schema
(controls.py), regions painted on a canvas of the output's aspect (painting.py), live previews
and Cancel (runner.py), and the results: the image, the app's viewer, the run folder's files and
the ``syncframe run`` line that reproduces the run.
"""
from __future__ import annotations

import asyncio
import html
import queue
import signal
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np

from syncframe.apps.base import app_facts
from syncframe.config import group_names, resolve
from syncframe.errors import ConfigError

from .controls import Control, TabControls, as_text, command, override, parse_more, tab_controls
from .painting import PALETTE, keep_labels, keep_upload, labels_from_layers, region_prompts
from .policy import PagePolicy, scrub
from .runner import Job, Models

CANVAS_WIDTH = 1024


def widget(control: Control, app: str, scope: str = ""):
    """The Gradio component of one option of ``app``'s tab (``scope``: the sync whose option it
    is), with a label unique in its tab and an element id unique in the page."""
    info = control.help if len(control.help) < 240 else control.help[:237] + "..."
    label = f"{scope}: {control.label}" if scope else control.label
    ident = f"{app}-opt-{scope + '-' if scope else ''}{control.key.replace('.', '-')}"
    common = dict(label=label, info=info, elem_id=ident)
    if control.kind == "prompt":
        return gr.Textbox(value=control.default or "", lines=2, **common)
    if control.kind in ("int", "float") and control.nullable:  # blank = null; a number box cannot be empty
        return gr.Textbox(value="" if control.default is None else str(control.default),
                          placeholder="blank: the default (null)", **common)
    if control.kind in ("int", "float"):
        return gr.Number(value=control.default, minimum=control.minimum, maximum=control.maximum,
                         precision=0 if control.kind == "int" else None, **common)
    if control.kind == "bool":
        return gr.Checkbox(value=bool(control.default), **common)
    if control.kind == "choice":
        return gr.Dropdown(choices=list(control.choices), value=control.default,
                           allow_custom_value=control.free_choice, **common)
    if control.kind == "file":
        return gr.File(type="filepath", **{k: v for k, v in common.items() if k != "info"})
    text = "" if control.default is None else control.default
    if control.kind == "yaml" and not isinstance(text, str):
        text = as_text(text)
    return gr.Textbox(value=str(text), **common)


def blank_canvas(width: int, height: int) -> dict:
    """An editor value: a dark canvas of the output's aspect, nothing painted."""
    h = max(8, round(CANVAS_WIDTH * height / width))
    return {"background": np.full((h, CANVAS_WIDTH, 3), 48, np.uint8), "layers": [], "composite": None}


def output_size(app: str, overrides: list[str]) -> tuple[int, int]:
    """The output's width and height as the app settles them (for the painting canvas)."""
    from syncframe.pipeline import prepare

    try:
        cfg = prepare(resolve(overrides)).cfg
        return int(cfg["width"]), int(cfg["height"])
    except ConfigError:  # a canvas of the app's declared aspect until the size is known
        return round(512 * app_facts(app).aspect), 512


class Tab:
    """One app's tab: its controls, their components, and how their values become overrides."""

    def __init__(self, app: str, base: list[str], root: Path, policy: PagePolicy | None = None):
        self.app, self.base, self.root = app, list(base), root
        self.policy = policy or PagePolicy()
        self._defaults: dict | None = None
        self.controls: TabControls = tab_controls(app, base)
        self.components: dict[Control, gr.components.Component] = {}
        self.sync_boxes: dict[str, gr.Accordion] = {}
        self.more_box = self.paint_on = self.editor = None
        self.colour_prompts: dict[str, gr.Textbox] = {}

    def build(self) -> None:
        c = self.controls
        sync_control = next(x for x in c.main if x.key == "sync")
        for control in c.main:
            self.components[control] = widget(control, self.app)
        for control in c.inputs:
            self.components[control] = widget(control, self.app)
        if c.app_options:
            with gr.Accordion(f"{self.app} options", open=False):
                for control in c.app_options:
                    self.components[control] = widget(control, self.app)
        for name, controls in c.sync_options.items():
            if not controls:
                continue
            with gr.Accordion(f"{name} options", open=False, visible=name == sync_control.default) as box:
                for control in controls:
                    self.components[control] = widget(control, self.app, name)
            self.sync_boxes[name] = box
        names = list(self.sync_boxes)
        self.components[sync_control].change(
            lambda chosen: [gr.update(visible=n == chosen) for n in names], inputs=self.components[sync_control],
            outputs=[self.sync_boxes[n] for n in names], queue=False)
        with gr.Accordion("More options", open=False):
            for control in c.more:
                self.components[control] = widget(control, self.app)
            self.more_box = gr.Textbox(label="more overrides", lines=2, elem_id=f"{self.app}-opt-more",
                                       info="key=value, as on the command line: sync.weight=10 lora=style.safetensors")
        if app_facts(self.app).paintable:
            self.build_painter()

    def build_painter(self) -> None:
        width, height = output_size(self.app, [f"app={self.app}", *self.base])
        with gr.Accordion("Regions: paint a layout", open=False):
            self.paint_on = gr.Checkbox(value=False, label="use the painted layout (regions=)",
                                        elem_id=f"{self.app}-paint-on")
            self.editor = gr.ImageEditor(value=blank_canvas(width, height), type="numpy", format="png",
                                         image_mode="RGBA", sources=(), transforms=(), label="layout",
                                         brush=gr.Brush(colors=[f"#{r:02x}{g:02x}{b:02x}" for r, g, b in PALETTE.values()],
                                                        color_mode="fixed", default_size=40),
                                         canvas_size=(CANVAS_WIDTH, max(8, round(CANVAS_WIDTH * height / width))),
                                         elem_id=f"{self.app}-layout")
            with gr.Row():
                for name in PALETTE:
                    self.colour_prompts[name] = gr.Textbox(label=f"{name} region prompt",
                                                           elem_id=f"{self.app}-region-{name}")
            fit = gr.Button("Fit the canvas to the output size (clears it)", size="sm")
            fit.click(self.refit, inputs=self.inputs(), outputs=self.editor, queue=False)
            for key in ("width", "height"):  # a new size needs a canvas of its aspect
                box = self.components[next(x for x in self.controls.main if x.key == key)]
                box.blur(self.refit, inputs=self.inputs(), outputs=self.editor, queue=False)

    def inputs(self) -> set:
        comps = set(self.components.values()) | {self.more_box}
        if self.editor is not None:
            comps |= {self.paint_on, self.editor, *self.colour_prompts.values()}
        return comps

    def refit(self, values: dict) -> dict:
        try:
            overrides = self.overrides(values, with_regions=False)
        except ConfigError as exc:
            raise gr.Error(str(exc)) from None
        return blank_canvas(*output_size(self.app, overrides))

    def overrides(self, values: dict, with_regions: bool = True) -> list[str]:
        """The ``key=value`` list of the page's values: the base, then every changed control."""
        chosen_sync = values[self.components[next(x for x in self.controls.main if x.key == "sync")]]
        changed = []
        for control, component in self.components.items():
            if control.key.startswith("sync.") and control not in self.controls.sync_options.get(chosen_sync, []):
                continue
            value = values[component]
            if control.kind == "file" and value:
                value = str(keep_upload(value, self.root))
            line = override(control, value)
            if line is not None:
                changed.append(line)
        changed += parse_more(values[self.more_box])
        if with_regions and self.editor is not None and values[self.paint_on]:
            editor = values[self.editor] or {}
            labels = labels_from_layers(list(editor.get("layers") or []))
            prompts = region_prompts(labels, {n: values[box] for n, box in self.colour_prompts.items()})
            changed += [f"regions={keep_labels(labels, self.root)}", f"regions.prompts={as_text(prompts)}"]
        return merge([f"app={self.app}", *self.base], changed)

    def defaults(self) -> dict:
        """The tab's run with no control changed: the operator's settings, which the policy never refuses."""
        if self._defaults is None:
            self._defaults = resolve([f"app={self.app}", *self.base])
        return self._defaults

    def checked(self, values: dict) -> tuple[list[str], dict]:
        """The page's values as overrides and the resolved run, refused in one line where the
        visitor asked for what the page does not allow (policy.py)."""
        overrides = self.overrides(values)
        bad = next((o for o in overrides if "=" not in o or o.startswith("-")), None)
        if bad is not None:
            raise ConfigError(f"{bad!r}: the page takes key=value overrides only")
        self.policy.check(resolve(overrides), self.defaults(), self.root)
        cfg = resolve([*overrides, *self.policy.forced()])
        self.policy.check_size(cfg)
        return overrides, cfg


def merge(base: list[str], changed: list[str]) -> list[str]:
    """``base`` then ``changed``, a key set twice kept once (its last value, at its first place)."""
    order, values = [], {}
    for line in [*base, *changed]:
        key = line.partition("=")[0]
        if key not in values:
            order.append(key)
        values[key] = line
    return [values[key] for key in order]


def viewer_frame(folder: Path) -> str:
    """The run's viewer.html in a frame; the page is an attribute value, so escaped as one (quotes
    too): nothing in it (a prompt in its title) can end the attribute or the frame. Not sandboxed:
    the 360° viewer cannot load its texture from an opaque origin (tested in Chromium); what the
    frame runs is only the viewer's own scripts, which its Content-Security-Policy pins by hash."""
    page = folder / "viewer.html"
    if not page.is_file():
        return ""
    doc = html.escape(page.read_text(encoding="utf-8"), quote=True)
    return (f'<iframe title="viewer" class="syncframe-viewer" '
            f'style="width:100%;height:520px;border:0" srcdoc="{doc}"></iframe>')


def as_html_text(message: str) -> str:
    """``message`` for Gradio's alert, which renders HTML: escaped, so what it echoes of a visitor's
    input (``steps=<img ...>``) shows as the text it is (element content: quotes need no escape)."""
    return html.escape(message, quote=False)


def shown_folder(folder: Path, root: Path) -> str:
    """The run folder as the page names it: under the outputs root, never the server's full path."""
    try:
        return str(Path("outputs") / folder.resolve().relative_to(root.resolve()))
    except ValueError:
        return folder.name


def result_image(folder: Path, app: str) -> str | None:
    """The result the page shows: the first image the app declares that the run wrote."""
    return next((str(folder / n) for n in app_facts(app).images if (folder / n).is_file()), None)


def build_app(base: list[str] = (), root: str | Path = "outputs", taesd: str | None = None,
              preview_every: int = 2, models: Models | None = None, policy: PagePolicy | None = None,
              jobs: dict | None = None) -> gr.Blocks:
    """The page. ``base``: ``key=value`` defaults for every tab (``syncframe ui model=tiny``);
    ``root``: where run folders go; ``taesd``: TAESD weights for the previews (else linear);
    ``policy``: the operator's caps and what a visitor may not set; ``jobs``: the running jobs by
    session (the server cancels them when it stops)."""
    root = Path(root)
    models = models or Models()
    policy = policy or PagePolicy()
    jobs = {} if jobs is None else jobs
    with gr.Blocks(title="syncframe") as demo:
        gr.Markdown("# syncframe\nMany views of one canvas, kept in sync: pick an app, type a prompt, "
                    "press **Generate**. Every run is a normal run folder; its command is shown below it.")
        gr.Markdown(policy.describe(), elem_id="limits")
        with gr.Tabs(selected="tab-panorama"):
            for app in group_names("app"):
                with gr.Tab(app, id=f"tab-{app}", elem_id=f"tab-{app}"):
                    build_tab(Tab(app, base, root, policy), models, jobs, root, taesd, preview_every)
    demo.queue(default_concurrency_limit=1, max_size=policy.max_queue)
    return demo


def build_tab(tab: Tab, models: Models, jobs: dict, root: Path, taesd, preview_every: int) -> None:
    """One tab's controls, buttons and results, and its Generate and Cancel events."""
    app = tab.app
    with gr.Row():
        with gr.Column(scale=1):
            tab.build()
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id=f"generate-{app}")
                stop = gr.Button("Cancel", variant="stop", elem_id=f"cancel-{app}")
        with gr.Column(scale=2):
            status = gr.Textbox(label="status", interactive=False, elem_id=f"status-{app}")  # text, never markup
            preview = gr.Image(label="preview", type="pil", interactive=False, elem_id=f"preview-{app}")
            image = gr.Image(label="result", type="filepath", interactive=False, format="png", elem_id=f"result-{app}")
            viewer = gr.HTML(elem_id=f"viewer-{app}")
            files = gr.File(label="run folder", file_count="multiple", interactive=False, elem_id=f"files-{app}")
            line = gr.Textbox(label="reproduce with", interactive=False, elem_id=f"command-{app}")
    outputs = [status, preview, image, viewer, files, line]
    handler = make_handler(tab, models, jobs, root, taesd, preview_every, outputs)
    event = go.click(handler, inputs=tab.inputs(), outputs=outputs, api_name=f"generate_{app}",
                     concurrency_id="generate", concurrency_limit=1)

    def cancel(request: gr.Request):
        job = jobs.get(request.session_hash if request else "")
        if job is not None:
            job.cancel()
        return {status: "cancelled: nothing was written", preview: None}

    stop.click(cancel, None, [status, preview], cancels=[event], queue=False, api_name=f"cancel_{app}")


def make_handler(tab: Tab, models: Models, jobs: dict, root: Path, taesd, preview_every: int, outputs: list):
    status, preview, image, viewer, files, line = outputs

    async def generate(values: dict, request: gr.Request, progress=gr.Progress()):
        try:
            overrides, cfg = tab.checked(values)
        except ConfigError as exc:  # the command line's line, in the status box and as the page's alert
            message = scrub(str(exc), root)
            yield {status: f"error: {message}"}
            raise gr.Error(as_html_text(message), print_exception=False) from None
        job = Job(cfg, models, root, preview_every, taesd, accept=tab.policy.accept).start()
        jobs[request.session_hash if request else ""] = job
        finished = False
        try:
            yield {status: "loading the model…", preview: None, image: None, viewer: "", files: None,
                   line: command(overrides)}
            while True:
                try:
                    event = job.events.get_nowait()
                except queue.Empty:
                    await asyncio.sleep(0.05)
                    continue
                if event[0] == "preview":
                    _, done, total, picture = event
                    progress((done, total), desc="denoising")
                    yield {status: f"step {done} / {total}", preview: picture}
                elif event[0] == "done":
                    finished = True
                    folder, seconds = Path(event[1]), event[2]
                    yield {status: f"done in {seconds:.1f} s: {shown_folder(folder, root)}",
                           image: result_image(folder, tab.app), viewer: viewer_frame(folder),
                           files: sorted(str(p) for p in folder.iterdir() if p.is_file()),
                           line: command(overrides)}
                    return
                elif event[0] == "cancelled":
                    finished = True
                    yield {status: "cancelled: nothing was written", preview: None}
                    return
                else:
                    finished = True
                    message = scrub(event[1], root)
                    yield {status: f"error: {message}"}
                    raise gr.Error(as_html_text(message), print_exception=False)
        finally:
            if not finished:  # the page went away or Cancel was pressed: stop the run, wait for its cleanup
                job.cancel()
                await asyncio.to_thread(job.join)

    return generate


def launch(base: list[str] = (), host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           root: str | Path = "outputs", taesd: str | None = None, preview_every: int = 2,
           open_browser: bool = False, policy: PagePolicy | None = None, auth: tuple[str, str] | None = None) -> None:
    """Serve the page until Ctrl-C or SIGTERM; then cancel the running job (at its next model call),
    wait a few seconds for its clean-up, remove what it left, and raise KeyboardInterrupt (the
    command line's "interrupted" line and exit status)."""
    from syncframe.cli import Terminated
    from syncframe.outputs import remove_stale_partials

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    policy = policy or PagePolicy()
    for stale in remove_stale_partials(root):  # left by a server or run that was killed
        print(f"syncframe ui: removed {stale}, left by a run that no process owns", file=sys.stderr)
    jobs: dict[str, Job] = {}
    demo = build_app(base, root, taesd, preview_every, policy=policy, jobs=jobs)
    stopped = threading.Event()
    received: list[int] = []

    def stop(signum, frame):
        received.append(signum)
        stopped.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Gradio's own file rules: only the outputs root (and its uploads) is served, uploads are
        # capped, nothing under the server's home or working folder is reachable otherwise.
        try:
            demo.launch(server_name=host, server_port=port, share=share, inbrowser=open_browser,
                        allowed_paths=[str(root.resolve())], max_file_size=f"{policy.max_upload_mb}mb",
                        auth=auth, show_error=True, prevent_thread_lock=True, quiet=False)
        except (OSError, ValueError) as exc:  # a port in use, a host that does not resolve
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"syncframe ui: cannot serve at {host}:{port} ({reason}); choose another --port "
                              "or --host") from None
        while not stopped.wait(0.2):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for job in list(jobs.values()):
            job.cancel()
        deadline = time.monotonic() + 8.0
        for job in list(jobs.values()):
            job.join(max(0.0, deadline - time.monotonic()))
        remove_stale_partials(root, mine=True)
        demo.close()
    signum = received[0] if received else signal.SIGINT
    raise Terminated(signum) if signum != signal.SIGINT else KeyboardInterrupt()
