"""The README's commands run: its first command's run (as written), every `syncframe run` of its
Usage section on `model=tiny`, and its offline Python example."""
import re
import shlex
from pathlib import Path

import pytest

from syncframe.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def usage_runs() -> list[list[str]]:
    usage = README.split("## Usage", 1)[1]
    first_block = re.search(r"```bash\n(.*?)```", usage, flags=re.S).group(1)
    lines = [line for line in first_block.splitlines() if line.startswith("syncframe run")]
    return [shlex.split(line)[1:] for line in lines]


def test_the_first_command_runs_the_main_job_as_written(tmp_path, monkeypatch):
    first = blocks("bash")[0].strip()
    install, _, command = first.partition(" && ")
    assert install == "pip install torch==2.13.0 -e ." and command.startswith("syncframe run app=panorama model=demo")
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(command)[1:]) == 0
    (run,) = (tmp_path / "outputs" / "panorama").iterdir()
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "panorama.png", "run.json"]


def test_ci_runs_the_readme_test_command():
    command = blocks("bash")[1].strip()
    assert command in (ROOT / ".ci" / "run").read_text()


RUNS = usage_runs()


def test_usage_names_every_app():
    apps = {a.split("=", 1)[1] for run in RUNS for a in run if a.startswith("app=")}
    assert apps == {"panorama", "panorama360", "mesh", "upscale", "anagram", "splats"}


def twin(args: list[str]) -> str:
    """The offline twin of the family the command names (SD's for repository ids of SD 1/2)."""
    model = next((a.split("=", 1)[1] for a in args if a.startswith("model=")), "sd2-base")
    for prefix, name in (("sdxl", "tiny-sdxl"), ("sd3", "tiny-sd3"), ("sd35", "tiny-sd3"), ("flux", "tiny-flux")):
        if model.startswith(prefix):
            return name
    return "tiny"


def cheaper(args: list[str]) -> list[str]:
    """Sizes and loss settings that change no file a command writes, only its cost on a CPU (the
    main job itself runs as written in test_the_first_command_runs_the_main_job_as_written)."""
    app = next((a.split("=", 1)[1] for a in args if a.startswith("app=")), "panorama")
    extra = []
    if "sync=syncdiffusion" in args:
        extra += ["sync.loss_resolution=64", "sync.grad_through_unet=false"]
    # a keep= mask is drawn for its init='s own canvas (1536x512): a narrower one would be another aspect
    if app == "panorama" and not any(a.startswith(("width=", "keep=")) for a in args):
        extra.append("width=1024")
    if app == "splats":
        extra += ["width=128", "height=128"]
    return extra


@pytest.mark.parametrize("args", RUNS, ids=[" ".join(r)[:50] for r in RUNS])
def test_every_usage_command_runs_offline(args, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples name files in assets/
    controlnet = [a for a in args if a.startswith("controlnet=")]
    runs = [a for a in args if not a.startswith(("model=", "controlnet=", "steps="))]
    runs += ["controlnet=tiny"] * bool(controlnet) + [f"model={twin(args)}", "steps=2", "progress=false",
                                                      f"out={tmp_path / 'run'}", *cheaper(args)]
    assert main(runs) == 0
    app = next((a.split("=", 1)[1] for a in args if a.startswith("app=")), "panorama")
    expected = FILES[app] | {"config.yaml", "run.json"} | ({"layout.png"} if any(a.startswith("regions=") for a in args)
                                                           else set())
    if "-m" in args:  # a sweep: one run folder per combination, and their index
        folders = sorted(p for p in (tmp_path / "run").iterdir() if p.is_dir())
        assert len(folders) == 4 and (tmp_path / "run" / "multirun.csv").is_file()
    else:
        folders = [tmp_path / "run"]
    for folder in folders:
        assert {p.name for p in folder.iterdir()} == expected, (args, folder)


# What each app writes, as the README lists it (test_the_readme_lists_every_file checks the text)
FILES = {
    "panorama": {"panorama.png"},
    "upscale": {"upscaled.png", "input.png"},
    "panorama360": {"equirect.png", "views.png", "viewer.html"},
    "mesh": {"texture.png", "mesh.glb", "renders.png", "views.png", "viewer.html", "heldout"},
    "anagram": {"image.png", "views.png", "anagram.gif"},
    "splats": {"splats.ply", "renders.png", "views.png", "viewer.html", "heldout"},
}


def test_the_readme_lists_every_file_of_every_app():
    writes = README.split("Each run writes one folder", 1)[1].split("\n\n", 1)[0]
    splats = README.split("## Gaussian splats", 1)[1]
    for app, names in FILES.items():
        text = splats if app == "splats" else writes
        for name in names | {"config.yaml", "run.json"}:
            assert f"`{name}`" in text or name in ("config.yaml", "run.json") and f"`{name}`" in writes, (app, name)
    assert "`layout.png`" in writes


def test_the_offline_python_example_runs(tmp_path, monkeypatch):
    python = blocks("python")[0]  # the offline example (the next shows a port from diffusers)
    code = "\n".join(line for line in python.splitlines() if not line.lstrip().startswith("#"))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "castle.png").is_file()


def test_the_demo_models_examples_name_every_app_and_are_valid_runs():
    """The "On the demo model" block: one run per app, each resolved and prepared as written (sampling
    them is the benchmarks' job: docs/benchmarks.md)."""
    from syncframe.config import resolve
    from syncframe.pipeline import prepare

    block = re.search(r"### On the demo model.*?```bash\n(.*?)```", README, flags=re.S).group(1)
    runs = [shlex.split(line)[2:] for line in block.strip().splitlines()]
    assert all("model=demo" in run for run in runs)
    assert {a.split("=", 1)[1] for run in runs for a in run if a.startswith("app=")} == {
        "panorama", "panorama360", "mesh", "upscale", "anagram"}
    assert any(a.startswith("regions=") for run in runs for a in run)
    for run in runs:
        prepare(resolve(run))
