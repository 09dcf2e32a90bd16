"""Write the demo inputs of ``assets/`` (deterministic: rerunning gives the same files)."""
from pathlib import Path

from PIL import Image

from shapes import figure, landscape, landscape_keep, obj_text, room_depth, vase  # scripts/shapes.py, beside this file
from syncframe.geometry.splats import ply_bytes, splats_on_surface

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VASE_SPLATS = 4000

if __name__ == "__main__":
    ASSETS.mkdir(exist_ok=True)
    for name, build, what in [("vase", vase, "thick-walled vase of revolution, one UV island"),
                              ("figure", figure, "standing figure of primitives, xatlas UV atlas")]:
        path = ASSETS / f"{name}.obj"
        path.write_text(obj_text(build(), f"syncframe demo mesh: {what} (scripts/make_assets.py)"))
        print(path, path.stat().st_size // 1024, "KiB")
    for name, image in (("room_depth.png", room_depth()),  # equirect depth of a box room, near = bright (depth=)
                        ("landscape.png", landscape()),  # a drawn landscape to start from (init=) and to upscale
                        ("landscape_keep.png", landscape_keep())):  # its left third kept: outpainting (keep=)
        path = ASSETS / name
        Image.fromarray(image).save(path, optimize=True)
        print(path, path.stat().st_size // 1024, "KiB")
    # Gaussian splats on the vase's surface (app=splats splats=assets/vase_splats.ply)
    mesh = vase()
    path = ASSETS / "vase_splats.ply"
    path.write_bytes(ply_bytes(splats_on_surface(mesh.vertices, mesh.faces, VASE_SPLATS)))
    print(path, path.stat().st_size // 1024, "KiB")
