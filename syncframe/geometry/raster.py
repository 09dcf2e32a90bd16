"""Cameras around an object and a once-per-view rasterization of its mesh.

World convention: +y is up and the object's front faces +z (glTF). A camera at azimuth 0,
elevation 0 sits on +z looking towards −z; +azimuth turns it towards +x, +elevation raises it.
Image row 0 is the top; pixel centres sit at half-pixel offsets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from .meshes import LoadedMesh, triangle_edges



@dataclass(frozen=True)
class OrbitCamera:
    azimuth: float  # degrees
    elevation: float  # degrees

    def __post_init__(self):
        if not -90 <= self.elevation <= 90:
            raise ConfigError(f"camera elevation={self.elevation} must be in [-90, 90] degrees")

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit (right, up, back) vectors; ``back`` points from the object towards the camera."""
        a, e = math.radians(self.azimuth), math.radians(self.elevation)
        back = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
        right = np.array([math.cos(a), 0.0, -math.sin(a)])
        up = np.array([-math.sin(e) * math.sin(a), math.cos(e), -math.sin(e) * math.cos(a)])
        return right, up, back


def rig_from_config(rings: list) -> list[OrbitCamera]:
    """``[{elevation, count, azimuth_offset} | {elevation, azimuths}]`` (the app's validated rings, or
    plain mappings) -> cameras."""
    cameras = []
    for ring in rings:
        ring = ring if isinstance(ring, dict) else ring.model_dump()
        if ring.get("azimuths") is not None:
            azimuths = [float(a) for a in ring["azimuths"]]
        else:
            step = 360.0 / ring["count"]
            azimuths = [ring.get("azimuth_offset", 0.0) + k * step for k in range(ring["count"])]
        cameras += [OrbitCamera(a, float(ring["elevation"])) for a in azimuths]
    return cameras


@dataclass(frozen=True)
class Frame:
    """Where every camera of the rig looks and how much it sees (shared by all views)."""

    center: np.ndarray  # [3], the point all cameras look at
    radius: float  # bounding-sphere radius about ``center``
    projection: str
    half_size: float  # orthographic: half the view's side in world units
    distance: float  # camera distance from ``center``
    fov: float  # perspective: field of view, degrees

    def pixel_footprint(self, size: int) -> float:
        """World length one pixel spans at the object's centre."""
        if self.projection == "orthographic":
            return 2 * self.half_size / size
        return 2 * self.distance * math.tan(math.radians(self.fov) / 2) / size


def fit_frame(vertices: np.ndarray, cameras: list[OrbitCamera], projection: str = "orthographic",
              fov: float = 50.0, margin: float = 1.1, flat: str = "the mesh has zero extent (all vertices "
                                                                "coincide)") -> Frame:
    """Auto-fit: look at the bounding-box centre; the orthographic frame is the largest extent of
    the object over all views (x ``margin``), the perspective camera stands where the bounding
    sphere fits the field of view (x ``margin``). ``flat``: the error when all points coincide."""
    center = (vertices.min(0) + vertices.max(0)) / 2
    local = vertices - center
    radius = float(np.linalg.norm(local, axis=1).max())
    if radius == 0:
        raise ConfigError(flat)
    if projection == "orthographic":
        extent = max(float(np.abs(local @ np.stack(cam.basis()[:2], 1)).max()) for cam in cameras)
        return Frame(center, radius, projection, extent * margin, 2 * radius, fov)
    distance = radius / math.sin(math.radians(fov) / 2) * margin
    return Frame(center, radius, projection, 0.0, distance, fov)


def camera_rays(camera: OrbitCamera, frame: Frame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray origins and unit directions ``[size, size, 3]`` through the pixel centres."""
    right, up, back = camera.basis()
    t = (np.arange(size) + 0.5) / size * 2 - 1
    b, a = np.meshgrid(-t, t, indexing="ij")  # a: right, b: up
    eye = frame.center + back * frame.distance
    if frame.projection == "orthographic":
        origins = eye + (a[..., None] * right + b[..., None] * up) * frame.half_size
        directions = np.broadcast_to(-back, origins.shape).copy()
        return origins, directions
    tan = math.tan(math.radians(frame.fov) / 2)
    directions = -back + (a[..., None] * right + b[..., None] * up) * tan
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return np.broadcast_to(eye, directions.shape).copy(), directions


@dataclass
class Raster:
    """Per-view pixel maps of one rasterization, ``N`` views of ``s x s`` pixels."""

    face: torch.Tensor  # [N, s, s] long, -1 where no surface
    uv: torch.Tensor  # [N, s, s, 2] float32
    depth: torch.Tensor  # [N, s, s] float32, distance from the camera plane; 0 where no surface
    normal: torch.Tensor  # [N, s, s, 3] float32, the face normal
    cosine: torch.Tensor  # [N, s, s] float32, |cos| between the view ray and the normal

    @property
    def mask(self) -> torch.Tensor:
        return self.face >= 0


def rasterize(mesh: LoadedMesh, cameras: list[OrbitCamera], frame: Frame, size: int,
              backend: str = "embree") -> Raster:
    """Rasterize ``mesh`` in every camera at ``size``² pixels (the first surface each pixel sees);
    ``backend``: embree (CPU) or nvdiffrast (CUDA)."""
    if backend == "embree":
        return _rasterize_embree(mesh, cameras, frame, size)
    return _rasterize_nvdiffrast(mesh, cameras, frame, size)


def _rasterize_embree(mesh: LoadedMesh, cameras, frame, size) -> Raster:
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    face_normals = _face_normals(mesh)
    if not trimesh.ray.has_embree:
        raise ConfigError("the embree ray caster is missing; pip install embreex (a syncframe dependency)")
    maps = []
    for cam in cameras:
        origins, directions = camera_rays(cam, frame, size)
        origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
        tri, ray, hit = tm.ray.intersects_id(origins, directions, multiple_hits=False, return_locations=True)
        face = np.full(size * size, -1, dtype=np.int64)
        face[ray] = tri
        bary = trimesh.triangles.points_to_barycentric(tm.triangles[tri], hit)
        uv = np.zeros((size * size, 2))
        uv[ray] = np.einsum("rk,rkc->rc", bary, mesh.uv[mesh.faces[tri]])
        depth = np.zeros(size * size)
        depth[ray] = (hit - origins[ray]) @ -cam.basis()[2]  # along the view axis, for both projections
        normal = np.zeros((size * size, 3))
        normal[ray] = face_normals[tri]
        maps.append((face, uv, depth, normal, np.abs(np.einsum("rc,rc->r", normal, directions))))
    return _stack(maps, size)


def _stack(maps, size) -> Raster:
    n = len(maps)
    face, uv, depth, normal, cosine = (np.stack(m) for m in zip(*maps))
    as_t = lambda a, *shape: torch.from_numpy(np.ascontiguousarray(a)).reshape(n, size, size, *shape)  # noqa: E731
    return Raster(as_t(face), as_t(uv, 2).float(), as_t(depth).float(), as_t(normal, 3).float(),
                  as_t(cosine).float())


def _rasterize_nvdiffrast(mesh: LoadedMesh, cameras, frame, size) -> Raster:
    """GPU rasterization with nvdiffrast (optional, needs CUDA); the same maps as embree.

    Not yet run anywhere: nvdiffrast is not on PyPI and no GPU was lent while this was written;
    ``tests/test_mesh.py::test_nvdiffrast_uv_maps_agree_with_ray_casting`` checks it on a GPU."""
    try:
        import nvdiffrast.torch as dr
    except ImportError as exc:
        raise ConfigError("app.rasterizer=nvdiffrast needs nvdiffrast (pip install "
                          "git+https://github.com/NVlabs/nvdiffrast) and a CUDA GPU; or use app.rasterizer=embree") from exc
    if not torch.cuda.is_available():
        raise ConfigError("app.rasterizer=nvdiffrast needs a CUDA GPU; use app.rasterizer=embree")
    device = torch.device("cuda")
    vertices = torch.as_tensor(mesh.vertices - frame.center, dtype=torch.float32, device=device)
    faces = torch.as_tensor(mesh.faces, dtype=torch.int32, device=device)
    clip, view_depth = [], []
    near, far = frame.distance - frame.radius * 1.01, frame.distance + frame.radius * 1.01
    for cam in cameras:
        right, up, back = (torch.as_tensor(v, dtype=torch.float32, device=device) for v in cam.basis())
        x, y, z = vertices @ right, vertices @ up, frame.distance - vertices @ back  # z: depth from the eye plane
        if frame.projection == "orthographic":
            zc = (z - near) / (far - near) * 2 - 1
            clip.append(torch.stack([x / frame.half_size, y / frame.half_size, zc, torch.ones_like(z)], -1))
        else:
            tan = math.tan(math.radians(frame.fov) / 2)
            a, b = (far + near) / (far - near), -2 * far * near / (far - near)  # OpenGL depth: affine in z
            clip.append(torch.stack([x / tan, y / tan, a * z + b, z], -1))
        view_depth.append(z)
    rast, _ = dr.rasterize(dr.RasterizeCudaContext(device), torch.stack(clip), faces, resolution=[size, size])
    rast = rast.flip(1).contiguous()  # nvdiffrast's row 0 is the bottom of the image
    face = rast[..., 3].long() - 1
    hit = (face >= 0)[..., None]
    uv, _ = dr.interpolate(torch.as_tensor(mesh.uv, dtype=torch.float32, device=device), rast, faces)
    depth, _ = dr.interpolate(torch.stack(view_depth)[..., None].contiguous(), rast, faces)
    face_normals = torch.as_tensor(_face_normals(mesh), dtype=torch.float32, device=device)
    normal = face_normals[face.clamp_min(0)] * hit
    rays = torch.stack([torch.from_numpy(camera_rays(cam, frame, size)[1]) for cam in cameras]).to(device).float()
    cosine = (normal * rays).sum(-1).abs()
    uv, depth = uv * hit, (depth * hit)[..., 0]
    return Raster(face.cpu(), uv.cpu(), depth.cpu(), normal.cpu(), cosine.cpu())


def _face_normals(mesh: LoadedMesh) -> np.ndarray:
    """Unit normals ``[F, 3]`` (zero for degenerate faces), the same for both rasterizers."""
    n = np.cross(*triangle_edges(mesh.vertices, mesh.faces))
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)


def control_depth(depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Depth-ControlNet images ``[N, 3, s, s]`` in [0, 1] from camera depth ``[N, s, s]`` where
    ``mask``: inverse depth normalised per view over the object to [0.2, 1] (near = bright, like the
    MiDaS maps those ControlNets were trained on), background 0."""
    inverse = torch.where(mask, 1 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    flat = inverse.flatten(1)
    big = torch.finfo(flat.dtype).max
    lo = torch.where(mask.flatten(1), flat, torch.full_like(flat, big)).min(1).values[:, None, None]
    hi = flat.max(1).values[:, None, None]
    scaled = 0.2 + 0.8 * (inverse - lo) / (hi - lo).clamp_min(1e-12)
    return torch.where(mask, scaled, torch.zeros_like(scaled))[:, None].expand(-1, 3, -1, -1).contiguous()


def uv_coverage(mesh: LoadedMesh, size: int) -> torch.Tensor:
    """``[size, size]`` bool: texels the mesh's UV triangles touch (its UV islands)."""
    from PIL import Image, ImageDraw

    image = Image.new("1", (size, size), 0)
    draw = ImageDraw.Draw(image)
    corners = mesh.uv[mesh.faces] * [size, -size] + [-0.5, size - 0.5]  # texel-centre coordinates
    for triangle in corners:
        draw.polygon([tuple(p) for p in triangle], fill=1, outline=1)
    return torch.from_numpy(np.array(image, dtype=bool))


def uv_area(mesh: LoadedMesh) -> float:
    """Total area of the UV triangles (a fraction of the unit square when they do not overlap)."""
    return float(np.abs(cross2(*triangle_edges(mesh.uv, mesh.faces))).sum() / 2)


def cross2(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """z of the cross product of 2-D vectors ``[..., 2]`` (twice the signed triangle area)."""
    return p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]


def surface_area(mesh: LoadedMesh) -> float:
    return float(np.linalg.norm(np.cross(*triangle_edges(mesh.vertices, mesh.faces)), axis=1).sum() / 2)
