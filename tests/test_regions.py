"""Prompts per region (regions=): views, weights, prompts, equivalences, bootstrapping, layouts."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from syncframe.cli import main
from syncframe.config import resolve
from syncframe.errors import ConfigError
from syncframe.images import from_pil
from syncframe.loop import ViewModel
from syncframe.pipeline import generate, generate_from_config, prepare
from syncframe.spaces.regions import Bootstrap, Bootstrapped

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def labels(path: Path, width: int, height: int, boxes: dict) -> Path:
    """A label image: black background, each colour filling its (x0, y0, x1, y1) fraction box."""
    image = np.zeros((height, width, 3), np.uint8)
    for colour, (x0, y0, x1, y1) in boxes.items():
        image[int(y0 * height):int(y1 * height), int(x0 * width):int(x1 * width)] = colour
    Image.fromarray(image).save(path)
    return path


def test_a_regions_prompt_reaches_exactly_the_views_and_pixels_of_its_mask(tmp_path):
    layout = labels(tmp_path / "l.png", 96, 64, {(255, 0, 0): (0, 0, 0.5, 1)})  # the left half of a 768x512 canvas
    cfg = resolve(["model=tiny", "width=768", "height=512", "app.stride=32", f"regions={layout}",
                   "regions.prompts=[a red barn]", "prompt=a meadow"])
    app = prepare(cfg).app
    space = app.space
    # base windows start at 0, 32 (flush at 32): canvas 96 latents wide, left half = latents 0..47
    assert space.base.windows == [(0, 0), (0, 32)]
    pairs = list(zip(space.base_index.tolist(), space.region.tolist()))
    assert pairs == [(0, 0), (1, 0), (0, 1), (1, 1)]  # background in both windows, the barn in both too
    prompts, index = app.view_conditioning()
    assert [prompts[i] for i in index] == ["a meadow", "a meadow", "a red barn", "a red barn"]
    barn = space.mask_views[2:, 0]  # the barn's weights in its two views: 1 left of latent 48, 0 right of it
    assert torch.equal(barn[0], (torch.arange(64) < 48).float().expand(64, 64))
    assert torch.equal(barn[1], (torch.arange(32, 96) < 48).float().expand(64, 64))
    assert torch.equal(space.mask_views[0, 0] + barn[0], torch.ones(64, 64))  # background = 1 − barn


def test_a_region_missing_from_a_window_gets_no_view_there(tmp_path):
    layout = labels(tmp_path / "l.png", 96, 64, {(255, 0, 0): (0, 0, 0.2, 1)})  # latents 0..18: the first window only
    app = prepare(resolve(["model=tiny", "width=768", "height=512", "app.stride=32", f"regions={layout}",
                           "regions.prompts=[a red barn]"])).app
    assert list(zip(app.space.base_index.tolist(), app.space.region.tolist())) == [(0, 0), (1, 0), (0, 1)]


def test_one_region_covering_everything_is_the_plain_run_bit_for_bit(tiny_denoiser, tmp_path):
    everything = labels(tmp_path / "all.png", 12, 8, {(0, 255, 0): (0, 0, 1, 1)})
    # region views have no neighbours, so cross-view attention is off with regions: off in both
    common = ["model=tiny", "width=768", "steps=3", "progress=false", "prompt=a meadow", "sync=synctweedies",
              "sync.cross_view=none"]
    plain = generate_from_config(resolve(common), tiny_denoiser)
    region = generate_from_config(resolve([*common, f"regions={everything}", "regions.prompts=[a meadow]"]),
                                  tiny_denoiser)
    assert torch.equal(plain.canonical, region.canonical)
    assert "layout.png" in region.images and "layout.png" not in plain.images


def test_masks_of_any_size_are_resized_to_the_canvas(tmp_path):
    small = labels(tmp_path / "small.png", 12, 8, {(255, 0, 0): (0, 0, 0.5, 1)})
    large = labels(tmp_path / "large.png", 1536, 1024, {(255, 0, 0): (0, 0, 0.5, 1)})
    masks = [prepare(resolve(["model=tiny", "width=768", f"regions={f}", "regions.prompts=[x]"])).app.masks
             for f in (small, large)]
    assert torch.equal(masks[0], masks[1]) and masks[0].shape == (2, 64, 96)


def test_bootstrapping_replaces_the_surroundings_of_region_views_early_only(tiny_denoiser, tmp_path):
    layout = labels(tmp_path / "l.png", 96, 64, {(255, 0, 0): (0, 0, 0.5, 1)})
    common = ["model=tiny", "width=768", "steps=5", "progress=false", f"regions={layout}", "regions.prompts=[a barn]"]
    off = generate_from_config(resolve([*common, "regions.bootstrap=0"]), tiny_denoiser).canonical
    on = generate_from_config(resolve([*common, "regions.bootstrap=0.4"]), tiny_denoiser).canonical
    assert not torch.allclose(off, on, atol=1e-3)
    cfg = resolve([*common, "regions.bootstrap=0.4"])
    prepared = prepare(cfg)
    assert isinstance(prepared.sync, Bootstrapped)  # the run's method, wrapped
    hook = Bootstrap(prepared.app.space, ViewModel(tiny_denoiser, None, prepared.app.space.num_views), cfg["seed"],
                     0.4, 512)
    x = torch.zeros(prepared.app.space.num_views, 4, 64, 64)
    early, late = prepared.sampler.steps[0], prepared.sampler.steps[3]  # fractions 0 and 0.6
    changed = hook(x, early)
    region_views = prepared.app.space.region > 0
    outside = prepared.app.space.mask_views[:, 0] < 1
    assert (changed[region_views][outside[region_views][:, None].expand(-1, 4, -1, -1)] != 0).all()
    assert (changed[~region_views] == 0).all()  # the background's views are left alone
    assert torch.equal(hook(x, late), x)  # only the first 40% of the steps


def test_night_and_day_layouts_give_panoramas_that_follow_them(tmp_path):
    """The analytic mixture prior: windows' most likely scene follows a night | day layout and its
    mirror day | night; the plain run (a prompt naming no scene) cannot follow both, since every
    window disagrees between the two layouts, so it scores at most 0.5 on their mean."""
    from syncframe.metrics import crops
    from syncframe.pipeline import load_denoiser

    model = load_denoiser(resolve(["model=gaussian-mixture"]))
    scene = {"day": 0, "night": 1, "sunset": 2}
    common = ["model=gaussian-mixture", "width=3072", "app.stride=16", "steps=20", "progress=false", "prompt=a view"]
    follows = {"regions": [], "plain": []}
    for left, right in (("night", "day"), ("day", "night")):
        layout = tmp_path / f"{left}-{right}.yaml"
        layout.write_text(f"regions:\n  - {{prompt: {left}, box: [0, 0, 0.5, 1]}}\n"
                          f"  - {{prompt: {right}, box: [0.5, 0, 1, 1]}}\n")
        expected = torch.tensor([scene[left]] * 3 + [scene[right]] * 3)  # six 64-latent windows
        for name, extra in (("regions", [f"regions={layout}"]), ("plain", [])):
            for seed in range(6):
                canvas = generate_from_config(resolve([*common, *extra, f"seed={seed}"]), model).canonical
                follows[name].append((model.classify(crops(canvas, 64)) == expected).float().mean().item())
    regions, plain = (sum(v) / len(v) for v in (follows["regions"], follows["plain"]))
    # measured: regions 0.76 (night | day 0.67, day | night 0.86), plain 0.31 (0.33, 0.28)
    assert regions >= 0.65, follows
    assert regions >= plain + 0.2, follows


def test_yaml_layout_with_a_box_and_a_soft_mask_and_the_python_api(tiny_denoiser, tmp_path):
    soft = np.tile(np.linspace(0, 1, 300, dtype=np.float32), (100, 1))  # a 3:1 ramp, left to right
    Image.fromarray((soft * 255).astype(np.uint8)).save(tmp_path / "ramp.png")
    (tmp_path / "layout.yaml").write_text("background: a sunny meadow\nregions:\n"
                                          "  - {prompt: a red barn, box: [0.1, 0.3, 0.4, 1.0]}\n"
                                          "  - {prompt: a lake, mask: ramp.png}\n")
    cfg = resolve(["model=tiny", "width=1536", "height=512", "steps=2", "progress=false",
                   f"regions={tmp_path / 'layout.yaml'}", "regions.blur=16"])
    result = generate_from_config(cfg, tiny_denoiser)
    assert result.images["layout.png"].size == (1536, 512)
    app = prepare(resolve(["model=tiny", "width=1536", "height=512", f"regions={tmp_path / 'layout.yaml'}"])).app
    lake = app.masks[2]
    assert lake[:, 0].max() < 0.05 and lake[:, -1].min() > 0.95  # the soft ramp survives resizing
    assert torch.allclose(app.masks.sum(0).clamp_max(1), torch.ones_like(lake))
    prompts, _ = app.view_conditioning()
    assert set(prompts) == {"a sunny meadow", "a red barn", "a lake"}
    ran = prepare(cfg).app
    assert result.metadata["num_views"] == ran.space.num_views > ran.base_space.num_views  # the views it ran
    # the Python API: masks as arrays
    api = generate(model="tiny", width=1536, height=512, steps=2, progress=False, denoiser=tiny_denoiser,
                   regions=[{"prompt": "a lake", "mask": soft}, {"prompt": "a barn", "box": [0.1, 0.3, 0.4, 1.0]}])
    assert api.config["regions"]["name"] == "layout" and len(api.config["regions"]["regions"]) == 2


def test_api_array_masks_need_no_temporary_files_and_their_run_folder_reproduces_them(tiny_denoiser, tmp_path,
                                                                                       monkeypatch):
    import tempfile

    from syncframe.config import overrides_from_file

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    soft = np.tile(np.linspace(0, 255, 192, dtype=np.float32), (64, 1))  # 0..255 levels, scaled
    result = generate(model="tiny", width=1536, height=512, steps=2, progress=False, denoiser=tiny_denoiser,
                      regions=[{"prompt": "a lake", "mask": soft}, {"prompt": "a barn", "box": [0.1, 0.3, 0.4, 1.0]}])
    assert list(scratch.iterdir()) == []  # nothing written for the masks while generating
    folder = result.save(tmp_path / "run")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    mask = Path(config["regions"]["regions"][0]["mask"])
    assert mask == (folder / "region_mask_0.png").resolve() and mask.is_file()
    again = generate_from_config(resolve(overrides_from_file(folder / "config.yaml")), tiny_denoiser)
    assert np.array_equal(np.asarray(again.images["panorama.png"]), np.asarray(result.images["panorama.png"]))
    assert list(scratch.iterdir()) == []
    with pytest.raises(ConfigError, match=r"regions\[0\].mask: an array mask is a finite 2-D array"):
        generate(model="tiny", regions=[{"prompt": "x", "mask": np.zeros((2, 2, 2, 2))}])


def test_regions_on_the_360_and_mesh_spaces_paint_their_prompt_where_their_mask_is(tmp_path):
    """On the closed-form mixture prior (day: a blue-green sky, sunset: red), a "sunset" region over
    the equirect's sky, or over half of the vase's texture, turns that part red and leaves the rest
    as it was (3 seeds; the scenes' red channels differ by ~1)."""
    top = labels(tmp_path / "top.png", 64, 32, {(255, 0, 0): (0, 0, 1, 0.3)})  # the sky of an equirect
    half = labels(tmp_path / "half.png", 32, 32, {(0, 0, 255): (0, 0, 0.5, 1)})  # half of the UV texture
    base = ["model=gaussian-mixture", "steps=10", "progress=false", "prompt=day", "app.viewer=false"]
    for args, layout, image in (
            (["app=panorama360", "width=512", "height=256", "app.rings=[{pitch: 0, count: 6, fov: 90}, "
              "{pitch: 60, count: 3, fov: 90}, {pitch: -60, count: 3, fov: 90}]"], top, "equirect.png"),
            (["app=mesh", f"mesh={ASSETS / 'vase.obj'}", "app.views=[{elevation: 0, count: 4}, {elevation: 30, count: 2}]"],
             half, "texture.png")):
        gains = []
        for seed in range(3):
            plain = generate_from_config(resolve([*base, *args, f"seed={seed}"]))
            painted = generate_from_config(resolve([*base, *args, f"seed={seed}", f"regions={layout}",
                                                    "regions.prompts=[sunset]"]))
            assert painted.images["layout.png"].size == painted.images[image].size
            red = [from_pil(r.images[image])[0] for r in (plain, painted)]  # [H, W]
            height, width = red[0].shape
            inside = (slice(0, int(0.25 * height)), slice(None)) if layout == top else (slice(None), slice(0, width // 2))
            outside = (slice(int(0.4 * height), None), slice(None)) if layout == top else \
                (slice(None), slice(width // 2 + 2, None))
            gains.append((red[1][inside].mean() - red[0][inside].mean()).item())
            assert abs(red[1][outside].mean() - red[0][outside].mean()) < 0.12, (image, seed)
        assert sum(gains) / len(gains) > 0.25, (image, gains)


def test_mesh_regions_by_part_cover_exactly_the_texels_of_that_materials_faces(tmp_path, capsys):
    from scripts.shapes import vase
    from syncframe.geometry.texels import texel_faces

    mesh = vase()
    height = mesh.vertices[mesh.faces].mean(1)[:, 1]
    cut = float(np.median(height))
    (tmp_path / "two.mtl").write_text("newmtl body\nKd 0.5 0.3 0.1\nnewmtl rim\nKd 0.8 0.7 0.2\n")
    lines = ["mtllib two.mtl", *(f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices)]
    for name, faces in (("body", mesh.faces[height <= cut]), ("rim", mesh.faces[height > cut])):
        lines += [f"usemtl {name}", *(f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces)]
    (tmp_path / "two.obj").write_text("\n".join(lines) + "\n")
    (tmp_path / "layout.yaml").write_text("regions:\n  - {prompt: polished brass, part: rim}\n")
    common = ["model=tiny", "app=mesh", f"mesh={tmp_path / 'two.obj'}", "app.views=[{elevation: 0, count: 4}]"]
    app = prepare(resolve([*common, f"regions={tmp_path / 'layout.yaml'}"])).app
    loaded, rim = app.mesh, app.mesh.part_names.index("rim")
    assert sorted(loaded.part_names) == ["body", "rim"]
    assert (loaded.vertices[loaded.faces[loaded.face_part == rim]].mean(1)[:, 1] > cut).all()  # parts survive unwrapping
    faces = texel_faces(loaded, app.masks.shape[-1])
    rim_texels = (faces >= 0) & (loaded.face_part[np.maximum(faces, 0)] == rim)
    assert rim_texels.sum() > 100 and torch.equal(app.masks[1], torch.from_numpy(rim_texels).float())
    prompts, index = app.view_conditioning()
    rim_prompts = {prompts[index[v]] for v in np.flatnonzero(app.space.region.numpy() == 1)}
    assert rim_prompts and all(p.startswith("polished brass, ") for p in rim_prompts)  # + the view's side
    (tmp_path / "bad.yaml").write_text("regions:\n  - {prompt: gold, part: handle}\n")
    assert main(["run", *common, f"regions={tmp_path / 'bad.yaml'}", f"out={tmp_path / 'never'}"]) == 2
    assert "part: handle is not a part of mesh=" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_syncdiffusion_pulls_each_regions_views_to_its_own_anchor(tmp_path):
    layout = labels(tmp_path / "l.png", 96, 64, {(255, 0, 0): (0, 0, 0.5, 1)})
    prepared = prepare(resolve(["model=tiny", "width=768", "app.stride=16", "sync=syncdiffusion", f"regions={layout}",
                                "regions.prompts=[a barn]"]))
    groups = prepared.app.space.capability("anchors")()
    regions = prepared.app.space.region
    assert len(groups) == 2
    for anchor, members in groups:
        assert anchor in members and len(set(regions[members].tolist())) == 1  # one region per group


@pytest.mark.parametrize("make, extra, message", [
    (lambda p: labels(p / "l.png", 12, 8, {(255, 0, 0): (0, 0, 0.3, 1), (0, 0, 255): (0.5, 0, 1, 1)}),
     ["regions.prompts=[one]"], "has 2 region colours but regions.prompts gives 1 prompts"),
    (lambda p: labels(p / "l.png", 12, 8, {}), ["regions.prompts=[one]"], "has no region"),
    (lambda p: labels(p / "l.png", 8, 8, {(255, 0, 0): (0, 0, 0.5, 1)}), ["regions.prompts=[one]"],
     "not the aspect of the panorama canvas"),
    (lambda p: (p / "l.yaml").write_text("regions:\n  - {prompt: a, box: [0.5, 0, 0.2, 1]}\n") and p / "l.yaml", [],
     "box=[0.5, 0, 0.2, 1] must satisfy"),
    (lambda p: (p / "l.yaml").write_text("regions:\n  - {prompt: a}\n") and p / "l.yaml", [],
     "needs exactly one of box"),
    (lambda p: (p / "l.yaml").write_text("regions:\n  - {prompt: a, box: [0, 0, 0.001, 0.001]}\n") and p / "l.yaml", [],
     "is empty on the panorama canvas"),
    (lambda p: (p / "l.yaml").write_text("regions:\n  - {prompt: a, part: rim}\n") and p / "l.yaml", [],
     "only app=mesh has parts"),
    (lambda p: p / "missing.png", [], "does not exist"),
    (lambda p: (p / "l.txt").write_text("x") and p / "l.txt", [], "is neither a label image nor a YAML layout"),
])
def test_bad_layouts_are_one_clear_line(tmp_path, capsys, make, extra, message):
    (tmp_path / "in").mkdir()
    layout = make(tmp_path / "in")
    assert main(["run", "model=tiny", "width=768", f"regions={layout}", *extra, f"out={tmp_path / 'never'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not (tmp_path / "never").exists()
