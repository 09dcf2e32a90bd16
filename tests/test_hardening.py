"""What a hostile (or unlucky) user still broke, case by case: temporary files, messages that
blamed the wrong thing, exit codes, stale run folders, the Python API's arguments."""
import tempfile

import pytest

from syncframe.models.offline import generated_tokenizer
from test_hostile import run_hostile, workdir  # noqa: F401  (the fixture)


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
