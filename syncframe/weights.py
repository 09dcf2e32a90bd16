"""Where small real weights (LPIPS, TAESD, CLIP tokenizer) are found when present.

Looked up in ``$SYNCFRAME_WEIGHTS`` when set, else in ``../shared/weights`` beside a source
checkout. Nothing here downloads; callers fall back or fail with a clear message.
"""
from __future__ import annotations

import os
from pathlib import Path


def weights_dir() -> Path | None:
    if os.environ.get("SYNCFRAME_WEIGHTS"):  # when set, the only place looked at
        path = Path(os.environ["SYNCFRAME_WEIGHTS"])
    else:
        path = Path(__file__).resolve().parents[2] / "shared" / "weights"
    return path if path.is_dir() else None


def find_weight(relative: str) -> Path | None:
    root = weights_dir()
    path = root / relative if root else None
    return path if path is not None and path.exists() else None
