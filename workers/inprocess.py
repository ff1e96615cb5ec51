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
    """A FIFO of unit keys drained by a single thread that runs them with ``runner``."""

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        self._keys: queue.Queue[str] = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, name="grace-inprocess-worker", daemon=True)
        self._thread.start()

    def enqueue(self, key: str) -> None:
        with self._lock:
            self._pending.add(key)
        self._keys.put(key)

    def is_pending(self, key: str) -> bool:
        with self._lock:
            return key in self._pending

    def taken(self, key: str) -> None:
        with self._lock:
            self._pending.discard(key)

    def depth(self) -> int | None:
        return self._keys.qsize()

    def ping(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._keys.put(_STOP)
        self._thread.join(timeout=5)

    def _drain(self) -> None:
        while (key := self._keys.get()) != _STOP:
            self.taken(key)
            try:
                self.runner.run(key)
            except Exception:  # keep the thread alive for the next job
                log.exception("in-process worker failed on unit %s", key)


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
