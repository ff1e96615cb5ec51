"""Prompt datasets: uploaded once, referenced by jobs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from app.errors import ApiError, not_found
from app.services.pages import newest_first
from grace_engine.errors import InvalidInput
from grace_engine.models.data import check_prompts
from grace_infra.db.models import Dataset, Job, Tenant
from grace_infra.settings import Settings
from grace_jobs.lifecycle import LIVE, NOT_STARTED
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
        check_prompts(engine_prompts(dataset_in.prompts))
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


def list_datasets(
    *, session: Session, tenant: Tenant, limit: int, cursor: str | None
) -> tuple[list[Dataset], str | None]:
    """The tenant's datasets, newest first, without their prompts."""
    query = (
        select(Dataset).options(defer(Dataset.prompts, raiseload=True)).where(Dataset.tenant_id == tenant.id)
    )
    return newest_first(session, query, Dataset, limit=limit, cursor=cursor)


def delete_dataset(*, session: Session, tenant: Tenant, dataset_id: str) -> None:
    """Delete one of the tenant's datasets. Finished jobs keep their results; a job that has not
    finished still reads the prompts, so while one uses the dataset the answer is 409."""
    dataset = get_dataset(session=session, tenant=tenant, dataset_id=dataset_id)
    using = list(
        session.scalars(
            select(Job.id)
            .where(
                Job.tenant_id == tenant.id,
                Job.status.in_([*NOT_STARTED, *LIVE]),
                Job.request["dataset_id"].as_string() == dataset.id,
            )
            .order_by(Job.created_at)
        )
    )
    if using:
        raise ApiError(
            409,
            "Conflict",
            f"{len(using)} unfinished job(s) use this dataset (first: {using[0]}); cancel them or wait",
            extra={"jobs": using[:20]},
        )
    session.delete(dataset)
    session.commit()
