"""Entry-point target that registers syncframe's own spaces, synchronizers and apps."""
from .spaces import panorama  # noqa: F401
from .syncs import averaging, syncdiffusion  # noqa: F401
from .apps import panorama as panorama_app  # noqa: F401  (apps/ in the source tree)
