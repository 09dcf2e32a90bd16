"""Entry-point target that registers syncframe's own spaces, synchronizers, apps and models."""
from .spaces import anagram, equirect, mesh_uv, panorama, splats  # noqa: F401
from .syncs import averaging, spotdiffusion, stochsync, syncdiffusion, syncsde  # noqa: F401
from .apps import panorama as panorama_app  # noqa: F401
from .apps import panorama360 as panorama360_app  # noqa: F401
from .apps import mesh as mesh_app  # noqa: F401
from .apps import upscale as upscale_app  # noqa: F401
from .apps import anagram as anagram_app  # noqa: F401
from .apps import splats as splats_app  # noqa: F401
from .models import presets  # noqa: F401
from . import regions, samplers  # noqa: F401
