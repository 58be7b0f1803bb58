"""What a replay takes from a recorded run instead of from the world: its script."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from squad import events
from squad.clock import Clock, parse_instant
from squad.errors import SquadError
from squad.events import Committed, Event, Quarantined, RoundStarted, RunStarted, Stopped
from squad.llm.cassette import Label
from squad.outcome import RunSettings


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
