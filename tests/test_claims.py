"""Every config that says it is a paper's official or published setting is checked against the numbers of
that setting, read from the official code (KAIST-Visual-AI-Group/StochSync c4eef86: config/stochsync_panorama.yaml,
config/stochsync_mesh.yaml, general_trainer.py, prior/base.py, prior/sd.py, data/camera_dataset.py; the SpotDiffusion
and SyncTweedies code as their tests in tests/ formulate it). A new claim without a check here fails."""
import re
from pathlib import Path

import pytest

from syncframe.config import overrides_from_file, resolve
from syncframe.models.cross_view import ring

ROOT = Path(__file__).resolve().parents[1]
CLAIM = re.compile(r"official|as published|exactly", re.I)

# The official StochSync settings, as its repository writes them.
STOCHSYNC_PANORAMA = dict(max_steps=25, warmup_steps=2, ode_steps=25, seam_removal_steps=2, fov=72, t_max=999,
                          t_min=270, guidance_scale=7.5, pano_height=2048, pano_width=4096, batch_size=5,
                          azims=[0, 72, 144, 216, 288, 36, 108, 180, 252, 324], elevs=[0] * 10,
                          seam_removal_mode="horizontal", model="stabilityai/stable-diffusion-2-1-base",
                          negative_prompt="low quality, blurry, bad anatomy, disfigured, poorly drawn face")
STOCHSYNC_MESH = dict(max_steps=25, warmup_steps=4, ode_steps=20, seam_removal_steps=4, fov=60, t_max=999, t_min=270,
                      guidance_scale=15.5, batch_size=4, height=768, texture_size=2048,
                      elevs=[0, -15, 0, -15, 30, 0, 30, 0, -15, 0, -15, 0, 0, 30, 0, 30],
                      azims=[0, 90, 180, 270, 45, 135, 225, 315, 0, 90, 180, 270, 45, 135, 225, 315])
# try_fast_sampling with edge preservation raises a DDIM grid under 50 levels to 50 (prior/base.py ddim_loop)
OFFICIAL_SEAM_GRID = 50


def header(path: Path) -> str:
    return "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))


def config(relative: str) -> dict:
    pairs = overrides_from_file(ROOT / "configs" / relative)
    return resolve(pairs)


def official_sets(azims, elevs, batch):
    """The official AlternateCameraDataset's view sets: consecutive chunks of ``batch`` cameras, in turn."""
    cameras = list(zip(elevs, azims))
    return [set(cameras[k:k + batch]) for k in range(0, len(cameras), batch)]


def test_stochsync_panorama360_is_the_official_run():
    from syncframe.spaces.equirect import rig_from_rings

    cfg, o = config("stochsync/panorama360.yaml"), STOCHSYNC_PANORAMA
    sync = cfg["sync"]
    assert (cfg["steps"], sync["warmup"], sync["ode_steps"], sync["seam_removal"]) == (
        o["max_steps"], o["warmup_steps"], o["ode_steps"], o["seam_removal_steps"])
    assert (sync["t_max"], sync["t_min"], cfg["guidance"]) == (o["t_max"], o["t_min"], o["guidance_scale"])
    assert (cfg["width"], cfg["height"]) == (o["pano_width"], o["pano_height"])
    assert sync["seam_mask"] == o["seam_removal_mode"] and sync["seam_ode_steps"] == OFFICIAL_SEAM_GRID
    assert (sync["solver"], sync["landing"], sync["top_noise"], sync["start"]) == ("dpmpp", "alpha0", "any", "black")
    assert cfg["app"]["domain"] == "rgb" and cfg["app"]["weights"] == "uniform" and cfg["app"]["rgb_clamp"] == 0.98
    assert cfg["model"]["repo"] == o["model"] and cfg["negative_prompt"] == o["negative_prompt"]
    cameras = rig_from_rings(cfg["app"]["rings"])
    assert all(c.fov == o["fov"] for c in cameras)
    sets = [{(c.pitch, c.yaw % 360) for i, c in enumerate(cameras) if i % sync["view_sets"] == s}
            for s in range(sync["view_sets"])]
    assert sets == official_sets(o["azims"], o["elevs"], o["batch_size"])


def test_stochsync_mesh_is_the_official_setting_but_its_prior():
    from syncframe.geometry.raster import rig_from_config

    cfg, o = config("stochsync/mesh.yaml"), STOCHSYNC_MESH
    sync, app = cfg["sync"], cfg["app"]
    assert (cfg["steps"], sync["warmup"], sync["ode_steps"], sync["seam_removal"]) == (
        o["max_steps"], o["warmup_steps"], o["ode_steps"], o["seam_removal_steps"])
    assert (sync["t_max"], sync["t_min"], cfg["guidance"], cfg["width"]) == (o["t_max"], o["t_min"],
                                                                                o["guidance_scale"], o["height"])
    assert (app["projection"], app["fov"], app["texture_size"]) == ("perspective", o["fov"], o["texture_size"])
    cameras = rig_from_config(app["views"])
    sets = [{(c.elevation, c.azimuth) for i, c in enumerate(cameras) if i % sync["view_sets"] == s}
            for s in range(sync["view_sets"])]
    assert sets == official_sets(o["azims"], o["elevs"], o["batch_size"])
    assert "SD 2 depth" in header(ROOT / "configs" / "stochsync" / "mesh.yaml")  # what it cannot be, said


def test_spotdiffusion_is_the_official_loop():
    cfg = config("spotdiffusion/panorama.yaml")
    assert cfg["app"]["loop"] and cfg["sync"]["blend_steps"] == 0 and cfg["sync"]["shifts"] == "official"


def test_synctweedies_panorama_is_the_official_cross_view_attention():
    """Neighbours (i-1, i, i+1) mod N on every app, the centre view read while t > 800 (ref_attention_end 0.2)."""
    cfg = config("synctweedies/panorama.yaml")
    assert (cfg["sync"]["cross_view"], cfg["sync"]["wrap"], cfg["sync"]["reference_until"]) == (
        "neighbours", "always", 0.2)
    assert ring(5) == [[4, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 0]]


def test_syncsde_is_the_official_setting(monkeypatch):
    """The official scripts (hjl1013/SyncSDE): wide images 13 windows a quarter apart, each pulled to the one
    before, T the first timestep, 50 steps at guidance 7.5; ambiguous images the second view pulled to the
    first, T the first timestep; mesh 30 steps at guidance 15.5 with its negative prompt, every camera
    before, T the training timesteps; λ⁻¹ 5 in all three."""
    from syncframe.plan import prepare

    monkeypatch.chdir(ROOT)

    def planned(relative):
        return prepare(resolve([*overrides_from_file(ROOT / "configs" / relative), ("model", "tiny")]))

    wide = planned("syncsde/panorama.yaml")
    assert wide.cfg["sync"] == {"name": "syncsde", "inv_lambda": 5.0, "reference": "previous", "t_scale": "first"}
    assert wide.app.base_space.num_views == 13 and (wide.cfg["steps"], wide.cfg["guidance"]) == (50, 7.5)
    assert wide.app.base_space.windows[1] == (0, 16)  # a quarter of the 64-latent window apart
    ambiguous = planned("syncsde/anagram.yaml")
    assert ambiguous.cfg["sync"] == {"name": "syncsde", "inv_lambda": 5.0, "reference": "previous",
                                     "t_scale": "first"}
    mesh = planned("syncsde/mesh.yaml")
    assert mesh.cfg["sync"] == {"name": "syncsde", "inv_lambda": 5.0, "reference": "preceding", "t_scale": "train"}
    assert (mesh.cfg["steps"], mesh.cfg["guidance"]) == (30, 15.5)
    assert mesh.cfg["negative_prompt"].startswith("oversmoothed, blurry, depth of field")


CHECKED = {"stochsync/panorama360.yaml", "stochsync/mesh.yaml", "spotdiffusion/panorama.yaml",
           "synctweedies/panorama.yaml", "syncsde/panorama.yaml", "syncsde/anagram.yaml", "syncsde/mesh.yaml",
           "syncdiffusion/panorama.yaml"}  # the last: tests/test_configs.py


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_a_config_that_claims_a_published_setting_is_checked(path):
    relative = str(path.relative_to(ROOT / "configs"))
    text = header(path)
    claims = [line for line in text.splitlines() if CLAIM.search(line) and "not the official" not in line
              and "not official" not in line]
    if claims:
        assert relative in CHECKED, f"{relative} claims {claims[0]!r} and nothing here checks it"
