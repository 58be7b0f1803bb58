"""How a run meets the world: recording it, or replaying a recording. One strategy object,
handed to `Run`, answers every question where the two differ, so the run itself has no mode.

- Record: a new run id; the log and cassette written under `.squad/runs/<id>/`; the budget
  checked before each call; a call in flight abandoned when the run is interrupted; drops
  committed in the order they arrive; at the end the run's folder is committed with its
  records (or, if nothing was decided, put aside in `.git/squad/runs/`).
- Replay: the recorded run id, commit dates, order of commits and refused calls (its
  `Script`); nothing written but the commits, which must come out the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from squad import events, workers
from squad.budget import Budget, Stop
from squad.clock import Clock, parse_instant
from squad.errors import SquadError
from squad.events import Committed, Event, Quarantined, RoundStarted, RunStarted, Stopped
from squad.llm.backend import Backend
from squad.llm.cassette import Label, Seam
from squad.llm.messages import ChatReply
from squad.outcome import Outcome, RunSettings
from squad.runlog import RunLog
from squad.workspace import Workspace

RUNS = ".squad/runs"


class Mode(Protocol):
    """What a run asks of its strategy, in the order it asks."""

    def seam(self, backend: Backend) -> Seam:
        """The seam every model call of the run goes through."""
        ...

    def begin(self, ws: Workspace, settings: RunSettings, start: str, log: RunLog,
              ) -> tuple[str, Workspace]:
        """The run id, and the workspace the run works in (its clock may be the script's)."""
        ...

    def rounds(self, settings: RunSettings) -> int: ...

    def goes_on(self, budget: Budget) -> bool:
        """Whether another round starts."""
        ...

    def allow(self, label: Label, budget: Budget, log: RunLog) -> None:
        """Raise `Stop` if the call `label` is refused."""
        ...

    def call(self, label: Label, call: Callable[[], ChatReply],
             watch: Callable[[], None]) -> ChatReply:
        """Make the call; `watch` raises `Stop` once the run gives up waiting for it."""
        ...

    def in_order(self, name: str, waiting: set[str]) -> Iterator[str]:
        """The drops to commit now that `name` arrived (`waiting` is this method's own)."""
        ...

    def finish(self, outcome: Outcome, summary: Callable[[], None]) -> None:
        """After the rounds: check what the mode promised, log the summary (by calling
        `summary`), and keep the run's files as the mode does."""
        ...

    def abort(self, outcome: Outcome) -> None:
        """The run failed: keep what can be kept."""
        ...


def new_run_id(now: datetime, goal: str, head: str | None) -> str:
    tag = hashlib.sha256(f"{goal}\0{head}\0{now.isoformat()}".encode()).hexdigest()[:6]
    return f"{now:%Y%m%d-%H%M%S}-{tag}"


class Record:
    """A run that happens now; `cassette=False` (`--live`) keeps no cassette."""

    def __init__(self, cassette: bool = True) -> None:
        self._cassette = cassette
        self._seam: Seam | None = None
        self._ws: Workspace | None = None
        self._folder: Path | None = None
        self._log: RunLog | None = None
        self._run_id = ""
        self._goal = ""

    def seam(self, backend: Backend) -> Seam:
        self._seam = Seam("record" if self._cassette else "live", backend)
        return self._seam

    def begin(self, ws: Workspace, settings: RunSettings, start: str, log: RunLog,
              ) -> tuple[str, Workspace]:
        run_id = new_run_id(ws.clock(), settings.goal, start)
        folder = ws.root / RUNS / run_id
        folder.mkdir(parents=True, exist_ok=False)
        if self._seam is not None and self._cassette:
            self._seam.record_to(folder / "cassette.jsonl")
        log.write_to(folder / "events.jsonl")
        self._ws, self._folder, self._log = ws, folder, log
        self._run_id, self._goal = run_id, settings.goal
        return run_id, ws

    def rounds(self, settings: RunSettings) -> int:
        return settings.rounds

    def goes_on(self, budget: Budget) -> bool:
        return not budget.stopped

    def allow(self, label: Label, budget: Budget, log: RunLog) -> None:
        try:
            budget.check()
        except Stop as stop:
            log(Stopped(agent=label.agent, round=label.round, call=label.call,
                        reason=stop.message))
            raise

    def call(self, label: Label, call: Callable[[], ChatReply],
             watch: Callable[[], None]) -> ChatReply:
        """The call runs in its own thread, so the agent can stop waiting (Ctrl-C) at once."""
        box: dict[str, Any] = {}
        done = threading.Lock()  # released by the worker: cheaper to signal than an Event
        done.acquire()

        def work() -> None:
            try:
                box["reply"] = call()
            except BaseException as exc:  # handed to the waiting agent
                box["error"] = exc
            finally:
                done.release()

        workers.CALLS.submit(work)
        while not done.acquire(timeout=0.05):
            watch()
        if "error" in box:
            raise box["error"]
        reply: ChatReply = box["reply"]
        return reply

    def in_order(self, name: str, waiting: set[str]) -> Iterator[str]:
        yield name

    def finish(self, outcome: Outcome, summary: Callable[[], None]) -> None:
        if not outcome.committed:
            outcome.log = self._aside()
        summary()
        if outcome.committed:
            self._commit_log(outcome)

    def abort(self, outcome: Outcome) -> None:
        if not outcome.committed and self._folder is not None and self._folder.is_dir():
            self._aside()

    def _aside(self) -> str:
        """A run that decided nothing leaves no commit; its log goes where no `git add .`
        picks it up (committed, it could not be replayed), and the user is told where."""
        assert self._ws is not None and self._folder is not None and self._log is not None
        target = self._ws.repo.git_dir / "squad" / "runs" / self._run_id
        target.parent.mkdir(parents=True, exist_ok=True)
        self._log.move_to(target / "events.jsonl")
        if self._seam is not None:
            self._seam.record_to(target / "cassette.jsonl")
        shutil.move(str(self._folder), str(target))
        with contextlib.suppress(OSError):
            self._folder.parent.rmdir()  # .squad/runs, if this was its only run
        self._folder = None
        return str(target / "events.jsonl")

    def _commit_log(self, outcome: Outcome) -> None:
        assert self._ws is not None and self._folder is not None and self._log is not None
        self._log.close_file()
        run_id, folder, repo = self._run_id, self._folder, self._ws.repo
        files = {f"{RUNS}/{run_id}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}
        message = (f"squad run {run_id}\n\n{self._goal.strip()[:2000]}\n\n"
                   f"Squad-Run: {run_id}\nSquad-Run-Start: {outcome.start}\n")
        repo.commit(files, message, self._ws.clock(), repo.head())  # the run holds the lock
        repo.settle(sorted(files), overwrite=False)  # the files are there, just read: index only


class Replay:
    """A recorded run, executed again: every reply from its cassette, everything else that
    the world decided (id, dates, order of commits, refused calls) from its `Script`."""

    def __init__(self, script: Script, entries: list[dict[str, Any]]) -> None:
        self.script = script
        self._entries = entries
        self._next = 0  # the next drop of `script.order` to commit

    def seam(self, backend: Backend) -> Seam:
        return Seam("replay", entries=self._entries)

    def begin(self, ws: Workspace, settings: RunSettings, start: str, log: RunLog,
              ) -> tuple[str, Workspace]:
        return self.script.run_id, dataclasses.replace(ws, clock=iter_clock(self.script.dates))

    def rounds(self, settings: RunSettings) -> int:
        return self.script.rounds

    def goes_on(self, budget: Budget) -> bool:
        return True  # the recording says how many rounds ran

    def allow(self, label: Label, budget: Budget, log: RunLog) -> None:
        if label in self.script.stops:
            raise Stop(self.script.stops[label])

    def call(self, label: Label, call: Callable[[], ChatReply],
             watch: Callable[[], None]) -> ChatReply:
        return call()  # from the cassette: nothing to wait for

    def in_order(self, name: str, waiting: set[str]) -> Iterator[str]:
        order = self.script.order
        if name not in order:
            raise SquadError(f"replay diverged: drop {name} was not in the recorded run")
        waiting.add(name)
        while self._next < len(order) and order[self._next] in waiting:
            waiting.discard(order[self._next])
            yield order[self._next]
            self._next += 1

    def finish(self, outcome: Outcome, summary: Callable[[], None]) -> None:
        if self._next < len(self.script.order):
            raise SquadError(f"replay diverged: the recorded drop {self.script.order[self._next]}"
                             " was not made again")
        summary()

    def abort(self, outcome: Outcome) -> None:
        pass


@dataclass(frozen=True)
class Script:
    """What a replay takes from the recorded run instead of from the world."""

    run_id: str
    dates: tuple[datetime, ...]  # each commit's date, in commit order
    order: tuple[str, ...]  # drop names, in the order the coordinator took them
    stops: dict[Label, str]  # calls that a budget or an interrupt refused
    rounds: int


def iter_clock(dates: tuple[datetime, ...]) -> Clock:
    readings = iter(dates)

    def read() -> datetime:
        try:
            return next(readings)
        except StopIteration:
            raise SquadError("replay diverged: more commits than the recorded run") from None

    return read


def load_script(log: list[Event], where: str = "events.jsonl",
                ) -> tuple[RunSettings, Script, RunStarted]:
    """The settings, replay script and run event (start commit, profile, model) of a run
    read back with `events.read`; a fault is a one-line SquadError naming the file."""
    head = events.head(log, where)
    s = head.settings
    settings = RunSettings(goal=head.goal, agents=tuple(s.agents) if s.agents else None,
                           rounds=s.rounds, concurrency=s.concurrency,
                           max_agents=s.max_agents, limits=s.limits)
    try:
        dates = tuple(parse_instant(e.date) for e in log if isinstance(e, Committed))
    except ValueError as exc:
        raise SquadError(f"{where}: a commit event's date is not an instant ({exc})") from None
    script = Script(
        run_id=head.run, dates=dates,
        order=tuple(e.drop for e in log if isinstance(e, Committed | Quarantined)),
        stops={Label(e.agent, e.round, e.call): e.reason
               for e in log if isinstance(e, Stopped)},
        rounds=sum(1 for e in log if isinstance(e, RoundStarted)))
    return settings, script, head
