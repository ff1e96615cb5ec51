"""The embedded default's queue: one worker thread inside the API process (no Redis), and
:func:`start_embedded`, which wires it with its runner and reconciler for the API's lifespan."""

from __future__ import annotations

import logging
import queue
import threading

from sqlalchemy.orm import Session, sessionmaker

from grace_infra.settings import Settings
from workers.reconciler import Reconciler
from workers.runner import JobRunner
from workers.webhooks import Dispatcher

log = logging.getLogger("grace.worker")
_STOP = "__stop__"


class InProcessQueue:
    """A FIFO of unit ids drained by a single thread that runs them with ``runner``."""

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        self._ids: queue.Queue[str] = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, name="grace-inprocess-worker", daemon=True)
        self._thread.start()

    def enqueue(self, job_id: str) -> None:
        with self._lock:
            self._pending.add(job_id)
        self._ids.put(job_id)

    def is_pending(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._pending

    def taken(self, job_id: str) -> None:
        with self._lock:
            self._pending.discard(job_id)

    def depth(self) -> int | None:
        return self._ids.qsize()

    def ping(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._ids.put(_STOP)
        self._thread.join(timeout=5)

    def _drain(self) -> None:
        while (job_id := self._ids.get()) != _STOP:
            self.taken(job_id)
            try:
                self.runner.run(job_id)
            except Exception:  # keep the thread alive for the next job
                log.exception("in-process worker failed on job %s", job_id)


class EmbeddedWorker:
    """The in-process queue, the runner draining it, the reconciler watching it and the webhook
    dispatcher, stopped together."""

    def __init__(self, settings: Settings, session_factory: sessionmaker[Session]) -> None:
        self.queue = InProcessQueue(JobRunner(settings, session_factory))
        self.reconciler = Reconciler(session_factory=session_factory, queue=self.queue, settings=settings)
        self.reconciler.start()
        self.dispatcher = Dispatcher(session_factory=session_factory, settings=settings)
        self.dispatcher.start()

    def close(self) -> None:
        self.dispatcher.stop()
        self.reconciler.stop()
        self.queue.close()


def start_embedded(settings: Settings, session_factory: sessionmaker[Session]) -> EmbeddedWorker:
    """The embedded default's worker side, running until :meth:`EmbeddedWorker.close`."""
    return EmbeddedWorker(settings, session_factory)
