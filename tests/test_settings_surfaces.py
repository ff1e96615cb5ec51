"""One declaration per setting: the API's request models are it; the engine's configs and the
command line are derived from them, and these tests fail when a surface drifts: a setting the
engine has but the API cannot set, a default that differs, a field a command cannot reach."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from grace_cli.flags import from_args, given
from grace_cli.main import build_parser
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.validation import ValidationConfig
from grace_jobs.requests import InfluenceSettingsIn, ScoringIn, ValidationSettingsIn

# Every scoring setting at a value other than its default. A new field must be added here, which
# is the point: the test then checks that it reaches the engine and every command.
SCORING: dict[str, Any] = {
    "responses_per_prompt": 3,
    "proj_dim": 32,
    "n_splits": 4,
    "test_fraction": 0.25,
    "smoothing": 0.01,
    "gradient_space": "lora",
    "lora_rank": 4,
    "lora_alpha": 8.0,
    "path": "exact",
    "factor_dim": 16,
    "seed": 7,
    "length_factor": True,
    "max_length": 256,
    "truncate": True,
    "student_template": "Q: {prompt}\nA: ",
    "instruction": "Answer briefly.\n",
    "generation_backend": "transformers",
    "predictors": ["rsr", "grace"],
    "rank_by": "rsr",
    "bootstrap": 50,
    "confidence": 0.8,
    "budget": {"examples": 100, "seconds": 60.0, "initial_prompts": 8, "growth": 3.0, "drop_below": 0.05},
    "max_params": 1_000_000,
}
VALIDATION: dict[str, Any] = {
    "distill": {
        "method": "full",
        "epochs": 2.0,
        "max_steps": 10,
        "batch_size": 4,
        "learning_rate": 0.01,
        "weight_decay": 0.1,
        "lora_rank": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.1,
    },
    "train_seeds": [5],
    "outcome": "accuracy",
    "accuracy": False,
    "eval_max_tokens": 32,
    "mixed": True,
    "bootstrap_seed": 3,
}
# Set by the pipeline for each run, not by a job: one distilled student per train seed.
PER_RUN = {"distill.seed"}
INFLUENCE: dict[str, Any] = {"method": "exact", "keep_fraction": 0.5, "drop_negative": False}


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """A config's leaf settings by dotted path (nested dataclasses opened)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            out.update(_leaves(getattr(value, f.name), f"{prefix}{f.name}."))
        return out
    return {prefix.rstrip("."): value}


def _argv(values: dict[str, Any], prefix: str = "") -> list[str]:
    """The command line that sets ``values`` (nested models' flags carry their name)."""
    argv: list[str] = []
    for name, value in values.items():
        flag = "--" + f"{prefix}{name}".replace("_", "-")
        if isinstance(value, dict):
            argv += _argv(value, f"{prefix}{name}-")
        elif isinstance(value, bool):
            argv.append(flag if value else flag.replace("--", "--no-", 1))
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value).replace("\n", "\\n")]
    return argv


def test_every_scoring_field_is_in_the_list_above() -> None:
    assert set(SCORING) == set(ScoringIn.model_fields)
    assert set(VALIDATION) == set(ValidationSettingsIn.model_fields)
    assert set(INFLUENCE) == set(InfluenceSettingsIn.model_fields)


def test_the_api_and_the_engine_agree_on_every_default() -> None:
    assert ScoringIn().to_engine() == ScoringConfig()
    assert ValidationSettingsIn().to_validation() == ValidationConfig()


def test_every_engine_setting_is_reachable_from_the_api() -> None:
    """Each leaf of the engine's configs moves when the API's settings move: none is left that
    only the engine (or only one surface) can set. Operator-only knobs live in the EngineContext
    and Settings, not here."""
    for changed, default in (
        (ScoringIn.model_validate(SCORING).to_engine(), ScoringConfig()),
        (ValidationSettingsIn.model_validate(VALIDATION).to_validation(), ValidationConfig()),
    ):
        moved, base = _leaves(changed), _leaves(default)
        stuck = [k for k in moved if k in base and moved[k] == base[k] and k not in PER_RUN]
        assert not stuck, f"engine settings no API field reaches: {stuck}"


@pytest.mark.parametrize("command", ["rank", "influence", "validate", "submit"])
def test_every_command_reaches_every_scoring_setting(command: str) -> None:
    required = {
        "rank": ["--student", "s", "--candidates", "c", "--prompts", "p"],
        "influence": ["--student", "s", "--candidates", "c", "--prompts", "p", "--validation", "v"],
        "validate": ["--student", "s", "--candidates", "c", "--prompts", "p", "--eval", "e"],
        "submit": ["--student", "s", "--candidates", "c", "--prompts", "p"],
    }[command]
    args = build_parser().parse_args([command, *required, *_argv(SCORING)])
    assert from_args(args, ScoringIn, field="scoring") == ScoringIn.model_validate(SCORING)
    assert given(args, ScoringIn) == SCORING  # what `grace submit` sends
    untouched = build_parser().parse_args([command, *required])
    assert from_args(untouched, ScoringIn, field="scoring") == ScoringIn()


def test_the_validation_and_influence_commands_reach_their_own_settings() -> None:
    base = ["--student", "s", "--candidates", "c", "--prompts", "p"]
    args = build_parser().parse_args(["validate", *base, "--eval", "e", *_argv(VALIDATION)])
    assert from_args(args, ValidationSettingsIn, field="validation") == ValidationSettingsIn.model_validate(
        VALIDATION
    )
    old = build_parser().parse_args(
        ["validate", *base, "--eval", "e", "--method", "full", "--steps", "3", "--lr", "0.1"]
    )
    assert given(old, ValidationSettingsIn) == {
        "distill": {"method": "full", "max_steps": 3, "learning_rate": 0.1}
    }
    args = build_parser().parse_args(["influence", *base, "--validation", "v", *_argv(INFLUENCE)])
    assert from_args(args, InfluenceSettingsIn, field="influence") == InfluenceSettingsIn.model_validate(
        INFLUENCE
    )


def test_a_bad_value_is_refused_naming_the_field_as_the_api_does() -> None:
    from grace_engine.errors import InvalidInput

    args = build_parser().parse_args(
        ["rank", "--student", "s", "--candidates", "c", "--prompts", "p", "--n-splits", "0"]
    )
    with pytest.raises(InvalidInput) as err:
        from_args(args, ScoringIn, field="scoring")
    assert err.value.field == "scoring.n_splits"
