"""Typed response bodies: the very pydantic models the API answers with (``app.schemas`` and the job
kinds' ``grace_jobs.public``), not copies, so a field the service adds or renames is one change.
Importing them loads pydantic and the request schemas, never the model stack or the web framework.

Validate what any client method returned, sync or async alike::

    job = JobPublic.model_validate(client.get_job(job_id))
    board = LeaderboardPublic.model_validate(await aclient.get_leaderboard("student", dataset_id))
"""

from __future__ import annotations

from app.schemas import (
    BoardPublic,
    BoardsPublic,
    DatasetPublic,
    DatasetsPublic,
    DeliveriesPublic,
    JobAccepted,
    JobPublic,
    JobsPublic,
    LeaderboardPublic,
    RankingEntry,
    RankingHistory,
    RankingPublic,
    ScalingPlans,
    ScalingPrediction,
    ScoresPublic,
    UnitPublic,
    WebhookSecretPublic,
)
from grace_jobs.public import CorrelationPublic, InfluencePublic, ValidationPublic, WarningPublic

__all__ = [
    "BoardPublic",
    "BoardsPublic",
    "CorrelationPublic",
    "DatasetPublic",
    "DatasetsPublic",
    "DeliveriesPublic",
    "InfluencePublic",
    "JobAccepted",
    "JobPublic",
    "JobsPublic",
    "LeaderboardPublic",
    "RankingEntry",
    "RankingHistory",
    "RankingPublic",
    "ScalingPlans",
    "ScalingPrediction",
    "ScoresPublic",
    "UnitPublic",
    "ValidationPublic",
    "WarningPublic",
    "WebhookSecretPublic",
]
