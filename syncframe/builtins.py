"""Entry-point target that registers syncframe's own spaces, synchronizers and apps."""
from .spaces import equirect, mesh_uv, panorama  # noqa: F401
from .syncs import averaging, syncdiffusion  # noqa: F401
from .apps import panorama as panorama_app  # noqa: F401
from .apps import panorama360 as panorama360_app  # noqa: F401
from .apps import mesh as mesh_app  # noqa: F401
