"""/v1/datasets: upload a prompt set once, reference it from jobs by id."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.deps import CurrentTenant, SessionDep, SettingsDep
from app.schemas import DatasetPublic
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
