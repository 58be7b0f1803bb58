"""`squad log` filters: which committed records a reader asked for.

Filters combine with AND; a repeated filter (two --agent) matches either value. Status is the
current, folded status, so `--status accepted` finds decisions accepted by a later record;
status events (accept, reject) have no status of their own and never match `--status`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `log` filters the log view's rows too, without the ledger's models
    pass

STATUSES = ("proposed", "accepted", "rejected", "superseded")


@dataclass(frozen=True)
class Query:
    agents: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    since: datetime | None = None
    grep: str | None = None


def admits_row(query: Query, data: dict[str, Any]) -> bool:
    """The same test on a record's JSON form with its current status (the log view's row)."""
    return admits(query, data["agent"], data["kind"], data["current_status"], data["tags"],
                  data["run"], lambda: datetime.fromisoformat(data["date"]),
                  lambda: (data["title"], data["context"], data["decision"],
                           data["consequences"]))


def admits(query: Query, agent: str, kind: str, status: str | None, tags: Sequence[str],
           run: str | None, date: Any, texts: Any) -> bool:
    """Whether a record passes every filter; `date` and `texts` are called only if asked."""
    if query.agents and agent not in query.agents:
        return False
    if query.statuses and (kind != "decision" or status not in query.statuses):
        return False
    if query.tags and not set(query.tags) & set(tags):
        return False
    if query.runs and run not in query.runs:
        return False
    if query.since is not None and date() < query.since:
        return False
    return query.grep is None or query.grep.casefold() in "\n".join(texts()).casefold()
