"""Write the demo meshes of ``assets/`` (deterministic: rerunning gives the same files)."""
from pathlib import Path

from syncframe.geometry.shapes import figure, obj_text, vase

ASSETS = Path(__file__).resolve().parents[1] / "assets"

if __name__ == "__main__":
    ASSETS.mkdir(exist_ok=True)
    for name, build, what in [("vase", vase, "thick-walled vase of revolution, one UV island"),
                              ("figure", figure, "standing figure of primitives, xatlas UV atlas")]:
        path = ASSETS / f"{name}.obj"
        path.write_text(obj_text(build(), f"syncframe demo mesh: {what} (scripts/make_assets.py)"))
        print(path, path.stat().st_size // 1024, "KiB")
