"""Tenants and their API keys (sent as ``Authorization: Bearer <key>``); only a key's SHA-256 is
stored.

Keys are 32 random bytes (URL-safe base64) behind a ``gk_`` prefix, so a fast hash is enough:
there is nothing to brute-force. Every key belongs to a tenant; with auth off (the embedded
default) every request acts as the ``default`` tenant.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grace_engine.errors import InvalidInput
from grace_infra.db.base import utcnow
from grace_infra.db.models import ApiKey, Tenant
from grace_jobs import webhooks

KEY_PREFIX = "gk_"
DEFAULT_TENANT = "default"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_or_create_tenant(*, session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is not None:
        return tenant
    tenant = Tenant(name=name)
    session.add(tenant)
    try:
        session.commit()
    except IntegrityError:  # created concurrently
        session.rollback()
        tenant = session.scalars(select(Tenant).where(Tenant.name == name)).one()
    return tenant


def create_key(*, session: Session, tenant_name: str) -> str:
    """A new key for ``tenant_name`` (created if needed). The plain key exists only in the return value."""
    tenant = get_or_create_tenant(session=session, name=tenant_name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant_id=tenant.id, key_hash=hash_key(key), prefix=key[:10]))
    session.commit()
    return key


def tenant_for_key(*, session: Session, key: str) -> Tenant | None:
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)))
    return row.tenant if row is not None else None


def _tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise InvalidInput(f"no tenant named {name!r}", field="tenant")
    return tenant


def list_keys(*, session: Session, tenant_name: str) -> list[ApiKey]:
    """The tenant's keys, oldest first (their prefixes; the keys themselves are not stored)."""
    tenant = _tenant(session, tenant_name)
    return list(
        session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant.id).order_by(ApiKey.created_at))
    )


def revoke_key(*, session: Session, prefix: str) -> None:
    """Revoke the one active key with this prefix (``keys list`` shows them)."""
    keys = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))).all()
    if len(keys) != 1:
        raise InvalidInput(
            "no active key has this prefix" if not keys else "several keys have this prefix", field="prefix"
        )
    keys[0].revoked_at = utcnow()
    session.commit()


def rotate_webhook_secret(*, session: Session, tenant: Tenant, overlap: timedelta) -> str:
    """A new webhook signing secret for ``tenant``. The one it replaces keeps signing beside it for
    ``overlap`` (Standard Webhooks carries several signatures), so a receiver that still verifies
    with the old secret accepts every delivery until it switches. Only the secret replaced last
    overlaps: a second rotation within the window ends the first one's. The tenant's row is locked,
    so two rotations at once (API and CLI) replace one another in turn, never the same secret."""
    session.refresh(tenant, with_for_update=True)
    secret, now = webhooks.new_secret(), utcnow()
    keep = tenant.webhook_secret is not None and overlap > timedelta(0)
    tenant.webhook_secret_previous = tenant.webhook_secret if keep else None
    tenant.webhook_secret_previous_until = now + overlap if keep else None
    tenant.webhook_secret, tenant.webhook_secret_at = secret, now
    session.commit()
    return secret
