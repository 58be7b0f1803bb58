"""Benchmark: how squad's everyday commands grow with the log (100, 1,000, 10,000 records).

How the logs are built. For each size N a fresh repository gets one user commit (app.py and a
squad.toml), then N records streamed through one `git fast-import`: every record is its own
commit with squad's identity and trailers (`Squad-Decision`, `Squad-Agent`, `Squad-Drop`,
`Squad-Drop-Hash`), its text rendered by squad's own `records.render`, its `prev` the
`records.digest` of the record before, and `decisions/README.md` rendered by
`ledger.render_index`. One record in ten accepts the decision before it and one in
twenty-five supersedes an earlier one, so statuses are folded as in real use. So that the
stream stays linear in N, the index is rewritten every max(1, N // 100) commits and in the last
one (every commit at N = 100): a squad commit rewrites it every time, which is what the bytes
per decision below measure with real `squad ingest` commits. The working tree is then checked
out (`git reset --hard`) and `squad verify` must pass, or the bench stops.

What is timed: whole processes (`python -m squad ...`, output to /dev/null, median of
--repeat runs) next to baselines measured in the same run: `python -c pass` (interpreter
start), `git log -1` and `git cat-file -p` of one record (what git itself needs). Ingest per
decision is (`squad ingest` of K drops - `squad ingest` of none) / K; the drops are delivered
in-process with squad's Maildir `Inbox.drop`, as `squad decide --no-ingest` does, and not
timed. Its baseline is one `git commit-tree` process per commit.

Bytes per decision: `.git` is packed (`git repack -a -d -f`, then `git gc`), K x --repeat
decisions are ingested by squad (one commit each, rewriting the flat decisions/ tree and the
whole index), packed again the same way; the growth divided by the decisions added. Loose
bytes are the same growth before that second pack. The 100,000 figure is an estimate: bytes
per decision is taken as linear in N (each commit carries one tree entry and one index row
per existing record, before delta compression) and extrapolated from the 1,000 and 10,000
points.

Times are wall and CPU (user + system of the child) milliseconds: this machine is shared,
and wall time follows whatever else runs. `cold cache` runs remove squad's caches in `.git`
(the parsed-log cache `.git/squad/log-cache` and the log view `.git/squad/log-view`) first,
as after a fresh clone; `view stale` runs remove only the log view (which describes one
state of the log): what the first `log` or `show` pays when the view cannot be carried over
(after a rewrite, a merge, or a commit made by plain git). `after a commit` runs make one
commit with `squad decide` (untimed) before each timed run: what the first `log` or `show`
after squad's own commit pays. `show N` shows the newest record.

--quick times only the read commands (for 100,000 records, where verify, ingest and gc take
many minutes): the built log is then checked by reading it back (`log --json --limit 1`
must show record N), not by `squad verify`.

Files created: the table counts the files under `.git` after fast-import and after gc, and
the files in the working tree. `.git` sizes leave out squad's parsed-log cache
(`.git/squad/log-cache`), whose size has its own row.

The logs use folders of 1,000 records (what a new log uses; `--layout flat` for the layout
of logs made before, see `bench/layout.py` for the two side by side); the index pages are
rewritten every max(1, N // 100) commits for the folders changed since.

Run: .venv/bin/python bench/scale.py [--sizes 100,1000,10000] [--repeat 3] [--drops 20]
     [--layout folders|flat] [--quick] [--only WORD]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from isolation import isolate_env  # bench/isolation.py
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from scripted_server import RecordedRequest, ScriptedServer, Text, ToolCalls

from squad import layout
from squad.dropbox import Inbox
from squad.ledger import Entry, Ledger, render_index
from squad.records import Record, digest, filename, render

SQUAD = [sys.executable, "-m", "squad"]
START = datetime(2026, 1, 1, tzinfo=UTC)
IDENTITY = "squad <squad@localhost>"
AGENTS = ("architect", "security", "tester", "docs", "lead")
FILLER = ("We weigh the options against what the team already runs, what it costs to operate "
          "and how easily a newcomer can follow it. ")


def git(repo: Path, *args: str, data: bytes | None = None) -> str:
    out = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                         input=data)
    return out.stdout.decode()


def make_record(i: int, prev: str | None) -> Record:
    """Record i of the synthetic log: mostly decisions, some accepts and supersessions."""
    agent = AGENTS[i % len(AGENTS)]
    date = START + timedelta(minutes=i)
    if i % 10 == 0:
        return Record(id=i, date=date, prev=prev, agent=agent, kind="accept", target=i - 1,
                      title=f"Accept {i - 1:04d}", decision=f"Accepted {i - 1:04d}.")
    supersedes = (i - 2,) if i % 25 == 1 and i > 2 else ()
    return Record(id=i, date=date, prev=prev, agent=agent, supersedes=supersedes,
                  tags=("bench", f"area-{i % 7}"), title=f"Decision {i}: use option {i % 7}",
                  context=FILLER * 4, decision=f"We use option {i % 7} for part {i}. {FILLER}",
                  consequences=f"Revisit after {i} more decisions.")


def build_log(repo: Path, n: int, shape: layout.Layout = layout.FOLDERS) -> None:
    """A repository with n honest squad records, made by one `git fast-import` stream."""
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("print('hello')\n")
    (repo / "squad.toml").write_text("[coordinator]\nsettle_seconds = 0\n")
    if shape == layout.FLAT:  # an earlier squad's empty index: the log stays flat
        (repo / "decisions").mkdir()
        (repo / "decisions/README.md").write_text(render_index(Ledger()))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "initial")
    parent = git(repo, "rev-parse", "HEAD").strip()
    step = max(1, n // 100)
    ledger = Ledger()
    touched: set[str] = set()
    chunks: list[bytes] = []
    prev: str | None = None
    for i in range(1, n + 1):
        record = make_record(i, prev)
        data = render(record).encode()
        prev = digest(data)
        ledger.append(Entry(record, layout.place(filename(record), shape), prev))
        touched |= layout.touched(ledger, ledger.entries[-1])
        stamp = f"{IDENTITY} {int(record.date.timestamp())} +0000"
        message = (f"{record.title}\n\nSquad-Decision: {i:04d}\nSquad-Agent: {record.agent}\n"
                   f"Squad-Drop: bench-{i:06d}.md\nSquad-Drop-Hash: {prev}\n").encode()
        files = [(f"decisions/{ledger.entries[-1].name}", data)]
        if i % step == 0 or i == n:  # the pages of the folders changed since the last time
            files += [(f"decisions/{path}", page)
                      for path, page in layout.pages(ledger, shape, folders=touched).items()]
            touched = set()
        chunk = [b"commit refs/heads/main\n", f"author {stamp}\ncommitter {stamp}\n".encode(),
                 b"data %d\n" % len(message), message]
        if i == 1:
            chunk.append(f"from {parent}\n".encode())
        for path, blob in files:
            chunk += [f"M 100644 inline {path}\ndata {len(blob)}\n".encode(), blob, b"\n"]
        chunks.append(b"".join(chunk) + b"\n")
    git(repo, "fast-import", "--quiet", data=b"".join(chunks))
    git(repo, "reset", "-q", "--hard", "main")


def pack(repo: Path) -> None:
    """`git gc`, recomputing every delta: fast-import's own deltas are poor and a plain gc
    would keep them on one side of the comparison and not on the other."""
    git(repo, "repack", "-a", "-d", "-f", "-q")
    git(repo, "gc", "-q")


def count_files(path: Path) -> tuple[int, int]:
    """(files, bytes) under path, leaving out squad's parsed-log cache (counted apart)."""
    files = size = 0
    for folder, subfolders, names in os.walk(path):
        if folder == str(path) and path.name == ".git" and "squad" in subfolders:
            subfolders.remove("squad")
        for name in names:
            files += 1
            size += os.lstat(os.path.join(folder, name)).st_size
    return files, size


def timed(repo: Path, argv: list[str], repeat: int, cold: bool = False,
          stale: bool = False, first: list[str] | None = None) -> tuple[float, float]:
    """Median wall and CPU (user + system) seconds of a whole process; it must succeed.

    CPU time is reported too because this machine is shared: wall time follows the load.
    With `cold`, squad's caches (the parsed-log cache and the log view) are removed before
    each run; with `stale`, only the log view (so it is rebuilt).
    `first` is a command run, untimed, before each run (a commit, for "first after a
    commit")."""
    walls, cpus = [], []
    for _ in range(repeat):
        if cold:
            (repo / ".git" / "squad" / "log-cache").unlink(missing_ok=True)
        if cold or stale:
            (repo / ".git" / "squad" / "log-view").unlink(missing_ok=True)
        if first is not None:
            subprocess.run(first, cwd=repo, check=True, capture_output=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=repo, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if result.returncode != 0:
            sys.exit(f"{' '.join(argv)} exited {result.returncode} in {repo}:\n"
                     f"{result.stderr.decode()[-2000:]}")
    return statistics.median(walls), statistics.median(cpus)


# A commit made by squad (one decision), untimed, before each "first after a commit" run.
DECIDE = [*SQUAD, "decide", "--agent", "bench", "--title", "Another bench decision",
          "--decision", "We pick another option."]
RUN_AGENTS = 4
CHARTER = ("---\nname: {name}\nrole: Bench specialist number {n}\ntools: [record_decision]\n"
           "---\n\n## How I work\nRecord one decision, then stop.\n")
SETTINGS = "[llm]\nmodel = 'scripted'\nmax_retries = 0\ntimeout = 60\n"


def reply(request: RecordedRequest) -> ToolCalls | Text:
    """At L = 0: each agent records one decision, then says it is done."""
    if any(m["role"] == "assistant" for m in request.messages):
        return Text("done")
    agent = request.messages[1]["content"].split("# Your charter: ", 1)[1].split(" ", 1)[0]
    return ToolCalls([("record_decision", {
        "title": f"{agent} picks option A", "context": f"{agent} looked at the goal.",
        "decision": f"{agent} decides A.", "consequences": "None to speak of."})])


def prepare_run(repo: Path) -> None:
    """`squad init` and four bench charters with the scripted model, committed by the user."""
    subprocess.run([*SQUAD, "init"], cwd=repo, check=True, capture_output=True)
    (repo / "squad.toml").write_text("[coordinator]\nsettle_seconds = 0\n" + SETTINGS)
    for n in range(1, RUN_AGENTS + 1):
        (repo / "agents" / f"a{n:02d}.md").write_text(CHARTER.format(name=f"a{n:02d}", n=n))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "bench charters and settings")


def run_agents(repo: Path, server: ScriptedServer, repeat: int) -> Times:
    """A 4-agent `squad run` at L = 0 (each agent one decision), whole process, median."""
    agents = ",".join(f"a{n:02d}" for n in range(1, RUN_AGENTS + 1))
    argv = [*SQUAD, "run", "Pick an option", "--agents", agents, "--rounds", "1",
            "--concurrency", str(RUN_AGENTS)]
    os.environ["OPENAI_BASE_URL"] = server.base_url
    try:
        return timed(repo, argv, repeat)
    finally:
        del os.environ["OPENAI_BASE_URL"]


def drop_text(i: int) -> str:
    return (f"---\ntitle: 'Bench decision {i}'\nagent: bench\ntags: [bench]\n---\n\n"
            f"## Context\n\n{FILLER * 4}\n\n## Decision\n\nWe pick {i}. {FILLER}\n")


Times = tuple[float, float]  # wall, cpu


def ingest_per_decision(repo: Path, drops: int, repeat: int) -> tuple[Times, Times, Times]:
    """Per decision (minus an empty ingest), the whole `ingest` of K drops, and per
    `git commit-tree` process: each (wall, cpu) seconds."""
    inbox = Inbox(repo / "decisions" / "inbox")
    empty = timed(repo, [*SQUAD, "ingest"], repeat)
    whole: list[Times] = []
    for r in range(repeat):
        for j in range(drops):
            inbox.drop(drop_text(r * drops + j))
        whole.append(timed(repo, [*SQUAD, "ingest"], 1))
    median = (statistics.median(w for w, _ in whole), statistics.median(c for _, c in whole))
    per = ((median[0] - empty[0]) / drops, (median[1] - empty[1]) / drops)
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    head = git(repo, "rev-parse", "HEAD").strip()
    plumbing = timed(repo, ["git", "commit-tree", tree, "-p", head, "-m", "baseline"], drops)
    return per, median, plumbing


def measure(root: Path, n: int, repeat: int, drops: int, console: Console,
            server: ScriptedServer, shape: layout.Layout = layout.FOLDERS,
            quick: bool = False, only: str | None = None) -> dict[str, Any]:
    repo = root / f"log-{n}"
    console.print(f"building a log of {n} records ...")
    start = time.perf_counter()
    build_log(repo, n, shape)
    built = time.perf_counter() - start
    git_files, _ = count_files(repo / ".git")
    tree_files = sum(1 for _ in (repo / "decisions").rglob("*"))
    if quick:  # the log must at least read back whole
        out = subprocess.run([*SQUAD, "log", "--json", "--limit", "1"], cwd=repo,
                             capture_output=True, text=True)
        if out.returncode != 0 or f'"id": {n},' not in out.stdout:
            sys.exit(f"the built log of {n} does not read back:\n{out.stderr[-2000:]}")
    else:
        out = subprocess.run([*SQUAD, "verify"], cwd=repo, capture_output=True, text=True)
        if out.returncode != 0 or f"ok: {n} records verified" not in out.stdout:
            sys.exit(f"the built log of {n} does not verify:\n{out.stdout}"
                     f"{out.stderr[-2000:]}")
    first = sorted(p.relative_to(repo / "decisions").as_posix()
                   for p in (repo / "decisions").rglob("0*.md"))[0]
    console.print(f"timing commands at {n} ...")
    for warm in (["--help"], ["show", "1"], ["log"]):
        subprocess.run([*SQUAD, *warm], cwd=repo, check=True, capture_output=True)
    view = repo / ".git" / "squad" / "log-view"
    if only is not None:  # the baselines and the rows named, nothing else
        return _only(repo, n, repeat, only, server, drops)
    row = {
        "build s": built, ".git files": git_files, "decisions/ files": tree_files,
        "python -c pass": timed(repo, [sys.executable, "-c", "pass"], repeat),
        "git log -1": timed(repo, ["git", "log", "-1"], repeat),
        "git cat-file record": timed(repo, ["git", "cat-file", "-p",
                                            f"HEAD:decisions/{first}"], repeat),
        "squad --help": timed(repo, [*SQUAD, "--help"], repeat),
        "squad log": timed(repo, [*SQUAD, "log"], repeat),
        "squad show 1": timed(repo, [*SQUAD, "show", "1"], repeat),
        "squad show N": timed(repo, [*SQUAD, "show", str(n)], repeat),
        "squad log, view stale": timed(repo, [*SQUAD, "log"], repeat, stale=True),
    }
    if quick:  # only the read commands: verify and ingest take minutes at 100,000
        return row | {"log view bytes": view.stat().st_size if view.exists() else 0}
    row |= {
        "squad log --all": timed(repo, [*SQUAD, "log", "--all"], repeat)
        if _has_all_flag() else (float("nan"), float("nan")),
        "squad show 1, view stale": timed(repo, [*SQUAD, "show", "1"], repeat, stale=True),
        "squad log, after a commit": timed(repo, [*SQUAD, "log"], repeat, first=DECIDE),
        "squad show 1, after a commit": timed(repo, [*SQUAD, "show", "1"], repeat,
                                              first=DECIDE),
        "squad log, cold cache": timed(repo, [*SQUAD, "log"], repeat, cold=True),
        "squad show 1, cold cache": timed(repo, [*SQUAD, "show", "1"], repeat, cold=True),
        "squad verify": timed(repo, [*SQUAD, "verify"], repeat),
    }
    console.print(f"a {RUN_AGENTS}-agent run at {n} ...")
    prepare_run(repo)
    row["squad run, 4 agents, L=0"] = run_agents(repo, server, repeat)
    pack(repo)
    _, before = count_files(repo / ".git")
    per, whole, plumbing = ingest_per_decision(repo, drops, repeat)
    _, loose = count_files(repo / ".git")
    pack(repo)
    after_files, after = count_files(repo / ".git")
    cache = repo / ".git" / "squad" / "log-cache"
    added = drops * repeat
    row.update({
        "ingest s/decision": per, "ingest whole s": whole, "git commit-tree s": plumbing,
        "loose bytes/decision": (loose - before) / added,
        "bytes/decision after gc": (after - before) / added,
        ".git files after gc": after_files, ".git bytes after gc": before,
        "log cache bytes": cache.stat().st_size if cache.exists() else 0,
        "log view bytes": view.stat().st_size if view.exists() else 0,
    })
    return row


def _only(repo: Path, n: int, repeat: int, only: str, server: ScriptedServer,
          drops: int = 20) -> dict[str, Any]:
    """`--only WORD`: the baselines and the squad commands whose row names WORD (each run
    as in the full table; `--only run` times the 4-agent run, `--only ingest` the ingest
    per decision; no gc)."""
    commands = {"squad --help": ["--help"], "squad log": ["log"],
                "squad log --all": ["log", "--all"], "squad show 1": ["show", "1"],
                "squad show N": ["show", str(n)], "squad verify": ["verify"]}
    row: dict[str, Any] = {
        "python -c pass": timed(repo, [sys.executable, "-c", "pass"], repeat),
        "git log -1": timed(repo, ["git", "log", "-1"], repeat)}
    for key, argv in commands.items():
        if only in key and (key != "squad log --all" or _has_all_flag()):
            row[key] = timed(repo, [*SQUAD, *argv], repeat)
    if only in "squad run, 4 agents, L=0":
        prepare_run(repo)
        row["squad run, 4 agents, L=0"] = run_agents(repo, server, repeat)
    if only in "ingest":
        per, whole, plumbing = ingest_per_decision(repo, drops, repeat)
        row |= {"ingest s/decision": per, "ingest whole s": whole, "git commit-tree s": plumbing}
    return row


def _has_all_flag() -> bool:
    out = subprocess.run([*SQUAD, "log", "--help"], capture_output=True, text=True)
    return "--all" in out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="log sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (median)")
    parser.add_argument("--drops", type=int, default=20, help="K drops per ingest timing")
    parser.add_argument("--layout", choices=[layout.FOLDERS, layout.FLAT], default=layout.FOLDERS,
                        help="where the records live (folders: what a new log uses)")
    parser.add_argument("--quick", action="store_true",
                        help="only the read commands (--help, log, show): no verify (the log "
                             "is read back instead), no ingest, no gc; for 100,000 records")
    parser.add_argument("--only", metavar="WORD",
                        help="time only the squad commands whose row names WORD (e.g. verify), "
                             "next to the baselines (`run`: the 4-agent run; `ingest`: ingest per "
                             "decision); no gc")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    console = Console(stderr=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the temp dir is removed
    rows: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="squad-scale-") as tmp:
        root = Path(tmp)
        isolate_env(root / "home")
        # Time what a user runs: an installed squad has its bytecode compiled, so let the
        # children write theirs (the first, compiling run is a warm-up, not timed).
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        with ScriptedServer() as server:
            server.responder = reply
            for n in sizes:
                rows[n] = measure(root, n, args.repeat, args.drops, console, server,
                                  args.layout, args.quick, args.only)
                shutil.rmtree(root / f"log-{n}")  # the disk holds one log at a time
    first = sizes[0]
    table = Table(title="squad at scale: whole processes, medians; wall ms / CPU ms, "
                        f"and CPU as a ratio to {first:,} records")
    table.add_column("operation")
    for n in sizes:
        table.add_column(f"{n:,}", justify="right")
        if n != first:
            table.add_column(f"cpu x{first}", justify="right")
    timed_rows = {"python -c pass": "python -c pass (baseline)", "git log -1": "git log -1",
                  "git cat-file record": "git cat-file -p one record",
                  "squad --help": "squad --help", "squad log": "squad log",
                  "squad log --all": "squad log --all", "squad show 1": "squad show 1",
                  "squad show N": "squad show N (the newest)",
                  "squad log, view stale": "squad log, view stale (rebuilt)",
                  "squad show 1, view stale": "squad show 1, view stale",
                  "squad log, after a commit": "squad log, first after `squad decide`",
                  "squad show 1, after a commit": "squad show 1, first after `squad decide`",
                  "squad log, cold cache": "squad log, cold cache",
                  "squad show 1, cold cache": "squad show 1, cold cache",
                  "squad verify": "squad verify",
                  "squad run, 4 agents, L=0": f"squad run, {RUN_AGENTS} agents, L = 0 "
                                              "(scripted server)",
                  "ingest whole s": f"squad ingest of {args.drops} drops",
                  "ingest s/decision": "ingest, per decision (minus an empty ingest)",
                  "git commit-tree s": "git commit-tree, per commit (baseline)"}
    for key, label in timed_rows.items():
        if any(key not in row for row in rows.values()):
            continue
        cells = []
        for n in sizes:
            wall, cpu = rows[n][key]
            cells.append(f"{wall * 1000:.0f} / {cpu * 1000:.0f}")
            if n != first:
                cells.append(f"{cpu / rows[first][key][1]:.2f}")
        table.add_row(label, *cells)
    for key in ("squad --help", "squad log", "squad show 1", "squad verify",
                "squad run, 4 agents, L=0"):
        if any(key not in row for row in rows.values()):
            continue
        cells = []
        for n in sizes:
            cells.append(f"{rows[n][key][1] / rows[n]['python -c pass'][1]:.1f}x")
            if n != first:
                cells.append("")
        table.add_row(f"{key}: CPU / python -c pass", *cells)
    for key in ("loose bytes/decision", "bytes/decision after gc", ".git bytes after gc",
                ".git files", ".git files after gc", "log cache bytes", "log view bytes",
                "decisions/ files", "build s"):
        if any(key not in row for row in rows.values()):
            continue
        cells = []
        for n in sizes:
            cells.append(f"{rows[n][key]:,.0f}" if key != "build s" else f"{rows[n][key]:.1f}")
            if n != first:
                cells.append(f"{rows[n][key] / rows[first][key]:.2f}" if rows[first][key] else "")
        table.add_row(key, *cells)
    if 1000 in rows and 10000 in rows and not args.quick and not args.only:
        key = "bytes/decision after gc"
        slope = (rows[10000][key] - rows[1000][key]) / 9000
        table.add_row("est. bytes/decision after gc at 100,000 (linear from 1k, 10k)",
                      *([""] * (2 * len(sizes) - 2)), f"{rows[10000][key] + slope * 90000:,.0f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
