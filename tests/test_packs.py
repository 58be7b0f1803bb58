"""squad's objects reach git as packs: git reads them at once, and they do not pile up."""

from __future__ import annotations

import os
import time
from pathlib import Path

from helpers import git, squad

from squad import packs
from squad.vcs import blob_sha


def _loose(repo: Path) -> int:
    counts = dict(line.split(": ") for line in git(repo, "count-objects", "-v").splitlines())
    return int(counts["count"])


def test_a_commit_writes_one_pack_that_git_reads_and_no_loose_object(
        initialized_no_agents: Path) -> None:
    repo = initialized_no_agents
    git(repo, "repack", "-a", "-d", "-q")
    before = packs.count(repo / ".git/objects/pack")
    squad(repo, "decide", "--title", "Use SQLite", "--decision", "SQLite it is.")
    assert packs.count(repo / ".git/objects/pack") == before + 1
    assert _loose(repo) == 0
    git(repo, "fsck", "--strict", "--no-dangling")
    assert "SQLite it is." in git(repo, "show", "HEAD")
    for idx in (repo / ".git/objects/pack").glob("pack-*.idx"):
        git(repo, "verify-pack", str(idx))
    assert git(repo, "status", "--porcelain") == ""


def test_a_large_object_and_many_objects_round_trip_through_git(repo: Path) -> None:
    """Sizes past the one-byte header and a full fanout table, checked by git itself."""
    blobs = [os.urandom(200_000), b""] + [b"object %d\n" % i for i in range(600)]
    objects = [(blob_sha(data), "blob", data) for data in blobs]
    idx = packs.write(repo / ".git/objects/pack", objects + objects[:3])  # twice: once
    git(repo, "verify-pack", str(idx))
    with idx.open("rb") as handle:
        assert len(git(repo, "show-index", stdin=handle).splitlines()) == len(blobs)
    out = git(repo, "cat-file", "--batch-check", input="\n".join(s for s, _, _ in objects))
    assert [line.split()[2] for line in out.splitlines()] == [str(len(b)) for b in blobs]


def test_past_the_limit_squad_has_git_roll_its_packs_up(initialized_no_agents: Path) -> None:
    repo = initialized_no_agents
    folder = repo / ".git/objects/pack"
    for i in range(packs.LIMIT + 5):
        (repo / "app.py").write_text(f"version {i}\n")
        git(repo, "commit", "-q", "-am", f"edit {i}")
        git(repo, "repack", "-q")  # the loose objects of that commit as a pack of its own
    assert packs.count(folder) > packs.LIMIT
    squad(repo, "decide", "--title", "Use SQLite", "--decision", "SQLite it is.")
    assert packs.count(folder) < packs.LIMIT // 2
    git(repo, "fsck", "--strict", "--no-dangling")
    assert git(repo, "log", "--format=%s", "-1").strip() == "Use SQLite"


def test_a_killed_writers_temporaries_are_swept_once_stale(initialized_no_agents: Path) -> None:
    repo = initialized_no_agents
    folder = repo / ".git/objects/pack"
    stale, fresh = folder / f"{packs.PREFIX}1_aa.pack", folder / f"{packs.PREFIX}2_bb.idx"
    stale.write_bytes(b"PACK half")
    fresh.write_bytes(b"half")
    hours_ago = time.time() - 2 * packs.STALE_SECONDS
    os.utime(stale, (hours_ago, hours_ago))
    squad(repo, "decide", "--title", "Use SQLite", "--decision", "SQLite it is.")
    assert not stale.exists()
    assert fresh.exists()  # it may belong to a writer still at work
    git(repo, "fsck", "--strict", "--no-dangling")
