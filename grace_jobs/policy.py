"""Where a job's models may come from, from the settings."""

from __future__ import annotations

from grace_engine.models.loading import ModelPolicy
from grace_infra.settings import Settings


def policy_from(settings: Settings) -> ModelPolicy:
    """Configured model roots and allowed hub ids; downloads only when the settings allow them."""
    return ModelPolicy.from_paths(
        settings.model_roots, settings.allowed_hub_ids, offline=not settings.hub_download
    )
