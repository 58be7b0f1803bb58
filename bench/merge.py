"""Benchmark: `squad merge` of a branch with B new records into a trunk with T records.

The trunk and the branch fork when the trunk holds T-10 records; the trunk then adds 10 and
the branch B, so every one of the branch's records moves (new id, new chain link) and none of
the trunk's does. The repositories are built with `git fast-import` (not timed): one commit
holding the records at the fork, then one commit per record on each side, each side's last
commit carrying its regenerated index.

Timed, in one process, on the same pair of commits:
(a) baseline: `git merge-tree --write-tree trunk feature`, git's own merge of the two trees
    (what any merge costs; it conflicts on the index, which squad resolves);
(b) squad: `squad.merge.merge(ws, "feature")`, the whole command: merge-tree, the join, the
    merge commit, and carrying the working tree and index over;
(c) for scale: parsing the trunk's whole log (`Workspace.ledger`), which a merge that
    re-read every record would pay at least once.

It also counts the record files the merge read and wrote: the claim is that both follow B,
not T (only records that move are read or written). `squad verify` runs afterwards (not
timed) to show the result is a valid log.

Run: .venv/bin/python bench/merge.py [--trunk 1000 10000] [--branch 100 1000]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from isolation import isolate_env  # bench/isolation.py
from rich.console import Console
from rich.table import Table

from squad.ledger import Ledger, entry_for, render_index
from squad.merge import merge
from squad.records import Record, render
from squad.verify import verify
from squad.workspace import Workspace

START = datetime(2026, 1, 1, tzinfo=UTC)
TEXT = ("We weigh the options against what the team already runs, what it costs to operate "
        "and how easily a newcomer can follow it. ") * 3


def git(repo: Path, *args: str, data: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          input=data).stdout.decode()


def chain(ledger: Ledger, count: int, side: str, minute: int) -> list[tuple[str, bytes]]:
    """`count` records appended to `ledger` (which grows): (file name, bytes) each."""
    out = []
    for n in range(count):
        record_id = ledger.next_id
        refs = [record_id - 1] if record_id > 1 else []
        record = Record(id=record_id, title=f"{side} decision {n}", agent=side,
                        date=START + timedelta(minutes=minute + n), prev=ledger.head_digest,
                        inputs=tuple(refs), context=TEXT, decision=f"{side} decides {n}.",
                        consequences=TEXT)
        data = render(record).encode()
        entry = entry_for(record, data)
        ledger.append(entry)
        out.append((entry.name, data))
    return out


def fast_import(repo: Path, commits: list[tuple[str, str, list[tuple[str, bytes]]]],
                from_ref: str | None = None) -> None:
    """(branch, message, files) commits, each on top of the previous one of its branch."""
    stream: list[bytes] = []
    seen: set[str] = set()
    for mark, (branch, message, files) in enumerate(commits, start=1):
        stream.append(f"commit refs/heads/{branch}\nmark :{mark}\n".encode())
        stream.append(b"author squad <squad@localhost> 1767225600 +0000\n")
        stream.append(b"committer squad <squad@localhost> 1767225600 +0000\n")
        body = message.encode()
        stream.append(b"data %d\n%s\n" % (len(body), body))
        if branch not in seen and from_ref is not None:
            stream.append(f"from {from_ref}\n".encode())
        seen.add(branch)
        for path, data in files:
            stream.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))
    git(repo, "fast-import", "--quiet", data=b"".join(stream))


def build(root: Path, trunk: int, branch: int) -> Path:
    repo = root / f"t{trunk}-b{branch}"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    base = Ledger()
    fork = chain(base, trunk - 10, "trunk", 0)
    index = render_index(base).encode()
    trailers = "".join(f"Squad-Decision: {name.split('-')[0]}\n" for name, _ in fork)
    fast_import(repo, [("main", f"the log at the fork\n\n{trailers}",
                        [(f"decisions/{n}", d) for n, d in fork]
                        + [("decisions/README.md", index)])])
    sides = {}
    for side, count, minute in (("main", 10, trunk), ("feature", branch, trunk + 20)):
        ledger = Ledger(list(base.entries))
        added = chain(ledger, count, "trunk" if side == "main" else "feature", minute)
        commits = [(side, f"{name}\n\nSquad-Decision: {name.split('-')[0]}\n",
                    [(f"decisions/{name}", data)]) for name, data in added]
        commits[-1][2].append(("decisions/README.md", render_index(ledger).encode()))
        sides[side] = commits
    fork_sha = git(repo, "rev-parse", "main").strip()
    fast_import(repo, sides["feature"], from_ref=fork_sha)
    fast_import(repo, sides["main"], from_ref=fork_sha)
    git(repo, "checkout", "-q", "-f", "main")
    return repo


def measure(repo: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    subprocess.run(["git", "merge-tree", "--write-tree", "main", "feature"], cwd=repo,
                   capture_output=True)  # exits 1: both sides changed the index
    baseline = time.perf_counter() - t0
    ws = Workspace.open(repo)
    t0 = time.perf_counter()
    count = len(ws.ledger().entries)
    full_read = time.perf_counter() - t0
    ws.repo.close()
    ws = Workspace.open(repo)
    t0 = time.perf_counter()
    report = merge(ws, "feature")
    took = time.perf_counter() - t0
    joined = report.joined
    assert joined is not None and report.outcome == "merged"
    faults = verify(Workspace.open(repo))
    ws.repo.close()
    return {"baseline": baseline, "squad": took, "full_read": full_read, "trunk": count,
            "read": joined.blobs_read, "written": len(joined.written),
            "moved": len(joined.renumbered), "faults": len(faults)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trunk", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--branch", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    console = Console(stderr=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="squad-bench-merge-") as tmp:
        root = Path(tmp)
        isolate_env(root / "home")
        for trunk in args.trunk:
            for branch in args.branch:
                console.print(f"building trunk {trunk} + branch {branch} ...")
                repo = build(root, trunk, branch)
                rows.append((trunk, branch, measure(repo)))
    first = rows[0][2]["squad"]
    table = Table(title="squad merge: branch records joined onto the trunk's")
    for column in ("trunk", "branch", "git merge-tree s", "squad merge s", "squad / git",
                   "vs first row", "records read", "records written", "renumbered",
                   "parse whole trunk s", "verify faults"):
        table.add_column(column, justify="right")
    for trunk, branch, m in rows:
        table.add_row(str(trunk), str(branch), f"{m['baseline']:.3f}", f"{m['squad']:.3f}",
                      f"{m['squad'] / m['baseline']:.1f}x", f"{m['squad'] / first:.2f}x",
                      str(m["read"]), str(m["written"]), str(m["moved"]),
                      f"{m['full_read']:.3f}", str(m["faults"]))
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
