"""Daemon threads that carry a run's agents and their model calls, reused from one job to
the next.

An agent waits for its model call from a thread of its own, so that Ctrl-C can stop the
wait at once (see `modes.Record.call`). Starting a thread costs a hand-off of the
interpreter lock: `Thread.start` waits until the new thread has run, and while sixteen
agents compete for the lock that wait lasts up to a switch interval (5 ms) per thread,
which spread one round's agents over ~45 ms. So a round's threads are started (or found
idle) before any of its agents begins (`reserve`, `fan_out`), and a worker stays for the
next job. A worker idle for a few seconds retires, so nothing lingers after a run; one
stuck in an abandoned call holds nobody up (daemon).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypeVar

IDLE_SECONDS = 2.0
T = TypeVar("T")
Inbox = queue.SimpleQueue[Callable[[], None]]


class Workers:
    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self._lock = threading.Lock()
        self._idle: list[Inbox] = []  # idle workers' inboxes
        self._idle_seconds = idle_seconds

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on an idle worker, or on a new one; `job` handles its own errors."""
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is not None:
            inbox.put(job)
        else:
            self._start(job)

    def reserve(self, count: int) -> None:
        """Have at least `count` idle workers, started now, while nothing else competes
        for the interpreter lock, rather than one by one as jobs come."""
        with self._lock:
            missing = count - len(self._idle)
        for _ in range(missing):
            self._start(None)

    def fan_out(self, jobs: Sequence[Callable[[], T]], width: int) -> list[Future[T]]:
        """Run `jobs` on `width` workers at most, and return once every one has ended, its
        result or error in its future (in job order). All the workers are there before
        the first job begins, so no job waits for a sibling's thread to start."""
        futures: list[Future[T]] = [Future() for _ in jobs]
        if not jobs:
            return futures
        width = max(1, min(width, len(jobs)))
        order = iter(range(len(jobs)))
        lock, done = threading.Lock(), threading.Lock()
        done.acquire()
        left = [width]

        def lane() -> None:
            while True:
                with lock:
                    index = next(order, None)
                if index is None:
                    break
                future = futures[index]
                future.set_running_or_notify_cancel()
                try:
                    future.set_result(jobs[index]())
                except BaseException as exc:  # handed to the caller through the future
                    future.set_exception(exc)
            with lock:
                left[0] -= 1
                if not left[0]:
                    done.release()

        self.reserve(width)
        for _ in range(width):
            self.submit(lane)
        try:
            done.acquire()  # the jobs end by themselves (a run interrupts them: see Run)
        except BaseException:
            done.acquire()  # as a thread pool's exit would: the jobs end first
            raise
        return futures

    def _start(self, job: Callable[[], None] | None) -> None:
        inbox: Inbox = queue.SimpleQueue()
        if job is None:
            with self._lock:
                self._idle.append(inbox)
        threading.Thread(target=self._serve, args=(inbox, job), daemon=True,
                         name="squad-worker").start()

    def _serve(self, inbox: Inbox, job: Callable[[], None] | None) -> None:
        while True:
            if job is not None:
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


CALLS = Workers()  # shared by the runs of this process: their agents and model calls
