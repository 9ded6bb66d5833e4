import time
from pathlib import Path

import pytest

from models.resolve import ModelResolutionError, resolve_model
from models.tiny import save_tiny_checkpoint


def test_missing_local_path_says_what_was_tried(tmp_path: Path):
    missing = tmp_path / "nope"
    with pytest.raises(ModelResolutionError, match=r"tried local path .*nope.*no such folder"):
        resolve_model(str(missing), home=tmp_path)


def test_folder_without_config_is_rejected(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelResolutionError, match=r"no config\.json"):
        resolve_model(str(tmp_path / "empty"), home=tmp_path)


def test_local_checkpoint_resolves(tmp_path: Path):
    folder = save_tiny_checkpoint(tmp_path / "tiny")
    assert resolve_model(str(folder), home=tmp_path) == folder


def test_unreachable_hub_id_fails_fast_and_clearly(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    start = time.monotonic()
    with pytest.raises(ModelResolutionError, match=r"tried the Hugging Face Hub.*'default'"):
        resolve_model("nobody-here/no-such-model", home=tmp_path)
    assert time.monotonic() - start < 30


def test_garbage_name_is_rejected(tmp_path: Path):
    with pytest.raises(ModelResolutionError, match="not a Hub id"):
        resolve_model("not a model", home=tmp_path)
    with pytest.raises(ModelResolutionError, match="empty"):
        resolve_model("  ", home=tmp_path)
