"""`squad log` filters: which committed records a reader asked for.

Filters combine with AND; a repeated filter (two --agent) matches either value. Status is the
current, folded status, so `--status accepted` finds decisions accepted by a later record;
status events (accept, reject) have no status of their own and never match `--status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from squad.ledger import Entry, Ledger

STATUSES = ("proposed", "accepted", "rejected", "superseded")


@dataclass(frozen=True)
class Query:
    agents: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    since: datetime | None = None
    grep: str | None = None


def select(ledger: Ledger, query: Query) -> list[Entry]:
    status = ledger.statuses()
    needle = query.grep.casefold() if query.grep else None
    chosen = []
    for entry in ledger.entries:
        r = entry.record
        if query.agents and r.agent not in query.agents:
            continue
        if query.statuses and (r.kind != "decision" or status.get(r.id) not in query.statuses):
            continue
        if query.tags and not set(query.tags) & set(r.tags):
            continue
        if query.runs and r.run not in query.runs:
            continue
        if query.since is not None and r.date < query.since:
            continue
        if needle is not None and needle not in "\n".join(
                (r.title, r.context, r.decision, r.consequences)).casefold():
            continue
        chosen.append(entry)
    return chosen
