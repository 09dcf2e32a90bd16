"""syncframe: synchronized joint diffusion over pretrained image diffusion models."""
__version__ = "0.1.0"

from .errors import ConfigError  # noqa: E402
from .models.families import Family, register_family  # noqa: E402
from .registry import register_app, register_model, register_sync  # noqa: E402


def generate(*overrides, **kwargs):
    """See :func:`syncframe.pipeline.generate`."""
    from .pipeline import generate as _generate

    return _generate(*overrides, **kwargs)


def __getattr__(name: str):
    if name == "SyncPipeline":  # imported on first use: it imports diffusers
        from .sync_pipeline import SyncPipeline

        return SyncPipeline
    raise AttributeError(f"module 'syncframe' has no attribute {name!r}")


__all__ = ["ConfigError", "Family", "SyncPipeline", "generate", "register_app", "register_family", "register_model",
           "register_sync", "__version__"]
