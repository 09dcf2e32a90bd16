"""The page before strangers: a visitor names no server path, lifts no guard, learns no server
path, stays under the operator's caps; errors are text; Ctrl-C and SIGTERM stop a real
``syncframe ui`` mid-run within seconds and leave no ``.partial``; a restarted server removes the
stale ones."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio", reason="the ui extra is not installed (pip install -e '.[ui]')")
from gradio_client import Client  # noqa: E402

from syncframe.config import resolve  # noqa: E402
from syncframe.errors import ConfigError  # noqa: E402
from syncframe.outputs import OWNER, remove_stale_partials  # noqa: E402
from syncframe_ui.app import Tab, as_html_text  # noqa: E402
from syncframe_ui.policy import ASSETS, PagePolicy, scrub  # noqa: E402

BASE = ["model=tiny", "steps=2"]


def check(app: str, overrides: list[str], root: Path, policy: PagePolicy = PagePolicy()) -> None:
    """What the page does with a visitor's overrides for ``app`` (the tab's defaults: BASE)."""
    tab = Tab(app, BASE, root, policy)
    policy.check(resolve([f"app={app}", *BASE, *overrides]), tab.defaults(), root)
    policy.check_size(resolve([f"app={app}", *BASE, *overrides, *policy.forced()]))


REFUSED = [
    ("panorama", ["out=/tmp/anywhere"], "out= cannot be set from the page"),
    ("panorama", ["out=runs/mine"], "out= cannot be set from the page"),
    ("panorama", ["device=cpu"], "device= cannot be set from the page"),
    ("panorama", ["max_views=100000000"], "max_views= cannot be set from the page"),
    ("panorama", ["max_memory_gb=100000"], "max_memory_gb= cannot be set from the page"),
    ("panorama", ["view_batch_size=4096"], "view_batch_size= cannot be set from the page"),
    ("mesh", ["mesh=assets/vase.obj", "app.unwrap_timeout=100000"], "app.unwrap_timeout= cannot be set"),
    ("upscale", ["image=/etc/hostname", "scale=1"], "image= names a server path"),
    ("mesh", ["mesh=/usr/share/some/mesh.obj"], "mesh= names a server path"),
    ("panorama", ["init=../../etc/shadow"], "init= names a server path"),
    ("panorama", ["init=~/secret.png"], "init= names a server path"),
    ("panorama", ["model=/srv/models/mine"], "model.name= names a server path"),
    ("panorama", ["model=someone/their-model"], "model.name= names a server path or a repository"),
    ("panorama", ["lora.path=/srv/lora.safetensors"], "lora.path= names a server path"),
    ("panorama", ["loras=[{path: /srv/a.safetensors}]"], "loras[0].path= names a server path"),
    ("panorama", ["width=32768", "height=4096"], "over this page's cap of 8.4 (syncframe ui --max-pixels)"),
    ("panorama", ["steps=500"], "steps=500 is over this page's cap of 100"),
]


@pytest.mark.parametrize("app, overrides, message", REFUSED, ids=[" ".join(o)[:50] for _, o, _ in REFUSED])
def test_a_visitor_names_no_server_path_and_lifts_no_guard(tmp_path, app, overrides, message):
    with pytest.raises(ConfigError) as refused:
        check(app, overrides, tmp_path)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_uploads_bundled_examples_presets_and_prompts_pass(tmp_path):
    upload = tmp_path / "ui-inputs" / "abc" / "photo.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"")
    check("panorama", [f"init={upload}", "prompt=a 50mm f/1.8 photo of ./the ~/sea", "model=tiny-sdxl"], tmp_path)
    check("mesh", [f"mesh={ASSETS / 'vase.obj'}", "negative_prompt=/etc/passwd"], tmp_path)
    check("panorama", ["steps=100", "width=4096", "height=2048"], tmp_path)  # exactly at the caps
    # A link inside the uploads folder that points out of it is a server path.
    (tmp_path / "ui-inputs" / "abc" / "link.png").symlink_to("/etc/hostname")
    with pytest.raises(ConfigError, match="init= names a server path"):
        check("panorama", [f"init={tmp_path / 'ui-inputs' / 'abc' / 'link.png'}"], tmp_path)
    # The operator's own defaults are theirs: never refused, and --trust-paths gives paths back.
    tab = Tab("panorama", [*BASE, "init=/srv/operator.png"], tmp_path)
    tab.policy.check(resolve(["app=panorama", *BASE, "init=/srv/operator.png"]), tab.defaults(), tmp_path)
    check("panorama", ["init=/srv/x.png"], tmp_path, PagePolicy(trust_paths=True))


def test_the_page_forces_its_views_cap_as_the_runs_own_guard(tmp_path):
    tab = Tab("panorama", BASE, tmp_path, PagePolicy(max_views=7))
    assert resolve(tab.policy.forced())["max_views"] == 7


def test_messages_lose_the_servers_paths_and_alerts_are_text(tmp_path):
    message = f"init='{tmp_path.resolve()}/ui-inputs/x.png' is not a readable image (cwd {Path.cwd()})"
    shown = scrub(message, tmp_path)
    assert str(tmp_path.resolve()) not in shown and str(Path.cwd()) not in shown
    assert "<outputs>/ui-inputs/x.png" in shown
    assert as_html_text("steps=<img src=x id=inj>: expected") == "steps=&lt;img src=x id=inj&gt;: expected"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A real ``syncframe ui`` process on a free port, with small caps; yields (url, root, process)."""
    root = tmp_path_factory.mktemp("page-outputs")
    # A stale claim from a killed server: a .partial whose owner process is gone.
    stale = root / "panorama" / "2026-01-01_00-00-00.partial"
    stale.mkdir(parents=True)
    (stale / OWNER).write_text(f"{socket.gethostname()} 999999 -")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "syncframe", "ui", "--port", str(port), "--outputs", str(root),
                                "--max-steps", "400", "--max-upload-mb", "1", "model=tiny", "steps=2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, process.communicate()
        try:
            client = Client(url, verbose=False)
            break
        except Exception:  # noqa: BLE001 - not up yet
            assert time.monotonic() < deadline, "the page never came up"
            time.sleep(0.5)
    yield {"url": url, "root": root, "process": process, "client": client, "stale": stale}
    if process.poll() is None:
        process.kill()
        process.communicate()


def arguments(client, app: str, **by_label) -> list:
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"][f"/generate_{app}"]["parameters"]
    return [by_label.get(p["label"], None if p["component"] == "Imageeditor" else p.get("parameter_default"))
            for p in params]


def test_a_restarted_page_removed_the_stale_partial_and_shows_its_limits(page):
    assert not page["stale"].exists()
    import urllib.request

    body = urllib.request.urlopen(page["url"], timeout=30).read().decode()
    assert "up to 400 steps" in body and "uploads up to 1 MB" in body


def test_the_page_refuses_server_paths_and_caps_and_writes_nothing(page, tmp_path):
    client, root = page["client"], page["root"]
    outside = tmp_path / "written-here"
    for more, message in ((f"out={outside}", "out= cannot be set from the page"),
                          ("init=/etc/hostname", "init= names a server path"),
                          ("width=32768 height=4096", "megapixels, over this page's cap"),
                          ("steps='<img src=x id=inj>'", "&lt;img src=x id=inj&gt;")):
        with pytest.raises(Exception) as refused:
            client.predict(*arguments(client, "panorama", **{"more overrides": more}), api_name="/generate_panorama")
        assert message in str(refused.value), str(refused.value)
        assert str(root) not in str(refused.value) and str(Path.cwd()) not in str(refused.value)
    assert not outside.exists() and not (root / "panorama").exists() or not list((root / "panorama").iterdir())


def test_uploads_over_the_cap_are_refused(page):
    import urllib.error
    import urllib.request

    boundary = "syncframe"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + b"\0" * (2 * 1024 * 1024) + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(page["url"] + "gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413


@pytest.mark.slow
def test_ctrl_c_stops_the_page_mid_run_within_seconds_and_leaves_no_partial(page):
    client, root, process = page["client"], page["root"], page["process"]
    job = client.submit(*arguments(client, "panorama", width=1536, steps=400), api_name="/generate_panorama")
    deadline = time.monotonic() + 120
    while not list(root.glob("panorama/*.partial")):
        assert time.monotonic() < deadline and not job.done(), "the run never started"
        time.sleep(0.1)
    time.sleep(1.0)  # inside the sampling loop
    process.send_signal(signal.SIGINT)
    clock = time.monotonic()
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - clock < 10, err
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert not list(root.glob("panorama/*")), list(root.glob("panorama/*"))  # no folder, no .partial


def test_the_command_line_checks_the_pages_options_before_it_starts(capsys, monkeypatch, tmp_path):
    from syncframe.cli import main

    monkeypatch.setattr("syncframe_ui.launch", lambda *a, **k: pytest.fail("the page must not start"))
    a_file = tmp_path / "file"
    a_file.write_text("")
    for args, message in ((["--auth", "nopassword"], "--auth expects user:password"),
                          (["--outputs", str(a_file)], "is a file; give a folder"),
                          (["--max-steps", "0"], "--max-steps=0: expected an integer in [1, 1000]"),
                          (["--max-upload-mb", "lots"], "--max-upload-mb='lots': expected an integer"),
                          (["--outputs", "/proc/no/such"], "cannot be made"),
                          (["--outputs", str(tmp_path), "--host", "garbage.invalid"], "does not resolve"),
                          (["--outputs", str(tmp_path), "--host", "256.1.1.1"], "does not resolve"),
                          (["--outputs", str(tmp_path), "--host", "192.0.2.1"], "is not an address of this machine")):
        assert main(["ui", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    started = {}
    monkeypatch.setattr("syncframe_ui.launch", lambda *a, **k: started.update(k))
    assert main(["ui", "--auth", "ann:s3cret:x", "--max-views", "9", "--trust-paths", "--outputs", str(tmp_path)]) == 0
    assert started["auth"] == ("ann", "s3cret:x") and started["policy"].max_views == 9
    assert started["policy"].trust_paths and "--trust-paths: the page's visitors may read" in capsys.readouterr().err


def test_stale_partials_are_removed_and_live_ones_kept(tmp_path):
    live = tmp_path / "panorama" / "live.partial"
    gone = tmp_path / "panorama" / "gone.partial"
    for folder, pid in ((live, os.getpid()), (gone, 999999)):
        folder.mkdir(parents=True)
        (folder / OWNER).write_text(f"{socket.gethostname()} {pid} -")
    assert remove_stale_partials(tmp_path) == [gone] and live.exists()
    assert remove_stale_partials(tmp_path, mine=True) == [live] and not live.exists()


def test_a_port_in_use_is_one_line(capsys, tmp_path):
    from syncframe.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", "--port", str(port), "--outputs", str(tmp_path), "model=tiny"]) == 2
    err = capsys.readouterr().err
    assert f"syncframe ui: cannot serve at 127.0.0.1:{port}" in err and "Traceback" not in err, err
