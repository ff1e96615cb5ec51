"""/v1/webhook-secret (create or rotate the tenant's signing secret) and a job's delivery log."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.deps import CurrentJob, CurrentTenant, SessionDep, SettingsDep
from app.schemas import DeliveriesPublic, WebhookEventPublic, WebhookSecretPublic
from grace_infra.db.models import WebhookEvent
from grace_jobs.tenants import rotate_webhook_secret as rotate

router = APIRouter(tags=["webhooks"])


@router.post("/v1/webhook-secret", status_code=201, response_model=WebhookSecretPublic)
def rotate_webhook_secret(
    session: SessionDep, tenant: CurrentTenant, settings: SettingsDep
) -> WebhookSecretPublic:
    """A new Standard Webhooks signing secret for your tenant, shown this once; every delivery from
    now on (retries of earlier events included) is signed with it. The secret it replaces signs
    beside it until ``previous_valid_until`` (``GRACE_WEBHOOK_ROTATION_OVERLAP_SECONDS``), so
    switch your receiver within that window. Verify with any Standard Webhooks library, e.g.
    ``standardwebhooks.Webhook(secret).verify(body, headers)``."""
    secret = rotate(session=session, tenant=tenant, overlap=settings.webhook_rotation_overlap)
    assert tenant.webhook_secret_at is not None
    return WebhookSecretPublic(
        secret=secret,
        created_at=tenant.webhook_secret_at,
        previous_valid_until=tenant.webhook_secret_previous_until,
    )


@router.get("/v1/jobs/{job_id}/deliveries", response_model=DeliveriesPublic)
def get_deliveries(job: CurrentJob, session: SessionDep) -> DeliveriesPublic:
    """The job's webhook events (none until it ends, or without a webhook) and each delivery attempt."""
    events = session.scalars(
        select(WebhookEvent).where(WebhookEvent.job_id == job.id).order_by(WebhookEvent.created_at)
    ).all()
    return DeliveriesPublic(
        job_id=job.id,
        webhook_url=job.webhook_url,
        data=[WebhookEventPublic.model_validate(e, from_attributes=True) for e in events],
    )
