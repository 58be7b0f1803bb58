"""SIGINT and SIGTERM as a request to stop: one way for every long-running command."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def stop_on_signals(*events: threading.Event) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM set each of `events`; the old handlers come back after.

    Only the main thread may install handlers; elsewhere (a test's thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        for event in events:
            event.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
