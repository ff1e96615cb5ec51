"""Problem documents name the field a client sent, whatever pydantic's location says: union
members it tried are not fields (app.errors.field_path), checked against pydantic's own errors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from app.errors import field_errors
from grace_jobs.requests import JobCreate


class _A(BaseModel):
    kind: int


class _B(BaseModel):
    other: str


class _Outer(BaseModel):
    items: list[_A | _B]
    size: int | str
    named: dict[str, int | None]


def _fields(model: type[BaseModel], body: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    errors = [{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors()]
    return field_errors(errors, body)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": [], "size": 1.5, "named": {}}, "size"),
        ({"items": [{"kind": "x"}], "size": 1, "named": {}}, "items[0].kind"),
        ({"items": [{}], "size": 1, "named": {}}, "items[0].kind"),  # missing, under a union member
        ({"items": [], "size": 1, "named": {"a": "b"}}, "named.a"),
        ({"items": [], "size": 1}, "named"),  # missing at the top
        ({"items": [7], "size": 1, "named": {}}, "items[0]"),
    ],
)
def test_union_member_tags_are_not_fields(body: dict[str, Any], field: str) -> None:
    found = _fields(_Outer, body)
    assert field in [e["field"] for e in found], found
    assert len({e["field"] for e in found}) == len(found)  # one error per field


def test_a_job_field_refused_by_every_union_member_is_one_error() -> None:
    body: dict[str, Any] = {
        "student": "s",
        "candidates": [{"name": "a", "model": "a"}],
        "prompts": [{"prompt": "x"}, {"prompt": "y"}],
        "scoring": {"proj_dim": False},
    }
    (error,) = _fields(JobCreate, body)
    assert error["field"] == "scoring.proj_dim"
    assert "; or " in error["message"]
