"""Long-running commands: SIGINT and SIGTERM as a request to stop, and one way to say why a
loop waits."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

Handler = Callable[[int, object], None]


@contextlib.contextmanager
def on_signals(handle: Handler) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM call `handle`; the old handlers come back after.

    Only the main thread may install handlers; elsewhere (a test's thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def stop_on_signals(*events: threading.Event) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM set each of `events`."""

    def handle(signum: int, frame: object) -> None:
        for event in events:
            event.set()

    with on_signals(handle):
        yield


class Waiting:
    """A loop that waits out a fault says why once (again only if the reason changes), and
    says "resumed" once a pass goes through."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._why: str | None = None

    def blocked(self, why: str) -> None:
        if why != self._why:
            self._log(f"waiting: {why}")
        self._why = why

    def passed(self) -> None:
        if self._why:
            self._log("resumed")
            self._why = None
