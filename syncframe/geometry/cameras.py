"""Pinhole cameras for the splat renderer: from the orbit rig, or from a NeRF/Blender ``transforms.json``.

:class:`~syncframe.geometry.splat_raster.PinholeCamera` uses OpenCV axes (x right, y down, z
forward). The orbit rig (:mod:`syncframe.geometry.raster`) gives (right, up, back) vectors; a
``transforms.json`` gives camera-to-world matrices in OpenGL/Blender axes (x right, y up, z back),
so both flip y and z.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .raster import Frame, OrbitCamera
from .splat_raster import PinholeCamera

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])  # camera axes: y up -> down, z back -> forward


def pinhole(world_from_camera: np.ndarray, fov_x_degrees: float, size: int) -> PinholeCamera:
    """A square ``size``² pinhole camera from its OpenCV camera-to-world matrix ``[4, 4]``."""
    viewmat = torch.from_numpy(np.linalg.inv(world_from_camera))
    f = 0.5 * size / math.tan(math.radians(fov_x_degrees) / 2)
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], dtype=torch.float64)
    return PinholeCamera(viewmat, K, size, size)


def orbit_pinhole(camera: OrbitCamera, frame: Frame, size: int) -> PinholeCamera:
    """The perspective camera of the orbit rig (the mesh app's rasterizer sees the same image)."""
    right, up, back = camera.basis()
    world_from_camera = np.eye(4)
    world_from_camera[:3, :3] = np.stack([right, -up, -back], axis=1)
    world_from_camera[:3, 3] = frame.center + back * frame.distance
    return pinhole(world_from_camera, frame.fov, size)


def read_transforms(path: str | Path, max_views: int) -> tuple[float, list[np.ndarray]]:
    """(horizontal field of view in degrees, OpenCV camera-to-world matrices ``[4, 4]``) of a
    NeRF-synthetic ``transforms.json`` (``camera_angle_x`` and ``frames[].transform_matrix``,
    OpenGL camera-to-world), checked."""
    label = f"app.cameras={str(path)!r}"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{label} does not exist; give a NeRF/Blender transforms.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{label} is not readable JSON ({exc}); give a NeRF/Blender transforms.json") from None
    frames = data.get("frames") if isinstance(data, dict) else None
    angle = data.get("camera_angle_x") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames or not isinstance(angle, (int, float)) or not 0 < angle < math.pi:
        raise ConfigError(f"{label} needs camera_angle_x (radians, in (0, pi)) and a non-empty frames list "
                          "(the NeRF/Blender synthetic format)")
    if len(frames) > max_views:
        raise ConfigError(f"{label} has {len(frames)} frames, above max_views={max_views}; keep fewer frames or "
                          "raise max_views")
    matrices = []
    for i, frame in enumerate(frames):
        matrix = np.asarray(frame.get("transform_matrix") if isinstance(frame, dict) else None, dtype=object)
        try:
            matrix = matrix.astype(np.float64)
        except (TypeError, ValueError):
            matrix = np.zeros(0)
        if matrix.shape != (4, 4) or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:3, :3])) < 1e-9:
            raise ConfigError(f"{label}: frames[{i}].transform_matrix is not a finite invertible 4x4 camera-to-world "
                              "matrix")
        matrices.append(matrix @ OPENGL_TO_OPENCV)
    return math.degrees(angle), matrices
