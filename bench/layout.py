"""Benchmark: what each new decision costs the repository, flat log against folders of 1,000.

For each size N and each layout, a fresh repository gets N records by one `git fast-import`
stream: records rendered by squad's own `records.render`, chained by `records.digest`, put
where the layout puts them, 1,000 records per commit (each commit's `Squad-Decision`
trailers name its records), and the index pages rendered by squad's own `squad.layout.pages`
in the last commit (so the coordinator's check of the committed pages passes and nothing is
parsed again). One commit per record would make fast-import write N trees of up to N entries
in a flat log (quadratic: hours at 100,000); the measured commits below are real ones.

Measured, on top of a log of N: `.git` is packed (`git repack -a -d -f`, then `git gc`), the
parsed-log cache is warmed (`squad log`), K drops are delivered in-process with squad's
Maildir `Inbox.drop` and committed by one real `squad ingest` (one commit each, as in use),
then `.git` is packed again the same way. Reported per decision: bytes added to `.git` after
gc, loose bytes and files written before gc, and CPU of the ingest process minus an empty
`squad ingest` (whole processes, children's user + system time: the machine is shared, wall
time follows its load). The baseline in each column is the 100-record figure of the same
layout, measured in the same run.

Run: .venv/bin/python bench/layout.py [--sizes 100,10000,100000] [--drops 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from isolation import isolate_env  # bench/isolation.py
from rich.console import Console
from rich.table import Table

from squad import layout
from squad.dropbox import Inbox
from squad.ledger import Entry, Ledger
from squad.records import Record, digest, filename, render

SQUAD = [sys.executable, "-m", "squad"]
START = datetime(2026, 1, 1, tzinfo=UTC)
IDENTITY = "squad <squad@localhost>"
FILLER = ("We weigh the options against what the team already runs, what it costs to operate "
          "and how easily a newcomer can follow it. ")
PER_COMMIT = 1000


def git(repo: Path, *args: str, data: bytes | None = None) -> str:
    out = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, input=data)
    return out.stdout.decode()


def make_record(i: int, prev: str | None) -> Record:
    date = START + timedelta(seconds=i)
    if i % 10 == 0:
        return Record(id=i, date=date, prev=prev, agent="lead", kind="accept", target=i - 1,
                      title=f"Accept {i - 1:04d}", decision=f"Accepted {i - 1:04d}.")
    return Record(id=i, date=date, prev=prev, agent="architect", tags=("bench",),
                  supersedes=(i - 2,) if i % 25 == 1 and i > 2 else (),
                  title=f"Decision {i}: use option {i % 7}", context=FILLER * 2,
                  decision=f"We use option {i % 7} for part {i}. {FILLER}")


def build(repo: Path, n: int, shape: layout.Layout) -> None:
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "squad.toml").write_text("[coordinator]\nsettle_seconds = 0\n")
    if shape == layout.FLAT:  # an earlier squad's empty index: the log stays flat
        (repo / "decisions").mkdir()
        (repo / "decisions/README.md").write_text("# Decision log\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "initial")
    parent = git(repo, "rev-parse", "HEAD").strip()
    ledger = Ledger()
    chunks: list[bytes] = []
    prev: str | None = None
    batch: list[tuple[str, bytes]] = []
    for i in range(1, n + 1):
        record = make_record(i, prev)
        data = render(record).encode()
        prev = digest(data)
        name = layout.place(filename(record), shape)
        ledger.append(Entry(record, name, prev))
        batch.append((f"decisions/{name}", data))
        if i % PER_COMMIT == 0 or i == n:
            files = list(batch)
            if i == n:
                files += [(f"decisions/{path}", page)
                          for path, page in layout.pages(ledger, shape).items()]
            stamp = f"{IDENTITY} {int(record.date.timestamp())} +0000"
            ids = "".join(f"Squad-Decision: {j:04d}\n" for j in range(i - len(batch) + 1, i + 1))
            message = f"records up to {i}\n\n{ids}".encode()
            chunk = [b"commit refs/heads/main\n", f"author {stamp}\ncommitter {stamp}\n".encode(),
                     b"data %d\n" % len(message), message]
            if len(chunks) == 0:
                chunk.append(f"from {parent}\n".encode())
            for path, blob in files:
                chunk += [f"M 100644 inline {path}\ndata {len(blob)}\n".encode(), blob, b"\n"]
            chunks.append(b"".join(chunk) + b"\n")
            batch = []
    git(repo, "fast-import", "--quiet", data=b"".join(chunks))
    git(repo, "reset", "-q", "--hard", "main")


def pack(repo: Path) -> None:
    git(repo, "repack", "-a", "-d", "-f", "-q")
    git(repo, "gc", "-q")


def git_bytes(repo: Path) -> tuple[int, int]:
    """(files, bytes) under .git/objects."""
    files = size = 0
    for folder, _, names in os.walk(repo / ".git" / "objects"):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(folder, name)).st_size
    return files, size


def cpu_of(repo: Path, argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(argv, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed in {repo}:\n{result.stderr.decode()[-2000:]}")
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def drop_text(i: int) -> str:
    return (f"---\ntitle: 'Bench decision {i}'\nagent: bench\ntags: [bench]\n---\n\n"
            f"## Context\n\n{FILLER * 2}\n\n## Decision\n\nWe pick {i}. {FILLER}\n")


def measure(root: Path, n: int, shape: layout.Layout, drops: int,
            console: Console) -> dict[str, float]:
    repo = root / f"{shape}-{n}"
    console.print(f"building a {shape} log of {n:,} records ...")
    start = time.perf_counter()
    build(repo, n, shape)
    built = time.perf_counter() - start
    pack(repo)
    cpu_of(repo, [*SQUAD, "log"])  # warms the parsed-log cache, as in everyday use
    empty = min(cpu_of(repo, [*SQUAD, "ingest"]) for _ in range(2))
    files0, before = git_bytes(repo)
    inbox = Inbox(repo / "decisions" / "inbox")
    for j in range(drops):
        inbox.drop(drop_text(j))
    console.print(f"ingesting {drops} decisions ...")
    whole = cpu_of(repo, [*SQUAD, "ingest"])
    files1, loose = git_bytes(repo)
    pack(repo)
    _, after = git_bytes(repo)
    expected = repo / "decisions" / layout.place(f"{n + 1:04d}-bench-decision-0.md", shape)
    if not expected.is_file():
        sys.exit(f"the first new record is not where the {shape} layout puts it: {expected}")
    return {"bytes after gc": (after - before) / drops, "loose bytes": (loose - before) / drops,
            "files": (files1 - files0) / drops, "cpu ms": (whole - empty) / drops * 1000,
            "build s": built, ".git MB": after / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000,100000")
    parser.add_argument("--drops", type=int, default=100, help="K decisions per measurement")
    parser.add_argument("--layouts", default="flat,folders")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes: list[layout.Layout] = [s for s in (layout.FLAT, layout.FOLDERS)
                                   if s in args.layouts.split(",")]
    console = Console(stderr=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows: dict[tuple[layout.Layout, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="squad-layout-") as tmp:
        root = Path(tmp)
        isolate_env(root / "home")
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        for n in sizes:
            for shape in shapes:
                rows[shape, n] = measure(root, n, shape, args.drops, console)
                console.print(f"  {shape} {n:,}: {rows[shape, n]}")
    table = Table(title=f"per decision, {args.drops} decisions by one `squad ingest` on top "
                        "of a log of N records (ratio: to the same layout at "
                        f"{sizes[0]:,})")
    table.add_column("per decision")
    for n in sizes:
        for shape in shapes:
            table.add_column(f"{shape} {n:,}", justify="right")
    labels = {"bytes after gc": "bytes added to .git after gc",
              "loose bytes": "loose bytes written (before gc)",
              "files": "files created in .git", "cpu ms": "ingest CPU ms (minus an empty ingest)",
              ".git MB": ".git MB after gc (whole repository)", "build s": "build s (fast-import)"}
    for key, label in labels.items():
        cells = []
        for n in sizes:
            for shape in shapes:
                value, base = rows[shape, n][key], rows[shape, sizes[0]][key]
                ratio = f" ({value / base:.1f}x)" if n != sizes[0] and base > 0 and \
                    key in ("bytes after gc", "loose bytes", "cpu ms") else ""
                cells.append(f"{value:,.1f}{ratio}" if key in ("build s", ".git MB", "files")
                             else f"{value:,.0f}{ratio}")
        table.add_row(label, *cells)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
