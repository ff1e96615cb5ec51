"""/v1/datasets: upload a prompt set once, reference it from jobs by id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.deps import CurrentTenant, SessionDep, SettingsDep
from app.schemas import DatasetPublic, DatasetsPublic
from app.services import datasets as dataset_service
from grace_jobs.requests import DatasetCreate

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("", status_code=201, response_model=DatasetPublic)
def create_dataset(
    dataset_in: DatasetCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
) -> DatasetPublic:
    dataset = dataset_service.create_dataset(
        session=session, tenant=tenant, dataset_in=dataset_in, settings=settings
    )
    response.headers["Location"] = str(request.url_for("get_dataset", dataset_id=dataset.id).path)
    return DatasetPublic.model_validate(dataset, from_attributes=True)


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: str, session: SessionDep, tenant: CurrentTenant) -> DatasetPublic:
    dataset = dataset_service.get_dataset(session=session, tenant=tenant, dataset_id=dataset_id)
    return DatasetPublic.model_validate(dataset, from_attributes=True)


@router.get("", response_model=DatasetsPublic)
def list_datasets(
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    limit: Annotated[
        int,
        Query(ge=1, description="page size; more than the server's maximum (100 by default) gets that many"),
    ] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> DatasetsPublic:
    """Your datasets, newest first (without their prompts); pass ``next_cursor`` back as ``cursor``."""
    rows, next_cursor = dataset_service.list_datasets(
        session=session, tenant=tenant, limit=min(limit, settings.page_size_max), cursor=cursor
    )
    return DatasetsPublic(
        data=[DatasetPublic.model_validate(d, from_attributes=True) for d in rows], next_cursor=next_cursor
    )


@router.delete("/{dataset_id}", status_code=204, response_class=Response)
def delete_dataset(dataset_id: str, session: SessionDep, tenant: CurrentTenant) -> Response:
    """Delete a dataset. Finished jobs keep their results; 409 while an unfinished job uses it."""
    dataset_service.delete_dataset(session=session, tenant=tenant, dataset_id=dataset_id)
    return Response(status_code=204)
