"""``viewer.html``: a self-contained page that shows an equirect panorama interactively.

The page inlines Photo Sphere Viewer (npm ``@photo-sphere-viewer/core`` with ``three``), bundled
by ``npm --prefix viewer ci && npm --prefix viewer run build`` into ``syncframe/viewer_assets``,
and the panorama as a JPEG data URL, so it opens from disk with no server and no network.
"""
from __future__ import annotations

import base64
import html
import io
import json
from importlib import resources

from PIL import Image

from .errors import ConfigError

BUILD = "npm --prefix viewer ci && npm --prefix viewer run build"


def bundle() -> tuple[str, str]:
    """The built viewer (JavaScript, CSS), or a ConfigError that says how to build it."""
    folder = resources.files("syncframe") / "viewer_assets"
    js, css = folder / "viewer.js", folder / "viewer.css"
    if not (js.is_file() and css.is_file()):
        raise ConfigError(f"viewer.html needs the viewer bundle, which is not built: run `{BUILD}` in the "
                          "syncframe source tree (needs Node.js), or set app.viewer=false")
    return js.read_text(encoding="utf-8"), css.read_text(encoding="utf-8")


def viewer_html(panorama: Image.Image, title: str = "syncframe panorama", quality: int = 92) -> str:
    js, css = bundle()
    buffer = io.BytesIO()
    panorama.convert("RGB").save(buffer, format="JPEG", quality=quality)
    data_url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    # </script> inside the bundle would end the inline script early.
    js = js.replace("</script", "<\\/script")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{css}</style>
<style>html, body, #viewer {{ margin: 0; width: 100%; height: 100%; background: #000; }}</style>
</head>
<body>
<div id="viewer"></div>
<script>{js}</script>
<script>window.syncframeViewer(document.getElementById("viewer"), {json.dumps(data_url)}, {json.dumps(title)});</script>
</body>
</html>
"""
