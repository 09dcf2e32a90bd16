"""``syncframe ui``: a web page over the library (Gradio, the ``ui`` extra), installed as the
``syncframe_ui`` package from ``apps/ui/``. The library stays in ``syncframe/``; this package only
builds controls from its schema and calls ``syncframe.pipeline.run``."""
from .app import build_app, launch

__all__ = ["build_app", "launch"]
