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


def page(kind: str, payload: str, title: str, build: str = "auto", options: dict | None = None) -> str:
    """A whole HTML page that runs the ``kind`` viewer on ``payload`` (a string the viewer reads)
    with ``options`` (a JSON object: the initial camera, the up axis)."""
    js, css, build = script(kind, build)
    js = js.replace("</script", "<\\/script")  # would end the inline script early
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="syncframe {build} {kind} viewer">
<title>{html.escape(title)}</title>
<style>{css}</style>
<style>html, body, #viewer {{ margin: 0; width: 100%; height: 100%; background: #000; position: relative; }}</style>
</head>
<body>
<div id="viewer"></div>
<script>{js}</script>
<script>window.{KINDS[kind]}(document.getElementById("viewer"), {json.dumps(payload)}, {json.dumps(title)}, {json.dumps(options or {})});</script>
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
