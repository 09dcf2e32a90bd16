"""docs/plugins.md's five examples, each one file of a throwaway package installed through the
``syncframe.plugins`` entry point, run in a fresh process through ``syncframe run``, ``syncframe eval``,
the page's control generation and ``SyncPipeline``: a plugin is a full citizen through its one file."""
import json
import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from syncframe.registry import APPS, ENTRY_POINT_GROUP, SYNCS

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
FILES = dict(re.findall(r"```python\n# my_package/(\w+)\.py\n(.*?)```", DOC, flags=re.S))


def test_builtins_come_through_the_plugin_entry_point():
    assert "builtin" in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"panorama", "panorama360", "mesh"} <= set(APPS.names())
    assert {"none", "multidiffusion", "syncdiffusion", "synctweedies", "stochsync"} <= set(SYNCS.names())


def test_the_page_shows_five_one_file_examples():
    assert sorted(FILES) == ["blend", "cylinder", "cylinder_app", "family", "tiles"]


DRIVER = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import torch
    from syncframe.cli import main

    out = Path(sys.argv[1])
    common = ["model=tiny", "steps=2", "progress=false", "width=1024", "height=512"]
    report = {}
    # 1. the per-view method and the family: run.json names the family, its defaults were taken
    report["blend"] = main(["run", "app=cylinder", "model=tiny-fast", "sync=blend", "sync.weight=0.7", "width=1024",
                            "height=512", "progress=false", f"out={out / 'blend'}"])
    run = json.loads((out / "blend" / "run.json").read_text())
    report["family"], report["resolved"] = run["family"], run["resolved"]
    # 2. the trajectory method on the space's canvas; refused where there is none
    report["tiles"] = main(["run", "app=cylinder", "sync=tiles", *common, f"out={out / 'tiles'}"])
    report["tiles_refused"] = main(["run", "app=mesh", "mesh=assets/vase.obj", "sync=tiles", *common[:3],
                                    f"out={out / 'no'}"])
    # 3. SyncTweedies on the plugin app: its published setting, cross-view attention on its neighbours
    report["synctweedies"] = main(["run", "app=cylinder", "sync=synctweedies", *common, f"out={out / 'st'}"])
    report["cross_view"] = json.loads((out / "st" / "run.json").read_text())["resolved"].get("sync.cross_view")
    # 4. eval finds the app's declared image
    report["eval"] = main(["eval", f"runs={out}", f"out={out / 'table.csv'}", "metrics=worst_column_step",
                           "progress=false"])
    report["rows"] = (out / "table.csv").read_text().count("strip.png")
    # 5. the page's controls come from the schemas
    from syncframe_ui.controls import tab_controls

    tab = tab_controls("cylinder")
    report["controls"] = [c.key for c in tab.app_options] + [c.key for c in tab.sync_options["blend"]]
    # 6. SyncPipeline returns the app's declared image
    from syncframe import SyncPipeline
    from syncframe.models.offline import build_components

    pipe = SyncPipeline(**build_components("tiny"))
    image = pipe("a strip", app="cylinder", num_inference_steps=2, width=1024, height=512).images[0]
    report["pipeline"] = list(image.size)
    print("REPORT " + json.dumps(report))
''')


@pytest.fixture(scope="module")
def plugin_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    package = root / "my_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, code in FILES.items():
        (package / f"{name}.py").write_text(code)
    dist = root / "my_package-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-package\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[syncframe.plugins]\n" + "".join(f"{name} = my_package.{name}\n" for name in FILES))
    (root / "driver.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(root / "driver.py"), str(root / "runs")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(line[len("REPORT "):]), done.stderr


def test_a_method_and_a_family_are_one_file_each(plugin_report):
    report, _ = plugin_report
    assert report["blend"] == 0 and report["family"] == "sd-fast"
    assert report["resolved"]["steps"] == 3 and report["resolved"]["guidance"] == 2.0  # the family's defaults


def test_a_trajectory_method_asks_the_space_for_its_canvas(plugin_report):
    report, stderr = plugin_report
    assert report["tiles"] == 0 and report["tiles_refused"] == 2
    assert "sync=tiles cuts a canvas of latents into whole windows; app=mesh has none" in stderr


def test_an_app_declares_its_facts_and_every_front_end_reads_them(plugin_report):
    report, _ = plugin_report
    assert report["synctweedies"] == 0 and report["cross_view"] == "neighbours"  # sync_defaults + its neighbours
    assert report["eval"] == 0 and report["rows"] == 3  # blend, tiles, synctweedies: each one strip.png
    assert "app.stride" in report["controls"] and "sync.weight" in report["controls"]
    assert report["pipeline"] == [1024, 512]
