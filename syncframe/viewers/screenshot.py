"""Screenshot a syncframe viewer.html in headless Chromium once it is drawn.

    python -m syncframe.viewers.screenshot outputs/panorama360/<run>/viewer.html shot.png

Uses the system Chromium (Debian: apt install chromium) with SwiftShader for WebGL; the page sets
``document.body.dataset.rendered`` after its first frame, and Chromium's --virtual-time-budget
lets the page run (decode the panorama, upload the texture, draw) before the capture.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars"]


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def screenshot(page: Path, out: Path, size=(1024, 512), budget_ms: int = 8000, timeout_s: int = 120) -> Path:
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("Chromium not found: install it (Debian: apt install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
               f"--virtual-time-budget={budget_ms}", f"--screenshot={out.resolve()}", page.resolve().as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout_s)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    print(screenshot(args.page, args.out))


if __name__ == "__main__":
    sys.exit(main())
