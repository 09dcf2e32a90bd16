"""syncframe ui: the page through gradio_client (runs end to end on model=tiny, a painted layout
equal to its YAML equivalent bit for bit, Cancel leaves nothing, a bad value gets the CLI's line,
one model kept loaded) and in real Chromium (type, Generate, the image and the 360° viewer)."""
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

gr = pytest.importorskip("gradio", reason="the ui extra is not installed (pip install -e '.[ui]')")
from gradio_client import Client, handle_file  # noqa: E402

from syncframe.config import resolve  # noqa: E402
from syncframe.errors import ConfigError  # noqa: E402
from syncframe_ui.app import build_app  # noqa: E402
from syncframe_ui.controls import override, tab_controls  # noqa: E402
from syncframe_ui.painting import PALETTE, labels_from_layers, region_prompts  # noqa: E402
from syncframe_ui.runner import Models  # noqa: E402

BASE = ["model=tiny", "steps=2"]
REQUIRED = os.environ.get("SYNCFRAME_REQUIRE_BROWSER") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-outputs")
    models = Models()
    demo = build_app(BASE, root, models=models)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, allowed_paths=[str(root)],
                quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield {"url": f"http://127.0.0.1:{port}/", "client": client, "root": root, "models": models}
    demo.close()


def arguments(client, app: str, **by_label) -> list:
    """The endpoint's positional values: every control at its default, the named ones changed."""
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"][f"/generate_{app}"]["parameters"]
    labels = [p["label"] for p in params]
    unknown = set(by_label) - set(labels)
    assert not unknown, unknown
    return [by_label.get(p["label"], None if p["component"] == "Imageeditor" else p.get("parameter_default"))
            for p in params]


def label(key: str) -> str:
    return key.replace("_", " ")


def run_folders(root: Path, app: str) -> list[Path]:
    return sorted(p for p in (root / app).glob("*")) if (root / app).is_dir() else []


def test_controls_come_from_the_schema_and_changed_values_become_overrides():
    tab = tab_controls("mesh", BASE)
    keys = {c.key for c in [*tab.main, *tab.inputs, *tab.app_options, *tab.more]}
    assert {"prompt", "seed", "steps", "mesh", "app.texture_size", "guidance"} <= keys  # the app's options too
    assert "sync.weight" in {c.key for c in tab.sync_options["syncdiffusion"]}
    steps = next(c for c in tab.main if c.key == "steps")
    assert steps.default == 2 and override(steps, 2.0) is None and override(steps, 5.0) == "steps=5"
    mesh = next(c for c in tab.inputs if c.key == "mesh")
    assert mesh.kind == "file"


def test_a_panorama_end_to_end_with_previews_files_and_the_command(server):
    client, root = server["client"], server["root"]
    job = client.submit(*arguments(client, "panorama", width=768, prompt="a red barn"), api_name="/generate_panorama")
    outputs = list(job)
    status, _, image, _, files, command = job.result()
    assert status.startswith("done in") and Path(image).name == "panorama.png"
    assert Image.open(image).size == (768, 512)
    assert any("step 1 / 2" in str(o[0]) for o in outputs)  # a preview came before the result
    assert {Path(f).name for f in files} >= {"panorama.png", "config.yaml", "run.json"}
    assert command == "syncframe run app=panorama model=tiny steps=2 prompt='a red barn' width=768"
    (folder,) = run_folders(root, "panorama")
    ran = yaml.safe_load((folder / "config.yaml").read_text())
    args = command.split(" ", 2)[2]
    import shlex

    assert resolve(shlex.split(args))["prompt"] == ran["prompt"] == "a red barn"
    assert ran["width"] == 768 and ran["steps"] == 2
    shutil.rmtree(folder)


def test_a_360_run_end_to_end(server):
    client, root = server["client"], server["root"]
    status, *_, files, command = client.predict(*arguments(client, "panorama360", width=256, height=128),
                                                api_name="/generate_panorama360")
    assert status.startswith("done in") and "width=256 height=128" in command
    assert {"equirect.png", "viewer.html"} <= {Path(f).name for f in files}
    for folder in run_folders(root, "panorama360"):
        shutil.rmtree(folder)


def painted(width: int = 1024, height: int = 683) -> tuple[np.ndarray, np.ndarray]:
    """A layer with a red left third and a blue right third (soft edges, as a brush paints), and
    the label image it should become."""
    layer = np.zeros((height, width, 4), np.uint8)
    layer[:, : width // 3] = (*PALETTE["red"], 255)
    layer[:, 2 * width // 3:] = (*PALETTE["blue"], 255)
    layer[:, width // 3: width // 3 + 2] = (*PALETTE["red"], 90)  # a soft brush edge: under half opaque
    labels = np.zeros((height, width, 3), np.uint8)
    labels[:, : width // 3] = PALETTE["red"]
    labels[:, 2 * width // 3:] = PALETTE["blue"]
    return layer, labels


def test_painted_layers_become_the_label_image_and_prompts_in_its_order():
    layer, labels = painted()
    assert (labels_from_layers([layer]) == labels).all()
    # regions= reads colours by code: blue (0,130,200) before red (230,25,75).
    assert region_prompts(labels, {"red": "a red barn", "blue": "a blue lake"}) == ["a blue lake", "a red barn"]
    with pytest.raises(ConfigError, match="the red region has no prompt"):
        region_prompts(labels, {"blue": "a lake"})


def test_a_painted_layout_equals_its_yaml_equivalent_bit_for_bit(server, tmp_path):
    client, root = server["client"], server["root"]
    layer, labels = painted()
    Image.fromarray(layer).save(tmp_path / "layer.png")
    Image.fromarray(np.full((683, 1024, 3), 48, np.uint8)).save(tmp_path / "background.png")  # 768x512's aspect
    editor = {"background": handle_file(str(tmp_path / "background.png")),
              "layers": [handle_file(str(tmp_path / "layer.png"))], "composite": None, "id": None}
    values = arguments(client, "panorama", width=768, **{"use the painted layout (regions=)": True, "layout": editor,
                                                          "red region prompt": "a red barn",
                                                          "blue region prompt": "a blue lake"})
    status, _, image, *_ = client.predict(*values, api_name="/generate_panorama")
    assert status.startswith("done in")
    Image.fromarray(labels).save(tmp_path / "labels.png")
    (tmp_path / "layout.yaml").write_text(yaml.safe_dump({
        "app": "panorama", "model": "tiny", "steps": 2, "width": 768, "regions": str(tmp_path / "labels.png"),
        "regions.prompts": ["a blue lake", "a red barn"]}))
    from syncframe.cli import main

    assert main(["run", "--config", str(tmp_path / "layout.yaml"), f"out={tmp_path / 'cli'}", "progress=false"]) == 0
    ours = np.asarray(Image.open(image))
    theirs = np.asarray(Image.open(tmp_path / "cli" / "panorama.png"))
    assert (ours == theirs).all()
    for folder in run_folders(root, "panorama"):
        shutil.rmtree(folder)


def test_cancel_stops_the_run_and_leaves_no_folder(server):
    client, root = server["client"], server["root"]
    job = client.submit(*arguments(client, "panorama", width=768, steps=200), api_name="/generate_panorama")
    deadline = time.time() + 120
    while time.time() < deadline and not any("step" in str(o[0]) for o in job.outputs()):
        time.sleep(0.1)
    assert any("step" in str(o[0]) for o in job.outputs()), "no preview came"
    job.cancel()
    deadline = time.time() + 60
    while time.time() < deadline and (run_folders(root, "panorama") or server["models"].lock.locked()):
        time.sleep(0.2)
    assert run_folders(root, "panorama") == []  # neither a folder nor its .partial
    assert not server["models"].lock.locked()  # the worker stopped


def test_a_bad_value_gets_the_command_lines_message(server):
    client = server["client"]
    from syncframe.pipeline import prepare

    with pytest.raises(ConfigError) as cli:  # what `syncframe run app=panorama ... width=769` says
        prepare(resolve(["app=panorama", *BASE, "width=769"]))
    line = str(cli.value)
    with pytest.raises(Exception) as page:
        client.predict(*arguments(client, "panorama", width=769), api_name="/generate_panorama")
    assert line in str(page.value)
    with pytest.raises(ConfigError) as cli:
        resolve(["app=panorama", *BASE, "sync.weight=5"])
    with pytest.raises(Exception) as page:  # typed under More options, refused as on the command line
        client.predict(*arguments(client, "panorama", **{"more overrides": "sync.weight=5"}),
                       api_name="/generate_panorama")
    assert str(cli.value) in str(page.value) and "\n" not in str(cli.value)


def test_one_model_stays_loaded_and_another_replaces_it(server):
    client, models = server["client"], server["models"]
    before = models.loads
    for seed in (1, 2):
        client.predict(*arguments(client, "panorama", width=768, seed=seed), api_name="/generate_panorama")
    assert models.loads == before + (0 if before else 1)  # the same model: loaded at most once
    key = models.key
    client.predict(*arguments(client, "panorama", width=768, model="tiny-sdxl"), api_name="/generate_panorama")
    assert models.key != key and "tiny-sdxl" in models.key and models.loads == before + (1 if before else 2)
    for folder in run_folders(server["root"], "panorama"):
        shutil.rmtree(folder)


# -- in Chromium ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        reason = "Chromium and chromedriver are not installed (Debian: apt install chromium chromium-driver)"
        pytest.fail(f"SYNCFRAME_REQUIRE_BROWSER=1 but {reason}") if REQUIRED else pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1800"]:
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


def test_the_page_in_chromium_types_generates_and_shows_the_image_and_the_360_viewer(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 180)
    browser.get(server["url"])
    prompt = wait.until(seen.element_to_be_clickable((By.CSS_SELECTOR, "#panorama-opt-prompt textarea")))
    prompt.clear()
    prompt.send_keys("<b>a hostile</b> \"prompt\"")
    width = browser.find_element(By.CSS_SELECTOR, "#panorama-opt-width textarea, #panorama-opt-width input")
    width.clear()
    width.send_keys("768")
    browser.find_element(By.CSS_SELECTOR, "#generate-panorama").click()
    result = wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, "#result-panorama img")))
    wait.until(lambda _: result.get_attribute("naturalWidth") not in (None, "0"))
    assert int(result.get_attribute("naturalWidth")) == 768
    command = browser.find_element(By.CSS_SELECTOR, "#command-panorama textarea").get_attribute("value")
    assert "'<b>a hostile</b> \"prompt\"'" in command  # shown as typed, quoted for a shell
    assert not browser.find_elements(By.TAG_NAME, "b")  # the typed markup stayed text everywhere
    browser.save_screenshot(str(tmp_path / "panorama.png"))

    # An error that echoes what was typed shows it as text in the page's alert, not as an element.
    browser.find_element(By.XPATH, "//*[@id='tab-panorama']//button[contains(normalize-space(), 'More options')]").click()
    more = wait.until(seen.element_to_be_clickable((By.CSS_SELECTOR, "#panorama-opt-more textarea")))
    more.send_keys("steps='<img src=x id=inj>'")
    browser.find_element(By.CSS_SELECTOR, "#generate-panorama").click()
    wait.until(lambda b: "id=inj>" in b.find_element(By.TAG_NAME, "body").text)  # the alert, as text
    assert not browser.find_elements(By.ID, "inj")
    more.clear()

    browser.find_element(By.XPATH, "//button[@role='tab' and normalize-space()='panorama360']").click()
    prompt = wait.until(seen.element_to_be_clickable((By.CSS_SELECTOR, "#panorama360-opt-prompt textarea")))
    prompt.clear()
    # Reaches the viewer's title and inline script, inside srcdoc: quotes, </script>, <!-- and markup.
    prompt.send_keys('"\'></iframe><b>out of the frame</b></script><script>document.body.dataset.pwned=1</script><!--')
    for key, value in (("width", "256"), ("height", "128")):
        box = wait.until(seen.element_to_be_clickable(
            (By.CSS_SELECTOR, f"#panorama360-opt-{key} textarea, #panorama360-opt-{key} input")))
        box.clear()
        box.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "#generate-panorama360").click()
    frame = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#viewer-panorama360 iframe")))
    browser.switch_to.frame(frame)
    try:
        drawn = wait.until(lambda b: b.execute_script("return document.body && document.body.dataset.rendered"))
        assert drawn
        assert browser.find_elements(By.TAG_NAME, "canvas") and not browser.find_elements(By.TAG_NAME, "b")
        assert browser.execute_script("return document.body.dataset.pwned") is None
        assert "</script>" in browser.execute_script("return document.title")  # the viewer's title, as text
    finally:
        browser.switch_to.default_content()
    assert not browser.find_elements(By.TAG_NAME, "b") and len(browser.find_elements(By.TAG_NAME, "iframe")) == 1
    assert browser.execute_script("return document.body.dataset.pwned") is None
    browser.save_screenshot(str(tmp_path / "panorama360.png"))
    for app in ("panorama", "panorama360"):
        for folder in run_folders(server["root"], app):
            shutil.rmtree(folder)


def test_the_command_line_refuses_bad_options_before_the_page_starts(capsys, monkeypatch):
    from syncframe.cli import main

    monkeypatch.setattr("syncframe_ui.launch", lambda *a, **k: pytest.fail("the page must not start"))
    assert main(["ui", "--help"]) == 0 and "--share" in capsys.readouterr().out
    assert main(["ui", "--port", "http"]) == 2
    assert "syncframe ui: --port='http': expected an integer in [1, 65535]" in capsys.readouterr().err
    assert main(["ui", "steps=0"]) == 2  # the defaults are checked as a run's are
    assert "steps=0" in capsys.readouterr().err
    assert main(["ui", "--bogus"]) == 2 and "unknown option '--bogus'" in capsys.readouterr().err


def test_a_public_address_is_warned_about(capsys, monkeypatch):
    from syncframe.cli import main

    started = {}
    monkeypatch.setattr("syncframe_ui.launch", lambda *a, **k: started.update(args=a))
    assert main(["ui", "--host", "0.0.0.0", "model=tiny"]) == 0
    assert "warning: the page will be reachable at 0.0.0.0" in capsys.readouterr().err
    assert started["args"][:2] == (["model=tiny"], "0.0.0.0")


def test_previews_keep_to_their_budget():
    """The previewer's own decoder only while previews cost at most PREVIEW_BUDGET of the run;
    the first preview and the rest are the free linear map."""
    from types import SimpleNamespace

    from syncframe_ui.runner import PREVIEW_BUDGET, Job

    class SlowDecoder:
        def __init__(self):
            self.cheap = []

        def __call__(self, latents, cheap=False):
            self.cheap.append(cheap)
            time.sleep(0 if cheap else 0.05)

    decoder, job = SlowDecoder(), Job({}, None, preview_every=1)
    job.timings["loaded"] = start = time.perf_counter()
    for done in range(1, 41):
        time.sleep(0.02)  # a step of the loop
        job._step(SimpleNamespace(done=done, total=40, canonical=lambda: None), decoder)
    elapsed = time.perf_counter() - start
    assert decoder.cheap[0] and not all(decoder.cheap[1:]) and any(decoder.cheap[1:])
    assert decoder.cheap.count(False) * 0.05 <= PREVIEW_BUDGET * elapsed + 0.05
    assert job.events.qsize() == 40  # a preview every step, whichever decoder made it


def test_outpainting_from_the_page_with_an_uploaded_photo_and_mask(server, tmp_path):
    """init= and keep= upload like any file; the run keeps the mask's white part (the kept latents
    of the page's run and of the same command are the same bits)."""
    from test_init import photo

    client, root = server["client"], server["root"]
    photo(768, 512).save(tmp_path / "photo.png")
    mask = np.zeros((512, 768), np.uint8)
    mask[:, :256] = 255
    Image.fromarray(mask).save(tmp_path / "keep.png")
    values = arguments(client, "panorama", width=768, **{"init": handle_file(str(tmp_path / "photo.png")),
                                                          "keep": handle_file(str(tmp_path / "keep.png")),
                                                          "keep.resample": 1})
    status, _, image, _, files, command = client.predict(*values, api_name="/generate_panorama")
    assert status.startswith("done in"), status
    assert "keep.path=" not in command and "keep=" in command and "keep.resample=1" in command
    (folder,) = run_folders(root, "panorama")
    ran = yaml.safe_load((folder / "config.yaml").read_text())
    assert Path(ran["keep"]["path"]).parent.parent.name == "ui-inputs" and ran["keep"]["resample"] == 1
    from syncframe.cli import main

    assert main(["run", "app=panorama", "model=tiny", "steps=2", "width=768", f"init={tmp_path / 'photo.png'}",
                 f"keep={tmp_path / 'keep.png'}", "keep.resample=1", f"out={tmp_path / 'cli'}", "progress=false"]) == 0
    assert (np.asarray(Image.open(image)) == np.asarray(Image.open(tmp_path / "cli" / "panorama.png"))).all()
    shutil.rmtree(folder)


def test_tabs_show_keep_where_the_app_takes_it_and_the_photo_placement_on_the_360_tab():
    keys = {app: {c.key: c.kind for c in tab_controls(app, BASE).inputs} for app in ("panorama", "panorama360", "splats")}
    assert keys["panorama"] == {"image": "file", "image.x": "int", "image.y": "int", "keep": "file", "keep.blur": "float",
                                "keep.scheme": "choice", "keep.resample": "int"}
    assert {"image": "file", "image.yaw": "float", "image.pitch": "float", "image.fov": "float",
            "keep": "file"}.items() <= keys["panorama360"].items()
    assert "keep" not in keys["splats"]
    fov = next(c for c in tab_controls("panorama360", BASE).inputs if c.key == "image.fov")
    assert override(fov, 90.0) is None and override(fov, 75.0) == "image.fov=75.0"
