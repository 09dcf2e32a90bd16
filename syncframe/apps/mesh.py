"""``app=mesh``: a UV texture for a 3D mesh, painted by views around it, written as a textured GLB.

Denoising runs on 64x64-latent views synchronized through a *latent* texture; the final texture
is made in RGB: every view is decoded and the decoded views are unprojected into an RGB texture
at full resolution, unseen texels filled and the UV islands dilated into their gutters.
"""
from __future__ import annotations

import math

import torch

from syncframe.apps.base import App, contact_sheet, to_pil
from syncframe.decode import decode_batched
from syncframe.errors import ConfigError
from syncframe.geometry.meshes import glb_bytes, load_mesh, y_up
from syncframe.geometry.raster import (OrbitCamera, control_depth, fit_frame, rasterize, rig_from_config, surface_area,
                              uv_area, uv_coverage)
from syncframe.registry import register_app
from syncframe.spaces.base import fill_nearest
from syncframe.spaces.mesh_uv import MeshUVSpace

MAX_TEXTURE = 4096


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


@register_app("mesh")
class MeshApp(App):
    def build_space(self) -> MeshUVSpace:
        cfg, o = self.cfg, self.cfg["app"]
        size = cfg["width"]
        if size != cfg["height"] or size < 64 or size % 64:
            raise ConfigError(f"width={cfg['width']} height={cfg['height']}: mesh views are square, a multiple "
                              "of 64 pixels (512 for Stable Diffusion 1.x/2-base); use width=512 height=512")
        if not cfg.get("mesh"):
            raise ConfigError("app=mesh needs mesh=<file>: an OBJ, GLB/GLTF or PLY mesh (e.g. mesh=assets/vase.obj)")
        self.mesh = load_mesh(cfg["mesh"], int(o["max_faces"]), bool(o["merge_parts"]))
        posed = y_up(self.mesh, o["up"])
        self.cameras = rig_from_config(o["views"])
        self.frame = fit_frame(posed.vertices, self.cameras, o["projection"], float(o["fov"]), float(o["margin"]))
        latent_size = o["latent_texture_size"] or auto_texture_size(
            surface_area(self.mesh), uv_area(self.mesh), self.frame.pixel_footprint(size // 8))
        rgb_size = o["texture_size"] or min(MAX_TEXTURE, 8 * latent_size)
        for key, value in (("latent_texture_size", latent_size), ("texture_size", rgb_size)):
            if not isinstance(value, int) or not 8 <= value <= MAX_TEXTURE:
                raise ConfigError(f"app.{key}={value} must be an integer in [8, {MAX_TEXTURE}] (or null for automatic)")
        self.texture_size = rgb_size
        # Rasterize once per view at both resolutions: the latent one drives sampling, the RGB one
        # the depth control and the final texture.
        self.latent_raster = rasterize(posed, self.cameras, self.frame, size // 8, o["rasterizer"])
        self.rgb_raster = rasterize(posed, self.cameras, self.frame, size, o["rasterizer"])
        r = self.latent_raster
        return MeshUVSpace(r.uv, r.mask, r.cosine, latent_size, self.channels,
                           cosine_power=float(o["cosine_power"]))

    def prompts(self) -> tuple[list[str], list[int]]:
        if not self.cfg["app"]["view_prompts"]:
            return super().prompts()
        labels = [view_label(c) for c in self.cameras]
        distinct = sorted(set(labels))
        return [f"{self.cfg['prompt']}, {label} view" for label in distinct], [distinct.index(x) for x in labels]

    def control_images(self) -> torch.Tensor | None:
        return control_depth(self.rgb_raster) if self.cfg["controlnet"] else None

    def finalize(self, views, denoiser):
        o = self.cfg["app"]
        with torch.no_grad():
            rgb = decode_batched(views, denoiser.decode, int(o["decode_batch_size"])).clamp(-1, 1)
        r = self.rgb_raster
        # Bilinear splatting: at one texel per pixel, nearest splatting would leave speckle holes.
        space = MeshUVSpace(r.uv, r.mask, r.cosine, self.texture_size, channels=3, background=1.0,
                            cosine_power=float(o["cosine_power"]), mode="bilinear")
        islands = uv_coverage(self.mesh, self.texture_size)
        texture = fill_nearest(space.unproject(rgb), islands)  # dilate the islands into their gutters
        renders = space.project(texture)
        mask = r.mask[:, None].expand_as(rgb)
        self.report = {
            "latent_texture_size": self.space.canonical_shape[-1], "texture_size": self.texture_size,
            "latent_disagreement": round(latent_disagreement(self.space, views), 4),
            "island_texels_seen": round(float((space.seen & islands).sum() / islands.sum()), 4),
            "reprojection_error": round(float((rgb - renders).abs()[mask].mean() / 2), 4),  # in [0, 1] colour units
            "mesh": {"vertices": len(self.mesh.vertices), "faces": len(self.mesh.faces), "notes": self.mesh.notes},
        }
        image = to_pil(texture)
        images = {
            "texture.png": image,
            "mesh.glb": glb_bytes(self.mesh, image),
            "renders.png": contact_sheet(renders, int(o["sheet_columns"])),
            "views.png": contact_sheet(rgb, int(o["sheet_columns"])),
        }
        return images, self.space.unproject(views)


def latent_disagreement(space: MeshUVSpace, views: torch.Tensor) -> float:
    """Mean |x − P(U(x))| over the surface pixels of the final latent views, relative to their
    mean |x|: 0 when the views agree on every texel they share."""
    mask = space.mask[:, None].expand_as(views)
    return float((views - space.sync(views)).abs()[mask].mean() / views.abs()[mask].mean())
