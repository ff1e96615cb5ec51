"""A predictor is one entry of the registry: a toy predictor added at run time is computed by a
real ranking, carried in its results' values and rows, printed by the CLI's table, and compared
across candidates by the uncertainty, with nothing else changed."""

from __future__ import annotations

import numpy as np
import pytest

from grace_cli.report import format_table
from grace_engine.models.candidates import Candidate
from grace_engine.models.data import Prompt
from grace_engine.models.loading import ModelPolicy
from grace_engine.models.tiny_models import TinyModels
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.scoring import rank_teachers
from grace_engine.science import predictors
from grace_engine.science.evidence import Evidence, FloatArray, GraceSettings
from grace_engine.science.predictors import PREDICTORS, Need, Predictor


def _longest(ev: Evidence, settings: GraceSettings, w: FloatArray | None, workers: int | None) -> float:
    """The toy: the mean over prompts of each prompt's longest response, in tokens."""
    per_prompt = ev.n_tokens.reshape(-1, ev.m).max(axis=1)
    return float(np.average(per_prompt, weights=w))


LONGEST = Predictor(
    "longest",
    False,
    Need.FORWARD,
    "the mean over prompts of the longest response",
    "longest",
    ".1f",
    _longest,
    lambda ev, folds, settings, copies: np.broadcast_to(
        ev.n_tokens.reshape(-1, ev.m).max(axis=1), folds.shape
    ).copy(),
)


def test_a_new_predictor_is_one_registry_entry(tiny: TinyModels, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PREDICTORS, "longest", LONGEST)
    prompts = [Prompt(f"p{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(8)]
    styles = {"terse": lambda i: [str(2 * i), "x"], "verbose": lambda i: [f"{i} plus {i} makes {2 * i}."] * 2}
    candidates = [
        Candidate(n, responses={p.id: f(i) for i, p in enumerate(prompts)}) for n, f in styles.items()
    ]
    spec = ScoringConfig(
        responses_per_prompt=2, predictors=("student_nll", "longest"), rank_by="longest", bootstrap=20
    )
    ctx = EngineContext(policy=ModelPolicy.from_paths([tiny.root]))
    result = rank_teachers(JobInputs(prompts, candidates, str(tiny.student)), spec, ctx)
    assert [r.name for r in result.ranking] == ["verbose", "terse"]  # higher is better
    for name, c in result.candidates.items():
        assert list(c.values) == ["student_nll", "longest"]
        assert c.score("longest") == pytest.approx(
            predictors.value("longest", result.evidence[name], GraceSettings())
        )
    rows = result.ranking_rows()
    assert rows[0]["values"]["longest"] > rows[1]["values"]["longest"]
    assert result.uncertainty is not None
    assert result.uncertainty.method == "paired"  # its contributions give the paired comparison
    table = format_table(result)
    assert "longest" in table.splitlines()[0]
    assert any(
        line.startswith("Lower GRACE, student NLL = better teacher; higher longest.")
        for line in table.splitlines()
    )
