"""Post-hoc check for Study A (not in the protocol): the effective rank of each candidate's
projected gradient matrix, to test the README's explanation of why GRACE ranks the gold-derived
candidates last (near-duplicate responses within a prompt -> low-rank training splits).

    python -m studies.A.rank_check
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from grace_engine.models.candidates import read_candidates
from grace_engine.models.data import encode_for_student, pad_token_id, read_prompts
from grace_engine.models.loading import ModelCache, ModelPolicy, resolve_model
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.scoring import rank_teachers
from grace_engine.science.gradients import compute_gradients, make_gradient_computer
from studies.run import HERE

WORK = Path(".grace/studies/A")


def effective_rank(g: np.ndarray, rel: float = 1e-3) -> int:
    """Singular values above ``rel`` times the largest, of the row-normalised matrix."""
    rows = g / np.linalg.norm(g, axis=1, keepdims=True)
    s = np.linalg.svd(rows, compute_uv=False)
    return int(np.sum(s > rel * s[0]))


def main() -> None:
    tiny = WORK / "tiny-models"
    policy = ModelPolicy.from_paths([tiny, WORK])
    prompts = read_prompts(tiny / "prompts.jsonl")
    config = ScoringConfig(responses_per_prompt=4, proj_dim=64)
    result = rank_teachers(
        JobInputs(prompts, read_candidates(WORK / "candidates.json"), str(tiny / "student")),
        config,
        EngineContext(policy=policy),
    )
    student = ModelCache(policy).get(resolve_model(str(tiny / "student"), policy, field="student"))
    computer = make_gradient_computer(student.model, space=config.gradient_space, d=64, seed=0)
    out = {}
    for name, c in result.candidates.items():
        examples = [
            encode_for_student(student.tokenizer, p.prompt, t, config.student_format)
            for p, group in zip(prompts, c.responses, strict=True)
            for t in group
        ]
        g = compute_gradients(
            student.model, computer, examples, pad_id=pad_token_id(student.tokenizer)
        ).gradients.astype(np.float64)
        distinct = len({t for group in c.responses for t in group})
        out[name] = {
            "grace": c.score("grace"),
            "effective_rank": effective_rank(g),
            "distinct_responses": distinct,
        }
        print(f"{name:<14} GRACE {c.score('grace'):8.3f}  rank {out[name]['effective_rank']:3d} of 64  "
              f"distinct responses {distinct:3d} of {len(examples)}")  # fmt: skip
    (HERE / "A" / "rank_check.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
