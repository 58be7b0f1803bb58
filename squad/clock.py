"""squad's only source of time: every date in a record or a commit comes from a Clock.

Tests and replays inject a fixed or recorded clock; `SQUAD_NOW` pins it from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from squad.errors import UsageError

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 instant; a naive one is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"not an ISO 8601 date: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def fixed_clock(start: datetime, step: timedelta = timedelta(0)) -> Clock:
    """A clock that starts at `start` and advances by `step` on every reading."""
    state = {"now": start}

    def read() -> datetime:
        now = state["now"]
        state["now"] = now + step
        return now

    return read


def default_clock() -> Clock:
    pinned = os.environ.get("SQUAD_NOW")
    if pinned:
        return fixed_clock(parse_instant(pinned))
    return system_clock


def format_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
