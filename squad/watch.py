"""`squad watch`: the coordinator kept running, woken by watchdog (the only module using it).

Filesystem events only say "look again"; the pass itself is `Coordinator.ingest`, so a missed
or duplicated event can never lose or double a drop. A slow periodic pass covers the rest.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from squad.coordinator import Coordinator
from squad.errors import UnsafeRepoError

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
    previous = _install_signal_handlers(stop, wake)
    observer = PollingObserver(timeout=0.5) if poll else Observer()
    observer.schedule(_Wake(wake), str(inbox.path), recursive=True)
    observer.start()
    blocked: str | None = None
    try:
        while not stop.is_set():
            wake.clear()
            try:
                report = coordinator.ingest(stop)
            except UnsafeRepoError as exc:
                # a held index.lock, a merge or a rebase passes: keep the drops and wait
                if exc.message != blocked:
                    coordinator.log(f"waiting: {exc.message}")
                blocked = exc.message
                wake.wait(BLOCKED_RETRY_SECONDS)
                continue
            if blocked:
                coordinator.log("resumed")
                blocked = None
            delay = RESCAN_SECONDS
            if report.waiting_for is not None:
                delay = min(delay, report.waiting_for + 0.05)
            wake.wait(delay)
    finally:
        observer.stop()
        observer.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _install_signal_handlers(stop: threading.Event,
                             wake: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum: int, frame: object) -> None:
        stop.set()
        wake.set()

    return {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
