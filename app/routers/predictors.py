"""/v1/predictors: the predictor registry, as results name its entries (``values``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.deps import CurrentTenant
from grace_engine.science.predictors import PREDICTORS

router = APIRouter(prefix="/v1/predictors", tags=["predictors"])


class PredictorPublic(BaseModel):
    name: str = Field(description="its key in results' `values`, `scoring.predictors` and `rank_by`")
    lower_is_better: bool
    needs: Literal["gradients", "forward", "answers"] = Field(
        description="gradients: the student's backward pass; forward: its forward pass; answers: "
        "answers on the prompts, no model"
    )
    summary: str
    label: str = Field(description="a column header")
    fmt: str = Field(description="how tables print it (a Python format spec)")


class PredictorsPublic(BaseModel):
    data: list[PredictorPublic]


@router.get("", response_model=PredictorsPublic)
def list_predictors(_tenant: CurrentTenant) -> PredictorsPublic:
    """Every predictor a job can compute, in the order results list them."""
    return PredictorsPublic(
        data=[
            PredictorPublic(
                name=p.name,
                lower_is_better=p.lower_is_better,
                needs=p.needs.value,
                summary=p.summary,
                label=p.label,
                fmt=p.fmt,
            )
            for p in PREDICTORS.values()
        ]
    )
