"""The log of committed records and the statuses folded from it (event sourcing).

A record is never edited; accept, reject and supersede are later records. `statuses` replays
them in id order, so the current status of any decision is a pure function of the log.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TypeVar

from squad import templating
from squad.clock import format_instant
from squad.errors import RecordError
from squad.records import RECORD_NAME, Draft, Record, digest, filename, parse_record

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    record: Record
    name: str  # path inside decisions/: `0001-x.md` (flat log) or `000/0001-x.md` (folders)
    digest: str  # chain hash of the file bytes

    @property
    def file(self) -> str:
        """The record's file name, whichever folder it is in."""
        return self.name.rpartition("/")[2]


@dataclass
class Ledger:
    entries: list[Entry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_id = {entry.record.id: entry for entry in self.entries}
        self._latest = max((entry.record.date for entry in self.entries), default=None)
        # The fold, kept up to date by `append`, so a commit costs the same at any length:
        # the status a decision or an accept/reject gives (before supersession), and who
        # supersedes whom.
        self._base: dict[int, str] = {}
        self._later: dict[int, list[int]] = {}
        for entry in self.entries:
            self._fold(entry.record)
        self._counts = Counter(self.statuses().values())
        self._memo: dict[str, tuple[int, object]] = {}
        self._memo_lock = threading.RLock()

    def memo(self, key: str, make: Callable[[Ledger], T]) -> T:
        """A value derived from the whole log, made once while the log stays as it is (a
        log only grows, by `append`): what every agent of a round computes alike from it.
        The agents of a round start together: one makes it while the others wait for it,
        rather than each making it too."""
        with self._memo_lock:
            found = self._memo.get(key)
            if found is not None and found[0] == len(self.entries):
                return found[1]  # type: ignore[return-value]
            value = make(self)
            self._memo[key] = (len(self.entries), value)
            return value

    def copy(self) -> Ledger:
        """A ledger of the same entries that later appends to this one do not reach: the
        fold is copied, not folded again (a run's round copies a log of 10,000 records)."""
        twin = Ledger.__new__(Ledger)
        twin.entries = list(self.entries)
        twin._by_id = dict(self._by_id)
        twin._latest = self._latest
        twin._base = dict(self._base)
        twin._later = {old: list(news) for old, news in self._later.items()}
        twin._counts = Counter(self._counts)
        twin._memo = {}
        twin._memo_lock = threading.RLock()
        return twin

    @classmethod
    def from_blobs(cls, blobs: dict[str, bytes], where: str = "decisions") -> Ledger:
        """Parse records given as file name -> bytes; names that are not records are skipped."""
        entries = []
        for name, data in blobs.items():
            if not RECORD_NAME.match(name.rpartition("/")[2]):
                continue
            try:
                record = parse_record(data.decode("utf-8"))
            except (UnicodeDecodeError, RecordError) as exc:
                message = getattr(exc, "message", "not valid UTF-8")
                raise RecordError(f"{where}/{name}: invalid record: {message}") from None
            entries.append(Entry(record, name, digest(data)))
        entries.sort(key=lambda entry: (entry.record.id, entry.name))
        return cls(entries)

    def _fold(self, record: Record) -> None:
        if record.kind == "decision":
            self._base[record.id] = record.status
            for old in record.supersedes:
                self._later.setdefault(old, []).append(record.id)
        elif record.target is not None:
            self._base[record.target] = "accepted" if record.kind == "accept" else "rejected"

    def affected(self, record: Record) -> set[int]:
        """Ids whose current status or superseded-by list `record` may change: itself, its
        target, what it supersedes, and what its target supersedes (rejecting a decision
        gives back the status of those it superseded)."""
        ids = {record.id, *record.supersedes}
        if record.target is not None:
            ids.add(record.target)
            target = self.get(record.target)
            if target is not None:
                ids.update(target.record.supersedes)
        return ids

    def append(self, entry: Entry) -> None:
        touched = self.affected(entry.record)
        before = [self.status_of(i) for i in touched]
        self.entries.append(entry)
        self._by_id[entry.record.id] = entry
        if self._latest is None or entry.record.date > self._latest:
            self._latest = entry.record.date
        self._fold(entry.record)
        self._counts.subtract(s for s in before if s is not None)
        self._counts.update(s for s in map(self.status_of, touched) if s is not None)

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
        status = dict(self._base)
        for old, news in self._later.items():
            if old in status and any(self._base.get(new) != "rejected" for new in news):
                status[old] = "superseded"
        return status

    def status_of(self, record_id: int) -> str | None:
        """One decision's current status (what `statuses()` holds for it), in O(1)."""
        status = self._base.get(record_id)
        if status is not None and any(self._base.get(new) != "rejected"
                                      for new in self._later.get(record_id, ())):
            return "superseded"
        return status

    def superseded_by(self) -> dict[int, list[int]]:
        """old id -> ids of the decisions that name it in `supersedes`, oldest first
        (the ledger's own map: read it, do not change it)."""
        return self._later

    def counts(self) -> dict[str, int]:
        """How many decisions have each current status."""
        return {status: n for status, n in sorted(self._counts.items()) if n > 0}


def render_index(ledger: Ledger, root: templating.Templates = None) -> str:
    """The index of a flat log: one row per record (see `squad.layout` for folders)."""
    return templating.render("index.md.j2", root, rows=rows_of(ledger, ledger.entries, root))


def rows_of(ledger: Ledger, entries: list[Entry], root: templating.Templates,
            link: Callable[[Entry], str] = lambda entry: entry.name) -> list[str]:
    """The index rows of `entries` with their current statuses; `link` gives the path a row
    links to, relative to the page it is on."""
    later = ledger.superseded_by()
    row = _plain_row if templating.packaged_as(ROW_TEMPLATE, root, ROW_TEXT) else _row
    return [row(entry, ledger.status_of(entry.record.id),
                tuple(later.get(entry.record.id, ())), root, link(entry)) for entry in entries]


ROW_TEMPLATE = "index_row.md.j2"
# squad's own row template, word for word: while it is the one in use, rows are formatted
# in Python (`_plain_row`), the same bytes without a template engine per row.
ROW_TEXT = ("| [{{ row.id }}]({{ row.file }}) | {{ row.title }} | {{ row.agent }} | "
            "{{ row.date }} | {{ row.status }} | {{ row.supersedes }} | "
            "{{ row.superseded_by }} |\n")


@lru_cache(maxsize=200_000)
def _plain_row(entry: Entry, status: str | None, later: tuple[int, ...],
               root: templating.Templates, file: str) -> str:
    """`_row` for squad's own row template (`ROW_TEXT`), without the template engine."""
    record = entry.record
    shown = status or (f"{record.kind} of {record.target:04d}" if record.target else record.kind)
    supersedes = ", ".join(f"{i:04d}" for i in record.supersedes)
    by = ", ".join(f"{i:04d}" for i in later)
    return (f"| [{record.id:04d}]({file}) | {_cell(record.title)} | {_cell(record.agent)} | "
            f"{format_instant(record.date)} | {shown} | {supersedes} | {by} |")


@lru_cache(maxsize=200_000)
def _row(entry: Entry, status: str | None, later: tuple[int, ...], root: templating.Templates,
         file: str) -> str:
    """One rendered index row; cached, since a commit changes at most a few rows."""
    record = entry.record
    shown = status or (f"{record.kind} of {record.target:04d}" if record.target else record.kind)
    return templating.render(ROW_TEMPLATE, root, often=True, row={
        "id": f"{record.id:04d}",
        "file": file,
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
    return _row(entry, status, later, root, entry.name)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def entry_for(record: Record, data: bytes, folder: str = "") -> Entry:
    """The entry of a record about to be committed; `folder` is its folder inside
    decisions/ ("" in a flat log)."""
    return Entry(record, f"{folder}/{filename(record)}" if folder else filename(record),
                 digest(data))
