"""Meshes in and out: load (OBJ, GLB/GLTF, PLY) with clear errors, UV-unwrap, export a textured GLB.

UV convention (trimesh's and OBJ's): ``v`` points up, so texture row 0 is ``v = 1``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError

SUFFIXES = (".obj", ".glb", ".gltf", ".ply")


@dataclass
class LoadedMesh:
    """A triangle mesh with per-vertex UVs, and what loading had to do to it."""

    vertices: np.ndarray  # [V, 3] float64
    faces: np.ndarray  # [F, 3] int64
    uv: np.ndarray  # [V, 2] float64, v up
    notes: list[str]  # e.g. "merged 3 parts", "unwrapped with xatlas"

    def trimesh(self, texture: Image.Image | None = None):
        """As a ``trimesh.Trimesh`` (with a PBR base-colour texture when given)."""
        import trimesh
        from trimesh.visual.material import PBRMaterial

        material = PBRMaterial(baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=1.0) if texture else None
        visual = trimesh.visual.TextureVisuals(uv=self.uv, material=material)
        return trimesh.Trimesh(self.vertices, self.faces, visual=visual, process=False)


def load_mesh(path: str | Path, max_faces: int = 100_000, merge_parts: bool = True,
              atlas_resolution: int = 1024) -> LoadedMesh:
    """Read a mesh file into one UV-mapped triangle mesh, or raise ``ConfigError`` saying why not."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"mesh={str(path)!r} does not exist; give an OBJ, GLB/GLTF or PLY file "
                          "(e.g. mesh=assets/vase.obj)")
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"mesh={str(path)!r}: {path.suffix or 'no suffix'} is not a mesh format syncframe reads; "
                          f"convert it to one of {', '.join(SUFFIXES)}")
    try:
        loaded = trimesh.load(path, process=False)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise ConfigError(f"mesh={str(path)!r} could not be read as {path.suffix[1:].upper()} ({exc}); "
                          "check the file is a valid mesh") from exc
    mesh, parts = _single_mesh(loaded, path, merge_parts)
    notes = []
    if parts > 1:
        notes.append(f"merged {parts} parts into one mesh")
        warnings.warn(f"mesh={str(path)!r} is a scene of {parts} parts: merged into one mesh with a new UV atlas "
                      "(app.merge_parts=false rejects such scenes instead)", stacklevel=2)
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise ConfigError(f"mesh={str(path)!r} has no triangles; give a mesh with faces")
    if len(mesh.faces) > max_faces:
        raise ConfigError(f"mesh={str(path)!r} has {len(mesh.faces)} faces, above app.max_faces={max_faces}; "
                          "decimate it (e.g. Blender's Decimate modifier) or raise app.max_faces")
    uv = getattr(mesh.visual, "uv", None)
    # Merged parts each had their own atlas: their UVs overlap, so the merged mesh needs a new one.
    if uv is None or len(uv) != len(mesh.vertices) or parts > 1:
        return unwrap(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64),
                      notes + ["unwrapped with xatlas"], atlas_resolution)
    return LoadedMesh(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64),
                      np.asarray(uv, dtype=np.float64), notes)


def _single_mesh(loaded, path: Path, merge_parts: bool):
    """A trimesh load result -> (one ``Trimesh``, how many parts it was made of)."""
    import trimesh

    if isinstance(loaded, trimesh.Scene):
        parts = list(loaded.dump()) if loaded.geometry else []
        meshes = [p for p in parts if isinstance(p, trimesh.Trimesh)]
        if not meshes:
            if any(isinstance(p, trimesh.PointCloud) for p in parts):
                loaded = next(p for p in parts if isinstance(p, trimesh.PointCloud))
            else:
                raise ConfigError(f"mesh={str(path)!r} holds no triangles: it is empty or not a valid "
                                  f"{path.suffix[1:].upper()} file; give a mesh file with faces")
        elif len(meshes) == 1:
            return meshes[0], 1
        elif not merge_parts:
            raise ConfigError(f"mesh={str(path)!r} is a scene of {len(meshes)} parts and app.merge_parts=false "
                              "rejects it; set app.merge_parts=true to merge them into one mesh (re-unwrapped), "
                              "or export a single mesh")
        else:
            return trimesh.util.concatenate(meshes), len(meshes)
    if isinstance(loaded, trimesh.PointCloud):
        raise ConfigError(f"mesh={str(path)!r} is a point cloud ({len(loaded.vertices)} points, no faces); "
                          "texturing needs a triangle mesh (reconstruct a surface first)")
    if not isinstance(loaded, trimesh.Trimesh):
        raise ConfigError(f"mesh={str(path)!r} is a {type(loaded).__name__}, not a triangle mesh")
    return loaded, 1


def triangle_edges(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two edges ``b − a``, ``c − a`` of every triangle ``[F, D]`` (D = 3 positions or 2 UVs)."""
    a, b, c = (points[faces[:, k]] for k in range(3))
    return b - a, c - a


def unwrap(vertices: np.ndarray, faces: np.ndarray, notes: list[str], resolution: int = 1024) -> LoadedMesh:
    """UV-unwrap with xatlas; vertices on chart seams are split, so the mesh gains vertices."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices.astype(np.float32), faces.astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = resolution
    pack.padding = max(2, resolution // 256)  # a gutter between charts for the texture dilation
    atlas.generate(pack_options=pack)
    vmapping, indices, uvs = atlas[0]
    return LoadedMesh(vertices[vmapping], indices.astype(np.int64), uvs.astype(np.float64), notes)


UP_AXES = ("y", "z")


def y_up(mesh: LoadedMesh, up: str) -> LoadedMesh:
    """The mesh in syncframe's y-up, front-at-+z frame: a z-up mesh (Blender's convention, front
    at −y) turns −90° about x. Only the cameras see the turned copy; outputs keep the input's frame."""
    if up not in UP_AXES:
        raise ConfigError(f"app.up={up!r} must be one of {', '.join(UP_AXES)} (the mesh's up axis)")
    if up == "y":
        return mesh
    x, y, z = mesh.vertices.T
    return LoadedMesh(np.stack([x, z, -y], 1), mesh.faces, mesh.uv, mesh.notes)


def glb_bytes(mesh: LoadedMesh, texture: Image.Image) -> bytes:
    """The mesh with ``texture`` embedded as its base colour, as a binary glTF."""
    return mesh.trimesh(texture).export(file_type="glb")
