"""/v1/scaling-law: the distillation scaling law, computed synchronously."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import CurrentTenant
from app.schemas import ScalingPlanIn, ScalingPlans, ScalingPredictIn, ScalingPrediction
from grace_engine.science import scaling

router = APIRouter(prefix="/v1/scaling-law", tags=["scaling-law"])


@router.post("/predict", response_model=ScalingPrediction)
def predict(body: ScalingPredictIn, _tenant: CurrentTenant) -> ScalingPrediction:
    """Student loss after distillation, next to the same student trained without a teacher."""
    k = scaling.Coefficients.resolve(body.coefficients)
    teacher_loss = (
        body.teacher_loss
        if body.teacher_loss is not None
        else scaling.supervised_loss(body.teacher_params or 0, body.teacher_tokens or 0, k)
    )
    student = scaling.student_loss(body.n_student, body.student_tokens, teacher_loss, k)
    alone = scaling.supervised_loss(body.n_student, body.student_tokens, k)
    return ScalingPrediction(
        student_loss=student,
        supervised_loss=alone,
        teacher_loss=teacher_loss,
        distillation_helps=student < alone,
        coefficients=k.as_dict(),
        coefficients_source=scaling.COEFFICIENT_SOURCE,
    )


@router.post("/plan", response_model=ScalingPlans)
def plan(body: ScalingPlanIn, _tenant: CurrentTenant) -> ScalingPlans:
    """Compute-optimal distillation in each scenario, against supervised training at the same compute."""
    k = scaling.Coefficients.resolve(body.coefficients)
    plans = [scaling.plan(body.n_student, body.compute_flops, s, k).as_dict() for s in body.scenarios]
    return ScalingPlans(plans=plans, coefficients=k.as_dict(), coefficients_source=scaling.COEFFICIENT_SOURCE)
