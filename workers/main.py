"""``grace worker``: a long-lived Dramatiq worker process for Redis-queued jobs.

One process, one worker thread (one unit of work at a time; on a GPU machine, one process per
GPU), a prefetch of one message so an idle worker can take the next unit, no Dramatiq retries (attempts are
counted in Postgres), a time limit sized for hours-long jobs, a reconciler thread and a webhook
dispatcher thread. Loaded models stay cached in the process between jobs.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import dramatiq
from dramatiq import Worker

from grace_infra import tracing
from grace_infra.db.session import make_engine, make_session_factory
from grace_infra.queue import ACTOR_NAME, RedisJobQueue, make_broker
from grace_infra.settings import Settings
from grace_jobs.lifecycle import Outcome
from workers.reconciler import Reconciler
from workers.runner import JobRunner
from workers.webhooks import Dispatcher

log = logging.getLogger("grace.worker")
# Dramatiq's consumer backs off up to this long between fetches while its one prefetched message
# runs, so a worker that just finished a unit waits up to this long for the next: at Dramatiq's 1 s
# that is most of a second per unit of a fanned-out job. Ten fetches a second cost Redis nothing.
FETCH_BACKOFF_MS = 100


def _alive(worker: Worker, *threads: threading.Thread) -> bool:
    """Every thread the worker needs still runs: a dead one is a worker that takes no jobs (or
    never re-queues lost ones), though the process lives."""
    children = [*worker.consumers.values(), *worker.workers, *threads]
    return bool(worker.workers) and all(t.is_alive() for t in children)


def run_worker(settings: Settings, *, stop: threading.Event | None = None) -> None:
    """Consume jobs until SIGTERM/SIGINT (or ``stop`` is set)."""
    if settings.redis_url is None:
        raise SystemExit(
            "grace worker needs GRACE_REDIS_URL and GRACE_DATABASE_URL "
            "(the embedded default runs jobs inside `grace serve`)"
        )
    tracing.configure(settings.tracing)
    engine = make_engine(settings)
    session_factory = make_session_factory(engine)
    broker = make_broker(settings)
    dramatiq.set_broker(broker)
    queue = RedisJobQueue(settings, broker)
    stop = stop or threading.Event()
    runner = JobRunner(settings, session_factory, shutdown=stop)

    def run_unit(key: str) -> None:
        queue.taken(key)
        if runner.run(key) == Outcome.HANDED_BACK:
            queue.enqueue(key)  # at once, for another worker; the reconciler would only later

    dramatiq.actor(
        run_unit,
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=settings.queue_name,
        max_retries=0,
        time_limit=settings.job_time_limit_seconds * 1000,
    )
    worker = Worker(broker, worker_threads=1, worker_timeout=FETCH_BACKOFF_MS)
    worker.queue_prefetch = 1  # Dramatiq's default (2 x threads) would hoard a job an idle worker could run
    reconciler = Reconciler(session_factory=session_factory, queue=queue, settings=settings)
    dispatcher = Dispatcher(session_factory=session_factory, settings=settings)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping at the running job's next batch boundary, handing it back", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    worker.start()
    reconciler.start()
    dispatcher.start()
    log.info("worker %s consuming %r", runner.worker_id, settings.queue_name)
    try:
        # Woken every second: a signal that the kernel delivers to another thread only runs its
        # Python handler once the main thread runs again, and a wait without a timeout never does
        # (a benchmark's SIGTERM to a busy worker went unanswered for a minute).
        while not stop.wait(timeout=1.0):
            if settings.worker_alive_file is not None and _alive(worker, reconciler, dispatcher):
                settings.worker_alive_file.touch()
    finally:
        dispatcher.stop()
        reconciler.stop()
        worker.stop()
        broker.close()
        engine.dispose()
