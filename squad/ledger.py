"""The log of committed records and the statuses folded from it (event sourcing).

A record is never edited; accept, reject and supersede are later records. `statuses` replays
them in id order, so the current status of any decision is a pure function of the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from squad import templating
from squad.clock import format_instant
from squad.errors import RecordError
from squad.records import RECORD_NAME, Draft, Record, digest, filename, parse_record


@dataclass(frozen=True)
class Entry:
    record: Record
    name: str  # file name inside decisions/
    digest: str  # chain hash of the file bytes


@dataclass
class Ledger:
    entries: list[Entry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_id = {entry.record.id: entry for entry in self.entries}
        self._latest = max((entry.record.date for entry in self.entries), default=None)

    @classmethod
    def from_blobs(cls, blobs: dict[str, bytes], where: str = "decisions") -> Ledger:
        """Parse records given as file name -> bytes; names that are not records are skipped."""
        entries = []
        for name, data in blobs.items():
            if not RECORD_NAME.match(name):
                continue
            try:
                record = parse_record(data.decode("utf-8"))
            except (UnicodeDecodeError, RecordError) as exc:
                message = getattr(exc, "message", "not valid UTF-8")
                raise RecordError(f"{where}/{name}: invalid record: {message}") from None
            entries.append(Entry(record, name, digest(data)))
        entries.sort(key=lambda entry: (entry.record.id, entry.name))
        return cls(entries)

    def append(self, entry: Entry) -> None:
        self.entries.append(entry)
        self._by_id[entry.record.id] = entry
        if self._latest is None or entry.record.date > self._latest:
            self._latest = entry.record.date

    def get(self, record_id: int) -> Entry | None:
        return self._by_id.get(record_id)

    @property
    def records(self) -> list[Record]:
        return [entry.record for entry in self.entries]

    @property
    def next_id(self) -> int:
        return self.entries[-1].record.id + 1 if self.entries else 1

    @property
    def head_digest(self) -> str | None:
        return self.entries[-1].digest if self.entries else None

    @property
    def last_date(self) -> datetime | None:
        """The latest date in the log (a renumbered record keeps its own, possibly later,
        date, so this is not always the last record's)."""
        return self._latest

    def problems_with(self, draft: Draft) -> str | None:
        """Why a draft cannot join this log (references that do not resolve), or None."""
        for ref in draft.supersedes:
            target = self.get(ref)
            if target is None:
                return f"supersedes {ref}, which is not in the log"
            if target.record.kind != "decision":
                return f"supersedes {ref}, which is a status event, not a decision"
        if draft.target is not None:
            target = self.get(draft.target)
            if target is None:
                return f"{draft.kind} targets {draft.target}, which is not in the log"
            if target.record.kind != "decision":
                return f"{draft.kind} targets {draft.target}, which is not a decision"
        missing = [ref for ref in draft.inputs if self.get(ref) is None]
        if missing:
            return f"inputs name {missing[0]}, which is not in the log"
        return None

    def statuses(self) -> dict[int, str]:
        """Current status of every decision: proposed, accepted, rejected or superseded."""
        status: dict[int, str] = {}
        for record in self.records:
            if record.kind == "decision":
                status[record.id] = record.status
            elif record.target is not None:
                status[record.target] = "accepted" if record.kind == "accept" else "rejected"
        for old, news in self.superseded_by().items():
            if old in status and any(status.get(new) != "rejected" for new in news):
                status[old] = "superseded"
        return status

    def superseded_by(self) -> dict[int, list[int]]:
        """old id -> ids of the decisions that name it in `supersedes`, oldest first."""
        result: dict[int, list[int]] = {}
        for record in self.records:
            if record.kind == "decision":
                for old in record.supersedes:
                    result.setdefault(old, []).append(record.id)
        return result


def render_index(ledger: Ledger, root: templating.Templates = None) -> str:
    status = ledger.statuses()
    later = ledger.superseded_by()
    rows = [_row(entry, status.get(entry.record.id), tuple(later.get(entry.record.id, ())), root)
            for entry in ledger.entries]
    return templating.render("index.md.j2", root, rows=rows)


@lru_cache(maxsize=200_000)
def _row(entry: Entry, status: str | None, later: tuple[int, ...],
         root: templating.Templates) -> str:
    """One rendered index row; cached, since a commit changes at most a few rows."""
    record = entry.record
    shown = status or (f"{record.kind} of {record.target:04d}" if record.target else record.kind)
    return templating.render("index_row.md.j2", root, row={
        "id": f"{record.id:04d}",
        "file": entry.name,
        "title": _cell(record.title),
        "agent": _cell(record.agent),
        "date": format_instant(record.date),
        "status": shown,
        "supersedes": ", ".join(f"{i:04d}" for i in record.supersedes),
        "superseded_by": ", ".join(f"{i:04d}" for i in later),
    }).rstrip("\n")


def index_row(entry: Entry, status: str | None, later: tuple[int, ...],
              root: templating.Templates = None) -> str:
    """One row of the index, as `render_index` writes it (for appending rows)."""
    return _row(entry, status, later, root)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def entry_for(record: Record, data: bytes) -> Entry:
    return Entry(record, filename(record), digest(data))
