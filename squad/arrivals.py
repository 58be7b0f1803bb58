"""The coordinator beside the agents: drops are committed one at a time, as they arrive.

Agents hand the names of their drops to `put` from their threads; one thread takes them in
the order `order` releases them (arrival order when recording, the recorded order on replay)
and commits each through the run's coordinator, logging what it committed, quarantined or
kept. A fault stops the line: it is kept for the main thread, and the drops stay in the inbox.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from squad.clock import format_instant
from squad.coordinator import Coordinator, PassReport
from squad.events import Committed, Kept, Quarantined
from squad.outcome import Outcome
from squad.runlog import RunLog

Order = Callable[[str, set[str]], Iterator[str]]


class Arrivals:
    def __init__(self, coordinator: Coordinator, outcome: Outcome, log: RunLog, order: Order,
                 on_error: Callable[[BaseException], None]) -> None:
        self._coordinator, self._outcome, self.log = coordinator, outcome, log
        self._in_order, self._on_error = order, on_error
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._coordinate, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, name: str) -> None:
        """A drop is in the inbox (called from an agent's thread)."""
        self._queue.put(name)

    def settle(self) -> None:
        """Wait until every drop put so far is taken."""
        self._queue.join()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _coordinate(self) -> None:
        waiting: set[str] = set()
        while True:
            name = self._queue.get()
            try:
                if name is None:
                    return
                if self.error:
                    continue
                for ready in self._in_order(name, waiting):
                    self._take(ready)
            except BaseException as exc:  # kept for the main thread; drops stay in the inbox
                self.error = exc
                self._on_error(exc)
            finally:
                self._queue.task_done()

    def _take(self, name: str) -> None:
        coordinator, outcome = self._coordinator, self._outcome
        report = PassReport()
        coordinator.take(name, report)
        for record, sha in zip(report.committed, report.commits, strict=True):
            outcome.committed.append((name, record.id, sha, record.agent))
            self.log(Committed(drop=name, id=record.id, sha=sha, agent=record.agent,
                               title=record.title, date=format_instant(record.date)))
        for drop, reason in report.quarantined:
            outcome.quarantined.append((drop, reason))
            self.log(Quarantined(drop=drop, reason=reason))
        for path, kept in report.kept:
            self.log(Kept(path=path, kept_as=kept))
