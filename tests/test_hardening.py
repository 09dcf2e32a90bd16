"""What a hostile (or unlucky) user still broke, case by case: temporary files, messages that
blamed the wrong thing, exit codes, stale run folders, the Python API's arguments."""
import tempfile

from syncframe.models.offline import generated_tokenizer


def test_the_generated_tokenizer_leaves_no_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tokenizer = generated_tokenizer()
    assert tokenizer("a photo").input_ids[0] == tokenizer.bos_token_id
    assert list(tmp_path.iterdir()) == []
