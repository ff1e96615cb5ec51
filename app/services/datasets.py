"""Prompt datasets: uploaded once, referenced by jobs."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Dataset, Tenant
from app.errors import ApiError, not_found
from grace_engine.data import validate_prompts
from grace_engine.errors import InvalidInput
from grace_jobs.requests import DatasetCreate, engine_prompts


def create_dataset(
    *, session: Session, tenant: Tenant, dataset_in: DatasetCreate, settings: Settings
) -> Dataset:
    if len(dataset_in.prompts) > settings.max_prompts_per_job:
        raise ApiError(
            422,
            "Limit Exceeded",
            f"at most {settings.max_prompts_per_job} prompts per dataset",
            field="prompts",
        )
    for i, p in enumerate(dataset_in.prompts):
        if len(p.prompt) > settings.max_prompt_chars:
            raise ApiError(
                422,
                "Limit Exceeded",
                f"at most {settings.max_prompt_chars} characters",
                field=f"prompts[{i}].prompt",
            )
    try:
        validate_prompts(engine_prompts(dataset_in.prompts))
    except InvalidInput as exc:  # duplicate ids, blank text
        raise ApiError(422, "Validation Error", exc.message, field=exc.field) from exc
    dataset = Dataset(
        tenant_id=tenant.id,
        name=dataset_in.name,
        n_prompts=len(dataset_in.prompts),
        prompts=[p.model_dump(mode="json") for p in dataset_in.prompts],
    )
    session.add(dataset)
    session.commit()
    return dataset


def get_dataset(*, session: Session, tenant: Tenant, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.tenant_id != tenant.id:
        raise not_found("dataset")
    return dataset
