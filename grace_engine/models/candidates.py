"""Candidate teachers: a model with its sampling settings, or supplied responses; read from JSON,
expanded over listed temperatures, and checked, naming the offending field. No model is loaded
here (the API checks candidates with it)."""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from grace_engine.errors import InvalidInput
from grace_engine.models.data import Prompt, at_temperature, candidate_name

Responses = list[list[str]]  # [prompt][response index]


@dataclass(frozen=True)
class Candidate:
    """A teacher to score: ``model`` + sampling settings, or supplied ``responses``.

    ``responses`` maps prompt id to that prompt's responses (the same count for every prompt).
    ``responses_per_prompt`` of ``None`` takes the job's default ``m``.
    """

    name: str
    model: str | None = None
    temperature: float = 0.6
    top_p: float = 1.0
    max_tokens: int = 1024
    responses_per_prompt: int | None = None
    responses: Mapping[str, Sequence[str]] | None = None

    def check(self, index: int) -> None:
        field = f"candidates[{index}]"
        try:
            candidate_name(self.name)
        except InvalidInput as exc:
            raise InvalidInput(exc.message, field=f"{field}.name") from exc
        if (self.model is None) == (self.responses is None):
            raise InvalidInput("give exactly one of 'model' or 'responses'", field=field)
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise InvalidInput("must be a finite number >= 0", field=f"{field}.temperature")
        if not 0 < self.top_p <= 1:
            raise InvalidInput("must be in (0, 1]", field=f"{field}.top_p")
        if self.max_tokens < 1:
            raise InvalidInput("must be at least 1", field=f"{field}.max_tokens")
        if self.responses_per_prompt is not None and self.responses_per_prompt < 1:
            raise InvalidInput("must be at least 1", field=f"{field}.responses_per_prompt")


def candidate_from_dict(record: Any, index: int) -> Candidate:
    """Build a candidate from its JSON form, naming the offending field on error."""
    field = f"candidates[{index}]"
    if not isinstance(record, dict):
        raise InvalidInput("must be a JSON object", field=field)
    known = {"name", "model", "temperature", "top_p", "max_tokens", "responses_per_prompt", "responses"}
    unknown = sorted(set(record) - known)
    if unknown:
        raise InvalidInput(f"unknown key(s) {', '.join(unknown)}", field=field)
    responses = record.get("responses")
    if responses is not None and not (
        isinstance(responses, dict)
        and all(isinstance(v, list) and all(isinstance(t, str) for t in v) for v in responses.values())
    ):
        raise InvalidInput("must map prompt id to a list of strings", field=f"{field}.responses")
    numbers: dict[str, Any] = {}
    for key, kind in (
        ("temperature", float),
        ("top_p", float),
        ("max_tokens", int),
        ("responses_per_prompt", int),
    ):
        if record.get(key) is None:
            continue
        value = record[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and not isinstance(value, int))
        ):
            raise InvalidInput(
                f"must be {'an integer' if kind is int else 'a number'}", field=f"{field}.{key}"
            )
        numbers[key] = kind(value)
    name = record.get("name", record.get("model"))
    model = record.get("model")
    if not isinstance(name, str) or (model is not None and not isinstance(model, str)):
        raise InvalidInput("'name' and 'model' must be strings", field=field)
    normalized = unicodedata.normalize("NFC", name)  # names compare in NFC (check() refuses look-alikes)
    candidate = Candidate(name=normalized, model=model, responses=responses, **numbers)
    candidate.check(index)
    return candidate


def _at_temperatures(record: Any, index: int) -> list[Any]:
    """``record``, or one record per temperature when it lists ``temperatures``."""
    if not isinstance(record, dict) or "temperatures" not in record:
        return [record]
    field = f"candidates[{index}]"
    temps, rest = record["temperatures"], {k: v for k, v in record.items() if k != "temperatures"}
    if not (
        isinstance(temps, list)
        and temps
        and all(isinstance(t, int | float) and not isinstance(t, bool) for t in temps)
    ):
        raise InvalidInput("must be a non-empty list of numbers", field=f"{field}.temperatures")
    if "temperature" in rest:
        raise InvalidInput("give 'temperature' or 'temperatures', not both", field=field)
    if "model" not in rest:
        raise InvalidInput("'temperatures' samples a model; supplied responses have none", field=field)
    if len(set(temps)) != len(temps):
        raise InvalidInput("lists a temperature twice", field=f"{field}.temperatures")
    name = rest.get("name", rest.get("model"))
    return [{**rest, "name": at_temperature(str(name), float(t)), "temperature": t} for t in temps]


def read_candidates(path: str | Path) -> list[Candidate]:
    """Candidates from a JSON file holding a list or ``{"candidates": [...]}``. A relative ``model``
    path that exists next to the file is taken from there (so a candidate file travels with its
    models); anything else is left for the model policy to judge. A candidate listing
    ``temperatures`` becomes one candidate per temperature (``name@T``)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"no such file: {p}", field="candidates")
    try:
        data = json.loads(p.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc.msg} (line {exc.lineno})", field="candidates") from exc
    records = data.get("candidates") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise InvalidInput('expected a list of candidates or {"candidates": [...]}', field="candidates")
    out = []
    expanded = [(i, one) for i, record in enumerate(records) for one in _at_temperatures(record, i)]
    for i, record in expanded:
        c = candidate_from_dict(record, i)
        if c.model is not None and not Path(c.model).is_absolute() and (p.parent / c.model).exists():
            c = replace(c, model=str((p.parent / c.model).resolve()))
        out.append(c)
    check_candidates(out)
    return out


def check_candidates(candidates: Sequence[Candidate]) -> None:
    if not candidates:
        raise InvalidInput("no candidate teachers given", field="candidates")
    names: set[str] = set()
    for i, c in enumerate(candidates):
        c.check(i)
        if c.name in names:
            raise InvalidInput(f"duplicate candidate name {c.name!r}", field=f"candidates[{i}].name")
        names.add(c.name)


def provided_responses(candidate: Candidate, prompts: Sequence[Prompt], m: int, *, index: int) -> Responses:
    """The supplied responses in prompt order, checked to hold ``m`` strings for every prompt."""
    assert candidate.responses is not None
    field = f"candidates[{index}].responses"
    known = {p.id for p in prompts}
    stray = sorted(set(candidate.responses) - known)
    if stray:
        raise InvalidInput(f"responses for unknown prompt id(s) {', '.join(stray[:5])}", field=field)
    out: Responses = []
    for p in prompts:
        texts = candidate.responses.get(p.id)
        if texts is None:
            raise InvalidInput(f"no responses for prompt {p.id!r}", field=field)
        if len(texts) != m:
            raise InvalidInput(
                f"prompt {p.id!r} has {len(texts)} responses, expected {m}", field=f"{field}[{p.id}]"
            )
        stripped = [t.strip() for t in texts]
        if "" in stripped:
            raise InvalidInput(
                f"response {stripped.index('')} to prompt {p.id!r} is empty: a blank response teaches "
                "nothing, scores as if it did, and would be exported as an empty turn",
                field=f"{field}[{p.id}][{stripped.index('')}]",
            )
        out.append(stripped)
    return out
