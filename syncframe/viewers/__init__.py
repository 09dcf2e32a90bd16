"""``viewer.html``: self-contained pages that show a run's result interactively, opened from disk.

Each page inlines its script and its data (the panorama as a JPEG data URL, the mesh as its GLB in
base64), so it needs no server and no network. Two builds of each viewer:

- the **built-in** one (``panorama.js``, ``mesh.js``, ``splats.js`` beside this file, after the
  shared ``common.js``), written here with plain WebGL and no dependencies, so every app writes a working viewer right after ``pip install``;
- the **richer** one from npm packages (Photo Sphere Viewer for 360°, three.js for meshes), bundled
  by ``npm --prefix viewer ci && npm --prefix viewer run build`` into ``syncframe/viewer_assets``
  and used whenever that bundle is present. Splats have the built-in viewer only: a page built on
  @mkkellogg/gaussian-splats-3d drew nothing in headless Chromium in 2 of 3 full test runs (its
  depth sort runs in a web worker; the cause was not pinned down in the time there was), and
  a viewer the tests cannot check is not shipped.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from importlib import resources

from PIL import Image

BUILD = "npm --prefix viewer ci && npm --prefix viewer run build"
# kind -> (the global function the page calls, what the built-in viewer is)
KINDS = {"panorama": "syncframeViewer", "mesh": "syncframeMeshViewer", "splats": "syncframeSplatViewer"}


def script(kind: str, build: str = "auto") -> tuple[str, str, str]:
    """(JavaScript, CSS, "npm" or "built-in") for a viewer kind; ``build="auto"`` takes the npm
    bundle when it is built."""
    rich = resources.files("syncframe") / "viewer_assets"
    js, css = rich / f"{kind}.js", rich / f"{kind}.css"
    if build == "npm" and not js.is_file():
        raise FileNotFoundError(f"the npm {kind} viewer is not built; run `{BUILD}`")
    if js.is_file() and build != "built-in":
        return js.read_text(encoding="utf-8"), css.read_text(encoding="utf-8") if css.is_file() else "", "npm"
    own = resources.files("syncframe.viewers")
    common = (own / "common.js").read_text(encoding="utf-8")  # the stage and input every built-in viewer uses
    return common + "\n" + (own / f"{kind}.js").read_text(encoding="utf-8"), "", "built-in"


# Everything a page runs is one of these fixed texts, never built from user data: the payload,
# the title and the options travel in a JSON data block (which is not run), so the page's
# Content-Security-Policy can allow exactly these scripts by their hashes and nothing else.
BOOT = ("(() => {{ const data = JSON.parse(document.getElementById('syncframe-data').textContent); "
        "window.{function}(document.getElementById('viewer'), data.payload, data.title, data.options); }})();")
# JSON inside an HTML <script> element: these end the element or change how HTML parses it
# (`</script>`, `<!--`), or end a JavaScript line (U+2028/2029, for engines older than ES2019).
SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(value) -> str:
    """``value`` as JSON that is safe inside an HTML ``<script>`` element: ``<``, ``>``, ``&`` and
    U+2028/2029 written as ``\\uXXXX`` escapes (``json.dumps`` leaves ``</script>`` intact)."""
    text = json.dumps(value, ensure_ascii=False)
    for raw, escaped in SCRIPT_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def csp_hash(source: str) -> str:
    """A Content-Security-Policy source that allows exactly the inline script ``source``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(scripts: list[str]) -> str:
    """The page's policy: its own inline scripts only (by hash: no other inline script, no event-handler
    attribute, no eval, no script file), images and data from the page itself (data: and blob: URLs),
    no network at all."""
    return "; ".join([
        "default-src 'none'", f"script-src {' '.join(csp_hash(s) for s in scripts)}",
        "style-src 'unsafe-inline'", "img-src data: blob:", "connect-src data: blob:", "font-src data:",
        "worker-src blob:", "base-uri 'none'", "form-action 'none'"])


def page(kind: str, payload: str, title: str, build: str = "auto", options: dict | None = None) -> str:
    """A whole HTML page that runs the ``kind`` viewer on ``payload`` (a string the viewer reads)
    with ``options`` (a JSON object: the initial camera, the up axis). ``title`` (a user's prompt)
    is HTML-escaped in ``<title>`` and reaches the viewer as JSON data, shown as text."""
    js, css, build = script(kind, build)
    js = js.replace("</script", "<\\/script")  # would end the inline script early
    boot = BOOT.format(function=KINDS[kind])
    data = script_json({"payload": payload, "title": title, "options": options or {}})
    css = css.replace("</style", "<\\/style")  # would end the style element early
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{html.escape(content_security_policy([js, boot]))}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="syncframe {build} {kind} viewer">
<title>{html.escape(title)}</title>
<style>{css}</style>
<style>html, body, #viewer {{ margin: 0; width: 100%; height: 100%; background: #000; position: relative; }}</style>
</head>
<body>
<div id="viewer"></div>
<script type="application/json" id="syncframe-data">{data}</script>
<script>{js}</script>
<script>{boot}</script>
</body>
</html>
"""


def viewer_html(panorama: Image.Image, title: str = "syncframe panorama", quality: int = 92,
                build: str = "auto") -> str:
    """The 360° viewer page for an equirect image."""
    buffer = io.BytesIO()
    panorama.convert("RGB").save(buffer, format="JPEG", quality=quality)
    data_url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return page("panorama", data_url, title, build)


def mesh_viewer_html(glb: bytes, title: str = "syncframe mesh", build: str = "auto") -> str:
    """The 3-D viewer page for a textured GLB."""
    return page("mesh", base64.b64encode(glb).decode("ascii"), title, build)


def splat_viewer_html(ply: bytes, title: str = "syncframe splats", build: str = "auto", camera: dict | None = None,
                      up: str = "y") -> str:
    """The 3-D viewer page for a 3DGS PLY; ``camera``: ``{"eye": [x, y, z], "target": [x, y, z]}``
    where it starts (the viewer frames the splats itself when not given)."""
    return page("splats", base64.b64encode(ply).decode("ascii"), title, build, {"up": up, **(camera or {})})
