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


def chromium_run(page: Path, action: list[str], size=(1024, 512), budget_ms: int = 8000,
                 timeout_s: int = 120) -> subprocess.CompletedProcess:
    """Load ``page`` in headless Chromium for ``budget_ms`` of virtual time, then ``action``
    (``--screenshot=...`` or ``--dump-dom``)."""
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("Chromium not found: install it (Debian: apt install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
               f"--virtual-time-budget={budget_ms}", *action, page.resolve().as_uri()]
        return subprocess.run(cmd, check=True, capture_output=True, timeout=timeout_s)


def screenshot(page: Path, out: Path, size=(1024, 512), budget_ms: int = 8000, timeout_s: int = 120) -> Path:
    chromium_run(page, [f"--screenshot={out.resolve()}"], size, budget_ms, timeout_s)
    return out


def dump_dom(page: Path, size=(1024, 512), budget_ms: int = 8000, timeout_s: int = 120) -> str:
    """The page's DOM, serialized after it has run for ``budget_ms`` (what its scripts made of it)."""
    return chromium_run(page, ["--dump-dom"], size, budget_ms, timeout_s).stdout.decode("utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    print(screenshot(args.page, args.out))


if __name__ == "__main__":
    sys.exit(main())
