"""syncframe eval: each metric on images with a known answer, grouping by the config keys that
differ, the CSV/Markdown/plots written, unreadable runs listed, bad arguments one line."""
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from syncframe.errors import ConfigError
from syncframe.evaluate import evaluate, image_metrics, intra_pairs
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


def write_run(folder: Path, sync: str, weight: float, seed: int, image: torch.Tensor) -> None:
    folder.mkdir(parents=True)
    cfg = {"app": {"name": "panorama", "stride": 8}, "sync": {"name": sync, "weight": weight}, "seed": seed,
           "out": str(folder)}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "run.json").write_text('{"metrics": {"window_border_seam": 1.5}}')
    pixels = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(folder / "panorama.png")


def test_eval_groups_by_what_differs_and_writes_table_plots_and_problems(nets, tmp_path):
    image = tiled()
    for i, (sync, weight) in enumerate([("multidiffusion", 0), ("multidiffusion", 0), ("syncdiffusion", 20)]):
        write_run(tmp_path / "runs" / str(i), sync, weight, seed=i, image=image)
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "config.yaml").write_text("app: [unclosed\n")
    done = evaluate(tmp_path / "runs", tmp_path / "table.csv", ["intra_lpips", "worst_column_step"], crop=128,
                    progress=False)
    assert done["keys"] == ["sync", "sync.weight"]  # seed and out differ too, but never group
    assert [e["n"] for e in done["table"]] == [2, 1]
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert len(rows) == 3 and float(rows[0]["intra_lpips"]) == pytest.approx(0, abs=1e-5)
    assert rows[0]["window_border_seam"] == "1.5"  # run.json's metrics come along
    text = (tmp_path / "table.md").read_text()
    assert "| sync | sync.weight | n | intra_lpips |" in text and "broken" in text
    assert {p.name for p in done["plots"]} == {"table_intra_lpips.png", "table_worst_column_step.png",
                                               "table_window_border_seam.png"}
    assert all(Image.open(p).size[0] > 100 for p in done["plots"])


@pytest.mark.parametrize("kwargs,words", [
    (dict(runs="nowhere"), "no such folder"),
    (dict(metrics=["fid"]), "metrics=fid: unknown"),
    (dict(out="table.txt"), "use out=<name>.csv"),
])
def test_bad_arguments_are_one_line(tmp_path, monkeypatch, kwargs, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=words):
        evaluate(**{"runs": "empty", "out": "table.csv", **kwargs})


def test_the_command_line(tmp_path, capsys):
    from syncframe.cli import main

    write_run(tmp_path / "runs" / "0", "none", 0, 0, tiled())
    assert main(["eval", f"runs={tmp_path / 'runs'}", f"out={tmp_path / 't.csv'}", "metrics=worst_column_step",
                 "progress=false"]) == 0
    assert (tmp_path / "t.csv").is_file() and "wrote" in capsys.readouterr().out
    assert main(["eval", "runs=/no/such/place", f"out={tmp_path / 't.csv'}"]) == 2
