"""``app=mesh``: a UV texture for a 3D mesh, painted by views around it, written as a textured GLB.

Denoising runs on 64x64-latent views synchronized through a *latent* texture; the final texture
is made in RGB: every view is decoded and the decoded views are unprojected into an RGB texture
at full resolution, unseen texels filled and the UV islands dilated into their gutters.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import model_validator

from syncframe.apps.base import App, AppFacts, DomainOptions, DecodeOptions, SheetOptions, ViewerOptions, contact_sheet, to_pil
from syncframe.tiling import decode_batched, encode_batched
from syncframe.errors import ConfigError
from syncframe.geometry.meshes import glb_bytes, load_mesh, y_up
from syncframe.geometry.texels import texel_faces, texel_surface
from syncframe.geometry.raster import (OrbitCamera, control_depth, fit_frame, rasterize, rig_from_config, surface_area,
                              uv_area, uv_coverage)
from PIL import Image

from syncframe.images import from_pil, load_image
from syncframe.options import FilePath, Options, option
from syncframe.registry import register_app
from syncframe.viewers import mesh_viewer_html
from syncframe.resources import view_state_bytes
from syncframe.spaces.base import fill_nearest
from syncframe.spaces.mesh_uv import MeshUVSpace

MAX_TEXTURE = 4096
RASTER_BYTES = 40  # per pixel of a view's rasterization: face, UV, depth, normal, cosine
BYTES_PER_FACE = 400  # the mesh, its UVs and the ray caster's acceleration structure


def auto_texture_size(area: float, uv_fraction: float, footprint: float) -> int:
    """Texture side at which a texel spans about one view pixel (``footprint`` world units) on a
    surface facing the camera, for a mesh of surface ``area`` whose UV triangles cover
    ``uv_fraction`` of the texture: finer and views leave most texels unread, coarser and they
    blur. A multiple of 8 in [16, 1024]."""
    side = math.sqrt(area / max(uv_fraction, 1e-9)) / footprint
    return int(min(1024, max(16, math.ceil(side / 8) * 8)))


def view_label(camera: OrbitCamera) -> str:
    """front / side / back / top / bottom, for view-dependent prompts (front = azimuth 0)."""
    if camera.elevation >= 60:
        return "top"
    if camera.elevation <= -60:
        return "bottom"
    azimuth = abs((camera.azimuth + 180) % 360 - 180)
    return "front" if azimuth <= 45 else "back" if azimuth >= 135 else "side"


def side_prompts(prompt: str, cameras: list[OrbitCamera]) -> tuple[list[str], list[int]]:
    """``"<prompt>, front view"`` etc.: the distinct prompts of an orbit rig and each camera's index."""
    labels = [view_label(c) for c in cameras]
    distinct = sorted(set(labels))
    return [f"{prompt}, {label} view" for label in distinct], [distinct.index(x) for x in labels]


class ViewRing(Options):
    """Cameras at one elevation: ``count`` evenly spaced azimuths, or the listed ``azimuths``."""

    elevation: float = option(..., "degrees above the equator", ge=-90, le=90)
    count: int | None = option(None, "cameras evenly spaced in azimuth", ge=1)
    azimuth_offset: float = option(0.0, "azimuth of the first of `count` cameras, degrees")
    azimuths: list[float] | None = option(None, "explicit azimuths, degrees (instead of count)", min_length=1)

    @model_validator(mode="after")
    def _one_of(self):
        if (self.count is None) == (self.azimuths is None):
            raise ValueError("a view ring needs either count (+ optional azimuth_offset) or a list of azimuths")
        return self


class MeshOptions(DomainOptions, DecodeOptions, SheetOptions, ViewerOptions):
    up: Literal["y", "z"] = option("y", "the mesh's up axis: y (glTF; front at +z) or z (Blender; front at -y)")
    views: list[ViewRing] = option([dict(elevation=0, count=8), dict(elevation=30, azimuths=[0, 180])],
                                   "the camera rig around the up axis; azimuth 0 looks at the front", min_length=1)
    projection: Literal["orthographic", "perspective"] = option("orthographic", "camera projection")
    fov: float = option(50.0, "perspective field of view, degrees", gt=0, lt=180)
    margin: float = option(1.1, "the views frame the object's extent times this", ge=1, le=10)
    latent_texture_size: int | None = option(None, "latent texture side; null = one texel per latent view pixel",
                                             ge=8, le=MAX_TEXTURE)
    texture_size: int | None = option(None, "RGB texture side; null = 8 x the latent texture side (at most 4096)",
                                      ge=8, le=MAX_TEXTURE)
    cosine_power: float = option(1.0, "unproject weight of a pixel = |cos(view ray, normal)| ** cosine_power",
                                 ge=0, le=16)
    view_prompts: bool = option(True, 'append ", front view" / "side view" / "back view" / "top view" per camera')
    max_faces: int = option(100_000, "larger meshes are refused (decimate them first)", ge=1, le=5_000_000)
    merge_parts: bool = option(True, "merge a multi-part scene into one mesh (re-unwrapped); false rejects it")
    unwrap_timeout: float = option(300.0, "seconds the UV unwrapper (xatlas, in a child process) may take", gt=0)
    rasterizer: Literal["embree", "nvdiffrast"] = option("embree", "embree (CPU ray casting) | nvdiffrast (CUDA)")
    heldout_views: int = option(4, "cameras no view used (half-way between azimuths, 15° up), rendered unlit with the "
                                   "final texture into heldout/ (syncframe eval measures them)", ge=0, le=64)


class MeshInputs(Options):
    mesh: FilePath | None = option(None, "the mesh to texture: OBJ, GLB/GLTF or PLY (e.g. mesh=assets/vase.obj)")


# The published settings of the methods on meshes: SyncTweedies' official code runs its cross-view
# attention here; StochSync's official mesh configuration (its seam mask for views with borders on
# four sides is ours: docs/benchmarks.md).
MESH_SYNC_DEFAULTS = {"synctweedies": dict(cross_view="auto"),
                      "stochsync": dict(warmup=4, ode_steps=20, seam_removal=4, seam_mask="both")}


@register_app("mesh", options=MeshOptions, inputs=MeshInputs, common=dict(sync="synctweedies"),
              facts=AppFacts(main_image="texture.png", images=("renders.png", "texture.png", "views.png"),
                             heldout="heldout", sync_defaults=MESH_SYNC_DEFAULTS))
class MeshApp(App):
    """A UV texture for a 3D mesh, painted by views around it (of the model's size), written as a GLB."""

    layout_image_name = "texture.png"
    keep_frame = "the UV texture"
    view_sized = True
    _rgb_space = None  # built once (rgb_space())

    def sizes(self) -> dict:
        return {"view_px": self.run.width, "texture_px": self.texture_size,
                "latent_texture": self.base_space.canonical_shape[-1]}

    def plan_size(self):
        run, o = self.run, self.options
        size = run.width
        unit = 8 * self.spec.scale  # 8 latents
        if size != run.height or size < unit or size % unit:
            raise ConfigError(f"width={run.width} height={run.height}: mesh views are square, a multiple of {unit} "
                              f"pixels ({self.spec.window_px} for this model); use width={self.spec.window_px} "
                              f"height={self.spec.window_px}")
        if not self.inputs.mesh:
            raise ConfigError("app=mesh needs mesh=<file>: an OBJ, GLB/GLTF or PLY mesh (e.g. mesh=assets/vase.obj)")
        n = sum(len(ring.azimuths) if ring.azimuths else ring.count for ring in o.views)
        texture = o.texture_size or 2048
        parts = {"the views": n * view_state_bytes(self.channels, size // self.spec.scale),
                 f"the {size}² rasterizations and decoded views": n * size * size * (RASTER_BYTES + 3 * 4 * 3),
                 "the texture": texture * texture * 3 * 4 * 8,
                 "the mesh": o.max_faces * BYTES_PER_FACE}
        return n, parts, f"{n} cameras in app.views, {size}² views"

    def build_space(self) -> MeshUVSpace:
        run, o, mesh = self.run, self.options, self.inputs.mesh
        size = run.width
        self.mesh = load_mesh(mesh, o.max_faces, o.merge_parts, unwrap_timeout=o.unwrap_timeout)
        if self.init is not None and self.mesh.notes and any("unwrapped" in n for n in self.mesh.notes):
            raise ConfigError(f"init={run.init}: mesh={mesh!r} had to be given new UVs ({self.mesh.notes[-1]}), "
                              "so no existing texture fits it; drop init= or give a mesh with UVs")
        if self.init == "texture" and self.mesh.texture is None:
            raise ConfigError(f"init=texture: mesh={mesh!r} has no texture image; give init=<image file> as its "
                              "texture, or drop init=")
        posed = self.posed = y_up(self.mesh, o.up)
        self.cameras = rig_from_config(o.views)
        self.frame = fit_frame(posed.vertices, self.cameras, o.projection, float(o.fov), float(o.margin))
        latent_size = o.latent_texture_size or auto_texture_size(
            surface_area(self.mesh), uv_area(self.mesh), self.frame.pixel_footprint(size // self.spec.scale))
        rgb_size = o.texture_size or min(MAX_TEXTURE, self.spec.scale * latent_size)
        self.texture_size = rgb_size
        # Rasterize once per view at both resolutions: the latent one drives sampling, the RGB one
        # the depth control and the final texture.
        self.latent_raster = rasterize(posed, self.cameras, self.frame, size // self.spec.scale, o.rasterizer)
        self.rgb_raster = rasterize(posed, self.cameras, self.frame, size, o.rasterizer)
        r = self.latent_raster
        return MeshUVSpace(r.uv, r.mask, r.cosine, latent_size, self.channels, cosine_power=o.cosine_power,
                           surface=texel_surface(self.mesh, latent_size))

    def rgb_space(self) -> MeshUVSpace:
        """The RGB texture seen by the full-size views (bilinear splatting: at one texel per pixel,
        nearest splatting would leave speckle holes); built once, shared by app.domain=rgb and the
        final texture."""
        if self._rgb_space is None:
            r = self.rgb_raster
            self._rgb_space = MeshUVSpace(r.uv, r.mask, r.cosine, self.texture_size, channels=3, background=1.0,
                                          cosine_power=self.options.cosine_power, mode="bilinear",
                                          surface=texel_surface(self.mesh, self.texture_size))
        return self._rgb_space

    def part_mask(self, name: str, height: int, width: int) -> torch.Tensor:
        """The texels ``[height, width]`` of the faces of part ``name`` (regions' ``part:``)."""
        names = self.mesh.part_names
        if name not in names:
            raise ConfigError(f"part: {name} is not a part of mesh={self.inputs.mesh!r}; its parts are "
                              f"{', '.join(names)} (an OBJ's materials, a glTF's meshes)")
        faces = texel_faces(self.mesh, height)
        part = np.zeros_like(faces) if self.mesh.face_part is None else self.mesh.face_part[faces]
        return torch.from_numpy(((faces >= 0) & (part == names.index(name))).astype(np.float32))

    def load_init(self, init: str):
        """``texture`` (the mesh's own) or an image file used as a texture over the mesh's UVs;
        checked against the mesh once it is loaded (``build_space``)."""
        return init if init == "texture" else load_image(init, "init")

    def init_texture(self) -> torch.Tensor:
        """The starting texture ``[3, T, T]`` in [-1, 1] at the RGB texture size."""
        texture = self.mesh.texture if self.init == "texture" else self.init
        return from_pil(texture.resize((self.texture_size, self.texture_size), Image.LANCZOS))

    def init_latents(self, denoiser, generator):
        """The views rendered from the starting texture (bilinear), encoded, and the latent views
        unprojected into the latent texture (surface pixels only)."""
        r = self.rgb_raster
        space = MeshUVSpace(r.uv, r.mask, r.cosine, self.texture_size, channels=3, mode="bilinear")
        latents = encode_batched(space.project(self.init_texture()), denoiser.encode, self.options.decode_batch_size,
                                 generator)
        return self.base_space.unproject(latents)

    def prompts(self) -> tuple[list[str], list[int]]:
        if not self.options.view_prompts:
            return super().prompts()
        return side_prompts(self.run.prompt, self.cameras)

    def can_control(self) -> bool:
        return True  # the rendered depth of every view

    def control_images(self) -> torch.Tensor | None:
        return control_depth(self.rgb_raster.depth, self.rgb_raster.mask) if self.run.controlnet else None

    def finalize(self, views, denoiser):
        o = self.options
        with torch.no_grad():
            rgb = decode_batched(views, denoiser.decode, int(o.decode_batch_size), self.run.progress).clamp(-1, 1)
        r, space = self.rgb_raster, self.rgb_space()
        islands = uv_coverage(self.mesh, self.texture_size)
        texture = fill_nearest(space.unproject(rgb), islands)  # dilate the islands into their gutters
        renders = space.project(texture)
        mask = r.mask[:, None].expand_as(rgb)
        self.report = {
            "latent_texture_size": self.base_space.canonical_shape[-1], "texture_size": self.texture_size,
            "latent_disagreement": round(latent_disagreement(self.base_space, views), 4),
            "island_texels_seen": round(float((space.seen & islands).sum() / islands.sum()), 4),
            "reprojection_error": round(float((rgb - renders).abs()[mask].mean() / 2), 4),  # in [0, 1] colour units
            "mesh": {"vertices": len(self.mesh.vertices), "faces": len(self.mesh.faces), "notes": self.mesh.notes},
        }
        image = to_pil(texture)
        glb = glb_bytes(self.mesh, image)
        images = {
            "texture.png": image,
            "mesh.glb": glb,
            "renders.png": contact_sheet(shaded(renders, r), o.sheet_columns),
            "views.png": contact_sheet(rgb, o.sheet_columns),
        }
        images.update(self.heldout(texture))
        if o.viewer:
            images["viewer.html"] = mesh_viewer_html(glb, title=self.run.prompt)
        return images, self.base_space.unproject(views)

    def heldout(self, texture: torch.Tensor) -> dict:
        """``heldout/novel_<k>.png``: the textured mesh from ``app.heldout_views`` cameras no view
        used (half-way between azimuths, 15° up), unlit on white, at the views' size."""
        o, count = self.options, self.options.heldout_views
        if not count:
            return {}
        cameras = [OrbitCamera(360 * (k + 0.5) / count, 15.0) for k in range(count)]
        r = rasterize(self.posed, cameras, self.frame, self.run.width, o.rasterizer)
        space = MeshUVSpace(r.uv, r.mask, r.cosine, self.texture_size, channels=3, background=1.0, mode="bilinear")
        renders = space.project(texture).clamp(-1, 1)
        return {f"heldout/novel_{k}.png": to_pil(render) for k, render in enumerate(renders)}


def shaded(renders: torch.Tensor, raster) -> torch.Tensor:
    """Renders ``[N, 3, s, s]`` in [-1, 1] lit by a light at the camera (ambient 0.35 + diffuse
    0.65·|cos|), so edges and creases show on the contact sheet; the background stays as it is."""
    light = (0.35 + 0.65 * raster.cosine)[:, None].to(renders)
    lit = (renders + 1) * light - 1
    return torch.where(raster.mask[:, None].to(renders.device), lit, renders)


def latent_disagreement(space: MeshUVSpace, views: torch.Tensor) -> float:
    """Mean |x − P(U(x))| over the surface pixels of the final latent views, relative to their
    mean |x|: 0 when the views agree on every texel they share."""
    mask = space.mask[:, None].expand_as(views)
    return float((views - space.sync(views)).abs()[mask].mean() / views.abs()[mask].mean())
