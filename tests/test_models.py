"""Models load only from allowed places, never with remote code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grace_engine.errors import ModelNotAllowed, ModelNotFound
from grace_engine.models.loading import ModelCache, ModelPolicy, load_causal_lm, resolve_model
from grace_engine.models.tiny_models import TinyModels


def test_paths_resolve_inside_roots_only(tiny: TinyModels, tmp_path: Path) -> None:
    policy = ModelPolicy.from_paths([tiny.root])
    src = resolve_model("student", policy, field="student", base_dir=tiny.root)
    assert src.location == str(tiny.student.resolve())
    assert not src.is_hub
    with pytest.raises(ModelNotAllowed) as err:
        resolve_model(str(tiny.root / ".." / ".."), policy, field="candidates[3].model")
    assert err.value.field == "candidates[3].model"
    # A symlink inside a root that points outside it is judged by its target.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    link = tiny.root / "sneaky"
    link.symlink_to(outside, target_is_directory=True)
    try:
        with pytest.raises(ModelNotAllowed):
            resolve_model("sneaky", policy, field="student", base_dir=tiny.root)
    finally:
        link.unlink()
    with pytest.raises(ModelNotFound, match=r"config\.json"):
        resolve_model(str(tiny.candidates_file), policy, field="student")


def test_hub_ids_need_the_allow_list(tiny: TinyModels) -> None:
    open_policy = ModelPolicy.from_paths([tiny.root], ["HuggingFaceTB/SmolLM2-135M-Instruct"])
    src = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", open_policy, field="student")
    assert src.is_hub
    with pytest.raises(ModelNotAllowed, match="not an allowed hub id"):
        resolve_model("meta-llama/Llama-3.2-1B", open_policy, field="student", base_dir=tiny.root)


def test_remote_code_never_runs(tmp_path: Path) -> None:
    model_dir = tmp_path / "evil"
    model_dir.mkdir()
    marker = tmp_path / "pwned"
    (model_dir / "config.json").write_text(
        json.dumps(
            {
                "model_type": "evil-arch",
                "architectures": ["EvilForCausalLM"],
                "auto_map": {
                    "AutoConfig": "modeling_evil.EvilConfig",
                    "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
                },
            }
        )
    )
    (model_dir / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    policy = ModelPolicy.from_paths([tmp_path])
    source = resolve_model(str(model_dir), policy, field="student")
    with pytest.raises(ModelNotFound, match="cannot load"):
        load_causal_lm(source, policy, field="student")
    assert not marker.exists()


def test_cache_reuses_and_evicts(tiny: TinyModels) -> None:
    policy = ModelPolicy.from_paths([tiny.root])
    cache = ModelCache(policy, capacity=1)
    student = resolve_model(str(tiny.student), policy, field="student")
    tutor = resolve_model(str(tiny.teachers["tutor"]), policy, field="t")
    first = cache.get(student)
    assert cache.get(student) is first
    cache.get(tutor)
    assert cache.get(student) is not first  # evicted by the tutor, loaded again
    assert not any(p.requires_grad for p in first.model.parameters())
    assert not first.model.training


@pytest.mark.parametrize("ref", ["x" * 300, "a/" + "y" * 5000, "nul\x00byte", "a/" * 3000])
def test_references_no_filesystem_can_hold_are_not_found_not_a_crash(tmp_path: Path, ref: str) -> None:
    with pytest.raises(ModelNotFound) as err:
        resolve_model(ref, ModelPolicy.from_paths([tmp_path]), field="student", base_dir=tmp_path)
    assert err.value.field == "student"


@pytest.mark.parametrize("ref", ["~nosuchuser", "~nosuchuser/student", "loop", "loop/inner"])
def test_home_directories_and_symlink_loops_are_a_clear_error_not_a_crash(
    tiny: TinyModels, tmp_path: Path, ref: str
) -> None:
    """``~user`` of no such user and a symlink loop inside a root (both RuntimeError in pathlib)
    are a ModelNotFound naming the field, and no error names a server path."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "loop").symlink_to(root / "loop")  # a link to itself
    policy = ModelPolicy.from_paths([root, tiny.root])
    with pytest.raises((ModelNotFound, ModelNotAllowed)) as err:
        resolve_model(ref, policy, field="student", base_dir=root)
    assert err.value.field == "student"
    assert str(root) not in str(err.value)
    assert str(tiny.root) not in str(err.value)
    for missing in ("no-such-model", str(tmp_path / "elsewhere")):
        with pytest.raises((ModelNotFound, ModelNotAllowed)) as err:
            resolve_model(missing, policy, field="student", base_dir=root)
        assert str(root) not in str(err.value).replace(missing, "")
