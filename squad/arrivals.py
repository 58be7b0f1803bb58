"""The coordinator beside the agents: drops are committed as they arrive, in groups.

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
        """Drops that arrived together (a burst of agents) are one group commit: one fsync
        round, one branch move, one index write (see `Coordinator.take_all`)."""
        waiting: set[str] = set()
        while True:
            names = [self._queue.get()]
            while names[-1] is not None:
                try:
                    names.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                ready = [] if self.error else \
                    [r for name in names if name is not None
                     for r in self._in_order(name, waiting)]
                if ready:
                    self._take(ready)
            except BaseException as exc:  # kept for the main thread; drops stay in the inbox
                self.error = exc
                self._on_error(exc)
            finally:
                for _ in names:
                    self._queue.task_done()
            if names[-1] is None:  # the run's last arrival: whatever happened, stop here
                return

    def _take(self, names: list[str]) -> None:
        coordinator, outcome = self._coordinator, self._outcome
        report = PassReport()
        coordinator.take_all(names, report)
        for record, sha, name in zip(report.committed, report.commits, report.drops,
                                     strict=True):
            outcome.committed.append((name, record.id, sha, record.agent))
            self.log(Committed(drop=name, id=record.id, sha=sha, agent=record.agent,
                               title=record.title, date=format_instant(record.date)))
        for drop, reason in report.quarantined:
            outcome.quarantined.append((drop, reason))
            self.log(Quarantined(drop=drop, reason=reason))
        for path, kept in report.kept:
            self.log(Kept(path=path, kept_as=kept))
