"""Hostile input, every app: one clear line and exit 2, no traceback, nothing on disk.

A table of hand-picked cases (types, ranges, resources, files, output paths), then a seeded fuzz
over the whole config schema: every option of every section gets values of the wrong type or out
of its range.
"""
import os
import random
import typing
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from syncframe.cli import main
from syncframe.config import GROUPS, RunOptions, group_entry, group_names
from pydantic import ValidationError, create_model

from syncframe.options import Options, PathMark, TextMark, parse_value

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VASE = f"mesh={ASSETS / 'vase.obj'}"
BASE = ["model=tiny", "steps=1", "progress=false"]


def make_inputs(folder: Path) -> None:
    """The bad (and some good) input files the table names, under ``folder``."""
    folder.mkdir()
    (folder / "junk.obj").write_bytes(b"this is not a mesh\n\x00\x01")
    (folder / "junk.glb").write_bytes(b"garbage" * 10)
    (folder / "empty.obj").write_text("# nothing here\n")
    trimesh.PointCloud(np.random.default_rng(0).random((50, 3))).export(folder / "cloud.ply")
    trimesh.Scene([trimesh.creation.box(), trimesh.creation.box().apply_translation([2, 0, 0])]).export(
        folder / "two.glb")
    (folder / "mesh.stl").write_text("solid x\nendsolid x\n")
    (folder / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\n")
    (folder / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nv 0 0 0\nf 1 2 3\nf 1 4 2\n")
    (folder / "junk.png").write_bytes(b"\x89PNG not really")
    (folder / "deep.yaml").write_text("[" * 100_000 + "]" * 100_000)  # a RecursionError in any YAML reader
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(folder / "square.png")
    Image.fromarray(np.zeros((64, 128), np.uint8)).save(folder / "depth.png")
    Image.new("RGB", (1000, 1000), (90, 120, 200)).save(folder / "big.png")
    (folder / "file.txt").write_text("a file, not a folder")
    (folder / "full").mkdir()
    (folder / "full" / "keep.txt").write_text("mine")
    (folder / "config.yaml").write_text("just: [a, list]\n")
    (folder / "bomb.png").write_bytes(png_header(60000, 60000))
    (folder / "huge.png").write_bytes(png_header(15000, 10000))
    Image.new("RGB", (1, 1)).save(folder / "one.png")
    (folder / "evil.yaml").write_text('app: !!python/object/apply:os.system ["echo ran"]\n')
    (folder / "broken.yaml").write_text("app: [a, b\nmodel: x\n")
    (folder / "layout.yaml").write_text("regions:\n  - {prompt: a, box: [0, 0, 1, 1]\n")
    (folder / "listmodel").mkdir()
    (folder / "listmodel" / "model_index.json").write_text("[1, 2]")


def png_header(width: int, height: int) -> bytes:
    """A PNG that is all header (no pixel data): it says its size, which is all a check before
    decoding may read."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


I = "in"  # the inputs folder, relative to the test's working folder
SPLATS = ["app=splats", f"splats={ASSETS / 'vase_splats.ply'}"]
P360 = ["app=panorama360", "width=256", "height=128"]
CASES = [
    # -- Gaussian splats ---------------------------------------------------------------------------
    (["app=splats"], "app=splats needs splats=<file>"),
    (["app=splats", f"splats={I}/cloud.ply"], "is a point cloud PLY, not 3D Gaussian splats"),
    (["app=splats", f"splats={I}/junk.obj"], "is not a PLY file"),
    (["app=splats", f"splats={I}/missing.ply"], "does not exist"),
    ([*SPLATS, "app.max_splats=10"], "above app.max_splats=10"),
    ([*SPLATS, "width=100", "height=100"], "splat views are square"),
    ([*SPLATS, f"app.cameras={I}/junk.png"], "is not readable JSON"),
    ([*SPLATS, "app.renderer=gsplat"], "app.renderer=gsplat needs"),
    ([*SPLATS, "app.domain=rgb", "sync=multidiffusion"], "sync=multidiffusion with app.domain=rgb"),
    ([*SPLATS, "app.domain=rgb", "app.rgb_size=256"], "app.rgb_size=256 with app.domain=rgb"),
    ([*SPLATS, "app.unproject=svd"], "app.unproject='svd': expected one of adjoint, lsq"),
    (["app=mesh", VASE, "app.domain=rgb", "sync=syncdiffusion"], "sync=syncdiffusion with app.domain=rgb"),
    ([*P360, "app.domain=rgb", f"init={I}/depth.png"], "init= works in the latent domain"),
    # -- types -----------------------------------------------------------------------------------
    (["out=123"], "out=123: expected a folder path"),
    (["out=true"], "out=true: expected a folder path"),
    (["out=[a,b]"], "out=[a, b]: expected a folder path"),
    (["app=mesh", "mesh=123"], "mesh=123: expected a path to a file"),
    ([*P360, "depth=[1]"], "depth=[1]: expected a path to a file"),
    (["sync=syncdiffusion", "sync.thres=abc"], "sync.thres='abc': expected an integer >= 0, or null"),
    (["app=mesh", VASE, "app.latent_texture_size=abc"], "app.latent_texture_size='abc': expected an integer"),
    (["app=mesh", VASE, "app.views=[{elevation: abc}]"], "app.views[0].elevation='abc': expected a number"),
    (["steps=many"], "steps='many': expected an integer"),
    (["seed=1.5"], "seed=1.5: expected an integer"),
    (["guidance=high"], "guidance='high': expected a number"),
    (["progress=maybe"], "progress='maybe': expected true or false"),
    ([*P360, "app.rings=abc"], "app.rings='abc': expected a list"),
    ([*P360, "app.rings=[{pitch: 0, count: 2}]"], "app.rings[0].fov is missing"),
    (["app.loop=2"], "app.loop=2: expected true or false"),
    (["sync=syncdiffusion", "sync.anchor=left"], "sync.anchor='left': expected one of center, or an integer"),
    (["model=gaussian", "model.scenes=noon"], "model.scenes='noon': expected a list"),
    (["model=gaussian", "model.scenes=[noon]"], "model.scenes[0]='noon': expected one of day, night, sunset"),
    (["width=wide"], "width='wide': expected an integer"),
    (["view_batch_size=[1]"], "view_batch_size=[1]: expected an integer"),
    (["app=mesh", VASE, "app.up=3"], "app.up=3: expected one of y, z"),
    (["sync=synctweedies", "sync.until=soon"], "sync.until='soon': expected a number"),
    (["controlnet=5"], "controlnet=5: expected a repository id or local folder"),
    # -- ranges ----------------------------------------------------------------------------------
    ([f"seed={2**64}"], f"seed={2**64}: expected an integer in [0, {2**64 - 1}]"),
    (["seed=-1"], "seed=-1: expected an integer in [0,"),
    (["steps=0"], "steps=0: expected an integer in [1, 1000]"),
    (["steps=100000"], "steps=100000: expected an integer in [1, 1000]"),
    (["sampler=ddim", "sampler.eta=2"], "sampler.eta=2: expected a number in [0, 1]"),
    (["sampler.eta=0.5"], "unknown config key 'sampler.eta' for sampler=auto (it is an option of sampler=ddim)"),
    (["eta=0.5"], "unknown config key 'eta': it is an option of sampler=ddim; write sampler.eta=... (with sampler=ddim)"),
    (["sampler=dpm"], "unknown sampler 'dpm'"),
    (["sampler=flow-euler"], "sampler=flow-euler does not fit model=tiny (sd, a variance-preserving model)"),
    (["model=tiny-flux", "sampler=ddim"], "sampler=ddim does not fit model=tiny-flux"),
    (["model=tiny-sd3", "sync=eps-averaging"], "sync.aggregate=eps averages the noise estimate"),
    (["model.family=sdxl"], "unknown config key 'model.family' for model=tiny (it is an option of model=flux-dev / "
                            "flux-schnell / pretrained / ...)"),
    (["model=tiny-sd3", "controlnet=tiny", "app=mesh", VASE], "works with UNet models (SD 1.x/2.x, SDXL)"),
    (["offload=model"], "offload=model moves weights between the CPU and a CUDA GPU"),
    (["model=sdxl", "model.t5=gpu"], "model.t5='gpu': expected one of same, cpu, drop"),
    (["guidance=-1"], "guidance=-1: expected a number in [0, 100]"),
    (["app.decode_batch_size=0"], "app.decode_batch_size=0: expected an integer in [1, 256]"),
    (["sync=syncdiffusion", "sync.loss_resolution=-5"], "sync.loss_resolution=-5: expected one of auto"),
    (["sync=syncdiffusion", "sync.grad_batch_size=0"], "sync.grad_batch_size=0: expected an integer in [1, 4096]"),
    (["sync=syncdiffusion", "sync.grad_batch_size=-2"], "sync.grad_batch_size=-2: expected an integer"),
    (["device=cuda"], "device=cuda: this machine has no usable CUDA GPU"),
    (["device=banana"], "device='banana': expected auto, cpu, cuda, cuda:N or mps"),
    (["model.builder=huge"], "model.builder='huge': expected one of tiny, mid"),
    (["dtype=fp64"], "dtype='fp64': expected one of auto, fp32, fp16, bf16"),
    (["app.stride=64"], "stride=64 must be in 1..63"),
    (["app.stride=0"], "app.stride=0: expected an integer >= 1"),
    (["width=1004"], "width=1004 is not a multiple of 8"),
    (["height=256"], "height=256 is smaller than one window"),
    (["app=panorama360", "width=2048", "height=2048"], "an equirect panorama is 2:1"),
    ([*P360, "app.latent_width=15"], "app.latent_width=15: expected an integer multiple of 2 in [16, 16384]"),
    (["app=mesh", VASE, "app.projection=perspective", "app.fov=180"], "app.fov=180: expected a number in (0, 180)"),
    (["app=mesh", VASE, "app.margin=0.5"], "app.margin=0.5: expected a number in [1, 10]"),
    (["sync=syncdiffusion", "sync.anchor=3000"], "sync.anchor=3000 is not a view index of this run"),
    (["sync=canonical-x0", "sync.until=0.5"], "sync.until applies to per-view (state=instance) denoising only"),
    (["sync=syncdiffusion", "sync.state=canonical"], "SyncDiffusion guidance moves each view's own x_t"),
    (["model=gaussian", "model.prompt_weight=1"], "model.prompt_weight=1: expected a number in (0, 1)"),
    (["app=mesh", VASE, "width=500", "height=500"], "mesh views are square, a multiple of 64 pixels"),
    # -- unknown and misplaced keys --------------------------------------------------------------
    (["colour=red"], "unknown config key 'colour'"),
    (["widht=800"], "unknown config key 'widht' (did you mean width?)"),
    (["sync.weight=3"], "unknown config key 'sync.weight' for sync=multidiffusion (it is an option of sync=syncdiffusion)"),
    (["mesh=x.obj"], "mesh= is an input of app=mesh, not of app=panorama; add app=mesh"),
    (["depth=x.png"], "depth= is an input of app=panorama360, not of app=panorama"),
    (["app=nope"], "unknown app 'nope'; choose one of: anagram, mesh, panorama, panorama360, splats, upscale"),
    (["sync=synctweedis"], "unknown sync 'synctweedis' (did you mean synctweedies?)"),
    (["app=mesh", VASE, "app.stride=8"], "unknown config key 'app.stride' for app=mesh (it is an option of app=panorama / upscale)"),
    (["prompt"], "argument 'prompt' is not key=value"),
    (["app.rings.pitch=3"], "unknown config key 'app.rings.pitch'"),
    # -- resources -------------------------------------------------------------------------------
    (["width=100000"], "this run has 1556 views per step (100000x512 at app.stride=8), above max_views=1024"),
    (["width=200000", "height=200000"], "views per step (200000x200000 at app.stride=8), above max_views=1024"),
    (["width=60000", "height=60000", "app.stride=56", "max_views=100000"], "this run needs about"),
    ([*P360, "app.rings=[{pitch: 0, count: 100000, fov: 60}]"], "this run has 100000 views per step"),
    (["app=mesh", VASE, "app.views=[{elevation: 0, count: 5000}]"], "this run has 5000 views per step"),
    (["max_memory_gb=0.001"], "but the limit is max_memory_gb=0.001"),
    # -- files -----------------------------------------------------------------------------------
    (["app=mesh"], "app=mesh needs mesh=<file>"),
    (["app=mesh", f"mesh={I}/missing.obj"], "does not exist"),
    (["app=mesh", f"mesh={I}/junk.obj"], "holds no triangles: it is empty or not a valid OBJ file"),
    (["app=mesh", f"mesh={I}/empty.obj"], "holds no triangles"),
    (["app=mesh", f"mesh={I}/junk.glb"], "could not be read as GLB"),
    (["app=mesh", f"mesh={I}/cloud.ply"], "is a point cloud (50 points, no faces)"),
    (["app=mesh", f"mesh={I}/mesh.stl"], ".stl is not a mesh format syncframe reads"),
    (["app=mesh", f"mesh={I}/two.glb", "app.merge_parts=false"], "scene of 2 parts and app.merge_parts=false"),
    (["app=mesh", f"mesh={I}/nan.obj"], "has 1 vertices with NaN or infinite coordinates"),
    (["app=mesh", f"mesh={I}/flat.obj"], "every one of its 2 faces has zero area"),
    (["app=mesh", VASE, "app.max_faces=1000"], "6144 faces, above app.max_faces=1000"),
    ([*P360, f"depth={I}/missing.png", "controlnet=tiny"], "depth='in/missing.png' does not exist; give an image"),
    ([*P360, f"depth={I}/junk.png", "controlnet=tiny"], "not a readable image"),
    ([*P360, f"depth={I}/square.png", "controlnet=tiny"], "is 100x100; an equirect depth image is 2:1"),
    ([*P360, "controlnet=tiny"], "controlnet= needs a control input, and this run has none"),
    ([*P360, f"depth={I}/depth.png"], "a control input (depth=) but no ControlNet"),
    (["model=gaussian", "controlnet=tiny"], "controlnet= works with UNet models (SD 1.x/2.x, SDXL); model=gaussian is analytic"),
    (["model=./no/such/model"], "model=./no/such/model: no such folder"),
    (["model=someone/not-cached-anywhere"], "is not in the local Hugging Face cache and cannot be downloaded"),
    (["app=mesh", VASE, "controlnet=someone/depth"], "or use controlnet=tiny (a random ControlNet shaped like the "
                                                     "model's UNet) offline"),
    (["sync=syncdiffusion", "sync.lpips_weights=/no/such/lpips.safetensors"], "LPIPS weights file"),
    (["sync=syncdiffusion", "sync.decoder=taesd", "sync.taesd=./no/taesd"], "sync.taesd=./no/taesd: no such folder"),
    # -- starting from content, upscaling ----------------------------------------------------------
    ([f"init={I}/junk.png"], "init='in/junk.png' is not a readable image"),
    ([f"init={I}/missing.png"], "init='in/missing.png' does not exist"),
    ([f"init={I}/depth.png", "strength=1.5"], "strength=1.5: expected a number in [0, 1]"),
    (["strength=0.5"], "strength=0.5 needs a starting point: give init=<image>"),
    ([*P360, f"init={I}/square.png"], "is 100x100; a 360° init is an equirect image, 2:1"),
    (["app=mesh", VASE, "init=texture"], "init=texture: mesh="),
    (["app=upscale"], "app=upscale needs image=<file>"),
    (["app=upscale", f"image={I}/depth.png", "scale=0.5"], "scale=0.5: expected a number in [1, 64]"),
    (["app=upscale", f"image={I}/big.png", "scale=20"],
     "image='in/big.png' (1000x1000) at scale=20 would be 20000x20000, above 268435456 pixels; use a smaller scale"),
    (["app=upscale", f"image={I}/junk.png"], "image='in/junk.png' is not a readable image"),
    (["app=upscale", f"image={I}/depth.png", f"init={I}/depth.png"], "app=upscale starts from image=; drop init="),
    (["app=upscale", f"image={I}/depth.png"], "image='in/depth.png' (128x64) at scale=2 would be 256x128, smaller "
                                               "than one window (512 px) of this model; use scale>=8 or a bigger image"),
    (["app=upscale", f"image={I}/depth.png", "width=1024", "height=256"], "height=256 is smaller than one window"),
    (["app=anagram", "image=x.png"], "image= is an input of app=panorama / app=panorama360 / app=upscale, not of "
                                     "app=anagram"),
    (["image=x.png"], "image='x.png' does not exist"),
    # -- images are checked from their headers, before decoding ----------------------------------
    ([f"init={I}/bomb.png"], "init='in/bomb.png' is 60000x60000, above 268435456 pixels; give a smaller image"),
    (["app=upscale", f"image={I}/bomb.png"], "image='in/bomb.png' is 60000x60000, above 268435456 pixels"),
    (["app=upscale", f"image={I}/huge.png"], "(15000x10000) at scale=2 would be 30000x20000, above 268435456 pixels"),
    (["app=upscale", f"image={I}/one.png"], "image='in/one.png' (1x1) at scale=2 would be 0x0, smaller than one "
                                             "window (512 px) of this model; give a bigger image"),
    ([f"regions={I}/bomb.png", "regions.prompts=[a]"], "regions='in/bomb.png' is 60000x60000, above 33554432 pixels; "
                                                       "a layout needs no more pixels than the output"),
    ([f"regions={I}/huge.png", "regions.prompts=[a]"], "regions='in/huge.png' is 15000x10000, above 33554432 pixels"),
    ([*P360, f"depth={I}/bomb.png", "controlnet=tiny"], "depth='in/bomb.png' is 60000x60000"),
    # -- YAML files: one line with the file, line and column --------------------------------------
    (["--config", f"{I}/evil.yaml"], "--config in/evil.yaml, line 1, column 6: not valid YAML: could not determine a "
                                     "constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system' "
                                     "(Python tags are never run)"),
    (["--config", f"{I}/broken.yaml"], "--config in/broken.yaml, line 2, column 6: not valid YAML: expected ',' or ']'"),
    ([f"regions={I}/layout.yaml"], "regions=in/layout.yaml, line 3, column 1: not valid YAML"),
    ([f"regions={I}/evil.yaml"], "regions=in/evil.yaml, line 1, column 6: not valid YAML"),
    # -- model folders -----------------------------------------------------------------------------
    ([f"model=./{I}/listmodel"], "its model_index.json holds a JSON list, not the mapping a diffusers pipeline has"),
    # -- control characters are refused in paths and never echoed raw -------------------------------
    (["out=a\nb"], "out='a\\nb': holds the control character '\\n'; paths and names with control characters"),
    (["app=mesh", "mesh=x\x1b[31m.obj"], "mesh='x\\x1b[31m.obj': holds the control character '\\x1b'"),
    (["app=\x1b[2J"], "unknown app '\\x1b[2J'"),
    # -- output folders --------------------------------------------------------------------------
    ([f"out={I}/file.txt"], "is a file, not a folder"),
    ([f"out={I}/file.txt/x"], "is a file, so no folder can be made under it"),
    (["out=/proc/x"], "out=/proc/x: cannot create /proc/x.partial"),
    (["out=/sys/x"], "out=/sys/x: cannot create /sys/x.partial"),
    ([f"out={I}/full"], "exists and is not empty"),
    (["--config", f"{I}/missing.yaml"], "--config in/missing.yaml: no such file; give a run's config.yaml"),
    (["--config", "/dev/zero"], "--config /dev/zero: larger than 16 MB, which no config is"),
    (["--config", f"{I}/deep.yaml"], "--config in/deep.yaml: nested too deeply to read"),
    (["--config", f"{I}/config.yaml"], "unknown config key 'just'"),
    # -- switches a model cannot take, lists without end ----------------------------------------------
    (["model=gaussian", "compile=true"], "model=gaussian is a closed-form prior with none; drop compile=true"),
    (["loras=[" + ",".join(["{path: a.safetensors}"] * 1000) + "]"], "(at most 32 items)"),
]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub is never reached in tests
    make_inputs(tmp_path / I)
    return tmp_path


def run_hostile(workdir, capsys, args, out_default=True):
    before = snapshot(workdir)
    outs = [] if any(a.startswith("out=") for a in args) or not out_default else ["out=never"]
    code = main(["run", *BASE, *outs, *args])
    err = capsys.readouterr().err.strip()
    assert code == 2, (args, err)
    assert err.startswith("syncframe: error:") and "\n" not in err and "Traceback" not in err, (args, err)
    assert snapshot(workdir) == before, args  # nothing written, no .partial, no parent folders
    assert not Path("/proc/x.partial").exists()
    return err


def test_the_table_is_big_enough():
    assert len(CASES) >= 60


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_hostile_input_is_one_clear_line_exit_2_and_nothing_on_disk(workdir, capsys, args, message):
    err = run_hostile(workdir, capsys, args)
    assert message in err, err


# -- the fuzz ----------------------------------------------------------------------------------
def wrong_values(annotation, metadata, rng: random.Random) -> list[str]:
    """Command-line values that ``annotation`` (with its constraints) must refuse."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if any(isinstance(m, TextMark) for m in metadata):
        return []  # free text takes anything
    if any(isinstance(m, PathMark) for m in metadata):
        return [str(rng.randint(0, 999)), "true", "[a, b]", "{k: 1}", "1.5"]
    if origin is typing.Annotated:
        inner, *marks = args
        if any(isinstance(m, TextMark) for m in marks):
            return []  # free text takes anything
        if any(isinstance(m, PathMark) for m in marks):
            return [str(rng.randint(0, 999)), "true", "[a, b]", "{k: 1}", "1.5"]
        return wrong_values(inner, [*metadata, *[x for m in marks for x in getattr(m, "metadata", [m])]], rng)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        members = [a for a in args if a is not type(None)]
        return [v for m in members for v in wrong_values(m, metadata, rng)]
    if origin is typing.Literal:
        return ["zz-not-a-choice", "[1]", str(rng.randint(1000, 9999))]
    if origin is list:
        return ["abc", str(rng.randint(2, 9)), "{k: 1}", "[[]]", "[{zz: 1}]"]
    bounds = {type(m).__name__: m for m in metadata}
    if annotation is bool:
        return ["maybe", "2", "[true]"]
    if annotation in (int, float):
        values = ["abc", "[1]", "true", "{k: 1}"]
        if annotation is int:
            values.append(f"{rng.randint(1, 9)}.5")
        for name, attr, delta in (("Ge", "ge", -1), ("Gt", "gt", 0), ("Le", "le", 1), ("Lt", "lt", 0)):
            if name in bounds:
                edge = getattr(bounds[name], attr)
                values.append(str(edge + delta * rng.choice([1, 7, 1000])))
        return values
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return ["abc", "3", "[1]"]
    if annotation is str:
        return []
    return []


def schema_sections():
    """(options the section needs to be chosen, key prefix, schema) for every section of the tree."""
    yield [], "", RunOptions
    for group in GROUPS:
        for name in group_names(group):
            if group == "model" and name in ("pretrained",):
                continue
            entry = group_entry(group, name)
            pick = [f"{group}={name}"] + ([VASE] if name == "mesh" and group == "app" else [])
            pick += P360[1:] if name == "panorama360" and group == "app" else []
            yield pick, f"{group}.", entry.options
            if group == "app" and entry.inputs is not None:
                yield pick, "", entry.inputs


def refused(field, value: str) -> bool:
    """Whether the schema refuses the command-line ``value`` for ``field``."""
    single = create_model("Single", __base__=Options, value=(field.annotation, field))
    try:
        single.model_validate({"value": parse_value(field.annotation, value, field.metadata)})
        return False
    except ValidationError:
        return True


def fuzz_cases(count: int, seed: int = 0):
    rng = random.Random(seed)
    pool = []
    for pick, prefix, schema in schema_sections():
        for key, field in schema.model_fields.items():
            if not prefix and key in ("app", "model", "sync", "device"):
                continue  # group choices and the device are tested in the table
            for value in wrong_values(field.annotation, field.metadata, rng):
                if refused(field, value):
                    pool.append(([*pick, f"{prefix}{key}={value}"], f"{prefix}{key}", (*pick, key)))
    rng.shuffle(pool)
    first = {}  # one case of every option of every section first, then random others
    for case in pool:
        first.setdefault(case[2], case)
    rest = [case for case in pool if first[case[2]] is not case]
    return list(first.values()) + rest[:max(0, count - len(first))]


def test_fuzz_the_schema_with_wrong_types_and_ranges(workdir, capsys):
    cases = fuzz_cases(400)
    assert len(cases) >= 300
    options = {option for _, _, option in cases}
    covered = set()
    for args, key, option in cases:
        err = run_hostile(workdir, capsys, args)
        assert key in err, (args, err)  # the line names the option
        covered.add(option)
    assert covered == options and len(options) > 60  # every typed option of the tree was reached


def test_a_fresh_default_run_leaves_no_folder_when_it_fails(workdir, capsys):
    run_hostile(workdir, capsys, ["app=mesh", f"mesh={I}/nan.obj"], out_default=False)
    assert not (workdir / "outputs").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere; /proc and /sys cover this as root")
def test_a_read_only_parent_folder(workdir, capsys):
    locked = workdir / "locked"
    locked.mkdir(mode=0o500)
    err = run_hostile(workdir, capsys, [f"out={locked}/run"])
    assert "cannot write in" in err
