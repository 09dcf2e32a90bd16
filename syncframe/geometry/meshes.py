"""Meshes in and out: load (OBJ, GLB/GLTF, PLY) with clear errors, UV-unwrap, export a textured GLB.

UV convention (trimesh's and OBJ's): ``v`` points up, so texture row 0 is ``v = 1``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..messages import note

SUFFIXES = (".obj", ".glb", ".gltf", ".ply")


@dataclass
class LoadedMesh:
    """A triangle mesh with per-vertex UVs, and what loading had to do to it."""

    vertices: np.ndarray  # [V, 3] float64
    faces: np.ndarray  # [F, 3] int64
    uv: np.ndarray  # [V, 2] float64, v up
    notes: list[str]  # e.g. "merged 3 parts", "unwrapped with xatlas"
    texture: Image.Image | None = field(default=None, repr=False)  # its base colour over these UVs, if any
    # The parts it was loaded from (an OBJ's materials, a glTF's meshes), for per-part regions:
    # their names, and the part of every face ``[F]`` (None for a mesh of one part).
    part_names: tuple[str, ...] = ()
    face_part: np.ndarray | None = field(default=None, repr=False)

    def trimesh(self, texture: Image.Image | None = None):
        """As a ``trimesh.Trimesh`` (with a PBR base-colour texture when given)."""
        import trimesh
        from trimesh.visual.material import PBRMaterial

        material = PBRMaterial(baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=1.0) if texture else None
        visual = trimesh.visual.TextureVisuals(uv=self.uv, material=material)
        return trimesh.Trimesh(self.vertices, self.faces, visual=visual, process=False)


def load_mesh(path: str | Path, max_faces: int = 100_000, merge_parts: bool = True,
              atlas_resolution: int = 1024, unwrap_timeout: float = 300.0) -> LoadedMesh:
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
    mesh, part_names, face_part = _single_mesh(loaded, path, merge_parts)
    parts = len(part_names)
    notes = []
    if parts > 1:
        notes.append(f"merged {parts} parts into one mesh")
        note(f"mesh={str(path)!r} is a scene of {parts} parts: merged into one mesh with a new UV atlas "
             "(app.merge_parts=false rejects such scenes instead)")
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise ConfigError(f"mesh={str(path)!r} has no triangles; give a mesh with faces")
    if len(mesh.faces) > max_faces:
        raise ConfigError(f"mesh={str(path)!r} has {len(mesh.faces)} faces, above app.max_faces={max_faces}; "
                          "decimate it (e.g. Blender's Decimate modifier) or raise app.max_faces")
    vertices, faces, kept = checked_geometry(np.asarray(mesh.vertices, dtype=np.float64),
                                             np.asarray(mesh.faces, dtype=np.int64), str(path), notes)
    face_part = None if face_part is None else face_part[kept]
    uv = getattr(mesh.visual, "uv", None)
    uv = None if uv is None or len(uv) != len(mesh.vertices) else np.asarray(uv, dtype=np.float64)
    if uv is not None and not np.isfinite(uv).all():
        notes.append("its UVs had NaN or infinite values: unwrapped again")
        uv = None
    # Merged parts each had their own atlas: their UVs overlap, so the merged mesh needs a new one.
    if uv is None or parts > 1:
        unwrapped = unwrap(vertices, faces, notes, atlas_resolution, unwrap_timeout)
        return replace(unwrapped, part_names=part_names, face_part=face_part)  # unwrapping keeps face order
    return LoadedMesh(vertices, faces, uv, notes, texture_of(mesh), part_names, face_part)


def texture_of(mesh) -> Image.Image | None:
    """The base-colour image of a trimesh mesh's material (PBR or simple), or None. trimesh gives
    meshes without a material a 2x2 placeholder image: that is no texture."""
    material = getattr(mesh.visual, "material", None)
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    if not isinstance(image, Image.Image) or min(image.size) <= 4:
        return None
    return image.convert("RGB")


def checked_geometry(vertices: np.ndarray, faces: np.ndarray, name: str,
                     notes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refuse what native code (the unwrapper, the ray caster) must never see — non-finite
    coordinates, faces naming missing vertices, no face with area — and drop degenerate faces;
    -> (vertices, kept faces, which input faces were kept ``[F]``)."""
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise ConfigError(f"mesh={name!r} has {int(bad.sum())} vertices with NaN or infinite coordinates; "
                          "repair the mesh (e.g. remove those vertices in Blender) and run again")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ConfigError(f"mesh={name!r} has faces that name vertices it does not have; repair the file")
    extent = float(np.abs(vertices - vertices.mean(0)).max())
    area = np.linalg.norm(np.cross(*triangle_edges(vertices, faces)), axis=1) / 2
    flat = area <= (extent * 1e-9) ** 2
    if flat.all():
        raise ConfigError(f"mesh={name!r}: every one of its {len(faces)} faces has zero area (collapsed or "
                          "repeated vertices); give a mesh with a surface")
    if flat.any():
        notes.append(f"dropped {int(flat.sum())} faces of zero area")
    return vertices, faces[~flat], ~flat


def _single_mesh(loaded, path: Path, merge_parts: bool):
    """A trimesh load result -> (one ``Trimesh``, the names of the parts it was made of, the part
    of every face or None for one part)."""
    import trimesh

    if isinstance(loaded, trimesh.Scene):
        parts, names = scene_parts(loaded)
        meshes = [p for p in parts if isinstance(p, trimesh.Trimesh)]
        names = [n for n, p in zip(names, parts) if isinstance(p, trimesh.Trimesh)]
        if not meshes:
            if any(isinstance(p, trimesh.PointCloud) for p in parts):
                loaded = next(p for p in parts if isinstance(p, trimesh.PointCloud))
            else:
                raise ConfigError(f"mesh={str(path)!r} holds no triangles: it is empty or not a valid "
                                  f"{path.suffix[1:].upper()} file; give a mesh file with faces")
        elif len(meshes) == 1:
            return meshes[0], (names[0],), None
        elif not merge_parts:
            raise ConfigError(f"mesh={str(path)!r} is a scene of {len(meshes)} parts and app.merge_parts=false "
                              "rejects it; set app.merge_parts=true to merge them into one mesh (re-unwrapped), "
                              "or export a single mesh")
        else:
            face_part = np.repeat(np.arange(len(meshes)), [len(m.faces) for m in meshes])
            return trimesh.util.concatenate(meshes), tuple(names), face_part
    if isinstance(loaded, trimesh.PointCloud):
        raise ConfigError(f"mesh={str(path)!r} is a point cloud ({len(loaded.vertices)} points, no faces); "
                          "texturing needs a triangle mesh (reconstruct a surface first)")
    if not isinstance(loaded, trimesh.Trimesh):
        raise ConfigError(f"mesh={str(path)!r} is a {type(loaded).__name__}, not a triangle mesh")
    return loaded, ("mesh",), None


def scene_parts(scene) -> tuple[list, list[str]]:
    """Every placed geometry of a trimesh ``Scene`` (transformed into the scene's frame) and its
    name: its material's (an OBJ's usemtl with an MTL file, a glTF material) or else the
    geometry's (a glTF mesh, an OBJ object); a name met twice becomes ``name#2``."""
    parts, names, placed = [], [], Counter()
    for node in scene.graph.nodes_geometry:
        transform, geometry = scene.graph[node]
        part = scene.geometry[geometry].copy()
        part.apply_transform(transform)
        parts.append(part)
        material = getattr(getattr(part, "visual", None), "material", None)
        name = getattr(material, "name", None) or geometry  # an OBJ part's key is its object's name
        placed[name] += 1
        names.append(name if placed[name] == 1 else f"{name}#{placed[name]}")
    return parts, names


def triangle_edges(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two edges ``b − a``, ``c − a`` of every triangle ``[F, D]`` (D = 3 positions or 2 UVs)."""
    a, b, c = (points[faces[:, k]] for k in range(3))
    return b - a, c - a


def unwrap(vertices: np.ndarray, faces: np.ndarray, notes: list[str], resolution: int = 1024,
           timeout: float = 300.0) -> LoadedMesh:
    """UV-unwrap with xatlas in a child process (:mod:`.unwrap`); vertices on chart seams are
    split, so the mesh gains vertices."""
    from .unwrap import unwrap_isolated

    source, new_faces, uv, pieces = unwrap_isolated(vertices, faces, resolution, timeout)
    how = "unwrapped with xatlas" + (f" in {pieces} pieces" if pieces > 1 else "")
    return LoadedMesh(vertices[source], new_faces, uv, [*notes, how])


def y_up(mesh: LoadedMesh, up: str) -> LoadedMesh:
    """The mesh in syncframe's y-up, front-at-+z frame: a z-up mesh (Blender's convention, front
    at −y) turns −90° about x. Only the cameras see the turned copy; outputs keep the input's frame."""
    if up == "y":
        return mesh
    x, y, z = mesh.vertices.T
    return replace(mesh, vertices=np.stack([x, z, -y], 1))


def glb_bytes(mesh: LoadedMesh, texture: Image.Image) -> bytes:
    """The mesh with ``texture`` embedded as its base colour, as a binary glTF."""
    return mesh.trimesh(texture).export(file_type="glb")
