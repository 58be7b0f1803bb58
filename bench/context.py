"""Benchmark: how prompt assembly (`squad.context.build`) scales with the decision log.

For logs of 100, 1,000, 10,000 and 100,000 records (decisions with varied titles and a few
sentences per section, tags from a small set, some superseding older ones, plus accept and
reject event records so `Ledger.statuses()` has work to do), the ledger is built in memory
(not timed), then `build(...)` is timed for the architect charter (median of several runs,
fewer at 100k), with /work/main (its AGENTS.md and templates) as the repository root.

How to read the first table: `linearity` is (time / time at 100 records) / (size / 100); about
1.0 or below means assembly grows no worse than linearly with the log (well below 1.0 at small
sizes is fixed cost: templates, AGENTS.md). `dec tok` is the decisions' estimated tokens
against the default budget; `held` says whether the rendered decisions part of the user
message (everything before "# Your task") stays within that budget by `estimate_tokens`;
the number shown is that part's tokens.

The second table builds the prompts of the five default charters (agents/) from the same
ledger and reports the common prefix of their system+user text over its mean length: the
share a provider prompt cache could reuse across agents; how many decision ids all five (and
any) of them show; and for how many of the five the budget held.

Run: `.venv/bin/python bench/context.py` (add `--profile` for a cProfile of the 100k case).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from squad.charters import Charter, load_team
from squad.config import ContextSettings
from squad.context import Context, build, estimate_tokens
from squad.ledger import Entry, Ledger
from squad.records import Record

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 1_000, 10_000, 100_000)
REPEATS = {100: 21, 1_000: 11, 10_000: 7, 100_000: 5}
TASK = "Add per-client rate limiting to the public HTTP API and document the new limits."
TAGS = ("architecture", "storage", "api", "dependencies", "performance", "security", "auth",
        "testing", "ci", "docs", "usability", "process", "privacy", "scope")
AGENTS = ("architect", "security", "tester", "docs", "lead")
VERBS = ("Use", "Adopt", "Replace", "Keep", "Drop", "Split", "Cache", "Validate", "Document",
         "Pin", "Retry", "Batch", "Stream", "Encrypt", "Version")
THINGS = ("SQLite for local state", "the HTTP client", "JSON logs", "the record parser",
          "API tokens", "the CI matrix", "fixtures in temp repos", "the quick start",
          "connection pooling", "the plugin loader", "schema migrations", "rate limits",
          "the watch loop", "error messages", "the release checklist", "dependency updates")
PATHS = ("squad/ledger.py", "squad/context.py", "docs/usage.md", "README.md",
         "squad/vcs.py", "tests/test_cli.py", "decisions/README.md", "squad/config.py")
SENTENCES = (
    "Users reported that {t} behaves differently across platforms.",
    "The current approach to {t} couples two modules that change for different reasons.",
    "We measured {n} ms at the 95th percentile, which is above the agreed target.",
    "Reviewers asked for a single place that owns {t}; today it lives in `{p}` and elsewhere.",
    "This keeps the common path fast and the failure path explicit.",
    "Every change to {t} gets a test that runs against a real repository.",
    "The cost is one more dependency to track and about {n} lines of glue code.",
    "Older clients keep working for one release; after that the old form is an error.",
    "Secrets never appear in logs, prompts or error messages.",
    "The decision is reversible: a later record can supersede it without data migration.",
    "Contributors must update `{p}` when they touch {t}.",
    "We considered three alternatives and rejected them for complexity or licence reasons.",
)


def _prose(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(SENTENCES).format(t=rng.choice(THINGS), p=rng.choice(PATHS),
                                                 n=rng.randint(5, 900))
                    for _ in range(count))


def make_ledger(n: int, seed: int = 7) -> Ledger:
    """n records: ~80% decisions (some superseding), ~15% accepts, ~5% rejects."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    decisions: list[int] = []
    entries = []
    for i in range(1, n + 1):
        roll = rng.random()
        common = {"id": i, "agent": rng.choice(AGENTS), "date": start + timedelta(minutes=i)}
        if decisions and roll < 0.20:
            kind = "accept" if roll < 0.15 else "reject"
            target = rng.choice(decisions[-200:])
            record = Record(**common, kind=kind, target=target, title=f"{kind} {target:04d}",
                            decision=f"{kind.capitalize()}ed after review.")
        else:
            old = decisions[-300:]
            supersedes = (rng.choice(old),) if old and rng.random() < 0.08 else ()
            record = Record(
                **common, title=f"{rng.choice(VERBS)} {rng.choice(THINGS)} ({i})",
                status="accepted" if rng.random() < 0.3 else "proposed",
                tags=tuple(rng.sample(TAGS, rng.randint(1, 3))), supersedes=supersedes,
                context=_prose(rng, rng.randint(2, 4)), decision=_prose(rng, rng.randint(1, 3)),
                consequences=_prose(rng, rng.randint(1, 3)))
            decisions.append(i)
        entries.append(Entry(record, f"{i:04d}-r.md", f"sha256:{i:064x}"))
    return Ledger(entries)


def timed(charter: Charter, ledger: Ledger, budget: int, repeats: int) -> tuple[float, Context]:
    times, ctx = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        ctx = build(ROOT, charter, TASK, ledger, budget)
        times.append(time.perf_counter() - t0)
    assert ctx is not None
    return statistics.median(times), ctx


def text_of(ctx: Context) -> str:
    return "".join(m.content or "" for m in ctx.messages)


def decision_part_tokens(ctx: Context) -> int:
    system, user = ctx.messages[0].content or "", ctx.messages[1].content or ""
    own = user[user.index("# More decisions"):user.index("# Your task")] \
        if "# More decisions" in user else ""
    return estimate_tokens(system[system.index("# Decisions already in the log"):]) + \
        estimate_tokens(own)


def common_prefix(texts: list[str]) -> int:
    first, last = min(texts), max(texts)  # the lexical extremes bound every common prefix
    return next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b),
                min(len(first), len(last)))


def main() -> None:
    team = load_team(ROOT)
    charter = team["architect"]
    budget = ContextSettings().token_budget
    build(ROOT, charter, TASK, make_ledger(10), budget)  # warm the template cache
    print(f"squad.context.build, charter {charter.name} (tags {', '.join(charter.tags)}), "
          f"budget {budget} tokens, python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    head = (f"{'records':>8} {'runs':>4} {'ms':>9} {'µs/rec':>7} {'linearity':>9} "
            f"{'prompt tok':>10} {'dec tok/budget':>14} {'shown/left':>13} {'held (tokens)':>13}")
    print(head + "\n" + "-" * len(head))
    base: float | None = None
    ledgers: dict[int, Ledger] = {}
    for n in SIZES:
        ledger = ledgers[n] = make_ledger(n)
        seconds, ctx = timed(charter, ledger, budget, REPEATS[n])
        base = base if base is not None else seconds
        linearity = (seconds / base) / (n / SIZES[0])
        part = decision_part_tokens(ctx)
        held = f"{'yes' if part <= budget else 'NO'} ({part:,})"
        print(f"{n:>8,} {REPEATS[n]:>4} {seconds * 1e3:>9.2f} {seconds / n * 1e6:>7.2f} "
              f"{linearity:>9.2f} {ctx.tokens:>10,} {ctx.decision_tokens:>6,} / {budget:<5} "
              f"{len(ctx.inputs):>5}/{len(ctx.omitted):<7,} {held:>13}")
    print("\nprefix sharing across the five default charters (system + user text per agent)")
    head = (f"{'records':>8} {'common prefix':>13} {'mean chars':>10} {'share':>6} "
            f"{'ids shown by all 5':>18} {'by any':>6} {'budget held':>11}")
    print(head + "\n" + "-" * len(head))
    small = {n: make_ledger(n) for n in (10, 30)}  # logs that fit the budget whole
    for n, ledger in {**small, **ledgers}.items():
        ctxs = [build(ROOT, team[name], TASK, ledger, budget) for name in AGENTS]
        texts = [text_of(c) for c in ctxs]
        common = common_prefix(texts)
        mean = statistics.mean(len(t) for t in texts)
        every = set.intersection(*(set(c.inputs) for c in ctxs))
        anyone = set.union(*(set(c.inputs) for c in ctxs))
        held = sum(decision_part_tokens(c) <= budget for c in ctxs)
        print(f"{n:>8,} {common:>13,} {mean:>10,.0f} {common / mean:>6.1%} "
              f"{len(every):>18} {len(anyone):>6} {held:>9}/5")
    if "--profile" in sys.argv:
        profiler = cProfile.Profile()
        profiler.runcall(build, ROOT, charter, TASK, ledgers[SIZES[-1]], budget)
        print(f"\ncProfile of one build at {SIZES[-1]:,} records (by internal time)")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
