"""viewer.html opens in headless Chromium and draws the panorama (skipped without Chromium)."""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from syncframe.viewer import viewer_html

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from screenshot_viewer import find_chromium, screenshot  # noqa: E402

needs_chromium = pytest.mark.skipif(find_chromium() is None,
                                    reason="Chromium is not installed (Debian: apt install chromium)")


def panorama_page(tmp_path) -> Path:
    """A 2:1 panorama, orange around the horizon at longitude 0 where the viewer starts."""
    image = np.zeros((256, 512, 3), np.uint8)
    image[:] = (20, 40, 200)
    image[64:192, 128:384] = (230, 120, 30)
    page = tmp_path / "viewer.html"
    page.write_text(viewer_html(Image.fromarray(image), title="test panorama"), encoding="utf-8")
    return page


def test_page_is_self_contained(tmp_path):
    html = panorama_page(tmp_path).read_text()
    assert "data:image/jpeg;base64," in html
    assert "http://" not in html.split("<script>")[0] and "<script src" not in html and "<link" not in html


@needs_chromium
def test_viewer_renders_the_panorama_in_headless_chromium(tmp_path):
    page = panorama_page(tmp_path)
    # Chromium's virtual time sometimes captures before the texture upload finishes (about 1 run
    # in 4 here), so up to three captures with a growing time budget; a page that never draws fails.
    for budget in (8000, 16000, 30000):
        shot = np.asarray(Image.open(screenshot(page, tmp_path / "shot.png", budget_ms=budget)).convert("RGB"))
        h, w = shot.shape[:2]
        centre = shot[h // 3 - 20:h // 3 + 20, w // 2 - 20:w // 2 + 20].astype(int).mean(axis=(0, 1))
        if np.abs(centre - (230, 120, 30)).max() < 25:
            break
    assert np.abs(centre - (230, 120, 30)).max() < 25, centre
