"""``app=splats``: colours for the Gaussians of a fixed 3DGS scene, painted by views around it.

Geometry (means, scales, rotations, opacities) is kept; every splat gets one colour. Denoising
runs on views rendered by the linear splat renderer (:mod:`syncframe.geometry.splat_raster`) in
the latent domain (64² latent views synchronized through per-splat latent colours) or the RGB
domain (views decoded, fitted to the splats' RGB colours at full size, rendered and encoded back).
The final colours are fitted to the decoded views at ``app.rgb_size`` and written as the input's
PLY with ``f_dc`` set and ``f_rest`` zeroed.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from syncframe.apps.base import App, AppFacts, DomainOptions, DecodeOptions, SheetOptions, ViewerOptions, contact_sheet, to_pil
from syncframe.apps.mesh import MESH_SYNC_DEFAULTS, ViewRing, side_prompts
from syncframe.errors import ConfigError
from syncframe.messages import note
from syncframe.geometry.cameras import orbit_pinhole, pinhole, read_transforms
from syncframe.geometry.raster import OrbitCamera, control_depth, fit_frame, rig_from_config
from syncframe.geometry.splat_raster import SparseRenderer
from syncframe.geometry.splats import Splats, ply_bytes, read_ply
from syncframe.options import FilePath, Options, option
from syncframe.registry import register_app
from syncframe.resources import view_state_bytes
from syncframe.spaces.splats import SplatSpace
from syncframe.tiling import decode_batched
from syncframe.viewers import splat_viewer_html

BYTES_PER_SPLAT = 400  # the PLY's columns, float64 copies for the renderer, the k-d tree
BYTES_PER_WEIGHT = 24  # a W entry in COO while building, then CSR twice (W and Wᵀ)
WEIGHTS_PER_PIXEL = 12  # splats blended per pixel, a generous average for trained and demo scenes
Z_UP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # z-up (Blender) -> y-up, as the mesh app turns meshes


class SplatsOptions(DomainOptions, DecodeOptions, SheetOptions, ViewerOptions):
    up: Literal["y", "z"] = option("y", "the scene's up axis: y (front at +z) or z (Blender; front at -y)")
    views: list[ViewRing] = option([dict(elevation=0, count=8), dict(elevation=30, azimuths=[0, 180])],
                                   "the orbit camera rig around the up axis (ignored with app.cameras)", min_length=1)
    cameras: FilePath | None = option(None, "a NeRF/Blender transforms.json whose frames are the views (instead of "
                                            "the orbit rig); its camera_angle_x is the field of view")
    fov: float = option(50.0, "field of view of the orbit rig, degrees", gt=0, lt=180)
    margin: float = option(1.1, "the orbit rig frames the splats' extent times this", ge=1, le=10)
    unproject: Literal["adjoint", "lsq"] = option("adjoint", "views -> splat colours: the alpha-corrected normalised "
                                                             "adjoint, or least squares by conjugate gradients")
    lsq_iterations: int = option(20, "conjugate-gradient iterations of app.unproject=lsq", ge=1, le=1000)
    renderer: Literal["torch", "gsplat"] = option("torch", "torch (sparse compositing weights, CPU or CUDA) | gsplat "
                                                           "(CUDA, pip install gsplat)")
    rgb_size: int | None = option(None, "side of the views the final RGB colours are fitted to; null = the "
                                        "model's view size", ge=16, le=4096)
    background: float = option(1.0, "background of renders.png, -1 (black) to 1 (white)", ge=-1, le=1)
    novel_views: int = option(4, "extra cameras between the rig's (elevation 15°) shown in renders.png and written "
                                 "to heldout/ (measured by syncframe eval)", ge=0, le=64)
    view_prompts: bool = option(True, 'append ", front view" / "side view" / ... per orbit camera')
    max_splats: int = option(1_000_000, "larger scenes are refused (prune them first)", ge=1, le=50_000_000)


class SplatsInputs(Options):
    splats: FilePath | None = option(None, "the 3D Gaussian Splatting scene to colour: a 3DGS PLY "
                                           "(e.g. splats=assets/vase_splats.ply)")


@register_app("splats", options=SplatsOptions, inputs=SplatsInputs, common=dict(sync="synctweedies"),
              facts=AppFacts(main_image="renders.png", images=("renders.png", "views.png"), heldout="heldout",
                             sync_defaults=MESH_SYNC_DEFAULTS))  # the same orbit of perspective views
class SplatsApp(App):
    """Colours for a fixed 3D Gaussian Splatting scene, painted by views around it, written as a 3DGS PLY."""

    takes_regions = False  # per-splat colours are no pixel grid
    view_sized = True
    _transforms = None  # app.cameras, read once (transforms())
    _rgb_space = None  # built once (rgb_space())

    def sizes(self) -> dict:
        return {"view_px": self.run.width, "fit_px": self.options.rgb_size or self.run.width,
                "splats": len(self.splats)}

    def plan_size(self):
        run, o = self.run, self.options
        if o.domain == "rgb" and o.rgb_size not in (None, run.width):
            raise ConfigError(f"app.rgb_size={o.rgb_size} with app.domain=rgb: the RGB domain fits the decoded "
                              f"{run.width}² views themselves; drop app.rgb_size or use app.domain=latent")
        size, unit = run.width, 8 * self.spec.scale
        if size != run.height or size < unit or size % unit:
            raise ConfigError(f"width={run.width} height={run.height}: splat views are square, a multiple of "
                              f"{unit} pixels ({self.spec.window_px} for this model); use width={self.spec.window_px} "
                              f"height={self.spec.window_px}")
        if not self.inputs.splats:
            raise ConfigError("app=splats needs splats=<file>: a 3D Gaussian Splatting PLY (e.g. "
                              "splats=assets/vase_splats.ply)")
        n = self.count_views()
        latent, rgb = size // self.spec.scale, o.rgb_size or size
        rgb_views = n + o.novel_views
        parts = {"the views": n * view_state_bytes(self.channels, latent),
                 "the latent-view weights": n * latent**2 * WEIGHTS_PER_PIXEL * BYTES_PER_WEIGHT,
                 f"the {rgb}² view weights": rgb_views * rgb**2 * WEIGHTS_PER_PIXEL * BYTES_PER_WEIGHT,
                 "the decoded views": n * size * size * 3 * 4 * 3,
                 "the splats": o.max_splats * BYTES_PER_SPLAT}
        return n, parts, f"{n} cameras, {size}² views, fitted at {rgb}²"

    def count_views(self) -> int:
        o = self.options
        if o.cameras:
            return len(self.transforms()[1])
        return sum(len(ring.azimuths) if ring.azimuths else ring.count for ring in o.views)

    def transforms(self) -> tuple[float, list]:
        """The transforms.json cameras (field of view, camera-to-world matrices), read once."""
        if self._transforms is None:
            self._transforms = read_transforms(self.options.cameras, self.run.max_views)
        return self._transforms

    def build_space(self) -> SplatSpace:
        o, path = self.options, self.inputs.splats
        self.splats = read_ply(path, o.max_splats)
        self.orbit = None if o.cameras else rig_from_config(o.views)
        points = robust_points(self.splats)
        check_scales(self.splats, points, path)
        self.geometry = splat_tensors(self.splats)
        if self.orbit is not None:
            where = "holds a single splat" if len(self.splats) == 1 else \
                f"has all {len(self.splats)} splat centres at one point"
            flat = (f"splats={path!r} {where}, so the orbit rig has nothing to frame; give a scene whose "
                    "splats spread out, or cameras of your own (app.cameras=<transforms.json>)")
            self.frame = fit_frame(points @ self.turn().T, self.orbit, "perspective", float(o.fov),
                                   float(o.margin), flat=flat)
        self.renderer = self.make_renderer(self.cameras(self.run.width // self.spec.scale))
        space = SplatSpace(self.renderer, self.geometry[0], self.channels, o.unproject, o.lsq_iterations)
        self.check_views(space, points)
        return space

    def camera_name(self, i: int) -> str:
        if self.orbit is None:
            return f"frames[{i}] of app.cameras={self.options.cameras!r}"
        return f"the rig's camera {i} (elevation {self.orbit[i].elevation:g}°, azimuth {self.orbit[i].azimuth:g}°)"

    def check_views(self, space: SplatSpace, points: np.ndarray) -> None:
        """Every view sees some splat (a view of background only has nothing to synchronize); a
        transforms.json camera inside the scene's bounds is said, with what it sees."""
        self.seen_by_view = space.seen_by_view()
        for i, seen in enumerate(self.seen_by_view.tolist()):
            if seen == 0:
                raise ConfigError(f"{self.camera_name(i)} sees none of the splats (it looks away from the scene or "
                                  "stands behind it); fix that camera or drop it")
        if self.orbit is None:
            low, high = points.min(0), points.max(0)
            for i, frame in enumerate(self.transforms()[1]):
                if ((frame[:3, 3] > low) & (frame[:3, 3] < high)).all():
                    note(f"{self.camera_name(i)} stands inside the scene (within the splats' bounds) and sees "
                         f"{100 * self.seen_by_view[i]:.1f}% of the splats; views are usually taken from outside")

    # -- cameras and renderers ---------------------------------------------------------------------
    def turn(self) -> np.ndarray:
        """Rotation from the scene's frame to the rig's y-up frame."""
        return Z_UP if self.options.up == "z" else np.eye(3)

    def cameras(self, size: int, rig: list[OrbitCamera] | None = None):
        """Pinhole cameras of ``size``² pixels in the scene's own frame: the orbit rig (or ``rig``),
        or the transforms.json frames."""
        if self.orbit is None and rig is None:
            fov, frames = self.transforms()
            return [pinhole(frame, fov, size) for frame in frames]
        turn = torch.eye(4, dtype=torch.float64)
        turn[:3, :3] = torch.from_numpy(self.turn())  # scene -> rig frame, before the rig's view matrix
        return [replace(view, viewmat=view.viewmat @ turn)
                for view in (orbit_pinhole(camera, self.frame, size) for camera in rig or self.orbit)]

    def make_renderer(self, cameras):
        o = self.options
        if o.renderer == "gsplat":
            from syncframe.geometry.splat_gsplat import GsplatRenderer

            return GsplatRenderer(*self.geometry, cameras)
        return SparseRenderer(*self.geometry, cameras, progress=self.run.progress)

    def rgb_space(self) -> SplatSpace:
        """Per-splat RGB colours seen by the views at ``app.rgb_size`` (built once)."""
        if self._rgb_space is None:
            o = self.options
            size = o.rgb_size or self.run.width
            renderer = self.make_renderer(self.cameras(size))
            self._rgb_space = SplatSpace(renderer, self.geometry[0], 3, o.unproject, o.lsq_iterations)
        return self._rgb_space

    def novel_rig(self) -> list[OrbitCamera]:
        """Cameras no view used: half-way between the first ring's azimuths, 15° up."""
        count = self.options.novel_views
        return [OrbitCamera(360 * (k + 0.5) / count, 15.0) for k in range(count)]

    # -- prompts, control ----------------------------------------------------------------------------
    def prompts(self):
        if not self.options.view_prompts or self.orbit is None:
            return super().prompts()
        return side_prompts(self.run.prompt, self.orbit)

    def can_control(self) -> bool:
        return True  # the rendered depth of every view

    def control_images(self):
        if not self.run.controlnet:
            return None
        renderer, size = self.rgb_space().renderer, self.run.width
        depth, mask = renderer.depth, renderer.alpha > 0.5
        control = control_depth(depth, mask)
        if control.shape[-1] != size:
            control = F.interpolate(control, size=(size, size), mode="bilinear", align_corners=False)
        return control

    # -- outputs ---------------------------------------------------------------------------------------
    def finalize(self, views, denoiser):
        o = self.options
        with torch.no_grad():
            rgb = decode_batched(views, denoiser.decode, int(o.decode_batch_size), self.run.progress).clamp(-1, 1)
        space = self.rgb_space()
        size = space.view_shape[-1]
        fitted = rgb if rgb.shape[-1] == size else F.interpolate(rgb, size=(size, size), mode="bilinear",
                                                                antialias=True, align_corners=False)
        colours = space.unproject(fitted).clamp(-1, 1)  # [3, N]
        alpha = space.view_weights(fitted)
        residual = (fitted - space.project(colours)).abs()[space.solid().expand_as(fitted)]
        background = torch.full((3,), float(o.background))
        renders = self.composite(space.project(colours), alpha, background)
        labels = [f"view {i}" for i in range(len(renders))]
        heldout = {}
        if o.novel_views and self.orbit is not None:
            novel = self.make_renderer(self.cameras(size, self.novel_rig()))
            unseen = self.composite(novel.render(colours.T), novel.alpha[:, None], background)
            renders = torch.cat([renders, unseen])
            labels += [f"novel {k} (unseen)" for k in range(len(self.novel_rig()))]
            heldout = {f"heldout/novel_{k}.png": to_pil(view.clamp(-1, 1)) for k, view in enumerate(unseen)}
        out = self.splats.with_rgb(((colours.T.numpy() + 1) / 2).clip(0, 1))
        ply = ply_bytes(out)
        self.report = {
            "latent_disagreement": round(self.base_space.disagreement(views), 4),
            "reprojection_error": round(float(residual.mean() / 2), 4) if residual.numel() else None,
            "splats_seen": round(float(space.seen.float().mean()), 4),
            "splats": len(self.splats), "sh_degree_in": self.splats.sh_degree,
            "weights_nnz": {"latent": self.renderer.nnz, "rgb": space.renderer.nnz},
            "rgb_size": size,
        }
        images = {"splats.ply": ply, "views.png": contact_sheet(rgb, o.sheet_columns),
                  "renders.png": contact_sheet(renders, o.sheet_columns, background=float(o.background),
                                               labels=labels), **heldout}
        if o.viewer:
            images["viewer.html"] = splat_viewer_html(ply, title=self.run.prompt, camera=self.viewer_camera(),
                                                      up=o.up)
        return images, colours

    def viewer_camera(self) -> dict | None:
        """The direction the viewer starts looking from: the rig's front camera raised 15°, in the
        scene's frame (the viewer sets the distance itself, from the splats' bounds and the page's
        shape; for transforms.json cameras it picks the direction too)."""
        if self.orbit is None:
            return None
        back = OrbitCamera(0.0, 15.0).basis()[2]
        to_scene = self.turn().T
        eye, target = self.frame.center + back * self.frame.distance, self.frame.center
        return {"eye": (to_scene @ eye).tolist(), "target": (to_scene @ target).tolist()}

    @staticmethod
    def composite(premultiplied: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        return premultiplied + (1 - alpha) * background.to(premultiplied)[None, :, None, None]


def splat_tensors(splats: Splats) -> tuple[torch.Tensor, ...]:
    """(means, quats, scales, opacities) as float64 tensors for the renderer."""
    return tuple(torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in
                 (splats.means, splats.quats, splats.scales(), splats.opacities()))


MAX_SCALE_RATIO = 100.0  # a splat this many times larger than the whole scene is corrupt, not a backdrop


def check_scales(splats: Splats, points: np.ndarray, path: str) -> None:
    """Refuse splats far larger than the scene (scale_* hold logs: a log-scale of 30 is 10^13):
    each would cover every pixel of every view, and rendering them costs (splats x pixels)."""
    extent = float(np.linalg.norm(points.max(0) - points.min(0))) if len(points) > 1 else 0.0
    largest = splats.log_scales.max(axis=1)
    limit = np.log(MAX_SCALE_RATIO * extent) if extent > 0 else np.inf
    huge = largest > limit
    if huge.any():
        raise ConfigError(f"splats={path!r}: {int(huge.sum())} splats have a scale over {MAX_SCALE_RATIO:g}x the "
                          f"scene's extent ({extent:.3g}; the largest is e^{largest.max():.3g} = "
                          f"{np.exp(largest.max()):.3g}; scale_* hold logs): the file is corrupt or not a trained "
                          "scene; remove those splats")


def robust_points(splats: Splats) -> np.ndarray:
    """The means the orbit rig frames: splats of opacity ≥ 0.1 inside the 1–99th percentile box
    (a trained scene's stray floaters would otherwise shrink the object to a dot)."""
    points = splats.means[splats.opacities() >= 0.1]
    if len(points) < 2:
        points = splats.means
    low, high = np.percentile(points, 1, axis=0), np.percentile(points, 99, axis=0)
    inside = points[((points >= low) & (points <= high)).all(axis=1)]
    return (inside if len(inside) >= 2 else points).astype(np.float64)

