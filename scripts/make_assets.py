"""Write the demo inputs of ``assets/`` (deterministic: rerunning gives the same files)."""
from pathlib import Path

from PIL import Image

from syncframe.geometry.shapes import figure, landscape, obj_text, room_depth, vase

ASSETS = Path(__file__).resolve().parents[1] / "assets"

if __name__ == "__main__":
    ASSETS.mkdir(exist_ok=True)
    for name, build, what in [("vase", vase, "thick-walled vase of revolution, one UV island"),
                              ("figure", figure, "standing figure of primitives, xatlas UV atlas")]:
        path = ASSETS / f"{name}.obj"
        path.write_text(obj_text(build(), f"syncframe demo mesh: {what} (scripts/make_assets.py)"))
        print(path, path.stat().st_size // 1024, "KiB")
    for name, image in (("room_depth.png", room_depth()),  # equirect depth of a box room, near = bright (depth=)
                        ("landscape.png", landscape())):  # a drawn landscape to start from (init=) and to upscale
        path = ASSETS / name
        Image.fromarray(image).save(path, optimize=True)
        print(path, path.stat().st_size // 1024, "KiB")
