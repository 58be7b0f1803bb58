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
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []  # idle workers' inboxes
        self._idle_seconds = idle_seconds

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on an idle worker, or on a new one; `job` handles its own errors."""
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is not None:
            inbox.put(job)
        else:
            threading.Thread(target=self._serve, args=(job,), daemon=True,
                             name="squad-call").start()

    def _serve(self, job: Callable[[], None]) -> None:
        inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        while True:
            job()
            with self._lock:
                self._idle.append(inbox)
            try:
                job = inbox.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:  # nobody picked this worker: retire
                        self._idle.remove(inbox)
                        return
                job = inbox.get()  # a submitter picked it just now: its job is coming


CALLS = Workers()  # shared by the runs of this process
