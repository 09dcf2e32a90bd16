"""Find pretrained weights before loading them: a local folder, the Hugging Face cache, or the hub.

Without this, a machine with no network spends half a minute in the hub client's retries and
ends in a raw connection error. Here a repository already in the local cache loads from it with
no network at all; one that is not is fetched only when the hub answers within a few seconds;
otherwise one line says what to do.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ConfigError

PROBE_TIMEOUT_S = 3.0


def locate(source: str, key: str) -> str:
    """``source`` (a repository id or folder, given as ``key=``) -> what ``from_pretrained``
    should load: the folder, the cached snapshot, or the repository id when the hub is reachable."""
    path = Path(source).expanduser()
    if path.exists() or source.startswith((".", "/", "~")):
        if not path.is_dir():
            raise ConfigError(f"{key}={source}: no such folder; give a diffusers repository id or a local folder")
        return str(path)
    cached = cached_snapshot(source)
    if cached is not None:
        return cached
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    reason = "HF_HUB_OFFLINE is set" if offline else hub_unreachable()
    if reason is None:
        return source
    raise ConfigError(f"{key}={source} is not in the local Hugging Face cache and cannot be downloaded ({reason}). "
                      "Fix: run once with network to download it (then HF_HUB_OFFLINE=1 works offline), give a "
                      f"local folder ({key}=/path/to/folder){OFFLINE.get(key, '')}")


# What runs offline in place of each kind of download, for the message above.
OFFLINE = {"model": ", or try syncframe offline with model=tiny",
           "controlnet": ", or use controlnet=tiny (a random ControlNet shaped like the model's UNet) offline",
           "sync.taesd": ", or use sync.decoder=vae"}


def cached_snapshot(repo: str) -> str | None:
    """The local snapshot folder of ``repo`` in the Hugging Face cache, or None."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo, local_files_only=True)
    except Exception:  # not cached, not a valid id, or no huggingface_hub
        return None


def hub_unreachable() -> str | None:
    """None when the hub's host accepts a connection within a few seconds, else why not."""
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:
        endpoint = "https://huggingface.co"
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
        return None
    except OSError as exc:
        return f"{host} cannot be reached: {exc.strerror or exc}"
