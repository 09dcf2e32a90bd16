"""syncframe eval: each metric on images with a known answer, grouping by the config keys that
differ, the CSV/Markdown/plots written, unreadable runs listed, bad arguments one line."""
import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from syncframe.errors import ConfigError
from syncframe.images import from_pil
from syncframe.evaluate import eval_options, evaluate, image_metrics, intra_pairs
from syncframe.models.perceptual import StyleLoss, load_lpips
from conftest import need_weight

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture(scope="module")
def nets():
    need_weight("lpips/vgg.safetensors", "LPIPS VGG weights (Intra-LPIPS and Intra-Style-L)")
    lpips = load_lpips("vgg", None).eval()
    return lpips, StyleLoss(lpips)


def tiled(width: int = 768) -> torch.Tensor:
    """One 128² photograph crop repeated across the width, in [-1, 1]."""
    photo = np.asarray(Image.open(ASSETS / "landscape.png").convert("RGB").crop((0, 0, 128, 128)))
    tile = torch.from_numpy(photo.copy()).permute(2, 0, 1).float() / 127.5 - 1
    return tile.repeat(1, 1, width // 128)


def test_identical_windows_score_zero_and_unrelated_ones_more(nets):
    lpips, style = nets
    same = image_metrics(tiled(), ["intra_lpips", "intra_style"], lpips, style, crop=128)
    assert same["intra_lpips"] == pytest.approx(0, abs=1e-6) and same["intra_style"] == pytest.approx(0, abs=1e-9)
    mixed = tiled().clone()
    mixed[:, :, 384:] = torch.flip(mixed[:, :, 384:], dims=[0]) * -1  # another picture on the right half
    other = image_metrics(mixed, ["intra_lpips", "intra_style"], lpips, style, crop=128)
    assert other["intra_lpips"] > 0.05 and other["intra_style"] > 0


def test_the_pairs_are_the_papers_fifteen_at_512_by_3072():
    first, second = intra_pairs(torch.zeros(3, 512, 3072), 512)
    assert first.shape == (15, 3, 512, 512) == second.shape


def write_run(folder: Path, sync: str, weight: float, seed: int, image: torch.Tensor, prompt: str = "x") -> None:
    folder.mkdir(parents=True)
    cfg = {"app": {"name": "panorama", "stride": 8}, "sync": {"name": sync, "weight": weight}, "seed": seed,
           "out": str(folder), "prompt": prompt}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "run.json").write_text('{"metrics": {"window_border_seam": 1.5}}')
    pixels = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(folder / "panorama.png")


def test_eval_groups_by_what_differs_and_writes_table_plots_and_problems(nets, tmp_path):
    image = tiled()
    for i, (sync, weight) in enumerate([("multidiffusion", 0), ("multidiffusion", 0), ("syncdiffusion", 20),
                                        ("syncdiffusion", 10)]):
        write_run(tmp_path / "runs" / str(i), sync, weight, seed=i, image=image)
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "config.yaml").write_text("app: [unclosed\n")
    done = evaluate(eval_options(tmp_path / "runs", tmp_path / "table.csv", ["intra_lpips", "worst_column_step"],
                                 crop=128, progress=False))
    assert done["keys"] == ["sync", "sync.weight"]  # seed and out differ too, but never group
    assert [e["n"] for e in done["table"]] == [2, 1, 1]
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert len(rows) == 4 and float(rows[0]["intra_lpips"]) == pytest.approx(0, abs=1e-5)
    assert rows[0]["window_border_seam"] == "1.5"  # run.json's metrics come along
    text = (tmp_path / "table.md").read_text()
    assert "| sync | sync.weight | n | intra_lpips |" in text and "broken" in text
    assert {p.name for p in done["plots"]} == {"table_intra_lpips.png", "table_worst_column_step.png",
                                               "table_window_border_seam.png"}
    assert all(Image.open(p).size[0] > 100 for p in done["plots"])


def test_keys_an_earlier_key_decides_do_not_group():
    from syncframe.evaluate import Item, grouping_keys

    items = [Item(Path(f"{i}.png"), {"sync": s, "sync.loss": loss, "seed": i, "prompt": f"p{i}"})
             for i, (s, loss) in enumerate([("multidiffusion", None), ("syncdiffusion", "lpips")] * 2)]
    assert grouping_keys(items) == ["sync"]  # sync.loss follows from sync; seeds and prompts never group
    items.append(Item(Path("x.png"), {"sync": "syncdiffusion", "sync.loss": "style"}))
    assert grouping_keys(items) == ["sync", "sync.loss"]


def test_a_sweeps_own_keys_group_before_what_they_implied(tmp_path):
    from syncframe.evaluate import find_items, grouping_keys

    # "attention" sorts before "sync" and follows from it: alone, it would be the group's only key
    for name, sync, attention in [("sync=none", "none", "off"), ("sync=synctweedies", "synctweedies", "on")]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(f"app: {{name: panorama}}\nsync: {{name: {sync}}}\n"
                                            f"attention: {{cross_view: {attention}}}\n")
        Image.new("RGB", (64, 32)).save(folder / "panorama.png")
    items, _ = find_items(tmp_path)
    assert grouping_keys(items) == ["attention.cross_view"]
    (tmp_path / "multirun.csv").write_text("folder,overrides,status\nsync=none,sync=none model=tiny,ok\n"
                                           "sync=synctweedies,sync=synctweedies model=tiny,ok\n")
    items, _ = find_items(tmp_path)
    assert grouping_keys(items) == ["sync"]


@pytest.mark.parametrize("kwargs,words", [
    (dict(runs="nowhere"), "no such folder"),
    (dict(metrics=["fud"]), "metrics=fud: unknown"),
    (dict(out="table.txt"), "use out=<name>.csv"),
])
def test_bad_arguments_are_one_line(tmp_path, monkeypatch, kwargs, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=words):
        evaluate(eval_options(**{"runs": "empty", "out": "table.csv", **kwargs}))


def bomb_png(path: Path, width: int, height: int) -> None:
    """A PNG whose header says ``width`` x ``height`` (and whose pixels are not there): what a
    decompression bomb looks like to a reader that trusts the header."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("case,words", [
    ("run.json: []", "its run.json holds a list, not the mapping syncframe writes"),
    ("run.json: null", "its run.json holds null"),
    ("run.json: {bad", "its run.json is not readable (JSONDecodeError"),
    ("config.yaml: - a", "its config.yaml holds a list"),
    ("image: 60000x60000", "is 60000x60000, above 268435456 pixels"),
    ("image: 1x1", "is 1x1 pixels: too small to measure"),
    ("out: a folder", "is a folder; the table is a file"),
    ("out: under a file", "is a file, so the table cannot go under it"),
])
def test_a_run_folder_or_table_that_cannot_be_used_is_one_line(tmp_path, case, words):
    """Each one line naming the folder and what is wrong in it, never a traceback or "no run folders"."""
    folder = tmp_path / "runs" / "r0"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("app: {name: panorama}\nsync: {name: none}\n")
    Image.new("RGB", (256, 64)).save(folder / "panorama.png")
    what, _, value = case.partition(": ")
    out = tmp_path / "t.csv"
    if what in ("run.json", "config.yaml"):
        (folder / what).write_text(value)
    elif what == "image":
        width, height = map(int, value.split("x"))
        if width > 1000:
            bomb_png(folder / "panorama.png", width, height)
        else:
            Image.new("RGB", (width, height)).save(folder / "panorama.png")
    elif value == "a folder":
        out.mkdir()
    else:
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "t.csv"
    with pytest.raises(ConfigError, match=re.escape(words)):
        evaluate(eval_options(tmp_path / "runs", out, ["worst_column_step"], progress=False))


def test_the_command_line(tmp_path, capsys):
    from syncframe.cli import main

    write_run(tmp_path / "runs" / "0", "none", 0, 0, tiled())
    assert main(["eval", f"runs={tmp_path / 'runs'}", f"out={tmp_path / 't.csv'}", "metrics=worst_column_step",
                 "progress=false"]) == 0
    assert (tmp_path / "t.csv").is_file() and "wrote" in capsys.readouterr().out
    assert main(["eval", "runs=/no/such/place", f"out={tmp_path / 't.csv'}"]) == 2


def test_without_lpips_weights_the_other_metrics_run_and_eval_names_its_own_key(tmp_path, monkeypatch):
    import syncframe.models.perceptual as perceptual

    monkeypatch.setattr(perceptual, "find_weight", lambda name: None)  # a machine with no LPIPS weights
    write_run(tmp_path / "runs" / "0", "none", 0, 0, tiled())
    done = evaluate(eval_options(tmp_path / "runs", tmp_path / "table.csv", crop=128, progress=False))
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert "intra_lpips" not in rows[0] and "worst_column_step" in rows[0]  # the default metrics, less LPIPS
    assert "intra_lpips and intra_style skipped" in (tmp_path / "table.md").read_text() and done["table"]
    with pytest.raises(ConfigError) as named:  # asked for by name: the one error line, with eval's own key
        evaluate(eval_options(tmp_path / "runs", tmp_path / "t2.csv", ["intra_lpips"], crop=128, progress=False))
    assert "pass lpips_weights=<file" in str(named.value) and "sync.lpips_weights" not in str(named.value)


# -- against a reference set: FID, KID, GIQA, CLIP-S; 360° runs --------------------------------------------------


class TinyFeatures(torch.nn.Module):
    """A small random feature network over uint8 images (what torchmetrics' FID/KID accept as
    ``feature=``): the same features reach torchmetrics and syncframe."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
        self.num_features = 32

    @torch.no_grad()
    def forward(self, images):
        return self.net(images.float() / 255)


def noise_images(count: int, size: int, seed: int, shift: float = 0.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(3, size, size, generator=g) * 1.6 - 0.8 + shift).clamp(-1, 1) for _ in range(count)]


def save_png(path: Path, image: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()).save(path)


def as_uint8(paths) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy()).permute(2, 0, 1)
                        for p in paths])


def test_fid_of_a_set_against_itself_is_zero_and_giqa_is_its_closed_form():
    from syncframe.set_metrics import fid, knn_giqa

    features = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    assert fid(features, features) == pytest.approx(0, abs=1e-4)
    assert fid(features, features + 1.0) == pytest.approx(8.0, rel=1e-3)  # a shift of 1 per dimension: |mu|^2
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [5.0, 5.0]])
    fake = torch.tensor([[0.0, 1.0]])  # L1 distances 1, 2, 2, 9
    assert knn_giqa(fake, real, k=2).item() == pytest.approx(1 / 1 + 1 / 2)
    assert knn_giqa(fake, real, k=8).item() == pytest.approx(1 + 1 / 2 + 1 / 2 + 1 / 9)  # K above N: all of them


def test_fid_and_kid_equal_torchmetrics_on_the_same_features(tmp_path):
    """Crops the size of the images are the images themselves, so torchmetrics sees the same pixels."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    for i, image in enumerate(noise_images(8, 64, seed=1)):
        save_png(tmp_path / "ref" / f"{i}.png", image)
    for i, image in enumerate(noise_images(6, 64, seed=2, shift=0.3)):
        write_run(tmp_path / "runs" / str(i), "multidiffusion", 0, seed=i, image=image)
    net = TinyFeatures()
    done = evaluate(eval_options(tmp_path / "runs", tmp_path / "t.csv", ["fid", "kid", "giqa"], crop=64,
                                 progress=False, reference=str(tmp_path / "ref")), feature_net=net)
    real = as_uint8(sorted((tmp_path / "ref").glob("*.png")))
    fake = as_uint8(sorted((tmp_path / "runs").glob("*/panorama.png")))
    theirs = FrechetInceptionDistance(feature=net)
    theirs.update(real, real=True)
    theirs.update(fake, real=False)
    (entry,) = done["table"]
    assert entry["fid"][0] == pytest.approx(float(theirs.compute()), rel=1e-5)
    their_kid = KernelInceptionDistance(feature=net, subsets=3, subset_size=6)  # all of the fakes: any subset
    their_kid.update(real[:6], real=True)  # equal sizes, so every subset is the whole set
    their_kid.update(fake, real=False)
    from syncframe.set_metrics import kid

    ours = kid(net(real[:6]).float(), net(fake).float(), subsets=3)
    assert ours[0] == pytest.approx(float(their_kid.compute()[0]), rel=1e-5)
    assert entry["kid"][0] > 0 and entry["giqa"][0] > 0
    assert "| n | giqa | window_border_seam | fid | kid |" in (tmp_path / "t.md").read_text()


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A small random CLIP (with the real tokenizer) saved as a folder, as metrics.clip= takes."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(need_weight("clip_tokenizer", "the CLIP tokenizer"))
    config = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                         num_hidden_layers=2, vocab_size=49408, max_position_embeddings=77),
                        vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                           num_hidden_layers=2, image_size=64, patch_size=16), projection_dim=16)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clip")
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}),
                  tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_clip_score_equals_torchmetrics_clipscore_with_the_same_weights(tiny_clip, tmp_path):
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    images = noise_images(3, 64, seed=3)
    prompts = ["a photo of a mountain", "a red car", "a bowl of soup"]
    for i, image in enumerate(images):
        write_run(tmp_path / "runs" / str(i), "multidiffusion", 0, seed=i, image=image, prompt=prompts[i])
    done = evaluate(eval_options(tmp_path / "runs", tmp_path / "t.csv", ["clip_score"], crop=64, progress=False,
                                 clip=str(tiny_clip)))
    class Tensors(torch.nn.Module):
        """torchmetrics 1.9 reads embeddings as tensors; transformers 5 wraps them (same weights)."""

        def __init__(self, model):
            super().__init__()
            self.model, self.config = model, model.config

        def get_image_features(self, *args, **kwargs):
            return self.model.get_image_features(*args, **kwargs).pooler_output

        def get_text_features(self, *args, **kwargs):
            return self.model.get_text_features(*args, **kwargs).pooler_output

    theirs = CLIPScore(model_name_or_path=lambda: (Tensors(CLIPModel.from_pretrained(tiny_clip)),
                                                   CLIPProcessor.from_pretrained(tiny_clip)))
    for row in done["rows"]:
        theirs.reset()
        theirs.update(as_uint8([row["image"]]), [row["prompt"]])
        assert row["clip_score"] == pytest.approx(float(theirs.compute()), rel=1e-5)
    assert len({round(r["clip_score"], 6) for r in done["rows"]}) == 3  # it does depend on the prompt and image


def test_a_360_run_is_measured_on_perspective_views_and_its_seams(nets, tmp_path):
    """A map constant along longitude has six identical horizon views (Intra-LPIPS 0) and no seam;
    a photograph stretched over the sphere has differing views and a seam where its ends meet."""
    lpips, style = nets
    rows = torch.linspace(-1, 1, 128)[:, None].expand(128, 256)
    uniform = torch.stack([rows, -rows, rows * 0.5])
    same = image_metrics(uniform, ["intra_lpips", "equirect_seam", "pole_spread"], lpips, style, crop=64,
                         equirect=True)
    assert same["intra_lpips"] == pytest.approx(0, abs=1e-5) and same["pole_spread"] == pytest.approx(0, abs=1e-6)
    photo = from_pil(Image.open(ASSETS / "landscape.png").convert("RGB").resize((256, 128)))
    varied = image_metrics(photo, ["intra_lpips", "equirect_seam"], lpips, style, crop=64, equirect=True)
    assert varied["intra_lpips"] > 0.05
    assert varied["equirect_seam"] > same["equirect_seam"] + 0.5  # the photograph does not wrap around
    folder = tmp_path / "runs" / "0"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"app": {"name": "panorama360"}, "prompt": "x"}))
    save_png(folder / "equirect.png", photo)
    done = evaluate(eval_options(tmp_path / "runs", tmp_path / "t.csv",
                                 ["intra_lpips", "equirect_seam", "worst_column_step"], crop=64, progress=False))
    row = done["rows"][0]
    assert row["intra_lpips"] == pytest.approx(varied["intra_lpips"], abs=0.02) and "worst_column_step" not in row


def test_reference_make_generates_single_windows_of_the_runs_prompts(tiny_denoiser, tmp_path):
    for i, prompt in enumerate(["a red barn", "a blue lake"]):
        folder = tmp_path / "runs" / str(i)
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(
            {"app": {"name": "panorama"}, "model": {"name": "tiny"}, "prompt": prompt, "steps": 2, "seed": i}))
        save_png(folder / "panorama.png", noise_images(1, 64, seed=i)[0].repeat(1, 1, 3))
    done = evaluate(eval_options(tmp_path / "runs", tmp_path / "t.csv", ["fid", "giqa"], crop=64, progress=False,
                                 reference=str(tmp_path / "ref"), make=4), denoiser=tiny_denoiser,
                    feature_net=TinyFeatures())
    made = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert made == ["00_00000.png", "00_00001.png", "01_00000.png", "01_00001.png"]
    assert all(Image.open(tmp_path / "ref" / name).size == (512, 512) for name in made)  # tiny's window
    assert done["table"][0]["fid"][0] > 0


@pytest.mark.parametrize("kwargs,words", [
    (dict(metrics=["fid"]), "give reference=<folder of images>"),
    (dict(metrics=["clip_score"]), "clip_score needs a CLIP model"),
    (dict(metrics=["kid"], reference="nowhere"), "reference=nowhere: no such folder"),
    (dict(metrics=["fid"], reference="empty", features="dino"), "metrics.features='dino'"),
])
def test_reference_set_arguments_are_one_line(tmp_path, monkeypatch, kwargs, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=words):
        evaluate(eval_options(**{"runs": "empty", "out": "table.csv", **kwargs}))


def test_mesh_runs_are_measured_on_their_held_out_renders(tiny_denoiser, tmp_path):
    """A mesh run writes heldout/ (cameras no view used); eval measures those renders, all of
    them in FID and their mean in GIQA, and no window metric of the texture."""
    from syncframe.pipeline import generate

    common = ["app=mesh", f"mesh={ASSETS / 'vase.obj'}", "model=tiny", "steps=2", "width=256", "height=256",
              "app.viewer=false", "app.views=[{elevation: 0, count: 4}]", "app.heldout_views=2", "progress=false"]
    for seed in (0, 1):
        generate(*common, f"seed={seed}", denoiser=tiny_denoiser).save(tmp_path / "runs" / str(seed))
    heldout = sorted((tmp_path / "runs" / "0" / "heldout").iterdir())
    assert [p.name for p in heldout] == ["novel_0.png", "novel_1.png"]
    assert Image.open(heldout[0]).size == (256, 256)
    for i, image in enumerate(noise_images(4, 64, seed=5)):
        save_png(tmp_path / "ref" / f"{i}.png", image)
    done = evaluate(eval_options(tmp_path / "runs", tmp_path / "t.csv", ["intra_lpips", "fid", "giqa"], crop=64,
                                 progress=False, reference=str(tmp_path / "ref")), feature_net=TinyFeatures())
    assert all("intra_lpips" not in row and row["giqa"] > 0 for row in done["rows"])
    (entry,) = done["table"]
    assert entry["n"] == 2 and entry["fid"][0] > 0
    assert "reprojection_error" in done["rows"][0]  # run.json's numbers come along
