"""Every path squad writes may hold something of the user's: squad keeps it, never destroys it.

Real repositories, the real `squad` command. Each test puts the user's bytes where squad is
about to write (the index, the next record's path, a committed record, the quarantine) and
checks that those bytes are still somewhere, and that squad said where.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import drop_text, git, squad


@pytest.fixture
def logged(repo: Path) -> Path:
    squad(repo, "init", "--no-agents")
    squad(repo, "decide", "--title", "First", "--decision", "one", "--agent", "me")
    return repo


def decide(repo: Path, title: str) -> str:
    return squad(repo, "decide", "--title", title, "--decision", "d", "--agent", "me").stderr


def test_an_ingest_with_an_empty_inbox_leaves_the_users_index_edit_alone(logged: Path) -> None:
    index = logged / "decisions/README.md"
    index.write_text(index.read_text() + "my own notes\n")
    squad(logged, "ingest")
    assert index.read_text().endswith("my own notes\n")
    git(logged, "add", "decisions/README.md")
    staged = git(logged, "diff", "--cached")
    squad(logged, "ingest")
    assert git(logged, "diff", "--cached") == staged  # the staged edit is not reset either


def test_the_next_commit_keeps_staged_and_unstaged_index_edits_aside(logged: Path) -> None:
    index = logged / "decisions/README.md"
    original = index.read_text()
    index.write_text(original + "staged line\n")
    git(logged, "add", "decisions/README.md")
    index.write_text(original + "staged line\nunstaged line\n")
    stderr = decide(logged, "Second")
    assert "kept your version of decisions/README.md as decisions/README.md.mine" in stderr
    assert (logged / "decisions/README.md.mine").read_text().endswith("unstaged line\n")
    assert (logged / "decisions/README.md.mine-staged").read_text().endswith("staged line\n")
    assert "Second" in index.read_text()
    assert squad(logged, "verify").returncode == 0


def test_whatever_sits_at_the_next_record_paths_is_kept(logged: Path, tmp_path: Path) -> None:
    folder = logged / "decisions" / "000"
    (folder / "0002-second.md").write_bytes(b"my draft \x00 bytes")
    (folder / "0003-third.md").mkdir()
    (folder / "0003-third.md/inside.txt").write_text("a folder of mine")
    outside = tmp_path / "outside.txt"
    outside.write_text("outside the repository")
    os.symlink(outside, folder / "0004-fourth.md")
    for title in ("Second", "Third", "Fourth"):
        decide(logged, title)
    assert (folder / "0002-second.md.mine").read_bytes() == b"my draft \x00 bytes"
    assert (folder / "0003-third.md.mine/inside.txt").read_text() == "a folder of mine"
    assert os.readlink(folder / "0004-fourth.md.mine") == str(outside)
    assert outside.read_text() == "outside the repository"
    assert "Fourth" in (folder / "0004-fourth.md").read_text()
    assert squad(logged, "verify").returncode == 0


def test_a_staged_edit_of_a_committed_record_is_never_reset(logged: Path) -> None:
    record = logged / "decisions/000/0001-first.md"
    record.write_text(record.read_text() + "\nmy edit\n")
    git(logged, "add", str(record))
    staged = git(logged, "diff", "--cached")
    squad(logged, "ingest")
    decide(logged, "Second")
    assert git(logged, "diff", "--cached") == staged
    assert record.read_text().endswith("my edit\n")
    faults = squad(logged, "verify", check=False)
    assert faults.returncode == 1 and "0001-first.md" in faults.stderr


def test_a_users_file_in_quarantine_is_never_overwritten(logged: Path) -> None:
    quarantine = logged / "decisions/quarantine"
    quarantine.mkdir(exist_ok=True)
    (quarantine / "bad.md").write_text("mine")
    (quarantine / "bad.md.reason.drop").write_text("mine too")
    inbox = logged / "decisions/inbox/new"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "bad.md").write_text("not a record")
    (inbox / "bad.md.reason").write_text("not a record either")
    assert squad(logged, "ingest", check=False).returncode == 1
    assert (quarantine / "bad.md").read_text() == "mine"
    assert (quarantine / "bad.md.reason.drop").read_text() == "mine too"
    assert sorted(p.name for p in quarantine.iterdir() if "mine" not in p.read_text()) == [
        "bad.md.2", "bad.md.2.reason", "bad.md.reason.drop.2", "bad.md.reason.drop.2.reason"]


def test_a_drop_never_replaces_a_waiting_one(logged: Path) -> None:
    new = logged / "decisions/inbox/new"
    new.mkdir(parents=True, exist_ok=True)
    (new / "a.md").write_text(drop_text("Waiting"))
    loose = logged / "decisions/inbox/a.md"
    loose.write_text(drop_text("Loose with the same name"))
    os.utime(loose, (0, 0))  # long settled
    squad(logged, "ingest")
    titles = git(logged, "log", "--format=%s", "--grep=^Squad-Decision").splitlines()
    assert sorted(titles) == ["First", "Loose with the same name", "Waiting"]


def test_a_write_cut_short_by_a_kill_leaves_no_temporary_behind(logged: Path) -> None:
    """A SIGKILL between writing squad's temporary file and renaming it leaves the file; the
    next pass removes squad's own leftovers and nothing else."""
    leftover = logged / "decisions" / ".0002-next.md.k3x9q2ab.squad-tmp"
    leftover.write_text("half a record")
    in_folder = logged / "decisions" / "000" / ".README.md.hbc9qrai.squad-tmp"
    in_folder.parent.mkdir(exist_ok=True)
    in_folder.write_text("half a page")
    theirs = logged / "decisions" / ".my-notes.tmp"
    theirs.write_text("mine")
    squad(logged, "ingest")
    assert not leftover.exists() and not in_folder.exists()
    assert theirs.read_text() == "mine"
