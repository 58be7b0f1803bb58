"""`squad watch`: the coordinator kept running, woken by watchdog (the only module using it).

Filesystem events only say "look again"; the pass itself is `Coordinator.ingest`, so a missed
or duplicated event can never lose or double a drop. A slow periodic pass covers the rest.
"""

from __future__ import annotations

import threading

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from squad.coordinator import Coordinator
from squad.errors import UnsafeRepoError
from squad.signals import Waiting, stop_on_signals

RESCAN_SECONDS = 5.0
BLOCKED_RETRY_SECONDS = 0.5


class _Wake(FileSystemEventHandler):
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._event.set()


def watch(coordinator: Coordinator, poll: bool = False,
          stop: threading.Event | None = None) -> None:
    """Ingest what piled up, then every new drop, until `stop` is set or SIGINT/SIGTERM."""
    stop = stop or threading.Event()
    wake = threading.Event()
    inbox = coordinator.ws.inbox
    inbox.create()
    observer = PollingObserver(timeout=0.5) if poll else Observer()
    observer.schedule(_Wake(wake), str(inbox.path), recursive=True)
    observer.start()
    try:
        with stop_on_signals(stop, wake):
            # said only now: from here on Ctrl-C and SIGTERM stop the watch cleanly
            coordinator.log(f"watching {inbox.path} (Ctrl-C to stop)")
            _take_until(coordinator, stop, wake)
    finally:
        observer.stop()
        observer.join()


def _take_until(coordinator: Coordinator, stop: threading.Event,
                wake: threading.Event) -> None:
    """Ingest on every wake-up (a file event, the rescan timer) until `stop`; an unsafe
    repository is waited out, saying so once."""
    waiting = Waiting(coordinator.log)
    while not stop.is_set():
        wake.clear()
        try:
            report = coordinator.ingest(stop)
        except UnsafeRepoError as exc:
            # a held index.lock, a merge or a rebase passes: keep the drops and wait
            waiting.blocked(exc.message)
            wake.wait(BLOCKED_RETRY_SECONDS)
            continue
        waiting.passed()
        delay = RESCAN_SECONDS
        if report.waiting_for is not None:
            delay = min(delay, report.waiting_for + 0.05)
        wake.wait(delay)
