"""The demo inputs of ``assets/`` (meshes, depth, a landscape), built here; ``python scripts/make_assets.py``
writes them. Not part of the package: tests import them as ``scripts.shapes``."""
from __future__ import annotations

import math

import numpy as np

from syncframe.geometry.meshes import LoadedMesh, triangle_edges, unwrap


def revolve(profile: np.ndarray, segments: int = 64) -> LoadedMesh:
    """A surface of revolution about +y from a profile polyline ``[P, 2]`` of (radius, y).

    UVs: ``u`` goes once around (the seam column is duplicated at u = 0 and 1), ``v`` is the
    arc length along the profile, so the whole surface is one UV island. Faces wind so that
    normals point to the right of the profile's direction of travel (outwards for a profile
    that runs up the outside).
    """
    radius, height = profile[:, 0], profile[:, 1]
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(profile, axis=0), axis=1))])
    theta = np.linspace(0, 2 * math.pi, segments + 1)
    vertices = np.stack([radius[:, None] * np.sin(theta), np.broadcast_to(height[:, None], (len(profile), segments + 1)),
                         radius[:, None] * np.cos(theta)], -1).reshape(-1, 3)
    uv = np.stack(np.meshgrid(theta / (2 * math.pi), 1 - arc / arc[-1], indexing="xy"), -1).reshape(-1, 2)
    grid = np.arange(len(profile) * (segments + 1)).reshape(len(profile), segments + 1)
    a, b, c, d = grid[:-1, :-1], grid[:-1, 1:], grid[1:, 1:], grid[1:, :-1]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    area = np.linalg.norm(np.cross(*triangle_edges(vertices, faces)), axis=1)  # x2; 0 at the poles
    return LoadedMesh(vertices, faces[area > 1e-12], uv, [])


def vase(segments: int = 48, samples: int = 32) -> LoadedMesh:
    """A thick-walled vase (outer wall, lip, inner wall, inner floor): a closed, genus-0 surface."""
    from scipy.interpolate import PchipInterpolator

    outer = PchipInterpolator([0, 0.15, 0.6, 1.1, 1.45, 1.7, 1.85], [0.32, 0.45, 0.6, 0.45, 0.22, 0.24, 0.32])
    wall, floor = 0.04, 0.08
    up = np.linspace(0, 1.85, samples)
    down = np.linspace(1.85, floor, samples)
    profile = np.concatenate([
        [[0.0, 0.0]],
        np.stack([outer(up), up], -1),
        np.stack([outer(down) - wall, down], -1),
        [[0.0, floor]],
    ])
    return revolve(profile, segments)


def figure() -> LoadedMesh:
    """A small standing figure of primitives (body, head, arms, legs, hat), xatlas-unwrapped."""
    import trimesh
    from trimesh.creation import box, capsule, cone, cylinder, icosphere

    def placed(mesh, x=0.0, y=0.0, z=0.0, tilt_z=0.0):
        mesh.apply_transform(trimesh.transformations.rotation_matrix(math.radians(tilt_z), [0, 0, 1]))
        mesh.apply_translation([x, y, z])
        return mesh

    def upright(mesh):  # trimesh builds cylinders, capsules and cones along +z
        return mesh.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))

    parts = [
        placed(box(extents=[0.6, 0.8, 0.35]), y=1.0),  # body
        placed(icosphere(subdivisions=3, radius=0.26), y=1.66),  # head
        placed(upright(cone(radius=0.24, height=0.35, sections=32)), y=1.82),  # hat
        placed(upright(capsule(height=0.6, radius=0.08, count=[16, 8])), x=-0.42, y=1.05, tilt_z=-15),  # arms
        placed(upright(capsule(height=0.6, radius=0.08, count=[16, 8])), x=0.42, y=1.05, tilt_z=15),
        placed(upright(cylinder(radius=0.11, height=0.6, sections=24)), x=-0.16, y=0.3),  # legs
        placed(upright(cylinder(radius=0.11, height=0.6, sections=24)), x=0.16, y=0.3),
    ]
    merged = trimesh.util.concatenate(parts)
    return unwrap(np.asarray(merged.vertices), np.asarray(merged.faces), [], resolution=1024)


def obj_text(mesh: LoadedMesh, comment: str = "") -> str:
    """Wavefront OBJ with positions, UVs and faces (``f v/vt``), 6 significant digits."""
    lines = [f"# {comment}"] if comment else []
    lines += [f"v {x:.6g} {y:.6g} {z:.6g}" for x, y, z in mesh.vertices]
    lines += [f"vt {u:.6g} {v:.6g}" for u, v in mesh.uv]
    lines += ["f " + " ".join(f"{i}/{i}" for i in face + 1) for face in mesh.faces]
    return "\n".join(lines) + "\n"


def room_depth(width: int = 512, size=(6.0, 3.0, 4.0)) -> np.ndarray:
    """An equirect depth image ``[width/2, width]`` (uint8, near = bright) of a box room of
    ``size`` (x, y, z metres) seen from its centre: the demo input of the 360° depth ControlNet."""
    from syncframe.spaces.equirect import equirect_directions

    directions = equirect_directions(width // 2, width).numpy()
    half = np.array(size) / 2
    distance = (half / np.maximum(np.abs(directions), 1e-9)).min(-1)  # to the nearest wall along each ray
    near = (distance.max() - distance) / (distance.max() - distance.min())
    return np.round(near * 255).astype(np.uint8)


def landscape(width: int = 1536, height: int = 512) -> np.ndarray:
    """A drawn landscape ``[height, width, 3]`` uint8 (sky gradient, sun, three ranges of hills):
    the demo image to start from (``init=``) and to upscale."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / width, y / height
    sky = np.stack([70 + 120 * v, 110 + 90 * v, 200 + 30 * v], -1)
    sun = np.exp(-(((u - 0.7) * width) ** 2 + ((v - 0.3) * height) ** 2) / (2 * (0.05 * height) ** 2))
    image = sky + sun[..., None] * np.array([180, 120, 20])
    for k, (base, colour) in enumerate([(0.55, (90, 110, 140)), (0.68, (60, 100, 70)), (0.8, (40, 70, 40))]):
        ridge = base + 0.06 * np.sin(2 * np.pi * (u * (2 + k) + 0.3 * k)) + 0.03 * np.sin(2 * np.pi * u * (7 + 3 * k))
        image = np.where((v > ridge)[..., None], np.array(colour) * (1 - 0.3 * (v - ridge)[..., None]), image)
    return np.clip(image, 0, 255).astype(np.uint8)


def landscape_keep(width: int = 1536, height: int = 512) -> np.ndarray:
    """The keep mask of :func:`landscape` for outpainting (``keep=``): its left third white (kept), the
    rest black (generated), ``[height, width]`` uint8."""
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 3] = 255
    return mask
