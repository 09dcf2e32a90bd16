"""Procedural scenes with captions: the data the demo model (``model=demo``) is trained on.

Pure numpy (and scipy's bilinear lookup), seeded: ``example(seed)`` gives the same image, caption
and labels bit for bit on every call. Two kinds of scene:

- **landscapes** with the structure panoramas have: a sky by time of day (day, golden hour,
  sunset, night with stars), one sun or moon disc placed anywhere above the land (the thing
  MultiDiffusion repeats), clouds, a terrain (fractal mountain ridges, snowy mountains, desert
  dunes, a pine forest, the open sea), optionally a lake with reflections; the horizon at heights
  from 15% to 85% of the frame and tilted by up to 20°, so views at other pitches and rolls (the
  rings of a 360° panorama) are in the distribution;
- **materials**, full-frame textures for the mesh app: wood grain, marble, stone, brick, rust,
  fabric.

Captions are composed from the parameters; the grammar is in docs/demo_model.md and
:func:`caption`. Everything is drawn in a frame ``(u, v)`` rotated by the horizon's tilt, ``v``
growing downwards and the horizon at ``v = horizon``, as functions of coordinates, so a lake can
mirror whatever stands above it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import map_coordinates

TIMES = ("day", "golden hour", "sunset", "night")
TERRAINS = ("mountains", "snowy mountains", "desert", "forest", "sea")
MATERIALS = ("wood", "marble", "stone", "brick", "rust", "fabric")
MATERIAL_SHARE = 0.2  # of all examples

# sky colours (horizon, zenith), the light on the land, cloud colour; RGB in [0, 1]
SKY = {
    "day": ((0.72, 0.84, 0.97), (0.22, 0.45, 0.86)),
    "golden hour": ((1.0, 0.78, 0.45), (0.35, 0.5, 0.8)),
    "sunset": ((1.0, 0.42, 0.18), (0.24, 0.13, 0.42)),
    "night": ((0.06, 0.09, 0.2), (0.005, 0.01, 0.05)),
}
LIGHT = {"day": (1.0, 1.0, 1.0), "golden hour": (1.0, 0.82, 0.6), "sunset": (0.78, 0.48, 0.42),
         "night": (0.12, 0.14, 0.26)}
CLOUD = {"day": (0.96, 0.96, 0.98), "golden hour": (1.0, 0.86, 0.7), "sunset": (0.95, 0.5, 0.45),
         "night": (0.14, 0.15, 0.22)}
DISC = {"day": (1.0, 1.0, 0.88), "golden hour": (1.0, 0.9, 0.6), "sunset": (1.0, 0.62, 0.32),
        "night": (0.9, 0.9, 0.84)}
# where the disc sits above the horizon (fraction of the frame): the sun high by day, low at sunset
DISC_HEIGHT = {"day": (0.25, 0.6), "golden hour": (0.14, 0.32), "sunset": (0.05, 0.16), "night": (0.15, 0.5)}
ROCK = {"mountains": (0.42, 0.38, 0.36), "snowy mountains": (0.4, 0.4, 0.45), "desert": (0.86, 0.64, 0.38),
        "forest": (0.1, 0.24, 0.12), "sea": (0.3, 0.3, 0.3)}
GROUND = {"mountains": (0.33, 0.4, 0.22), "snowy mountains": (0.88, 0.9, 0.95), "desert": (0.88, 0.68, 0.42),
          "forest": (0.12, 0.3, 0.12), "sea": (0.1, 0.25, 0.4)}

TERRAIN_WORDS = {"mountains": ("a mountain range", "mountains"), "snowy mountains": ("snowy mountains",
                 "a snowy mountain range"), "desert": ("a desert", "desert dunes"), "forest": ("a forest",
                 "a pine forest"), "sea": ("the sea", "an ocean")}
TIME_WORDS = {"day": ("during the day", "at noon"), "golden hour": ("at golden hour",), "sunset": ("at sunset",),
              "night": ("at night",)}
MATERIAL_WORDS = {"wood": ("a wooden texture", "a wood texture"), "marble": ("a marble texture", "marble"),
                  "stone": ("a stone texture", "a cobblestone texture"), "brick": ("a brick texture", "a brick wall"),
                  "rust": ("a rusty metal texture", "rust"), "fabric": ("a fabric texture", "a woven fabric")}
OMIT = {"terrain": 0.1, "time": 0.25, "extra": 0.3}  # caption dropout per part: the model learns the marginals


@dataclass(frozen=True)
class Scene:
    """The parameters of one example; ``labels()`` are what the attribute classifier learns."""

    kind: str  # landscape | material
    seed: int
    time: str = ""
    terrain: str = ""
    lake: bool = False
    disc: bool = False  # a sun (or, at night, a moon) in view
    clouds: bool = False
    horizon: float = 0.5  # v of the horizon, 0 = top
    tilt: float = 0.0  # degrees
    material: str = ""

    def labels(self) -> dict:
        return {"kind": int(self.kind == "material"), "time": TIMES.index(self.time) if self.time else -1,
                "terrain": TERRAINS.index(self.terrain) if self.terrain else -1, "lake": int(self.lake),
                "disc": int(self.disc), "material": MATERIALS.index(self.material) if self.material else -1}


def sample_scene(seed: int) -> Scene:
    rng = np.random.default_rng([seed, 0])
    if rng.random() < MATERIAL_SHARE:
        return Scene("material", seed, material=MATERIALS[rng.integers(len(MATERIALS))])
    terrain = TERRAINS[rng.integers(len(TERRAINS))]
    time = TIMES[rng.integers(len(TIMES))]
    horizon = float(np.clip(rng.normal(0.55, 0.18), 0.15, 0.85))
    tilt = float(np.clip(rng.normal(0, 6), -20, 20)) if rng.random() < 0.5 else 0.0
    lake = terrain in ("mountains", "snowy mountains", "forest") and rng.random() < 0.4
    return Scene("landscape", seed, time=time, terrain=terrain, lake=lake, disc=bool(rng.random() < 0.5),
                 clouds=bool(rng.random() < 0.45), horizon=horizon, tilt=tilt)


def caption(scene: Scene, seed: int | None = None) -> str:
    """``[a photo of] TERRAIN [TIME] [with EXTRA[, EXTRA] and EXTRA]`` for a landscape (each part
    dropped at the rate of ``OMIT``), ``[a photo of] MATERIAL`` for a material."""
    rng = np.random.default_rng([scene.seed if seed is None else seed, 1])
    prefix = "a photo of " if rng.random() < 0.2 else ""
    if scene.kind == "material":
        words = MATERIAL_WORDS[scene.material]
        return prefix + words[rng.integers(len(words))]
    words = TERRAIN_WORDS[scene.terrain]
    text = "a landscape" if rng.random() < OMIT["terrain"] else words[rng.integers(len(words))]
    if rng.random() >= OMIT["time"]:
        times = TIME_WORDS[scene.time]
        text += " " + times[rng.integers(len(times))]
    extras = [name for name, present in (("a lake", scene.lake), ("the moon" if scene.time == "night" else "the sun",
                                                                  scene.disc), ("clouds", scene.clouds))
              if present and rng.random() >= OMIT["extra"]]
    if extras:
        text += " with " + (extras[0] if len(extras) == 1 else ", ".join(extras[:-1]) + " and " + extras[-1])
    return prefix + text


def example(seed: int, size: int = 256) -> tuple[np.ndarray, str, dict]:
    """``(image [size, size, 3] uint8, caption, labels)`` of the scene ``seed``."""
    scene = sample_scene(seed)
    return render(scene, size), caption(scene), scene.labels()


def render(scene: Scene, size: int = 256) -> np.ndarray:
    rng = np.random.default_rng([scene.seed, 2])
    image = landscape(scene, size, rng) if scene.kind == "landscape" else material(scene.material, size, rng)
    grain = rng.normal(0, 0.012, image.shape)  # a little sensor noise, so flat areas are not perfectly flat
    return np.clip(np.round((image + grain) * 255), 0, 255).astype(np.uint8)


# --- noise -----------------------------------------------------------------------------------------

def fractal_1d(rng, octaves: int = 6, base: int = 3, persistence: float = 0.5, n: int = 1024) -> np.ndarray:
    """Value noise ``[n]`` over u in [-0.5, 1.5], linearly interpolated octaves (jagged like ridges), in [0, 1]."""
    u = np.linspace(0, 1, n)
    out = np.zeros(n)
    amplitude = 1.0
    for octave in range(octaves):
        cells = base * 2 ** octave
        out += amplitude * np.interp(u * cells, np.arange(cells + 1), rng.random(cells + 1))
        amplitude *= persistence
    out -= out.min()
    return out / max(out.max(), 1e-9)


def fractal_2d(rng, n: int = 128, octaves: int = 5, base: int = 4, persistence: float = 0.55,
               stretch: float = 1.0) -> np.ndarray:
    """Value noise ``[n, n]`` in [0, 1] (bilinear octaves); ``stretch`` > 1 elongates it along rows."""
    out = np.zeros((n, n))
    amplitude = 1.0
    for octave in range(octaves):
        rows, cols = base * 2 ** octave, max(2, int(base * 2 ** octave / stretch))
        grid = rng.random((rows + 1, cols + 1))
        y = np.linspace(0, rows, n)[:, None] * np.ones((1, n))
        x = np.ones((n, 1)) * np.linspace(0, cols, n)[None, :]
        out += amplitude * map_coordinates(grid, [y, x], order=1)
        amplitude *= persistence
    out -= out.min()
    return out / max(out.max(), 1e-9)


def lookup(table: np.ndarray, u: np.ndarray, v: np.ndarray, lo: float = -0.5, hi: float = 1.5) -> np.ndarray:
    """Bilinear lookup of ``table [n, n]`` (covering [lo, hi]² in (u, v)) at coordinates ``u, v``."""
    n = table.shape[0]
    scale = (n - 1) / (hi - lo)
    return map_coordinates(table, [(v - lo) * scale, (u - lo) * scale], order=1, mode="mirror")


def curve(values: np.ndarray, u: np.ndarray, lo: float = -0.5, hi: float = 1.5) -> np.ndarray:
    """A 1-D profile ``values [n]`` over [lo, hi] read at ``u``."""
    return np.interp(u, np.linspace(lo, hi, len(values)), values)


def smoothstep(a: float, b: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


def jitter(rng, colour, amount: float = 0.04) -> np.ndarray:
    return np.clip(np.asarray(colour) + rng.normal(0, amount, 3), 0, 1)


# --- landscapes ------------------------------------------------------------------------------------

class Landscape:
    """The land and sky of one scene as functions of (u, v): :meth:`above` is everything above the
    horizon (sky, disc, clouds, ridges), read again at mirrored v for the water's reflection."""

    def __init__(self, scene: Scene, size: int, rng):
        self.scene, self.size, h = scene, size, scene.horizon
        time, terrain = scene.time, scene.terrain
        self.sky = [jitter(rng, c) for c in SKY[time]]
        self.light = np.asarray(LIGHT[time])
        self.haze = self.sky[0]
        self.ridges = self.make_ridges(rng, terrain, h)
        self.clouds = fractal_2d(rng, stretch=3.0) if scene.clouds else None
        self.cloud_cover = rng.uniform(0.45, 0.62)
        self.stars = rng.random((2 * size, 2 * size)) if time == "night" else None
        self.disc = self.place_disc(rng, h) if scene.disc else None
        self.water_colour = jitter(rng, (0.08, 0.22, 0.35) if terrain == "sea" else (0.1, 0.25, 0.3))
        self.waves = fractal_2d(rng, n=256, octaves=4, base=8, stretch=6.0)
        self.shore = h + rng.uniform(0.12, 0.3) if scene.lake else None
        self.ground = jitter(rng, GROUND[terrain])
        self.ground_noise = fractal_2d(rng, octaves=5, base=6)

    def make_ridges(self, rng, terrain: str, h: float) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """``(top v over u, colour, kind)`` per layer, far to near."""
        rock = np.asarray(ROCK[terrain])
        layers = []
        if terrain in ("mountains", "snowy mountains"):
            count = rng.integers(2, 4)
            for k in range(count):
                amp = rng.uniform(0.12, 0.32) * (1 - 0.25 * k)
                profile = fractal_1d(rng, octaves=7, base=int(rng.integers(2, 5)))
                far = (count - 1 - k) / max(count - 1, 1)  # 1 for the farthest layer
                colour = jitter(rng, rock * (0.75 + 0.25 * k / count), 0.03)
                layers.append((h - amp * profile - 0.01, colour * (1 - 0.55 * far) + self.haze * 0.55 * far,
                               "snow" if terrain == "snowy mountains" else "rock"))
        elif terrain == "desert":
            for k in range(rng.integers(1, 3)):
                u = np.linspace(-0.5, 1.5, 1024)
                f, phase = rng.uniform(1.5, 4), rng.uniform(0, 2 * np.pi)
                dune = np.abs(np.sin(np.pi * f * u + phase)) ** 1.6 * 0.6 + 0.4 * fractal_1d(rng, octaves=3, base=2)
                layers.append((h - rng.uniform(0.04, 0.12) * dune * (1 + 0.5 * k),
                               jitter(rng, rock * (0.85 + 0.1 * k), 0.03), "dune"))
        elif terrain == "forest":
            for k in range(2):
                u = np.linspace(-0.5, 1.5, 2048)
                hill = 0.04 * fractal_1d(rng, octaves=3, base=2, n=2048)
                trees = np.zeros_like(u)
                spacing = rng.uniform(0.012, 0.022) * (1 + k)
                for centre in np.arange(-0.5, 1.5, spacing):
                    centre += rng.uniform(-0.4, 0.4) * spacing
                    height, half = rng.uniform(0.04, 0.1) * (1 + 0.7 * k), rng.uniform(0.6, 1.0) * spacing
                    trees = np.maximum(trees, height * np.clip(1 - np.abs(u - centre) / half, 0, None))
                colour = jitter(rng, rock * (1.1 - 0.3 * k), 0.02)
                colour = colour * (1 - 0.4 * (1 - k)) + self.haze * 0.4 * (1 - k)
                layers.append((h - hill - trees, colour, "trees"))
        return layers

    def top_of_land(self, u: float) -> float:
        """The highest land (smallest v) at ``u``: where a disc must stay above."""
        return min([self.scene.horizon] + [float(curve(top, np.array([u]))[0]) for top, _, _ in self.ridges])

    def place_disc(self, rng, h: float) -> tuple[float, float, float]:
        radius = rng.uniform(0.035, 0.06) if self.scene.time != "night" else rng.uniform(0.03, 0.05)
        u = rng.uniform(0.12, 0.88)
        low, high = DISC_HEIGHT[self.scene.time]
        v = h - rng.uniform(low, high)
        v = min(v, self.top_of_land(u) - 1.6 * radius)  # wholly above the land
        v = max(v, radius * 1.3 - 0.1 * abs(self.scene.tilt) / 20)  # and (mostly) in the frame
        return u, v, radius

    def above(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Colour ``[..., 3]`` of sky, disc, clouds and ridges at (u, v) (v <= horizon)."""
        h, time = self.scene.horizon, self.scene.time
        up = np.clip((h - v) / 0.7, 0, 1)[..., None]
        colour = self.sky[0] * (1 - up ** 0.55) + self.sky[1] * up ** 0.55
        if self.stars is not None:
            n = self.stars.shape[0]
            iu = np.clip(((u + 0.5) / 2 * n).astype(int), 0, n - 1)
            iv = np.clip(((v + 0.5) / 2 * n).astype(int), 0, n - 1)
            star = self.stars[iv, iu]
            bright = np.where(star > 0.9975, (star - 0.9975) / 0.0025, 0.0) * np.clip((h - v) / 0.15, 0, 1)
            colour = colour + (0.9 * bright)[..., None]
        disc_mask = 0.0
        if self.disc is not None:
            du, dv, radius = self.disc
            dist = np.hypot(u - du, v - dv)
            disc_mask = np.clip((radius - dist) * self.size / 1.5 + 0.5, 0, 1)
            tint = np.asarray(DISC[time])
            if time == "night":
                craters = 1 - 0.12 * (lookup(self.ground_noise, (u - du) * 6, (v - dv) * 6) > 0.6)
                body = tint * craters[..., None]
                glow = 0.18 * np.exp(-(dist / (2.2 * radius)) ** 2)
            else:
                body = tint
                glow = 0.45 * np.exp(-(dist / (3.0 * radius)) ** 2)
            colour = colour + glow[..., None] * tint
            colour = colour * (1 - disc_mask[..., None]) + body * disc_mask[..., None]
        if self.clouds is not None:
            density = lookup(self.clouds, u, (v - h) * 1.6 + h)
            alpha = smoothstep(self.cloud_cover, self.cloud_cover + 0.18, density) * np.clip((h - v) / 0.08, 0, 1)
            alpha = alpha * (1 - disc_mask) * 0.92
            shade = 1 - 0.25 * smoothstep(0.5, 1.0, density)
            cloud = np.asarray(CLOUD[time]) * shade[..., None]
            colour = colour * (1 - alpha[..., None]) + cloud * alpha[..., None]
        for top, layer_colour, kind in self.ridges:
            line = curve(top, u)
            inside = smoothstep(-0.6, 0.6, (v - line) * self.size)[..., None]
            depth = np.clip((v - line) / np.maximum(h - line, 1e-3), 0, 1)[..., None]
            rock = layer_colour * (1.0 - 0.25 * depth)
            if kind == "rock" or kind == "snow":  # lit and shaded faces from the ridge's slope
                slope = curve(np.convolve(np.gradient(top), np.ones(15) / 15, "same"), u)
                rock = rock * (1 + np.clip(slope * 150, -0.1, 0.1))[..., None]
            if kind == "snow":
                snowline = 0.3 + 0.25 * lookup(self.ground_noise, u * 3, v * 3)
                snow = (depth[..., 0] < snowline)[..., None] * np.asarray((0.92, 0.94, 0.98))
                rock = np.where(depth < snowline[..., None], snow, rock)
            if kind == "dune":
                rock = layer_colour * (1.05 - 0.35 * depth)
            colour = colour * (1 - inside) + rock * self.light * inside
        return colour

    def below(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Colour of the land or water below the horizon (v > horizon)."""
        h = self.scene.horizon
        water = self.scene.terrain == "sea" or self.scene.lake
        depth = np.clip((v - h) / max(1 - h, 0.05), 0, 1)[..., None]
        texture = lookup(self.ground_noise, u, h + (v - h) * 1.5)[..., None]
        ground = self.ground * (0.8 + 0.35 * texture) * (1.05 - 0.3 * depth)
        if self.scene.terrain == "desert":
            ripples = 0.06 * np.sin((v - h) * 600 / (0.2 + (v - h) * 4) + 3 * texture[..., 0])[..., None]
            ground = ground * (1 + ripples)
        ground = ground * self.light
        if not water:
            return ground
        wave = lookup(self.waves, u, (v - h) * 3 + h) - 0.5
        strength = 0.02 if self.scene.lake else 0.06
        mirrored = self.above(u + strength * wave * (v - h + 0.05), np.minimum(2 * h - v, h))
        fresnel = 0.75 - 0.45 * depth
        water_colour = self.water_colour * self.light * (1.1 - 0.4 * depth)
        out = water_colour * (1 - fresnel) + mirrored * fresnel * 0.85
        out = out * (1 + 0.25 * wave[..., None] * (self.scene.terrain == "sea"))
        if self.shore is not None:
            land = smoothstep(-0.6, 0.6, (v - self.shore) * self.size)[..., None]
            out = out * (1 - land) + ground * land
        return out


def frame(scene: Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The (u, v) coordinates of every pixel: the image's, turned by the horizon's tilt."""
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    angle = np.deg2rad(scene.tilt)
    u = (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle) + 0.5
    v = -(x - 0.5) * np.sin(angle) + (y - 0.5) * np.cos(angle) + 0.5
    return u, v


def disc_mask(scene: Scene, size: int = 256) -> np.ndarray:
    """``[size, size]`` bool: the pixels of the scene's sun or moon (none for materials, or no disc)."""
    if scene.kind != "landscape" or not scene.disc:
        return np.zeros((size, size), bool)
    world = Landscape(scene, size, np.random.default_rng([scene.seed, 2]))  # the draws render() makes
    u, v = frame(scene, size)
    du, dv, radius = world.disc
    return np.hypot(u - du, v - dv) <= radius


def landscape(scene: Scene, size: int, rng) -> np.ndarray:
    """``[size, size, 3]`` float in [0, 1]."""
    world = Landscape(scene, size, rng)
    u, v = frame(scene, size)
    sky = v <= scene.horizon
    image = np.empty((size, size, 3))
    image[sky] = world.above(u[sky], v[sky])
    image[~sky] = world.below(u[~sky], v[~sky])
    return image


# --- materials -------------------------------------------------------------------------------------

def material(name: str, size: int, rng) -> np.ndarray:
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    angle = rng.uniform(0, np.pi)
    xr = (x - 0.5) * np.cos(angle) - (y - 0.5) * np.sin(angle)
    yr = (x - 0.5) * np.sin(angle) + (y - 0.5) * np.cos(angle)
    noise = lookup(fractal_2d(rng), x, y, 0, 1)
    fine = lookup(fractal_2d(rng, n=256, octaves=3, base=32), x, y, 0, 1)
    if name == "wood":
        light, dark = jitter(rng, (0.68, 0.44, 0.24)), jitter(rng, (0.34, 0.19, 0.08))
        grain = lookup(fractal_2d(rng, stretch=6.0), xr + 0.5, yr + 0.5, 0, 1)
        rings = 0.5 + 0.5 * np.sin(2 * np.pi * (rng.uniform(14, 28) * yr + 2.5 * grain))
        planks = np.abs(((yr + 0.5) * rng.uniform(2, 4)) % 1 - 0.5) > 0.485  # the joints between boards
        t = (rings ** 3 * 0.75 + 0.25 * fine)[..., None]
        return np.where(planks[..., None], dark * 0.6, light * (1 - t) + dark * t)
    if name == "marble":
        base = jitter(rng, (0.92, 0.91, 0.88), 0.03)
        vein_colour = jitter(rng, (0.35, 0.36, 0.4), 0.06)
        veins = np.abs(np.sin(2 * np.pi * (rng.uniform(1.5, 3) * xr + 2.5 * noise))) ** 0.25
        t = ((1 - veins) * 0.9 + 0.08 * fine)[..., None]
        return base * (1 - t) + vein_colour * t
    if name == "stone":
        points = rng.random((int(rng.integers(18, 40)), 2))
        d = np.sqrt((x[..., None] - points[:, 0]) ** 2 + (y[..., None] - points[:, 1]) ** 2)
        order = np.sort(d, -1)
        cell = np.argmin(d, -1)
        tones = rng.uniform(0.35, 0.65, len(points))[cell][..., None] * jitter(rng, (1.0, 0.95, 0.88), 0.05)
        mortar = smoothstep(0.0, 0.012, order[..., 1] - order[..., 0])[..., None]
        stone = tones * (0.85 + 0.3 * fine[..., None])
        return stone * mortar + np.asarray((0.22, 0.21, 0.2)) * (1 - mortar)
    if name == "brick":
        rows = rng.uniform(7, 11)
        row = np.floor(y * rows)
        offset = (row % 2) * 0.5
        col = np.floor(x * rows / 2 + offset)
        fy, fx = y * rows - row, x * rows / 2 + offset - col
        mortar = (np.minimum(fy, 1 - fy) > 0.07) & (np.minimum(fx, 1 - fx) > 0.035)
        hue = np.random.default_rng([int(rows * 100), 7]).uniform(0.8, 1.15, (64, 64))
        tone = hue[row.astype(int) % 64, col.astype(int) % 64][..., None]
        brick = jitter(rng, (0.62, 0.27, 0.18), 0.04) * tone * (0.85 + 0.3 * fine[..., None])
        return np.where(mortar[..., None], brick, np.asarray((0.75, 0.72, 0.66)) * (0.9 + 0.2 * fine[..., None]))
    if name == "rust":
        metal = jitter(rng, (0.5, 0.51, 0.53), 0.03) * (0.85 + 0.3 * fine[..., None])
        rust = jitter(rng, (0.55, 0.28, 0.12), 0.04) * (0.7 + 0.6 * fine[..., None])
        t = smoothstep(0.35, 0.55, noise)[..., None]
        return metal * (1 - t) + rust * t
    # fabric: a plain weave of threads across and along, over and under
    threads = rng.uniform(28, 48)
    a = 0.5 + 0.5 * np.cos(2 * np.pi * threads * xr)
    b = 0.5 + 0.5 * np.cos(2 * np.pi * threads * yr)
    over = (np.floor(threads * xr) + np.floor(threads * yr)) % 2
    weave = np.where(over > 0, a ** 0.5, b ** 0.5)
    colour = np.clip(rng.dirichlet((1.0, 1.0, 1.0)) * 1.4, 0.08, 0.95)
    return colour * (0.55 + 0.45 * weave[..., None]) * (0.92 + 0.16 * noise[..., None])


def describe(scene: Scene) -> dict:
    return asdict(scene)
