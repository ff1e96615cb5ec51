"""A mixed-teacher dataset: for each prompt, the response of the candidate the scores favour there.

Two routes:

* **By GRACE** (any scoring job): each prompt's contribution to a candidate's GRACE is the whitened
  energy of its held-out gradients, ``x^T K_tr^-1 x`` averaged over its responses, with ``K_tr`` the
  smoothed second moment of the candidate's other prompts (a 10-fold partition of the prompts,
  seeded, so every prompt is held out exactly once; a GRACE split's score is the mean of the same
  quantity over its held-out prompts). The prompt goes to the candidate with the lowest
  contribution, and within it to the response with the lowest energy.
* **By influence** (an influence job, which has a validation set): the candidate whose responses
  have the highest mean influence on that prompt, and its most helpful response.

:func:`sft_jsonl` writes the rows in either dataset format TRL's ``SFTTrainer`` reads:

* ``chat``: ``{"messages": [user, assistant]}``, the user turn being what the teacher was asked
  (the job's instruction + the prompt). Trained through the student's chat template, this is the
  teacher's conversation, not the text GRACE scored.
* ``prompt_completion``: ``{"prompt", "completion"}``, the prompt being the student's template with
  the prompt filled in: exactly the text the student was scored on, whose loss covered the
  completion only (``SFTTrainer``'s default for this format). The trainer appends the EOS that the
  scored text ended with.

Every line also carries ``prompt_id`` and ``teacher``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from grace_engine.errors import InvalidInput
from grace_engine.models.data import Prompt, SftForm, StudentFormat
from grace_engine.science import crossval
from grace_engine.science.predictors import Evidence

if TYPE_CHECKING:  # the API exports mixed sets and never computes influence: no torch there
    from grace_engine.science.influence import InfluenceResult

FOLDS = 10


@dataclass(frozen=True)
class MixedExample:
    """One prompt of the mixed dataset: the chosen ``teacher`` and its ``response`` (index
    ``response_index`` of the prompt's), with the ``score`` that chose it and ``route`` (grace:
    the prompt's GRACE contribution, lower is better; influence: mean influence, higher is better)."""

    prompt_id: str
    prompt: str
    teacher: str
    response_index: int
    response: str
    score: float
    route: str


def per_prompt_grace(ev: Evidence, *, smoothing: float = 1e-3, folds: int = FOLDS) -> npt.NDArray[np.float64]:
    """Per row of ``ev``, its held-out whitened energy (module docstring), in row order: a prompt's
    GRACE contribution is the mean over its ``m`` rows."""
    n = ev.n_prompts
    if n < 2:
        raise InvalidInput("needs at least 2 prompts", field="prompts")
    assignment = np.empty(n, dtype=np.int64)
    for j, fold in enumerate(np.array_split(np.random.default_rng(0).permutation(n), min(folds, n))):
        assignment[fold] = j
    energies: npt.NDArray[np.float64] = crossval.held_out_row_energies(
        ev, assignment[None, :], smoothing=smoothing
    )[0]
    return energies


def route_by_grace(
    evidence: Mapping[str, Evidence],
    prompts: Sequence[Prompt],
    responses: Mapping[str, Sequence[Sequence[str]]],
    *,
    smoothing: float = 1e-3,
) -> list[MixedExample]:
    """Each prompt to the candidate with the lowest GRACE contribution there, among the candidates
    whose evidence covers it (a budget-aware job may have dropped some early) and that have a
    non-blank response to it. ``responses`` are each candidate's texts in the job's prompt order."""
    best: dict[int, tuple[float, str, int]] = {}
    for name in sorted(evidence):
        ev = evidence[name]
        if not ev.has_gradients:
            raise InvalidInput("routing by GRACE needs gradients: include grace in predictors", field="route")
        energies = per_prompt_grace(ev, smoothing=smoothing).reshape(ev.n_prompts, ev.m)
        for row, p in enumerate(ev.prompt_index.tolist()):
            contribution = float(energies[row].mean())
            # A blank response (a teacher that stopped at once) is never the one exported.
            usable = [j for j, text in enumerate(responses[name][p]) if text.strip()]
            if usable and (p not in best or contribution < best[p][0]):
                best[p] = (contribution, name, min(usable, key=lambda j: float(energies[row][j])))
    return [
        MixedExample(prompts[p].id, prompts[p].prompt, name, j, responses[name][p][j], contribution, "grace")
        for p, (contribution, name, j) in sorted(best.items())
    ]


def route_by_influence(
    result: InfluenceResult, prompts: Sequence[Prompt], responses: Mapping[str, Sequence[Sequence[str]]]
) -> list[MixedExample]:
    """Each prompt to the candidate whose responses there help the validation loss most on average,
    and its most helpful response."""
    position = {p.id: i for i, p in enumerate(prompts)}
    groups: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    for r in result.responses:
        groups[(r.prompt_id, r.candidate)].append((r.influence, r.index))
    best: dict[str, tuple[float, str, int]] = {}
    for (prompt_id, name), items in sorted(groups.items()):
        mean = float(np.mean([v for v, _ in items]))
        texts = responses[name][position[prompt_id]]
        usable = [item for item in items if texts[item[1]].strip()]  # never a blank one
        if usable and (prompt_id not in best or mean > best[prompt_id][0]):
            best[prompt_id] = (mean, name, max(usable)[1])
    out = []
    for prompt_id, (mean, name, j) in sorted(best.items(), key=lambda item: position[item[0]]):
        p = position[prompt_id]
        out.append(
            MixedExample(prompt_id, prompts[p].prompt, name, j, responses[name][p][j], mean, "influence")
        )
    return out


def sft_jsonl(
    rows: Sequence[MixedExample], form: SftForm, *, student_format: StudentFormat, instruction: str
) -> str:
    """The rows as JSON lines in ``form`` (module docstring): ``student_format`` and ``instruction``
    are the scoring job's, so the text is the text it scored and the teacher saw."""

    def record(r: MixedExample) -> dict[str, object]:
        if form == "chat":
            user = {"role": "user", "content": instruction + r.prompt}
            return {"messages": [user, {"role": "assistant", "content": r.response}]}
        return {"prompt": student_format.head(r.prompt), "completion": r.response}

    lines = [
        json.dumps({**record(r), "prompt_id": r.prompt_id, "teacher": r.teacher}, ensure_ascii=False)
        for r in rows
    ]
    return "".join(line + "\n" for line in lines)
