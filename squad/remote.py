"""Drops that travel through a git remote, for agents on other machines (CI jobs, pools).

Refs on the remote:

- `refs/squad/drops/<writer>`: one writer's drops, one commit per drop (its tree holds only
  `inbox/<drop name>`, its parent is the writer's previous drop). Only that writer pushes it,
  with a lease, so a lost race is seen and the writer's waiting drops are re-parented on top.
- `refs/squad/taken/<writer>`: the newest drop of that writer up to which every drop is done
  (committed on the trunk, or quarantined). Moved only in the same atomic push as the trunk.
- the trunk (the coordinator's branch, e.g. `refs/heads/main`): moved only by a push whose lease
  names the trunk the records were built on.

A writer's clone keeps `refs/squad/drops/<writer>` (its drops, pushed or not) and
`refs/squad/pushed/<writer>` (where the remote's copy was when last seen): what lies between is
waiting, and survives any failure to push. A coordinator's clone fetches the drop refs into
`refs/squad/fetched/drops/*`, the trunk into `refs/squad/fetched/trunk`, the taken refs into
its own `refs/squad/taken/*`.

Nothing here decides what is done but the trunk's `Squad-Drop`/`Squad-Drop-Hash` trailers:
a drop is copied into the local inbox under its own name and the ordinary coordinator takes
it, so a drop fetched twice, re-pushed by a writer or left behind by a killed pass is removed,
never committed twice. The taken refs only save fetching and reading what is done.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import random
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from squad import plan as plans
from squad.collect import Collector, read_delivery
from squad.coordinator import Coordinator, PassReport, trailer_name
from squad.dropbox import unique_name
from squad.errors import RemoteError, UnsafeRepoError, UsageError
from squad.records import Draft, digest, render
from squad.signals import Waiting, stop_on_signals
from squad.vcs import Commit, Stopped, write_atomic
from squad.workspace import Workspace

DROPS = "refs/squad/drops/"
TAKEN = "refs/squad/taken/"
PUSHED = "refs/squad/pushed/"
FETCHED_DROPS = "refs/squad/fetched/drops/"
FETCHED_TRUNK = "refs/squad/fetched/trunk"
INBOX_PREFIX = "inbox/"
WRITER_LOCK = "squad-writer.lock"
ATTEMPTS = 20  # lost races in a row before a push gives up for this time
POLL_SECONDS = 2.0

_WRITER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
_DROP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,199}$")

Log = Callable[[str], None]


# ---- writer ids -------------------------------------------------------------------------


def check_writer(writer: str) -> str:
    """A writer id must be one safe ref component: it names refs on every clone."""
    if not _WRITER.match(writer) or ".." in writer or writer.endswith((".", ".lock")):
        raise UsageError(f"writer id {writer!r}: use 1-100 of A-Z a-z 0-9 . _ @ + - "
                         "(starting with a letter or digit, no '..', not ending in '.' or '.lock')")
    return writer


def check_remote(ws: Workspace, remote: str) -> str:
    """Refuse a remote this clone does not know, before any work: a mistyped name would
    otherwise be found out only after an agent ran, or reported as "pushed 0"."""
    if not ws.repo.knows_remote(remote):
        raise UsageError(f"{remote}: not a remote of this clone, a URL or a path "
                         "(`git remote -v` lists the remotes)")
    return remote


def default_writer(ws: Workspace | None = None) -> str:
    """user@host+<6 hex>, made once per clone and kept in `.git/squad/writer`: the same on
    every command in one clone, different between two clones of one account (which would
    otherwise race for one ref). Without a workspace, plain user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "user"
    raw = f"{user}@{socket.gethostname() or 'host'}"
    safe = re.sub(r"[^A-Za-z0-9._@+-]", "-", raw).strip(".-_@+")
    safe = re.sub(r"\.{2,}", ".", safe)[:92].rstrip(".")
    if safe.endswith(".lock"):
        safe = safe[:-5]
    safe = check_writer(safe or "writer")
    if ws is None:
        return safe
    path = ws.repo.common_dir / "squad" / "writer"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        kept = path.read_text(encoding="utf-8").strip()
        if _valid_writer(kept):
            return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    made = f"{safe}+{secrets.token_hex(3)}"
    try:  # the first command in the clone names it; a second at the same moment reads it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        time.sleep(0.05)
        kept = path.read_text(encoding="utf-8").strip()
        return check_writer(kept)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(made + "\n")
    return made


# ---- writer -----------------------------------------------------------------------------


@dataclass
class PushReport:
    pushed: int = 0  # drops that reached the remote in this push
    waiting: int = 0  # drops still only in this clone
    retries: int = 0  # lost races (someone else moved our ref first)


def drop_name() -> str:
    """A Maildir-style drop name restricted to characters safe on any file system."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", unique_name())


def record_drop(ws: Workspace, writer: str, text: str, name: str | None = None) -> str:
    """Commit one drop on this clone's `refs/squad/drops/<writer>`; returns the drop's name.

    The commit is the durable point: from here the drop waits in the ref until a push takes it.
    """
    name = name or drop_name()
    data = text.encode("utf-8")
    message = (f"squad drop {name}\n\nSquad-Drop: {trailer_name(name)}\n"
               f"Squad-Drop-Hash: {digest(data)}\nSquad-Writer: {writer}\n")
    commit_on_writer_ref(ws, writer, {INBOX_PREFIX + name: data}, message)
    return name


def commit_on_writer_ref(ws: Workspace, writer: str, files: dict[str, bytes],
                         message: str) -> str:
    """Commit `files` (the whole tree) on top of this clone's `refs/squad/drops/<writer>`."""
    repo = ws.repo
    with repo.lock(WRITER_LOCK):
        parent = repo.ref(DROPS + writer)
        sha = repo.make_commit(files, message, ws.clock(), parent)
        repo.set_ref(DROPS + writer, sha, parent)
    return sha


def push_drops(ws: Workspace, remote: str, writer: str, attempts: int = ATTEMPTS,
               log: Log | None = None) -> PushReport:
    """Push this clone's waiting drops; on a lost race re-parent them on the remote's tip.

    Raises RemoteError (drops kept) if the remote cannot be reached or keeps moving.
    """
    repo, report = ws.repo, PushReport()
    ref, seen_ref = DROPS + writer, PUSHED + writer
    log = log or (lambda message: None)
    with repo.lock(WRITER_LOCK):
        for attempt in range(attempts):
            local, seen = repo.ref(ref), repo.ref(seen_ref)
            waiting = [sha for sha, _, _ in repo.walk([local], [seen] if seen else [])] \
                if local and local != seen else []
            report.waiting = len(waiting)
            if not waiting or local is None:
                return report
            try:
                pushed = repo.push(remote, [(local, ref, seen)])
            except RemoteError as exc:
                raise RemoteError(f"{exc.message}; {len(waiting)} drop(s) kept in {ref} "
                                  "and pushed next time") from None
            if pushed:
                repo.set_ref(seen_ref, local, seen)
                report.pushed, report.waiting = len(waiting), 0
                return report
            report.retries += 1
            log(f"{remote} moved {ref} first; putting {len(waiting)} drop(s) on top")
            tip = _fetch_one(ws, remote, ref, seen_ref)
            mine = [sha for sha, _, _ in repo.walk([local], [s for s in (seen, tip) if s])]
            parent = tip
            for sha in mine:
                parent = repo.reparent(sha, parent)
            repo.set_ref(ref, parent, local)
            time.sleep(random.uniform(0, 0.05 * (attempt + 1)))
    raise RemoteError(f"{remote}: {ref} kept moving ({attempts} tries); "
                      f"{report.waiting} drop(s) kept and pushed next time")


def _fetch_one(ws: Workspace, remote: str, ref: str, into: str) -> str | None:
    """Fetch the remote's `ref` into `into` (deleted if the remote has none); its sha."""
    repo = ws.repo
    try:
        repo.fetch(remote, [f"+{ref}:{into}"])
    except RemoteError as exc:
        if not exc.missing:
            raise
        old = repo.ref(into)
        if old:
            repo.set_ref(into, None, old)
        return None
    return repo.ref(into)


def waiting_drops(ws: Workspace, writer: str) -> int:
    repo = ws.repo
    local, seen = repo.ref(DROPS + writer), repo.ref(PUSHED + writer)
    if not local or local == seen:
        return 0
    return len(repo.walk([local], [seen] if seen else []))


# ---- coordinator ------------------------------------------------------------------------


@dataclass
class Drop:
    """One drop commit on a writer's ref, as fetched."""

    sha: str
    writer: str
    name: str | None = None  # None: the commit is not a well-formed drop
    blob: str | None = None
    problem: str | None = None
    key: tuple[str, str] | None = None
    delivery: tuple[str, str] | None = None  # (run, task): an agent's log (squad.collect)
    manifest: dict[str, Any] | None = None  # a delivery's agent.json, once read


@dataclass
class RemoteReport(PassReport):
    pushed: bool = False
    retries: int = 0
    fetched: int = 0  # untaken drop commits seen on the remote
    taken: dict[str, str] = field(default_factory=dict)  # writer -> new taken sha


class RemoteCoordinator:
    """One coordinator against one remote: fetch, sync the trunk, ingest, push with leases."""

    def __init__(self, coordinator: Coordinator, remote: str) -> None:
        self.coordinator = coordinator
        self.ws = coordinator.ws
        self.remote = check_remote(coordinator.ws, remote)
        self.log = coordinator.log
        self.collector = Collector(self)

    def run_pass(self, stop: threading.Event | None = None,
                 attempts: int = ATTEMPTS) -> RemoteReport:
        """Take every drop waiting on the remote (and in the local inbox) and push the trunk.

        A lost race (another coordinator, a person pushing the trunk, a gc) means: fetch again,
        rebuild on what the remote now has, try again.
        """
        report = RemoteReport()
        for attempt in range(attempts):
            self._fetch()
            trunk = self.ws.repo.ref(FETCHED_TRUNK)
            drops = self._untaken()
            report.fetched = len(drops)
            collector = self.collector
            collector.sort(drops)
            try:
                self._sync(trunk, drops, report, stop)
                with self.coordinator.session(stop):
                    self._materialize([d for d in drops if not collector.holds(d)])
                    self.coordinator.take_all([name for name in self.ws.inbox.ready()
                                               if not collector.holds_name(name)], report, stop)
                    if stop is None or not stop.is_set():
                        collector.collect(report)
            except Stopped:
                return report
            head = self.ws.repo.head()
            updates = self._taken_updates(drops, report)
            if head and head != trunk:
                updates.insert(0, (head, self.ws.repo.branch(), trunk))
            if self.ws.repo.push(self.remote, updates):
                self._pushed(updates)
                report.pushed = bool(updates)
                report.taken = {ref[len(TAKEN):]: new for new, ref, _ in updates
                                if new and ref.startswith(TAKEN)}
                return report
            report.retries += 1
            self.log(f"{self.remote} moved first; fetching and rebuilding (try {attempt + 2})")
            time.sleep(random.uniform(0, 0.05 * (attempt + 1)))
        raise RemoteError(f"{self.remote}: lost the race to push {attempts} times in a row; "
                          "nothing is lost, run again")

    # ---- steps --------------------------------------------------------------------------

    def _fetch(self) -> None:
        repo = self.ws.repo
        specs = [f"+{DROPS}*:{FETCHED_DROPS}*", f"+{TAKEN}*:{TAKEN}*"]
        try:
            repo.fetch(self.remote, [f"+{repo.branch()}:{FETCHED_TRUNK}", *specs])
        except RemoteError as exc:
            if not exc.missing:
                raise
            repo.fetch(self.remote, specs)  # the remote has no trunk yet: our push creates it
            old = repo.ref(FETCHED_TRUNK)
            if old:
                repo.set_ref(FETCHED_TRUNK, None, old)

    def _untaken(self) -> list[Drop]:
        """Drop commits on the fetched writer refs past each writer's taken ref, oldest first."""
        repo = self.ws.repo
        tips, stops = [], []
        taken = repo.refs(TAKEN)
        for ref in repo.refs(FETCHED_DROPS):
            writer = ref[len(FETCHED_DROPS):]
            if not _valid_writer(writer):
                self.log(f"skipped {DROPS}{writer}: not a valid writer id")
                continue
            tips.append(ref)
            if TAKEN + writer in taken:
                stops.append(taken[TAKEN + writer])
        stops += [sha for sha in (repo.ref(FETCHED_TRUNK), repo.head()) if sha]  # never drops
        drops = []
        for sha, source, trailers in repo.walk(tips, stops):
            drops.append(self._read_drop(sha, source[len(FETCHED_DROPS):], trailers))
        return drops

    def _read_drop(self, sha: str, writer: str,
                   trailers: dict[str, list[str]] | None = None) -> Drop:
        repo, drop = self.ws.repo, Drop(sha, writer)
        files = repo.commit_files(sha)
        if trailers and "Squad-Task" in trailers:
            return read_delivery(drop, files, trailers)
        if len(files) != 1:
            drop.problem = f"holds {len(files)} files, a drop commit holds one"
            return drop
        (path, blob), = files.items()
        if not blob:
            drop.problem = f"{path!r} is not a regular file"
            return drop
        name = path[len(INBOX_PREFIX):] if path.startswith(INBOX_PREFIX) else ""
        if "/" in name or not _DROP_NAME.match(name):
            drop.problem = f"{path!r} is not inbox/<safe drop name>"
            return drop
        limit = self.ws.config.coordinator.max_drop_bytes
        size = repo.object_size(blob)
        if size > limit:
            drop.problem = f"{name}: {size} bytes, over the {limit}-byte limit for a drop"
            return drop
        drop.name, drop.blob = name, blob
        drop.key = (trailer_name(name), digest(repo.blob(blob)))
        return drop

    def _sync(self, trunk: str | None, drops: list[Drop], report: RemoteReport,
              stop: threading.Event | None = None) -> None:
        """Bring the local branch to the remote trunk, keeping local records not pushed yet.

        Local commits the remote lacks must all be squad's records; if the remote moved too,
        they are dropped and their drops taken again on top (each one is still on a writer's
        ref, or already on the remote trunk) — that is the rebuild.
        """
        repo = self.ws.repo
        if trunk is None:
            return
        with repo.coordinator_lock(stop):
            head = repo.head()
            if head is None:
                raise UnsafeRepoError(f"{repo.root}: {repo.branch()} has no commit yet; "
                                      f"`git pull {self.remote}` first")
            if head == trunk:
                return
            if repo.is_ancestor(head, trunk):
                repo.reset_keep(trunk, head)  # fast-forward
                return
            local = repo.only_squad_commits(trunk, head)
            if repo.is_ancestor(trunk, head) and not self.collector.half_collected(local):
                return  # ahead: pushed below
            plan = next((c for c in local if "Squad-Plan" in c.trailers), None)
            if plan is not None:  # dropping it would lose the plan its agents work on
                raise UnsafeRepoError(
                    f"{repo.branch()} has the plan commit {plan.sha[:12]} that {self.remote} "
                    "lacks, and the remote trunk moved; `git pull --rebase` and `git push` it "
                    "first")
            there = repo.drop_keys(trunk, head) | {d.key for d in drops if d.key}
            alone = [commit for commit in local if not set(zip(
                commit.trailers.get("Squad-Drop", []),
                commit.trailers.get("Squad-Drop-Hash", []), strict=False)) <= there]
            redrops = self._redrops(alone, local, head) if alone else []
            for name, data in redrops:  # before the reset: a kill may repeat, never lose one
                self.ws.inbox.place(name, data)
            repo.reset_keep(trunk, head)
            report.committed.clear()
            report.commits.clear()
            report.drops.clear()
            self.log(f"rebuilding {len(local)} record(s) on {self.remote}'s trunk "
                     f"{trunk[:12]}")

    def _redrops(self, alone: list[Commit], local: list[Commit],
                 head: str) -> list[tuple[str, bytes]]:
        """Records taken from this clone's own inbox (no writer ref holds their drops), as
        drops again, so the rebuild commits them on the moved trunk: the same name, the
        record's fields re-rendered (so a new hash: the old commit is dropped, not kept)."""
        repo = self.ws.repo
        ledger = self.ws.ledger(head)
        local_ids = {int(i) for c in local for i in c.trailers.get("Squad-Decision", [])}
        found = []
        for commit in alone:
            ids = commit.trailers.get("Squad-Decision", [])
            names = commit.trailers.get("Squad-Drop", [])
            entry = ledger.get(int(ids[0])) if len(ids) == 1 and len(names) == 1 else None
            record = entry.record if entry is not None else None
            refers = set(record.supersedes) | set(record.inputs) | {record.target or 0} \
                if record is not None else set()
            name = urllib.parse.unquote(names[0]) if names else ""
            if record is None or record.run or refers & local_ids \
                    or not _DROP_NAME.match(name) or plans.run_of_drop(name):
                raise UnsafeRepoError(
                    f"{repo.branch()} has record commit {commit.sha[:12]} that {self.remote} "
                    "lacks and no writer ref holds, and the remote trunk moved; "
                    "push it from a clone that has it, or move it yourself")
            fields = record.model_dump()
            draft = Draft.model_validate({k: v for k, v in fields.items()
                                          if k in Draft.model_fields}, strict=False)
            found.append((name, render(draft, self.ws.root).encode("utf-8")))
        return found

    def _materialize(self, drops: list[Drop]) -> None:
        """Copy each not-yet-handled drop into inbox/new/ under its own name."""
        inbox, repo = self.ws.inbox, self.ws.repo
        inbox.create()
        # who wrote what, for the Squad-Writer trailer; only untaken drops (memory stays flat)
        self.coordinator.writers = {d.key: d.writer for d in drops if d.key}
        for drop in drops:
            if drop.name is None or drop.key is None or drop.blob is None:
                continue
            if self.coordinator.is_done(drop.key) or self._quarantined(drop):
                continue
            if os.path.lexists(inbox.new / drop.name):
                continue  # the same drop from an earlier pass, or a namesake taken first
            inbox.place(drop.name, repo.blob(drop.blob))

    def _quarantined(self, drop: Drop) -> bool:
        """Whether an earlier pass quarantined exactly this drop (so it counts as handled)."""
        assert drop.name is not None and drop.blob is not None
        path = self.ws.quarantine / drop.name
        try:
            return path.read_bytes() == self.ws.repo.blob(drop.blob)
        except OSError:
            return False

    def _handled(self, drop: Drop, report: PassReport) -> bool:
        spread = self.collector.handled(drop)
        if spread is not None:
            return spread
        if drop.key is None:
            self._quarantine_malformed(drop)
            return True
        if self.coordinator.is_done(drop.key):
            return True
        return self._quarantined(drop)

    def _quarantine_malformed(self, drop: Drop) -> None:
        """A commit that is not a drop is noted in quarantine/ and passed over; the commit
        itself stays on the writer's ref for a person to read."""
        folder = self.ws.quarantine
        reason = folder / f"{drop.writer}-{drop.sha}.reason"
        if reason.exists():
            return
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(reason, f"{DROPS}{drop.writer} commit {drop.sha}: {drop.problem}\n"
                     .encode())
        self.log(f"quarantined drop commit {drop.sha[:12]} of {drop.writer}: {drop.problem}")

    def _taken_updates(self, drops: list[Drop],
                       report: PassReport) -> list[tuple[str | None, str, str | None]]:
        """For each writer, the newest drop up to which every drop is handled."""
        repo = self.ws.repo
        newest: dict[str, str | None] = {}
        blocked: set[str] = set()
        for drop in drops:  # oldest first within each writer's chain
            if drop.writer in blocked:
                continue
            if self._handled(drop, report):
                newest[drop.writer] = drop.sha
            else:
                blocked.add(drop.writer)
        updates: list[tuple[str | None, str, str | None]] = []
        taken = repo.refs(TAKEN) if newest else {}
        for writer, sha in sorted(newest.items()):
            old = taken.get(TAKEN + writer)
            if sha and sha != old:
                updates.append((sha, TAKEN + writer, old))
        return updates

    def _pushed(self, updates: list[tuple[str | None, str, str | None]]) -> None:
        """Mirror what the remote now has, so the next pass starts from it even offline."""
        repo = self.ws.repo
        for new, ref, _old in updates:
            local = FETCHED_TRUNK if ref == repo.branch() else ref
            current = repo.ref(local)
            if new and current != new:
                repo.set_ref(local, new, current)


def _valid_writer(writer: str) -> bool:
    try:
        check_writer(writer)
    except UsageError:
        return False
    return True


def watch_remote(remote: RemoteCoordinator, interval: float = POLL_SECONDS,
                 stop: threading.Event | None = None) -> None:
    """Poll the remote until `stop` or SIGINT/SIGTERM; a pass that took drops polls again
    at once, an idle one waits `interval`. An unreachable remote is waited out."""
    stop = stop or threading.Event()
    waiting = Waiting(remote.log)
    with stop_on_signals(stop):
        # said only now: from here on Ctrl-C and SIGTERM stop the watch cleanly
        remote.log(f"watching {remote.remote} every {interval:g}s and "
                   f"{remote.ws.inbox.path} (Ctrl-C to stop)")
        while not stop.is_set():
            try:
                report = remote.run_pass(stop)
            except (RemoteError, UnsafeRepoError) as exc:
                # an unreachable remote, a held index.lock, a person's edit in the way: wait
                waiting.blocked(exc.message)
                stop.wait(interval)
                continue
            waiting.passed()
            busy = report.committed or report.quarantined or report.recovered or report.taken
            if not busy:
                stop.wait(interval)


# ---- gc ---------------------------------------------------------------------------------


@dataclass
class GcReport:
    pruned: list[str] = field(default_factory=list)  # writers whose refs were removed
    kept: dict[str, int] = field(default_factory=dict)  # writer -> drops not yet taken


def gc(ws: Workspace, remote: str) -> GcReport:
    """Remove the drop and taken refs of every writer whose drops are all taken.

    Each removal is one atomic push whose leases name the refs as fetched, so a drop pushed
    meanwhile keeps its writer's ref. A writer whose ref is half taken keeps it whole.
    """
    repo, report = ws.repo, GcReport()
    check_remote(ws, remote)
    repo.fetch(remote, [f"+{DROPS}*:{FETCHED_DROPS}*", f"+{TAKEN}*:{TAKEN}*"])
    tips = {ref[len(FETCHED_DROPS):]: sha for ref, sha in repo.refs(FETCHED_DROPS).items()}
    taken = {ref[len(TAKEN):]: sha for ref, sha in repo.refs(TAKEN).items()}
    for writer in sorted(set(tips) | set(taken)):
        tip, done = tips.get(writer), taken.get(writer)
        if tip is not None and tip != done:
            report.kept[writer] = len(repo.walk([tip], [done] if done else []))
            continue
        updates: list[tuple[str | None, str, str | None]] = [(None, TAKEN + writer, done)]
        if tip is not None:
            updates.insert(0, (None, DROPS + writer, tip))
        if repo.push(remote, updates):
            report.pruned.append(writer)
            for ref in (FETCHED_DROPS + writer, TAKEN + writer):
                current = repo.ref(ref)
                if current:
                    repo.set_ref(ref, None, current)
        else:
            report.kept[writer] = -1  # moved while we looked: next time
    return report
