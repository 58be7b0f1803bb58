"""The decision log as a service for tools outside a run (the MCP server, benchmarks).

Reads come from git's object store at HEAD, never from the working tree, so a caller sees
committed records only: a drop still in the inbox, or a record a person is editing, is not
there yet. Parsed records are cached by blob id and the folds by HEAD, so a read on an
unchanged log costs a ref lookup.

A proposal takes the same path as every other writer: it is validated like the agents'
`record_decision`, dropped into the inbox (so it survives this process dying), and then
committed by the coordinator under the repository's coordinator lock. Whoever holds the lock
first (this process, another server, `squad watch`) commits it, once; the caller gets the
id back either way.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from squad import layout, records, templating
from squad.charters import Charter
from squad.clock import format_instant, parse_instant
from squad.context import select
from squad.coordinator import Coordinator, PassReport, trailer_name
from squad.errors import SquadError
from squad.ledger import Entry, Ledger
from squad.records import Draft, Record, digest, parse_record
from squad.vcs import Stopped
from squad.workspace import DECISIONS, Workspace

STATUSES = ("proposed", "accepted", "rejected", "superseded")
SNIPPET_CHARS = 160
MAX_LIMIT = 500
LOCK_WAIT_SECONDS = 30.0  # a `squad run` holds the lock for its whole length
_WORD = re.compile(r"\S+")
_TAG_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


class Refused(SquadError):
    """A one-line reason the caller can act on (the MCP layer returns it as a tool error)."""


@dataclass(frozen=True)
class _Snapshot:
    head: str | None
    ledger: Ledger
    status: dict[int, str]
    later: dict[int, list[int]]
    haystacks: dict[int, str]  # id -> lowercased title and body, for search


class DecisionService:
    """Committed reads and coordinator-committed proposals for one repository.

    Thread-safe: reads share one lock and one repository handle, writes another, so a
    commit never races a read for the same GitPython objects.
    """

    def __init__(self, ws: Workspace, writer: Workspace | None = None) -> None:
        self.ws = ws
        self._writer = writer or Workspace.open(ws.root, clock=ws.clock)
        self._coordinator = Coordinator(self._writer)
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._parsed: dict[str, tuple[Entry, str]] = {}  # blob sha -> entry, search text
        self._snapshot: _Snapshot | None = None

    def close(self) -> None:
        self.ws.repo.close()
        self._writer.repo.close()

    # ---- reads --------------------------------------------------------------------------

    def _current(self) -> _Snapshot:
        head = self.ws.repo.head()
        if self._snapshot is not None and self._snapshot.head == head:
            return self._snapshot
        listing = layout.records(layout.listing(self.ws.repo, head)) if head else {}
        entries, parsed, haystacks = [], {}, {}
        for name, sha in listing.items():
            known = self._parsed.get(sha)
            if known is None:
                data = self.ws.repo.blob(sha)
                try:
                    record = parse_record(data.decode("utf-8"))
                except (UnicodeDecodeError, SquadError) as exc:
                    why = getattr(exc, "message", "not valid UTF-8")
                    raise SquadError(f"{DECISIONS}/{name}: invalid record: {why}") from None
                known = (Entry(record, name, digest(data)), " ".join((
                    record.title, record.context, record.decision, record.consequences)).lower())
            parsed[sha] = known
            entries.append(known[0])
            haystacks[known[0].record.id] = known[1]
        entries.sort(key=lambda e: (e.record.id, e.name))
        self._parsed = parsed  # forget blobs no longer in the log
        ledger = Ledger(entries)
        self._snapshot = _Snapshot(head, ledger, ledger.statuses(), ledger.superseded_by(),
                                   haystacks)
        return self._snapshot

    @contextlib.contextmanager
    def _reading(self) -> Iterator[_Snapshot]:
        with self._read_lock:
            yield self._current()

    def ledger(self) -> Ledger:
        """The committed log at HEAD (cached)."""
        with self._reading() as snap:
            return snap.ledger

    def search(self, query: str = "", tags: Sequence[str] = (), status: str | None = None,
               agent: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Decisions whose title or body contains every word of `query` (case-insensitive),
        filtered by tags (all of them), current status and agent; best first: title hits,
        then newest."""
        _check_status(status)
        limit = _check_limit(limit)
        words = [w.lower() for w in _WORD.findall(query)]
        with self._reading() as snap:
            hits = []
            for entry in snap.ledger.entries:
                record = entry.record
                if record.kind != "decision":
                    continue
                if status and snap.status.get(record.id) != status:
                    continue
                if agent and record.agent.lower() != agent.lower():
                    continue
                if tags and not set(tags) <= set(record.tags):
                    continue
                text = snap.haystacks[record.id]
                if not all(w in text for w in words):
                    continue
                in_title = sum(w in record.title.lower() for w in words)
                hits.append((-in_title, -record.id, entry))
            hits.sort(key=lambda hit: hit[:2])
            return [{"id": e.record.id, "title": e.record.title,
                     "status": snap.status.get(e.record.id, e.record.kind),
                     "date": format_instant(e.record.date), "agent": e.record.agent,
                     "tags": list(e.record.tags), "snippet": _snippet(e.record, words)}
                    for _, _, e in hits[:limit]]

    def get(self, record_id: int) -> dict[str, Any]:
        """The full record as committed, with its current status and supersession links."""
        with self._reading() as snap:
            entry = snap.ledger.get(record_id)
            if entry is None:
                raise Refused(f"no record {record_id} in {DECISIONS}/")
            return _as_dict(entry, snap)

    def log(self, since: int | str | None = None, status: str | None = None,
            limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` records (in id order) like `squad log --json`; `since` is an id
        (records after it) or an ISO date (records on or after it)."""
        _check_status(status)
        limit = _check_limit(limit)
        after_id, after_date = _since(since)
        with self._reading() as snap:
            chosen = []
            for entry in snap.ledger.entries:
                record = entry.record
                if after_id is not None and record.id <= after_id:
                    continue
                if after_date is not None and record.date < after_date:
                    continue
                if status and (record.kind != "decision" or snap.status.get(record.id) != status):
                    continue
                chosen.append(entry)
            return [_as_dict(entry, snap) for entry in chosen[-limit:]]

    def record_text(self, record_id: int) -> str:
        """The committed markdown of record `record_id`."""
        with self._reading() as snap:
            entry = snap.ledger.get(record_id)
            if entry is None:
                raise Refused(f"no record {record_id} in {DECISIONS}/")
            data = self.ws.repo.file_at(f"{DECISIONS}/{entry.name}", snap.head)
            return (data or b"").decode("utf-8")

    def agents_md(self) -> str:
        """AGENTS.md as committed at HEAD (what squad's agents read)."""
        with self._read_lock:
            data = self.ws.repo.file_at("AGENTS.md")
        if data is None:
            raise Refused("AGENTS.md is not committed in this repository")
        return data.decode("utf-8", "replace")

    def prime(self, task: str, budget: int | None = None,
              tags: Sequence[str] = ()) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
        """A primer for a coding agent: the live decisions most relevant to `task` within
        `budget` tokens, chosen by the same selection as an agent's context (`context.select`),
        relevance from the given tags and the log's tags that the task mentions."""
        budget = budget or self.ws.config.context.token_budget
        if budget < 200:
            raise Refused(f"budget must be at least 200 tokens, not {budget}")
        with self._reading() as snap:
            known = {t.lower(): t for r in snap.ledger.records for t in r.tags}
            mentioned = {known[w.lower()] for w in _TAG_WORD.findall(task) if w.lower() in known}
            wanted = tuple(sorted(mentioned | {t for t in tags if _TAG_WORD.fullmatch(t)}))[:50]
            charter = Charter(name="coding-agent", role="coding agent", tags=wanted)
            chosen = select(snap.ledger, charter, budget, snap.status)
            shown = sorted(chosen.team + chosen.own, key=lambda r: r.id)
            decisions = [{"id": r.id, "title": r.title, "status": snap.status[r.id],
                          "agent": r.agent, "date": format_instant(r.date), "tags": r.tags,
                          "supersedes": [f"{i:04d}" for i in r.supersedes],
                          "context": r.context, "decision": r.decision,
                          "consequences": r.consequences} for r in shown]
            text = templating.render("mcp/prime.md.j2", self.ws.root, task=task.strip(),
                                     decisions=decisions, omitted=chosen.left,
                                     tags=wanted, budget=budget)
        return text, chosen.ids, tuple(chosen.left)

    # ---- writes -------------------------------------------------------------------------

    def propose(self, agent: str, title: str, context: str, decision: str, consequences: str,
                tags: Sequence[str] = (), supersedes: Sequence[int] = ()) -> dict[str, Any]:
        """Validate, drop and commit one proposed decision; returns its id and commit."""
        return self._submit({"title": title, "agent": agent, "status": "proposed",
                             "context": context, "decision": decision,
                             "consequences": consequences, "tags": tuple(tags),
                             "supersedes": tuple(supersedes)})

    def set_status(self, agent: str, record_id: int, kind: str, reason: str) -> dict[str, Any]:
        """Accept or reject decision `record_id` (a new record that refers to it)."""
        with self._reading() as snap:
            entry = snap.ledger.get(record_id)
        if entry is None:
            raise Refused(f"no decision {record_id} in {DECISIONS}/")
        if entry.record.kind != "decision":
            raise Refused(f"{record_id:04d} is a status event, not a decision")
        verb = "Accept" if kind == "accept" else "Reject"
        return self._submit({"kind": kind, "target": record_id, "agent": agent,
                             "title": f"{verb} {record_id:04d}: {entry.record.title}"[:200],
                             "decision": reason or f"{verb}ed {record_id:04d}."})

    def _submit(self, fields: dict[str, Any]) -> dict[str, Any]:
        try:
            draft = Draft.model_validate(fields)
        except ValidationError as exc:
            raise Refused(records.describe(exc)) from None
        problem = self.ledger().problems_with(draft)
        if problem:
            raise Refused(problem)
        text = records.render(draft, self.ws.root)
        limit = self.ws.config.coordinator.max_drop_bytes
        if len(text.encode("utf-8")) > limit:
            raise Refused(f"the record is {len(text.encode('utf-8'))} bytes, over the "
                          f"{limit}-byte limit for a drop; shorten it")
        name = self.ws.inbox.drop(text)
        return self._commit(name)

    def _commit(self, name: str) -> dict[str, Any]:
        """Get our drop committed: by us under the coordinator lock, or by whoever holds it.

        Whoever gets the lock commits every drop waiting (ours first), so several servers
        and a `squad watch` share the work instead of queueing for the lock one drop at a
        time; a drop that left the inbox was committed or quarantined by someone else, and
        git (or the quarantine) says which. Nothing here waits on the lock blindly: it is
        tried, and retried, until LOCK_WAIT_SECONDS have passed.
        """
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        pause = 0.002
        while True:
            if not (self.ws.inbox.new / name).exists():
                return self._outcome(name)
            mine = PassReport()
            with self._write_lock:
                try:
                    with self._coordinator.session(_AT_ONCE):
                        self._coordinator.take(name, mine)
                        rest = PassReport()
                        self._coordinator.take_all(self._writer.inbox.ready(), rest)
                except Stopped:
                    pass  # the lock is busy: look again in a moment
                except SquadError as exc:
                    raise Refused(f"drop {name} is kept in {DECISIONS}/inbox/new: "
                                  f"{exc.message}") from None
                else:
                    if mine.quarantined:
                        raise Refused(mine.quarantined[0][1])
                    if mine.committed:
                        return _receipt(self._writer, mine.committed[0], mine.commits[0])
                    return self._outcome(name)
            if time.monotonic() > deadline:
                raise Refused(f"drop {name} is kept in {DECISIONS}/inbox/new: the coordinator "
                              f"lock was busy for {LOCK_WAIT_SECONDS:.0f} s (is a `squad run` "
                              "going?); `squad ingest` or `squad watch` will commit it")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _outcome(self, name: str) -> dict[str, Any]:
        """What became of a drop another coordinator took: its commit, or why it was
        quarantined. The coordinator commits before it removes a drop, and writes the
        reason before it moves one to quarantine, so one of the two is there."""
        with self._read_lock:
            found = self.ws.repo.find_commit("Squad-Drop", trailer_name(name))
            if found is not None:
                number = int(found.trailers["Squad-Decision"][0])
                entry = self._current().ledger.get(number)
                if entry is not None:
                    return _receipt(self.ws, entry.record, found.sha)
        reason = self.ws.quarantine / f"{name}.reason"
        if reason.exists():
            raise Refused(reason.read_text(encoding="utf-8").strip().partition(": ")[2])
        raise Refused(f"drop {name} left the inbox, but no commit on this branch has it")


_AT_ONCE = threading.Event()
_AT_ONCE.set()  # a stop that is already set: try the coordinator lock once, never wait


def _receipt(ws: Workspace, record: Record, sha: str) -> dict[str, Any]:
    name = records.filename(record)
    folder = f"{DECISIONS}/{layout.place(name, layout.FOLDERS)}"
    path = folder if ws.repo.file_sha(folder, sha) else f"{DECISIONS}/{name}"  # flat log
    return {"id": record.id, "file": path,
            "commit": sha, "agent": record.agent, "kind": record.kind}


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise Refused(f"status must be one of {', '.join(STATUSES)}, not {status!r}")


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise Refused(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


def _since(since: int | str | None) -> tuple[int | None, datetime | None]:
    if isinstance(since, int):
        return since, None
    if since is None or not since.strip():
        return None, None
    if since.strip().isdigit():
        return int(since), None
    try:
        return None, parse_instant(since)
    except SquadError:
        raise Refused(f"since must be a record id or an ISO date, not {since!r}") from None


def _snippet(record: Record, words: list[str]) -> str:
    body = " ".join(" ".join((record.context, record.decision, record.consequences)).split())
    lowered = body.lower()
    start = min((i for w in words if (i := lowered.find(w)) >= 0), default=0)
    start = max(0, start - SNIPPET_CHARS // 4)
    cut = body[start:start + SNIPPET_CHARS]
    return ("…" if start else "") + cut + ("…" if start + SNIPPET_CHARS < len(body) else "")


def _as_dict(entry: Entry, snap: _Snapshot) -> dict[str, Any]:
    record = entry.record
    return {**record.model_dump(mode="json"), "file": f"{DECISIONS}/{entry.name}",
            "current_status": snap.status.get(record.id, record.kind),
            "superseded_by": snap.later.get(record.id, [])}
