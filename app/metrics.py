"""Prometheus metrics of jobs, read from the database at scrape time so every API replica reports
the same numbers whatever process ran the jobs: a few aggregate rows, never every job."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from grace_infra.db.models import Job, JobStatus
from grace_jobs import durations


class JobMetrics(Collector):
    def __init__(self, session_factory: sessionmaker[Session], queue_depth: Callable[[], int | None]) -> None:
        self.session_factory = session_factory
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        with self.session_factory() as session:
            counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            scored = session.scalar(select(func.coalesce(func.sum(Job.examples_scored), 0))) or 0
            buckets, seconds = durations.histogram(session)
        jobs = GaugeMetricFamily("grace_jobs", "Jobs by state", labels=["state"])
        for state in JobStatus:
            jobs.add_metric([state.value], counts.get(state.value, 0))
        yield jobs
        depth = self.queue_depth()
        if depth is not None:
            yield GaugeMetricFamily("grace_queue_depth", "Job messages waiting in the queue", value=depth)
        yield HistogramMetricFamily(
            "grace_job_duration_seconds", "Run time of succeeded jobs", buckets=buckets, sum_value=seconds
        )
        yield CounterMetricFamily("grace_examples_scored", "Teacher responses scored", value=scored)
