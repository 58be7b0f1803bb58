"""The run log's events as typed values: one model per kind of line in `events.jsonl`.

`events.jsonl` is the input of `squad replay`, of `squad report` and of the live view, so
its lines are a protocol: every writer builds one of these models and every reader gets one
back, and a key renamed on one side fails the type checker or a test instead of a replay.

The `run` event, first in every log, carries `version`, the format of the lines after it.
A log without it is version 1 (squad 0.1.0, which also wrote a `reply` line after each
`llm` line and a `failed` line after each budget `stop`); such logs still load. A log of a
newer version than this squad knows is refused with one line naming the file and version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from squad import secrets
from squad.budget import BudgetLimits
from squad.errors import SquadError, describe
from squad.llm.messages import Usage
from squad.safety import scrub

VERSION = 2  # of the lines squad writes; see the module docstring for what 1 was

MAX_LOGGED_CHARS = 2000  # of one string in the run log: a refused 10 MB argument is not kept


class _Event(BaseModel):
    """What every line has: its place in the run (`seq`) and when it was written (`t`).

    Both are stamped by the run log as it writes; a writer leaves them at their defaults.
    Strict: a field of the wrong JSON type is a fault of the log, not something to coerce.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    seq: int = 0
    t: str = ""  # an instant as `clock.format_instant` writes it, to the second


class LoggedSettings(BaseModel):
    """The run's settings as a replay needs them back."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    agents: list[str] | None
    rounds: int
    concurrency: int
    max_agents: int
    limits: BudgetLimits
    branch: bool = False


class RunStarted(_Event):
    event: Literal["run"] = "run"
    version: int = 1  # absent in version 1 logs
    run: str
    goal: str
    start: str  # the commit the run built on
    squad: str  # squad's version that wrote the log
    settings: LoggedSettings
    profile: str
    model: str | None


class PlannedTask(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    agent: str
    task: str


class Planned(_Event):
    event: Literal["plan"] = "plan"
    tasks: list[PlannedTask]


class RoundStarted(_Event):
    event: Literal["round"] = "round"
    round: int
    snapshot: str | None  # the commit every agent of the round reads
    agents: list[str]


class Spawned(_Event):
    event: Literal["spawn"] = "spawn"
    agent: str
    round: int = 0
    model: str
    inputs: list[int]  # ids of the decisions in its context
    omitted: int
    prompt_tokens_estimate: int


class ModelCalled(_Event):
    """One model reply, as the run's backend saw it: the call's label, key and usage."""

    event: Literal["llm"] = "llm"
    agent: str
    round: int
    call: int
    key: str
    usage: Usage
    tool_calls: list[str]  # the names of the tools the reply asked for


class Replied(_Event):
    """Version 1 only: the agent's copy of each `llm` line (read, never written)."""

    event: Literal["reply"] = "reply"
    agent: str
    round: int = 0
    usage: Usage
    tool_calls: int


class ToolUsed(_Event):
    event: Literal["tool"] = "tool"
    agent: str
    round: int = 0
    tool: str
    ok: bool
    arguments: str
    drop: str | None = None


class Done(_Event):
    event: Literal["done"] = "done"
    agent: str
    round: int = 0
    drops: list[str]


class Failed(_Event):
    event: Literal["failed"] = "failed"
    agent: str
    round: int = 0
    error: str


class Stopped(_Event):
    """A call a budget or an interrupt refused; a replay refuses the same call."""

    event: Literal["stop"] = "stop"
    agent: str
    round: int
    call: int
    reason: str


class Delivered(_Event):
    """In a run spread over machines: one agent's part as the coordinator collected it, where
    it ran (its writer and delivery commit), how it talked to its model, and its drops. Its
    own events follow it; a replay commits each drop with its writer in the trailers."""

    event: Literal["delivery"] = "delivery"
    task: str
    agent: str
    writer: str
    commit: str
    profile: str
    model: str | None
    drops: list[str]


class Committed(_Event):
    event: Literal["commit"] = "commit"
    drop: str
    id: int
    sha: str
    agent: str
    title: str
    date: str  # the record's date, as the run's clock gave it; a replay reuses it


class Quarantined(_Event):
    event: Literal["quarantine"] = "quarantine"
    drop: str
    reason: str


class Kept(_Event):
    """A file of the user's that the coordinator moved aside rather than overwrite."""

    event: Literal["kept"] = "kept"
    path: str
    kept_as: str


class DecisionRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    id: int
    agent: str
    sha: str
    drop: str


class QuarantineRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    drop: str
    reason: str


class AgentRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    agent: str
    round: int
    ok: bool
    error: str | None
    calls: int
    drops: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None


class Summary(_Event):
    """The last line: what the run did, as `squad run` prints it."""

    event: Literal["summary"] = "summary"
    run: str
    start: str
    end: str
    ok: bool
    stopped: str | None
    decisions: list[DecisionRow]
    quarantined: list[QuarantineRow]
    agents: list[AgentRow]
    review: str | None  # the git command that shows what the run committed
    nothing_decided: str | None
    log: str | None  # where the log of a run that committed nothing was put


Event = Annotated[
    RunStarted | Planned | RoundStarted | Spawned | ModelCalled | Replied | ToolUsed | Done
    | Failed | Stopped | Delivered | Committed | Quarantined | Kept | Summary,
    Field(discriminator="event")]
AgentEvent = Spawned | ToolUsed | Done | Failed  # what `agent.run_agent` reports
Listener = Callable[[Event], None]
KINDS: tuple[str, ...] = ("run", "plan", "round", "spawn", "llm", "reply", "tool", "done",
                          "failed", "stop", "delivery", "commit", "quarantine", "kept",
                          "summary")

_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


# ---- writing ---------------------------------------------------------------------------


def _bounded(value: Any) -> Any:
    """`value` with long strings cut and lone surrogates replaced, for the run log."""
    if isinstance(value, str):
        if len(value) > MAX_LOGGED_CHARS:
            value = value[:MAX_LOGGED_CHARS] + f"... [{len(value) - MAX_LOGGED_CHARS} more " \
                                               "characters not logged]"
        return scrub(value)
    if isinstance(value, list):
        return [_bounded(item) for item in value]
    if isinstance(value, dict):
        return {key: _bounded(item) for key, item in value.items()}
    return value


def to_json(event: Event, stamp: dict[str, Any] | None = None) -> dict[str, Any]:
    """The event as its line's JSON object: long strings cut, keys as the log spells them;
    `stamp` (`seq`, `t`) set on it as `model_copy(update=stamp)` would, minus the copy."""
    data: dict[str, Any] = _bounded(event.model_dump(mode="json"))
    if stamp:
        data.update(_bounded(stamp))
    return data


def to_line(event: Event, stamp: dict[str, Any] | None = None) -> str:
    """One line of `events.jsonl` (without the newline): sorted keys, secrets redacted."""
    return secrets.redact(json.dumps(to_json(event, stamp), sort_keys=True,
                                     ensure_ascii=False))


# ---- reading ---------------------------------------------------------------------------


def parse(data: object, where: str) -> Event:
    """One event from a decoded JSON line; a fault is one line naming `where`."""
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise SquadError(f"{where}: not an event (a JSON object with 'event')")
    kind = data["event"]
    if kind not in KINDS:
        raise SquadError(f"{where}: unknown event {kind[:40]!r} (known: {', '.join(KINDS)})")
    try:
        return _EVENT.validate_python(data)
    except ValidationError as exc:
        raise SquadError(f"{where}: not a usable run log ({kind} event: "
                         f"{describe(exc, skip=1)})") from None  # the location's [0] is the kind


def read(data: bytes, where: str) -> list[Event]:
    """Every event of a run log, in the order written. The first must be the `run` event,
    and its version one this squad reads; anything else is a one-line SquadError naming
    the file (and the line)."""
    lines = [(n, raw) for n, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]
    if not lines:
        raise SquadError(f"{where}: empty; a run log starts with its run event")
    events: list[Event] = []
    for number, raw in lines:
        try:
            decoded = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise SquadError(f"{where}:{number}: not JSON ({' '.join(str(exc).split())[:120]})"
                             ) from None
        if not events:
            _check_head(decoded, where, number)
        events.append(parse(decoded, f"{where}:{number}"))
    return events


def _check_head(data: object, where: str, number: int) -> None:
    if isinstance(data, dict) and data.get("event") != "run" \
            and isinstance(data.get("event"), str):
        raise SquadError(f"{where}: does not start with a run event")
    version = data.get("version", 1) if isinstance(data, dict) else 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SquadError(f"{where}:{number}: the run event's version {version!r} is not a "
                         "run log version")
    if version > VERSION:
        raise SquadError(f"{where}: run log version {version} is newer than this squad "
                         f"reads (up to {VERSION}); upgrade squad to read it")


def head(events: list[Event], where: str) -> RunStarted:
    """The run event that starts `events` (see `read`)."""
    first = events[0] if events else None
    if not isinstance(first, RunStarted):
        raise SquadError(f"{where}: does not start with a run event")
    return first
