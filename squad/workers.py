"""Daemon threads that carry model calls, reused from one call to the next.

An agent waits for its model call from a thread of its own, so that Ctrl-C can stop the
wait at once (see `modes.Record.call`). Starting a thread per call costs a hand-off of the
interpreter lock (half a millisecond and more while sixteen agents compete for it); a
worker that stays for the next call pays it once. A worker idle for a few seconds retires,
so nothing lingers after a run; one stuck in an abandoned call holds nobody up (daemon).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

IDLE_SECONDS = 2.0


class Workers:
    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for a job that no submitter has claimed yet
        self._idle_seconds = idle_seconds

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on an idle worker, or on a new one; `job` handles its own errors."""
        with self._lock:
            claimed = self._idle > 0
            if claimed:
                self._idle -= 1
        self._jobs.put(job)
        if not claimed:
            threading.Thread(target=self._serve, daemon=True, name="squad-call").start()

    def _serve(self) -> None:
        job: Callable[[], None] | None = self._jobs.get()
        while True:
            assert job is not None
            job()
            job = None
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody counts on this worker: retire
                        self._idle -= 1
                        return
                job = self._jobs.get()  # a submitter claimed this worker: its job is coming


CALLS = Workers()  # shared by the runs of this process
