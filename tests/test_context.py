"""Prompt assembly is deterministic, drops dead decisions, ranks by relevance, keeps a budget."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from squad.charters import Charter
from squad.context import build, estimate_tokens, select
from squad.ledger import Entry, Ledger
from squad.records import Record

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
ARCHITECT = Charter(name="architect", role="designs", tags=("storage",), body="I design.")


def make_ledger(n: int) -> Ledger:
    entries = []
    for i in range(1, n + 1):
        record = Record(id=i, title=f"Decision number {i}", agent="a",
                        date=WHEN + timedelta(seconds=i), decision=f"We do thing {i}. " * 8,
                        context="Because. " * 5, tags=("storage",) if i % 10 == 0 else ("ui",))
        entries.append(Entry(record, f"{i:04d}-x.md", f"sha256:{i:064x}"))
    return Ledger(entries)


def test_same_inputs_same_bytes_even_in_another_process(repo: Path) -> None:
    ledger = make_ledger(50)
    first = build(repo, ARCHITECT, "Pick a database.", ledger, budget=2000)
    second = build(repo, ARCHITECT, "Pick a database.", ledger, budget=2000)
    assert first == second
    script = (
        "import sys; sys.path.insert(0, 'tests'); from pathlib import Path\n"
        "from test_context import ARCHITECT, make_ledger\n"
        "from squad.context import build\n"
        f"ctx = build(Path({str(repo)!r}), ARCHITECT, 'Pick a database.', make_ledger(50), 2000)\n"
        "sys.stdout.write(ctx.messages[0].content + '\\x00' + ctx.messages[1].content)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent.parent).stdout
    assert out == first.messages[0].content + "\0" + first.messages[1].content


def test_shared_parts_first_then_charter_then_task(repo: Path) -> None:
    (repo / "AGENTS.md").write_text("Run make test.\n")
    ctx = build(repo, ARCHITECT, "Pick a database.", make_ledger(3), budget=2000)
    system, user = ctx.messages[0].content or "", ctx.messages[1].content or ""
    assert system.index("Run make test.") < system.index("0003. Decision number 3")
    assert user.index("I design.") < user.index("# Your task\n\nPick a database.")
    # while the log fits the budget, another agent's prompt differs only from its charter on
    other = build(repo, Charter(name="tester", role="tests"), "x", make_ledger(3), 2000)
    assert other.messages[0] == ctx.messages[0]


def test_superseded_and_rejected_decisions_drop_out(repo: Path) -> None:
    ledger = make_ledger(3)
    for record in (
        Record(id=4, title="Replace 1", agent="a", date=WHEN, decision="x", supersedes=(1,)),
        Record(id=5, title="Reject 2", agent="a", date=WHEN, decision="no", kind="reject",
               target=2),
    ):
        ledger.append(Entry(record, f"{record.id:04d}-x.md", "sha256:" + "0" * 64))
    ctx = build(repo, ARCHITECT, "t", ledger, budget=5000)
    assert ctx.inputs == (3, 4)
    text = ctx.messages[0].content or ""
    assert "Decision number 1" not in text and "Reject 2" not in text


def test_budget_holds_with_ten_thousand_records_and_says_what_was_left_out(repo: Path) -> None:
    ledger = make_ledger(10_000)
    budget = 3000
    ctx = build(repo, ARCHITECT, "Pick a database.", ledger, budget=budget)
    system, user = ctx.messages[0].content or "", ctx.messages[1].content or ""
    team_part = system[system.index("# Decisions already in the log"):]
    own_part = user[user.index("# More decisions"):user.index("# Your task")]
    assert estimate_tokens(team_part) + estimate_tokens(own_part) <= budget
    assert len(ctx.inputs) + len(ctx.omitted) == 10_000
    assert 0 < len(ctx.inputs) < 100
    assert f"({len(ctx.omitted)} more decisions left out to fit the context budget" in user
    # the team part is the newest decisions; the agent's own part is its tag (every tenth)
    team = [int(h[3:].split(".")[0]) for h in team_part.split("\n") if h.startswith("## ")]
    own = [int(h[3:].split(".")[0]) for h in own_part.split("\n") if h.startswith("## ")]
    assert team == list(range(10_001 - len(team), 10_001))
    assert own and all(i % 10 == 0 for i in own) and max(own) < min(team)
    assert sorted(team + own) == list(ctx.inputs)
    # and every agent gets the same team part, so their prompts share it as a prefix
    other = build(repo, Charter(name="tester", role="t", tags=("ui",)), "x", ledger, budget)
    assert other.messages[0] == ctx.messages[0]


# ---- the selection is the plain algorithm's, made cheaper -------------------------------

def _plain_select(ledger: Ledger, charter: Charter, budget: int,
                  ) -> tuple[list[int], list[int], list[int]]:
    """The selection as first written: every record priced and ranked for every agent."""
    from squad.context import _FIXED_TOKENS, LIVE, _cost, _relevance

    def take(ranked: list[Record], room: int) -> tuple[list[Record], list[Record], int]:
        chosen, rest, spent = [], [], 0
        for record in ranked:
            if spent + _cost(record) <= room:
                chosen.append(record)
                spent += _cost(record)
            else:
                rest.append(record)
        return chosen, rest, spent

    status = ledger.statuses()
    room = budget - _FIXED_TOKENS
    live = [r for r in ledger.records if r.kind == "decision" and status.get(r.id) in LIVE]
    newest = sorted(live, key=lambda r: (status[r.id] != "accepted", -r.id))
    team, rest, spent = take(newest, room if sum(map(_cost, live)) <= room else room // 2)
    relevant = sorted(rest, key=lambda r: (-_relevance(r, charter),
                                           status[r.id] != "accepted", -r.id))
    own, left, _ = take(relevant, room - spent)
    return sorted(r.id for r in team), sorted(r.id for r in own), sorted(r.id for r in left)


LOGS = st.lists(st.tuples(st.integers(0, 400), st.sampled_from(["storage", "ui", "api"]),
                          st.sampled_from(["decision", "decision", "accept", "reject"]),
                          st.booleans(), st.integers(0, 1000)), max_size=60)
CHARTERS = st.sampled_from([
    ARCHITECT, Charter(name="tester", role="tests"),
    Charter(name="ops", role="runs", reads=("src/**",)),
    Charter(name="web", role="builds", tags=("ui", "api"), reads=("docs/*.md",))])


@settings(max_examples=150, deadline=None)
@given(LOGS, CHARTERS, st.integers(100, 3000))
def test_the_selection_is_the_plain_algorithms(log: list, charter: Charter,
                                               budget: int) -> None:
    ledger = Ledger()
    for size, tag, kind, accepted, pick in log:
        i = ledger.next_id
        decisions = [e.record.id for e in ledger.entries if e.record.kind == "decision"]
        if kind != "decision" and decisions:
            record = Record(id=i, title=f"{kind} {i}", agent="a", date=WHEN, decision="x",
                            kind=kind, target=decisions[pick % len(decisions)])
        else:
            path = "`src/app.py`" if pick % 3 == 0 else "`docs/x.md`" if pick % 3 == 1 else ""
            record = Record(id=i, title=f"Decision {i}", agent="a", date=WHEN, tags=(tag,),
                            decision="w" * size + path + ".", status="accepted" if accepted
                            else "proposed",
                            supersedes=(decisions[pick % len(decisions)],)
                            if decisions and pick % 5 == 0 else ())
        ledger.append(Entry(record, f"{i:04d}-x.md", "sha256:" + "0" * 64))
    chosen = select(ledger, charter, budget)
    assert ([r.id for r in chosen.team], [r.id for r in chosen.own], chosen.left) \
        == _plain_select(ledger, charter, budget)
