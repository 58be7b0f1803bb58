"""The parsed-log cache: a hit equals a parse, and damage or forgery is caught, never served."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers import drop_text, git, squad

from squad import layout
from squad.dropbox import Inbox
from squad.ledger import Ledger
from squad.logcache import HEADER, cache_path
from squad.workspace import Workspace


def _log(repo: Path, titles: list[str]) -> Path:
    """Commit one record per title (one ingest pass) and return the cache file's path."""
    inbox = Inbox(repo / "decisions" / "inbox")
    for title in titles:
        inbox.drop(drop_text(title))
    squad(repo, "ingest")
    return cache_path(repo / ".git")


def _log_cache_only(repo: Path) -> None:
    """Remove the log view (a per-commit answer file, tested in test_logview.py), so the next
    `log` reads the parsed-log cache these tests are about."""
    (repo / ".git" / "squad" / "log-view").unlink(missing_ok=True)


def _parsed(repo: Path) -> Ledger:
    """The log parsed straight from git, no cache involved."""
    ws = Workspace.open(repo)
    listing = layout.records(layout.listing(ws.repo))
    ledger = Ledger.from_blobs({name: ws.repo.blob(sha) for name, sha in listing.items()})
    ws.repo.close()
    return ledger


def _cached(repo: Path) -> Ledger:
    ws = Workspace.open(repo)
    ledger = ws.ledger()
    ws.repo.close()
    return ledger


def _entries(path: Path) -> list[tuple[str, bytes]]:
    """(blob id, payload) of every entry in the cache file."""
    data, found = path.read_bytes()[len(HEADER):], []
    while data:
        line, _, data = data.partition(b"\n")
        blob, _, size = line.decode().split(" ")
        found.append((blob, data[:int(size)]))
        data = data[int(size) + 1:]
    return found


def _write(path: Path, entries: list[tuple[str, bytes]]) -> None:
    """Write entries with correct checksums (what a forger who read logcache.py would do)."""
    parts = [HEADER]
    for blob, payload in entries:
        check = hashlib.sha256(blob.encode() + payload).hexdigest()
        parts.append(b"%s %s %d\n%s\n" % (blob.encode(), check.encode(), len(payload), payload))
    path.write_bytes(b"".join(parts))


def test_a_cache_hit_is_the_parse_of_the_blob(repo: Path) -> None:
    path = _log(repo, ["Use SQLite", "Cache in memory", "Ship on Fridays"])
    squad(repo, "accept", "1")
    squad(repo, "supersede", "2", "--title", "Cache in Redis", "--decision", "Redis.",
          "--tag", "cache")
    assert path.exists() and str(path).startswith(str(repo / ".git"))
    squad(repo, "log")  # the entries a later command finds
    assert len(_entries(path)) == 5
    assert _cached(repo).entries == _parsed(repo).entries
    assert not (repo / "decisions" / ".squad").exists()
    assert git(repo, "status", "--porcelain") == ""


def test_a_damaged_cache_is_detected_and_rebuilt(repo: Path) -> None:
    path = _log(repo, ["Use SQLite", "Cache in memory"])
    squad(repo, "log")
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"Use SQLite"', b'"Use SQLitE"'))
    _log_cache_only(repo)
    assert "Use SQLitE" not in squad(repo, "log").stdout
    assert b"SQLitE" not in path.read_bytes()  # the bad entry was dropped, the file rewritten
    path.write_bytes(data[:-30])  # a torn append
    assert _cached(repo).entries == _parsed(repo).entries
    assert path.read_bytes() == data
    path.write_bytes(b"squad-log-cache 0 0.0.0\n" + data[len(HEADER):])  # another version
    assert _cached(repo).entries == _parsed(repo).entries
    assert path.read_bytes().startswith(HEADER)


def test_a_forged_entry_that_does_not_fit_its_file_is_not_served(repo: Path) -> None:
    path = _log(repo, ["Use SQLite", "Cache in memory", "Ship on Fridays"])
    squad(repo, "log")
    entries = _entries(path)
    forged = [(blob, payload.replace(b"Use SQLite", b"Use Oracle").replace(
        b"Cache in memory", b"cache IN memory")) for blob, payload in entries]
    _write(path, forged)
    _log_cache_only(repo)
    shown = json.loads(squad(repo, "log", "--json").stdout)
    # A different title does not give the record's file name: parsed again from git.
    assert shown[0]["title"] == "Use SQLite"
    # The file name is all that a hit is checked against: same slug, served as cached.
    assert shown[1]["title"] == "cache IN memory"
    # What gets committed on takes the newest record, which the next one chains to, from git.
    newest = entries[-1][0]
    head, rest = dict(forged)[newest].split(b"\0", 1)
    fields = json.loads(head)
    fields[0] = "sha256:" + "0" * 64
    _write(path, [*forged[:-1], (newest, json.dumps(fields).encode() + b"\0" + rest)])
    ws = Workspace.open(repo)
    assert ws.ledger().head_digest == "sha256:" + "0" * 64  # shown as cached, but
    assert ws.ledger(checked=True).head_digest == _parsed(repo).head_digest
    ws.repo.close()
    (repo / "decisions" / "inbox").mkdir(exist_ok=True)
    _log(repo, ["Fourth"])
    assert squad(repo, "verify").returncode == 0


def test_worktrees_share_one_cache_and_verify_never_touches_it(repo: Path,
                                                              tmp_path: Path) -> None:
    path = _log(repo, ["Use SQLite", "Cache in memory"])
    squad(repo, "log")
    path.unlink()
    assert squad(repo, "verify").stdout.strip() == "ok: 2 records verified"
    assert not path.exists()
    other = tmp_path / "other"
    git(repo, "worktree", "add", "-q", str(other), "-b", "other")
    ws = Workspace.open(other)
    assert cache_path(ws.repo.git_dir) == path
    assert ws.ledger().entries == _parsed(repo).entries
    ws.repo.close()
    assert path.exists()


def test_a_broken_index_template_only_costs_the_cache_its_vouching(repo: Path) -> None:
    _log(repo, ["Use SQLite"])
    squad(repo, "log")
    (repo / "templates").mkdir()
    for page in ("index.md.j2", "index_page.md.j2", "index_summary.md.j2"):
        (repo / "templates" / page).write_text("{% for row in rows %}\n")
    result = squad(repo, "ingest", check=False)
    assert (result.returncode, result.stderr) == (0, "")
