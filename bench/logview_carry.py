"""Benchmark: carrying the log view over a commit (`squad.logview.carry`) at 100, 10,000
and 100,000 records, in-process.

How the views are built: for each size N an in-memory log of N records is made with squad's
own `Record` and `Ledger` (one record in ten accepts the decision before it, one in
twenty-five supersedes an earlier one and names it as an input; each decision carries
about 700 bytes of text, so a view line is about a kilobyte, as in real logs), and its view
is written with `logview.build` + `logview.save` into a temporary git dir. No git
repository is needed: `carry` reads and writes only the view file.

What is timed: one `carry` from the view of the first N records to the view of N + 3 (a
decision naming record 1 and the newest as inputs, an accept of the newest decision, a
decision superseding an old one): the rows of old records it changes are remade, the rest
carried. The old view is put back (untimed) before each run. Baseline, measured in the same
run at each size: reading the view file, hashing it once with sha256 and writing the bytes
to a new file (what any carry that touches the whole file pays at least). Median of
--repeat runs, wall milliseconds; each figure also as a ratio to its 100-record value.
The carried file must lay out (`logview.compact`) to the bytes `logview.build` gives, or
the bench stops.

A carry appends the blocks it makes again to the file; once the dead bytes would outweigh
the live ones it lays the file out afresh instead (a relay). `appended KB` is what one
carry adds, `relay ms` what laying the file out afresh costs (timed as `compact` + a
whole-file write), `carries/relay` how many such carries fit before one, and `amortized
ms` the carry plus its share of a relay. `show ms` is opening the carried view and reading
one row by its id, `log page ms` opening it and reading the newest 23 rows (what `show`
and `log` read of it; in-process, no command start).

Run: .venv/bin/python bench/logview_carry.py [--sizes 100,10000,100000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from squad import logview
from squad.ledger import Entry, Ledger
from squad.records import Record, digest, filename, render

TEXT = ("We keep the cache in memory for now; the numbers say it is enough. " * 10).strip()
START = datetime(2026, 1, 1, tzinfo=UTC)


def _record(rid: int, decisions: list[int]) -> Record:
    """Record `rid` of the synthetic log: mostly decisions, some accepts, some supersedes."""
    date = START + timedelta(minutes=rid)
    if rid % 10 == 0 and decisions:
        return Record(id=rid, date=date, agent="tester", kind="accept", target=decisions[-1],
                      title=f"Accept {decisions[-1]}", decision="ok")
    fields: dict[str, object] = {}
    if rid % 25 == 0 and len(decisions) > 2:
        old = decisions[len(decisions) // 2]
        fields = {"supersedes": (old,), "inputs": (old,)}
    return Record(id=rid, date=date, agent="architect", title=f"Decision {rid}",
                  decision=TEXT, tags=("cache",), **fields)  # type: ignore[arg-type]


def _ledger(n: int) -> Ledger:
    ledger = Ledger()
    decisions: list[int] = []
    for rid in range(1, n + 1):
        record = _record(rid, decisions)
        if record.kind == "decision":
            decisions.append(rid)
        ledger.append(Entry(record, filename(record), digest(render(record).encode())))
    return ledger


def _added(ledger: Ledger) -> None:
    """Three more records that change old rows: inputs, an accept, a supersede."""
    n = ledger.next_id
    decisions = [e.record.id for e in ledger.entries if e.record.kind == "decision"]
    date = START + timedelta(minutes=n)
    records = [
        Record(id=n, date=date, agent="architect", title="New", decision=TEXT,
               inputs=(1, decisions[-1])),
        Record(id=n + 1, date=date, agent="tester", kind="accept", target=decisions[-1],
               title="Accept", decision="ok"),
        Record(id=n + 2, date=date, agent="architect", title="Newer", decision=TEXT,
               supersedes=(decisions[len(decisions) // 3],)),
    ]
    for record in records:
        ledger.append(Entry(record, filename(record), digest(render(record).encode())))


def _blob(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def _median_ms(runs: list[float]) -> float:
    return statistics.median(runs) * 1000


def measure(n: int, repeat: int, tmp: Path) -> dict[str, float]:
    ledger = _ledger(n)
    git_dir = tmp / f"git-{n}"
    path = logview.view_path(git_dir)
    old = logview.build(ledger, {e.name: _blob(e.name) for e in ledger.entries}, "a" * 40,
                        "none")
    whole = Ledger(list(ledger.entries))
    _added(whole)
    blobs = {e.name: _blob(e.name) for e in whole.entries[n:]}
    expected = logview.build(whole, {e.name: _blob(e.name) for e in whole.entries}, "b" * 40,
                             "none")
    carry, base, relay = [], [], []
    for _ in range(repeat):
        logview.save(path, old)
        t = time.perf_counter()
        carried = logview.carry(git_dir, "a" * 40, "b" * 40, "none", whole, blobs)
        carry.append(time.perf_counter() - t)
        data = path.read_bytes()
        view = logview.View.of_bytes(data, "b" * 40, "none")
        if not carried or logview.compact(view) != expected:
            raise SystemExit(f"carry at {n} did not give the rebuilt view")
        t = time.perf_counter()
        logview.save(path.with_name("relaid"), logview.compact(view))
        relay.append(time.perf_counter() - t)
        t = time.perf_counter()
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        copy = path.with_name("copy")
        copy.write_bytes(data)
        base.append(time.perf_counter() - t)
        copy.unlink()
    appended = len(data) - len(old)
    show, page = [], []
    fd = os.open(path, os.O_RDONLY)
    try:
        for i in range(repeat):
            t = time.perf_counter()
            view = logview.View.of_file(fd, "b" * 40, "none")
            view.get(1 + (i * 7919) % n)
            show.append(time.perf_counter() - t)
            t = time.perf_counter()
            logview.View.of_file(fd, "b" * 40, "none").rows(n - 20)
            page.append(time.perf_counter() - t)
    finally:
        os.close(fd)
    return {"carry": _median_ms(carry), "baseline": _median_ms(base), "mb": len(old) / 1e6,
            "appended": appended, "relay": _median_ms(relay),
            "between": max(1, (len(expected) + (1 << 16)) // max(1, appended)),
            "show": _median_ms(show), "page": _median_ms(page)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000,100000")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="squad-bench-") as tmp:
        rows = {n: measure(n, args.repeat, Path(tmp)) for n in sizes}
    first = rows[sizes[0]]
    print(f"{'records':>8} {'view MB':>8} {'carry ms':>9} {'x100':>6} "
          f"{'read+sha+write ms':>18} {'x100':>6} {'carry/baseline':>15} "
          f"{'appended KB':>12} {'relay ms':>9} {'carries/relay':>14} {'amortized ms':>13} "
          f"{'show ms':>8} {'log page ms':>12}")
    for n, row in rows.items():
        amortized = row["carry"] + row["relay"] / row["between"]
        print(f"{n:>8} {row['mb']:>8.1f} {row['carry']:>9.2f} "
              f"{row['carry'] / first['carry']:>6.2f} {row['baseline']:>18.2f} "
              f"{row['baseline'] / first['baseline']:>6.2f} "
              f"{row['carry'] / row['baseline']:>15.2f} {row['appended'] / 1e3:>12.1f} "
              f"{row['relay']:>9.1f} {row['between']:>14} {amortized:>13.2f} "
              f"{row['show']:>8.3f} {row['page']:>12.3f}")


if __name__ == "__main__":
    main()
