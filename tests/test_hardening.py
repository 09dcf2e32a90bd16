"""What a hostile (or unlucky) user still broke, case by case: temporary files, messages that
blamed the wrong thing, exit codes, stale run folders, the Python API's arguments."""
import json
import tempfile

import numpy as np
import pytest

from syncframe.models.offline import generated_tokenizer
from test_hostile import ASSETS, run_hostile, workdir  # noqa: F401  (the fixture)


def test_the_generated_tokenizer_leaves_no_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tokenizer = generated_tokenizer()
    assert tokenizer("a photo").input_ids[0] == tokenizer.bos_token_id
    assert list(tmp_path.iterdir()) == []


# -- LPIPS weights files: every wrong file is one line, before any model loads -----------------------
class RunsCode:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    import torch
    from safetensors.torch import save_file

    from syncframe.models.perceptual import LPIPS

    folder = tmp_path_factory.mktemp("lpips")
    (folder / "text.safetensors").write_text("not weights")
    (folder / "text.pth").write_text("not weights")
    torch.save({"a": torch.zeros(1)}, folder / "random.pth")
    save_file({"a": torch.zeros(1)}, str(folder / "random.safetensors"))
    torch.save([torch.zeros(1)], folder / "list.pth")
    torch.save(RunsCode(), folder / "code.pth")
    state = LPIPS("alex").state_dict()
    state["lin0.model.1.weight"] = torch.zeros(1, 3, 1, 1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "shape.safetensors"))
    (folder / "folder").mkdir()
    return folder


LPIPS_CASES = [
    ("text.safetensors", "cannot be read as safetensors"),
    ("text.pth", "cannot be read as a torch.save file"),
    ("random.pth", "is not an LPIPS-alex state dict: 15 of its 15 keys are missing"),
    ("random.safetensors", "is not an LPIPS-alex state dict"),
    ("list.pth", "holds list, not a state dict of tensors"),
    ("code.pth", "cannot be read as a torch.save file"),
    ("shape.safetensors", "lin0.model.1.weight has shape (1, 3, 1, 1), LPIPS-alex needs (1, 64, 1, 1)"),
    ("folder", "is a folder, not a weights file"),
    ("missing.pth", "the LPIPS weights file does not exist"),
]


@pytest.mark.parametrize("name, message", LPIPS_CASES)
def test_a_bad_lpips_weights_file_is_one_line_before_anything_loads(workdir, capsys, lpips_files, name, message):
    err = run_hostile(workdir, capsys, ["sync=syncdiffusion", f"sync.lpips_weights={lpips_files / name}"])
    assert message in err and "a valid file is the lpips package's LPIPS(net='alex').state_dict()" in err, err
    assert "this pickle ran code" not in capsys.readouterr().out


# -- Gaussian splats: scenes and cameras that cannot work ---------------------------------------------
def look_from(eye, target) -> list:
    """An OpenGL camera-to-world matrix (transforms.json) at ``eye`` looking at ``target``."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, np.cross(right, forward), -forward, eye
    return matrix.tolist()


@pytest.fixture(scope="module")
def splat_files(tmp_path_factory):
    from dataclasses import replace

    from syncframe.geometry.splats import ply_bytes, read_ply

    folder = tmp_path_factory.mktemp("splats")
    vase = read_ply(ASSETS / "vase_splats.ply")
    (folder / "huge.ply").write_bytes(ply_bytes(replace(vase, log_scales=np.full_like(vase.log_scales, 30.0))))
    (folder / "point.ply").write_bytes(ply_bytes(replace(vase, means=np.zeros_like(vase.means))))
    one = {k: (v[:1] if isinstance(v, np.ndarray) and len(v) == len(vase) else v) for k, v in vars(vase).items()}
    (folder / "single.ply").write_bytes(ply_bytes(type(vase)(**one)))
    centre = (vase.means.min(0) + vase.means.max(0)) / 2
    outside = look_from(centre + [0, 0, 3], centre)
    for name, second in (("away", look_from(centre + [0, 0, 3], centre + [0, 0, 6])),
                         ("inside", look_from(centre, centre + [1, 0, 0]))):
        (folder / f"{name}.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": [
            {"transform_matrix": outside}, {"transform_matrix": second}]}))
    return folder


SPLAT_CASES = [
    (["splats={f}/huge.ply"], "4000 splats have a scale over 100x the scene's extent"),
    (["splats={f}/point.ply"], "has all 4000 splat centres at one point, so the orbit rig has nothing to frame"),
    (["splats={f}/single.ply"], "holds a single splat, so the orbit rig has nothing to frame"),
    ([f"splats={ASSETS / 'vase_splats.ply'}", "app.cameras={f}/away.json"], "sees none of the splats"),
    ([f"splats={ASSETS / 'vase_splats.ply'}", f"regions={ASSETS / 'layout.yaml'}"],
     "regions= paints prompts onto a canvas of pixels"),
]


@pytest.mark.parametrize("args, message", SPLAT_CASES)
def test_splat_scenes_and_cameras_that_cannot_work(workdir, capsys, splat_files, args, message):
    err = run_hostile(workdir, capsys, ["app=splats", "width=256", "height=256",
                                        *(a.format(f=splat_files) for a in args)])
    assert message in err, err


def test_a_camera_inside_the_scene_is_said(splat_files, capsys, tmp_path):
    from syncframe.config import resolve
    from syncframe.pipeline import prepare

    app = prepare(resolve(["app=splats", "model=tiny", f"splats={ASSETS / 'vase_splats.ply'}", "width=256",
                           "height=256", f"app.cameras={splat_files / 'inside.json'}"])).app
    err = capsys.readouterr().err
    assert "frames[1] of app.cameras=" in err and "stands inside the scene" in err
    assert 0 < app.seen_by_view[1] < 0.2 < app.seen_by_view[0]


# -- the command line and the Python API ---------------------------------------------------------------
def test_syncframe_with_no_arguments_prints_usage_and_exits_2(capsys):
    from syncframe.cli import main

    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("usage: syncframe run") and captured.out == ""


def test_notes_are_said_once_per_run_not_once_per_process(capsys):
    from syncframe.messages import collecting, note

    for _ in range(2):
        with collecting() as notes:
            note("a note of this run")
            note("a note of this run")
        assert notes == ["a note of this run"]
        assert capsys.readouterr().err.count("a note of this run") == 1  # each run says it, once


def test_the_api_is_as_quiet_as_the_command_line_and_leaves_the_libraries_as_they_were(tmp_path):
    import subprocess
    import sys

    script = ("import syncframe\n"
              "from transformers.utils import logging\n"
              "before = logging.get_verbosity()\n"
              "syncframe.generate(model='tiny', width=512, height=512, steps=1, progress=False)\n"
              "assert logging.get_verbosity() == before, (before, logging.get_verbosity())\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # a fresh process: the libraries' import-time warnings included


@pytest.mark.parametrize("call, message", [
    (lambda g: g(object()), 'a positional argument is a "key=value" string or a (key, value) pair'),
    (lambda g: g(("a",)), "a positional argument is"),
    (lambda g: g(model="tiny", denoiser=3), "denoiser=3: expected a loaded syncframe denoiser"),
    (lambda g: g(model="tiny", steps=object()), "steps=<object object at"),
    (lambda g: g(model="tiny", prompt=b"bytes"), "prompt=b'bytes': expected a string"),
    (lambda g: g(model="tiny", regions=["x"]), "regions[0]='x': each region is a mapping"),
    (lambda g: g(model="tiny", sync=5), "sync=5: expected a name"),
    (lambda g: g(model="tiny", seed=(1, 2)), "seed=[1, 2]: expected an integer"),
])
def test_every_bad_api_argument_is_a_config_error_with_the_clis_words(call, message):
    import syncframe

    with pytest.raises(syncframe.ConfigError) as caught:
        call(syncframe.generate)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_contact_sheet_fills_empty_cells_with_its_background_and_labels_each_view():
    import torch

    from syncframe.apps.base import contact_sheet

    views = torch.full((3, 3, 64, 64), -0.5)  # three dark grey views in a 2x2 grid: one cell empty
    sheet = np.asarray(contact_sheet(views, columns=2, tile=64, background=1.0,
                                     labels=["view 0", "view 1", "novel 0 (unseen)"]))
    assert (sheet[64:, 64:] == 255).all()  # the empty cell is the sheet's background, not black
    assert (sheet[40:64, 10:60] == 64).all()  # below its label, a view is itself
    for r, c in ((0, 0), (0, 64), (64, 0)):
        label = sheet[r:r + 20, c:c + 60]
        assert (label == 255).any() and (label < 40).any()  # a white box with dark text


def test_help_names_every_group_and_every_family(capsys):
    from syncframe.cli import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "regionss" not in out and "\nregions (regions=NAME" in out
    assert "any diffusers SD 1.x/2.x, SDXL, SD3 or FLUX repository id or local folder" in out


def test_run_json_says_which_size_is_the_views_and_which_the_output():
    from syncframe.config import resolve
    from syncframe.pipeline import prepare

    mesh = prepare(resolve(["app=mesh", "model=tiny", f"mesh={ASSETS / 'vase.obj'}",
                            "app.views=[{elevation: 0, count: 2}]"]))
    assert mesh.settled["view_px"] == 512 and "width" not in mesh.settled
    sizes = mesh.app.sizes()
    assert sizes["view_px"] == 512 and sizes["texture_px"] == 8 * sizes["latent_texture"] != 512
    panorama = prepare(resolve(["model=tiny"]))
    assert panorama.app.sizes() == {"output_px": [3072, 512], "view_px": 512} and panorama.settled["width"] == 3072


def test_a_refused_run_says_its_error_only_not_the_notes_said_while_it_was_checked(workdir, capsys, monkeypatch,
                                                                                   tmp_path):
    """Without LPIPS weights an offline run notes that random ones stand in; when the same run is
    then refused (a missing TAESD folder), its one error line is all it says."""
    monkeypatch.setenv("SYNCFRAME_WEIGHTS", str(tmp_path / "no-weights-here"))
    err = run_hostile(workdir, capsys, ["sync=syncdiffusion", "sync.decoder=taesd", "sync.taesd=./no/taesd"])
    assert "sync.taesd=./no/taesd: no such folder" in err and "note" not in err
