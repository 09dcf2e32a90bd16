"""viewer.html pages open in headless Chromium and draw what they show: the built-in WebGL viewers
(always present) and the richer npm ones (when built). In CI, where .ci/run installs Chromium and
builds the npm viewers, SYNCFRAME_REQUIRE_BROWSER=1 turns these skips into failures."""
import os

import numpy as np
import pytest
import trimesh
from PIL import Image

from syncframe.geometry.meshes import LoadedMesh, glb_bytes
from syncframe.viewers import mesh_viewer_html, script, splat_viewer_html, viewer_html
from syncframe.viewers.screenshot import find_chromium, screenshot

REQUIRED = os.environ.get("SYNCFRAME_REQUIRE_BROWSER") == "1"


def need(condition: bool, reason: str):
    if not condition:
        if REQUIRED:
            pytest.fail(f"SYNCFRAME_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


def npm_built(kind: str) -> bool:
    return script(kind)[2] == "npm"


BUILDS = ["built-in", "npm"]


def capture(page, tmp_path, probe):
    """Screenshot ``page`` until ``probe(shot)`` holds: Chromium's virtual time sometimes captures
    before the texture upload finishes, so up to three captures with a growing time budget."""
    need(find_chromium() is not None, "Chromium is not installed (Debian: apt install chromium)")
    for budget in (8000, 16000, 30000):
        shot = np.asarray(Image.open(screenshot(page, tmp_path / "shot.png", budget_ms=budget)).convert("RGB"))
        if probe(shot):
            return shot
    return shot


@pytest.mark.parametrize("build", BUILDS)
def test_360_viewer_renders_the_panorama(tmp_path, build):
    if build == "npm":
        need(npm_built("panorama"), "the npm viewers are not built (npm --prefix viewer ci && npm --prefix viewer run build)")
    image = np.zeros((256, 512, 3), np.uint8)
    image[:] = (20, 40, 200)
    image[100:156, 128:384] = (230, 120, 30)  # orange within 20° of the horizon around longitude 0
    page = tmp_path / "viewer.html"
    page.write_text(viewer_html(Image.fromarray(image), title="test panorama", build=build), encoding="utf-8")
    html = page.read_text()
    assert "data:image/jpeg;base64," in html and "<script src" not in html and "<link" not in html

    def centre(shot):
        h, w = shot.shape[:2]
        return shot[h // 2 - 20:h // 2 + 20, w // 2 - 20:w // 2 + 20].astype(int).mean(axis=(0, 1))

    shot = capture(page, tmp_path, lambda s: np.abs(centre(s) - (230, 120, 30)).max() < 25)
    assert np.abs(centre(shot) - (230, 120, 30)).max() < 25, centre(shot)
    # Viewers start looking at longitude 0 on the horizon: the blue above and below the band is in view.
    assert (shot.reshape(-1, 3)[:, 2] > 150).mean() > 0.1


@pytest.mark.parametrize("build", BUILDS)
def test_mesh_viewer_renders_the_textured_glb(tmp_path, build):
    if build == "npm":
        need(npm_built("mesh"), "the npm viewers are not built (npm --prefix viewer ci && npm --prefix viewer run build)")
    box = trimesh.creation.box(extents=(1, 1, 1))
    uv = np.random.default_rng(0).random((len(box.vertices), 2))
    texture = Image.new("RGB", (64, 64), (230, 120, 30))
    glb = glb_bytes(LoadedMesh(np.asarray(box.vertices), np.asarray(box.faces), uv, []), texture)
    page = tmp_path / "viewer.html"
    page.write_text(mesh_viewer_html(glb, title="test mesh", build=build), encoding="utf-8")

    def orange(shot):  # pixels of the texture's hue, at any shading
        r, g, b = (shot[..., k].astype(int) for k in range(3))
        return (r > 60) & (r > g + 20) & (g > b + 15)

    shot = capture(page, tmp_path, lambda s: orange(s).mean() > 0.05)
    hit = orange(shot)
    h, w = hit.shape
    assert hit.mean() > 0.05, hit.mean()  # the box is drawn with its texture
    assert hit[h // 2 - 10:h // 2 + 10, w // 2 - 10:w // 2 + 10].mean() > 0.9  # in the middle of the view
    assert not hit[:5].any() and not hit[-5:].any()  # with background around it


def test_splat_viewer_renders_the_ply(tmp_path, build="built-in"):
    """The splat page is syncframe's own viewer in every build (see syncframe/viewers/__init__.py)."""
    from syncframe.geometry.splats import ply_bytes, splats_on_surface

    # an orange ball of splats in front of the starting camera
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    ball = splats_on_surface(np.asarray(sphere.vertices), np.asarray(sphere.faces), 3000)
    ball = ball.with_rgb(np.tile([230 / 255, 120 / 255, 30 / 255], (len(ball), 1)))
    page = tmp_path / "viewer.html"
    page.write_text(splat_viewer_html(ply_bytes(ball), title="test splats", build=build,
                                      camera={"eye": [0.0, 0.3, 2.5], "target": [0.0, 0.0, 0.0]}), encoding="utf-8")
    html = page.read_text()
    assert "<script src" not in html and "<link" not in html

    def orange(shot):
        r, g, b = (shot[..., k].astype(int) for k in range(3))
        return (r > 120) & (r > g + 40) & (g > b + 30)

    shot = capture(page, tmp_path, lambda s: orange(s).mean() > 0.03)
    hit = orange(shot)
    h, w = hit.shape
    assert hit.mean() > 0.03, hit.mean()
    assert hit[h // 2 - 10:h // 2 + 10, w // 2 - 10:w // 2 + 10].mean() > 0.9  # the ball is in the middle
    assert not hit[:5].any() and not hit[:, :5].any()  # with background around it


# -- hostile text in the pages ---------------------------------------------------------------------
# Each part tries another way out of where the title lands: out of the inline script, into an HTML
# comment, an element with an event handler (Photo Sphere Viewer shows captions as HTML), a line
# terminator, a JSON string, the <title> element. Any that ran would set data-pwned on <body>.
HOSTILE_TITLE = ("</script><script>document.body.dataset.pwned='script'</script>"
                 "<!--<script>document.body.dataset.pwned='comment'</script>"
                 "<img src=x onerror=\"document.body.dataset.pwned='img'\">"
                 "\u2028\u2029'\"};document.body.dataset.pwned='json';//"
                 "</title><script>document.body.dataset.pwned='title'</script> & done")


class TextOf(__import__("html.parser").parser.HTMLParser):
    """The text of a serialized DOM, and the text of its <title>."""

    def __init__(self, dom: str):
        super().__init__(convert_charrefs=True)
        self.parts, self.title, self.in_title = [], "", False
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        self.in_title = tag == "title"

    def handle_endtag(self, tag):
        self.in_title = False

    def handle_data(self, data):
        self.parts.append(data)
        if self.in_title:
            self.title += data


def hostile_pages(build: str) -> dict:
    """Every viewer of ``build`` with the hostile title."""
    from syncframe.geometry.splats import ply_bytes, splats_on_surface

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    box = trimesh.creation.box(extents=(1, 1, 1))
    glb = glb_bytes(LoadedMesh(np.asarray(box.vertices), np.asarray(box.faces),
                               np.random.default_rng(0).random((len(box.vertices), 2)), []), Image.new("RGB", (8, 8)))
    pages = {"panorama": viewer_html(Image.new("RGB", (256, 128), (20, 40, 200)), title=HOSTILE_TITLE, build=build),
             "mesh": mesh_viewer_html(glb, title=HOSTILE_TITLE, build=build)}
    if build == "built-in":
        ply = ply_bytes(splats_on_surface(np.asarray(sphere.vertices), np.asarray(sphere.faces), 500))
        pages["splats"] = splat_viewer_html(ply, title=HOSTILE_TITLE, build=build)
    return pages


def dom_after(page: str, tmp_path) -> str:
    from syncframe.viewers.screenshot import dump_dom

    need(find_chromium() is not None, "Chromium is not installed (Debian: apt install chromium)")
    path = tmp_path / "viewer.html"
    path.write_text(page, encoding="utf-8")
    # three.js decodes the GLB's texture off the virtual clock, so under load a capture can come
    # before the first frame (seen once in a full run): more tries, with growing budgets
    for budget in (8000, 16000, 30000, 30000, 60000, 60000):
        dom = dump_dom(path, budget_ms=budget)
        if 'data-rendered="true"' in dom:
            break
    return dom


@pytest.mark.parametrize("build", BUILDS)
def test_a_hostile_prompt_is_text_in_every_viewer_and_runs_nothing(tmp_path, build):
    if build == "npm":
        need(npm_built("panorama"), "the npm viewers are not built (npm --prefix viewer ci && npm --prefix viewer run build)")
    for kind, page in hostile_pages(build).items():
        assert "</script><script>document" not in page, kind  # escaped in the file itself
        dom = dom_after(page, tmp_path)
        assert "data-pwned" not in dom, (kind, build)
        assert 'data-rendered="true"' in dom, (kind, build)  # the viewer's own scripts did run
        text = TextOf(dom)
        assert text.title == HOSTILE_TITLE, (kind, text.title)
        shown = [part for part in text.parts if "document.body.dataset.pwned='img'" in part]
        assert any(HOSTILE_TITLE.replace("\u2028", "").replace("\u2029", "") in p.replace("\u2028", "").replace(
            "\u2029", "") for p in shown), (kind, build)  # the caption shows the prompt as typed


def test_the_pages_policy_blocks_script_that_escaping_missed(tmp_path):
    """Defence in depth: a script or event handler smuggled into a page (as a bug in escaping
    would) does not run under the page's Content-Security-Policy; the viewer's own scripts do."""
    page = viewer_html(Image.new("RGB", (256, 128), (20, 40, 200)), title="policy", build="built-in")
    smuggled = ("<script>document.body.dataset.pwned='inline'</script>"
                "<img src=x onerror=\"document.body.dataset.pwned='handler'\">"
                "<script src=\"data:text/javascript,document.body.dataset.pwned='src'\"></script></body>")
    dom = dom_after(page.replace("</body>", smuggled), tmp_path)
    assert 'data-rendered="true"' in dom and "data-pwned" not in dom, dom[-600:]
    policy = page.split('http-equiv="Content-Security-Policy" content="')[1].split('"')[0]
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


@pytest.mark.parametrize("size", [(1024, 512), (512, 1024), (700, 700)])
def test_the_splat_viewer_starts_with_the_whole_object_in_view(tmp_path, size):
    """The app's demo vase as its viewer.html first shows it: nothing of it touches the page's
    border, at a wide, a tall and a square window (the rim was cut off at every size once)."""
    from pathlib import Path

    from syncframe.config import resolve
    from syncframe.geometry.splats import ply_bytes
    from syncframe.pipeline import prepare
    from syncframe.viewers.screenshot import screenshot

    need(find_chromium() is not None, "Chromium is not installed (Debian: apt install chromium)")
    vase = Path(__file__).resolve().parents[1] / "assets" / "vase_splats.ply"
    app = prepare(resolve(["app=splats", "model=tiny", f"splats={vase}", "width=256", "height=256"])).app
    page = tmp_path / "viewer.html"
    page.write_text(splat_viewer_html(ply_bytes(app.splats), title="", camera=app.viewer_camera()), encoding="utf-8")

    def drawn(shot):  # anything but the page's background (#111)
        return (np.abs(shot.astype(int) - 17).max(axis=-1) > 24)

    for budget in (8000, 16000, 30000):
        shot = np.asarray(Image.open(screenshot(page, tmp_path / "shot.png", size=size, budget_ms=budget)).convert("RGB"))
        if drawn(shot).mean() > 0.03:
            break
    hit = drawn(shot)
    assert hit.mean() > 0.03, hit.mean()  # the vase is there
    edge = np.concatenate([hit[:3].ravel(), hit[-3:].ravel(), hit[:, :3].ravel(), hit[:, -3:].ravel()])
    assert not edge.any(), (size, edge.mean())  # and all of it: nothing reaches the border
    rows, cols = np.nonzero(hit)
    assert (rows.max() - rows.min()) > 0.4 * shot.shape[0] or (cols.max() - cols.min()) > 0.4 * shot.shape[1]
