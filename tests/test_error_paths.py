"""Error paths the README promises, each driven end to end: real repositories, the real
`squad` process, the scripted OpenAI-protocol server."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import OFFLINE, SQUAD, decide_once, drop_text, git, squad
from scripted_server import Error, RecordedRequest, ScriptedServer, Text, ToolCalls

from squad.coordinator import Coordinator, PassReport
from squad.errors import UnsafeRepoError
from squad.verify import verify
from squad.workspace import Workspace


def test_a_branch_moved_mid_pass_fails_the_swap_keeps_the_drops_and_reloads(
        ws: Workspace) -> None:
    """A person commits between the coordinator's reading of the branch and its
    compare-and-swap: nothing of the group lands, every drop is kept, and the same
    long-lived coordinator (as in `squad watch`) reloads and commits on the moved branch."""
    ws.inbox.drop(drop_text("First"), name="a.md")
    ws.inbox.drop(drop_text("Second"), name="b.md")
    coordinator, report = Coordinator(ws), PassReport()
    with coordinator.session():
        moved = git(ws.root, "commit-tree", "-p", "main", "-m", "a person commits meanwhile",
                    "main^{tree}").strip()
        git(ws.root, "update-ref", "refs/heads/main", moved)
        with pytest.raises(UnsafeRepoError, match=r"the branch moved while squad was "
                                                   r"committing: .*; drops are kept"):
            coordinator.take_all(ws.inbox.ready(), report)
    assert ws.inbox.ready() == ["a.md", "b.md"] and report.committed == []
    assert git(ws.root, "rev-parse", "main").strip() == moved
    again = coordinator.ingest()
    assert [r.title for r in again.committed] == ["First", "Second"]
    assert git(ws.root, "log", "--format=%s", "-3").splitlines() == [
        "Second", "First", "a person commits meanwhile"]
    assert ws.inbox.ready() == [] and verify(ws) == []


def _ref_movers() -> list[int]:
    """This process's `git update-ref --stdin` children, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == os.getpid() and \
                cmdline[:3] == [b"git", b"update-ref", b"--stdin"]:
            found.append(int(entry.name))
    return found


def test_the_kept_ref_mover_swaps_checks_and_survives_its_git_dying(ws: Workspace) -> None:
    """A long-lived coordinator moves the branch through one kept `git update-ref --stdin`:
    each group is one reflog entry; a person's commit between groups still fails the swap
    (nothing lands, the drop is kept); a mover killed while idle is replaced, and the drop
    waiting behind it lands; closing the repository ends the process."""
    coordinator = Coordinator(ws)

    def take() -> list[str]:
        report = PassReport()
        coordinator.take_all(ws.inbox.ready(), report)
        return [r.title for r in report.committed]

    with coordinator.session():
        moves = len(git(ws.root, "reflog", "show", "main").splitlines())
        ws.inbox.drop(drop_text("First"), name="a.md")
        assert take() == ["First"]
        (mover,) = _ref_movers()
        assert git(ws.root, "reflog", "show", "-1", "--format=%gs", "main").strip() == "squad"
        moved = git(ws.root, "commit-tree", "-p", "main", "-m", "a person commits meanwhile",
                    "main^{tree}").strip()
        git(ws.root, "update-ref", "refs/heads/main", moved)
        ws.inbox.drop(drop_text("Second"), name="b.md")
        with pytest.raises(UnsafeRepoError, match=r"the branch moved while squad was "
                                                   r"committing: .*is at .*; drops are kept"):
            take()
        assert git(ws.root, "rev-parse", "main").strip() == moved
        assert ws.inbox.ready() == ["b.md"]
    assert [r.title for r in coordinator.ingest().committed] == ["Second"]  # reloaded
    (mover,) = _ref_movers()
    os.kill(mover, signal.SIGKILL)
    os.waitpid(mover, 0)
    ws.inbox.drop(drop_text("Third"), name="c.md")
    assert [r.title for r in coordinator.ingest().committed] == ["Third"]
    assert len(git(ws.root, "reflog", "show", "main").splitlines()) == moves + 4
    assert git(ws.root, "log", "--format=%s", "-4").splitlines() == [
        "Third", "Second", "a person commits meanwhile", "First"]
    ws.repo.close()
    assert _ref_movers() == []
    assert verify(ws) == []


# ---- replay verdicts --------------------------------------------------------------------

@pytest.fixture
def recorded(two_agent_run: tuple[Path, str]) -> tuple[Path, str]:
    """A repository holding one recorded two-agent run; the server is gone."""
    return two_agent_run


def _replay(repo: Path) -> dict[str, Any]:
    result = squad(repo, "replay", "--json", check=False, env=OFFLINE)
    assert "Traceback" not in result.stderr
    verdict = json.loads(result.stdout)
    assert result.returncode == (0 if verdict["ok"] else 1)
    return verdict


def _edit_events(repo: Path, run_id: str, edit: Callable[[list[dict]], list[dict]]) -> None:
    path = repo / f".squad/runs/{run_id}/events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in edit(events)))
    git(repo, "commit", "-qam", "edit the run log")


def _commit_positions(events: list[dict]) -> list[int]:
    return [n for n, e in enumerate(events) if e["event"] == "commit"]


def test_a_recorded_run_replays_before_any_edit(recorded: tuple[Path, str]) -> None:
    """The baseline for the edits below: untouched, the run reproduces."""
    verdict = _replay(recorded[0])
    assert verdict["ok"] and verdict["commits"] == 2


def test_a_swapped_commit_order_is_a_commit_that_differs(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded

    def swap(events: list[dict]) -> list[dict]:
        a, b = _commit_positions(events)
        events[a], events[b] = events[b], events[a]
        return events

    _edit_events(repo, run_id, swap)
    problem = _replay(repo)["problem"]
    assert problem.startswith("commit 1 differs: recorded 0002 ")
    assert ", replayed 0001 " in problem


def test_a_drop_the_recorded_order_never_named_diverges(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded
    renamed: list[str] = []

    def rename(events: list[dict]) -> list[dict]:
        event = events[_commit_positions(events)[0]]
        renamed.append(event["drop"])
        event["drop"] = "elsewhere.md"
        return events

    _edit_events(repo, run_id, rename)
    assert _replay(repo)["problem"] == (
        f"replay diverged: drop {renamed[0]} was not in the recorded run")


def test_a_recorded_drop_never_made_again_diverges(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded

    def add(events: list[dict]) -> list[dict]:
        last = _commit_positions(events)[-1]
        extra = {**events[last], "drop": "ghost.md"}
        return [*events[:last + 1], extra, *events[last + 1:]]

    _edit_events(repo, run_id, add)
    assert _replay(repo)["problem"] == (
        "replay diverged: the recorded drop ghost.md was not made again")


def test_recorded_commits_missing_from_history_are_stray(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded
    start = json.loads((repo / f".squad/runs/{run_id}/events.jsonl").read_text()
                       .splitlines()[0])["start"]
    keep = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "reset", "-q", "--hard", start)  # history rewritten: the decisions are gone
    git(repo, "checkout", keep, "--", ".squad/runs")
    git(repo, "commit", "-qm", "only the run log survives")
    verdict = _replay(repo)
    assert verdict["commits"] == 2
    assert verdict["problem"].startswith("recorded commit ")
    assert verdict["problem"].endswith(
        "is not in the history of HEAD (rebased or edited after the run?)")


def test_a_recorded_call_not_made_again_is_unused(recorded: tuple[Path, str]) -> None:
    repo, run_id = recorded
    cassette = repo / f".squad/runs/{run_id}/cassette.jsonl"
    first = json.loads(cassette.read_text().splitlines()[0])
    first["label"] = ["nobody", 1, 1]
    with cassette.open("a") as out:
        out.write(json.dumps(first) + "\n")
    git(repo, "commit", "-qam", "a call nobody makes")
    assert _replay(repo)["problem"] == (
        "the recorded call nobody (round 1, call 1) was not made again")


# ---- budgets, endpoint faults, guided mode ------------------------------------------------

@pytest.mark.parametrize(("flag", "value", "says", "delay"), [
    ("--max-tokens", "1", "token budget reached (", 0.3),
    ("--max-cost", "0.000000001", "cost budget reached ($", 0.3),
    # the first call starts well within 1.5 s even on a loaded machine; its reply takes 2 s
    ("--max-seconds", "1.5", "time budget reached (1.5 s)", 2.0),
])
def test_each_budget_refuses_the_next_call(team: Path, server: ScriptedServer, flag: str,
                                           value: str, says: str, delay: float) -> None:
    # slow to answer, and never done: only a budget ends this agent
    server.responder = lambda request: ToolCalls([("list_files", {})], delay=delay)
    result = squad(team, "run", "Add rate limiting", "--json", "--agents", "tester", flag, value,
                   check=False, env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    stream = [json.loads(line) for line in result.stdout.splitlines()]
    assert stream[-1]["stopped"].startswith(says)
    assert len(server.requests) == 1  # the call in flight finished; none started after it
    stops = [e for e in stream if e["event"] == "stop"]
    assert [(e["agent"], e["call"]) for e in stops] == [("tester", 2)]
    # one line says why the agent ended: the stop, not also a `failed` copy of it
    assert [e["event"] for e in stream if e.get("agent") == "tester"][-1] == "stop"
    assert not [e for e in stream if e["event"] in ("failed", "reply")]
    assert git(team, "status", "--porcelain") == ""


def test_a_cost_stop_replays_after_the_prices_change(team: Path,
                                                   server: ScriptedServer) -> None:
    """Prices are an input of the run, read at its start commit: an edit git does not show
    does not move the stop, and a later squad.toml (new prices, or none) does not break the
    replay."""
    server.responder = decide_once  # the decision, then a call the cost budget refuses
    # prices dropped in the working tree only, hidden from git status: not the run's input
    git(team, "update-index", "--skip-worktree", "squad.toml")
    (team / "squad.toml").write_text("[llm]\nmodel = 'scripted'\nmax_retries = 0\n")
    result = squad(team, "run", "Add rate limiting", "--agents", "tester", "--max-cost",
                   "0.000000001", check=False, env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 1 and "cost budget reached" in result.stderr, result.stderr
    assert len(server.requests) == 1
    git(team, "update-index", "--no-skip-worktree", "squad.toml")
    git(team, "commit", "-qam", "no prices any more")
    assert _replay(team)["ok"]


def test_an_endpoint_slower_than_the_timeout_is_a_one_line_error(
        team: Path, server: ScriptedServer) -> None:
    (team / "squad.toml").write_text("[llm]\nmodel = 'm'\nmax_retries = 0\ntimeout = 0.5\n")
    server.responder = lambda request: Text("late", delay=5)
    result = squad(team, "ask", "tester", "t", check=False,
                   env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"squad: agent tester failed: {server.base_url}: no reply within 0.5 s (after 0 retries)")


@pytest.fixture
def guided(team: Path) -> Path:
    (team / "squad.toml").write_text("[llm]\nmodel = 'm'\nmax_retries = 0\n"
                                     "profile = 'llama-cpp'\n")
    git(team, "commit", "-qam", "a small local model")
    return team


DECISION = {"title": "Persist orders in SQLite", "context": "c", "decision": "d",
            "consequences": "e"}


def test_guided_mode_retries_after_bad_json(guided: Path, server: ScriptedServer) -> None:
    server.enqueue(Text("{not json"), Text(json.dumps(DECISION)))
    result = squad(guided, "ask", "architect", "Make orders survive a restart",
                   env={"OPENAI_BASE_URL": server.base_url})
    assert "0001  Persist orders in SQLite" in result.stdout
    assert len(server.requests) == 2
    retry = server.requests[1].messages[-1]["content"]
    assert retry.startswith("That decision was refused (")
    assert retry.endswith("Answer again with corrected JSON.")


def test_guided_mode_gives_up_after_its_tries(guided: Path, server: ScriptedServer) -> None:
    server.responder = lambda request: Text("{not json")
    result = squad(guided, "ask", "architect", "Make orders survive a restart", check=False,
                   env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    tries = len(server.requests)
    assert tries > 1
    assert f"squad: agent architect failed: no valid decision in {tries} tries; last: " \
        in result.stderr
    assert not list((guided / "decisions").glob("*/0*.md"))


# ---- the live view and the human summary on a terminal ------------------------------------

def _on_a_terminal(repo: Path, *args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run squad with stdout and stderr on a pseudo-terminal; its exit code and screen text."""
    main, side = pty.openpty()
    process = subprocess.Popen([*SQUAD, *args], cwd=repo, stdin=subprocess.DEVNULL,
                               stdout=side, stderr=side,
                               env={**os.environ, "TERM": "xterm", "COLUMNS": "160", **env})
    os.close(side)
    screen = bytearray()
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(main)
    code = process.wait(timeout=60)
    return code, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode("utf-8", "replace"))


def test_a_run_on_a_terminal_shows_the_live_table_and_the_summary(
        team: Path, server: ScriptedServer) -> None:
    def responder(request: RecordedRequest) -> ToolCalls | Text | Error:
        if "# Your charter: tester" in request.messages[1]["content"]:
            return Error(500, "tester endpoint down")
        return decide_once(request)

    server.responder = responder
    code, screen = _on_a_terminal(team, "run", "Add rate limiting", "--agents",
                                  "architect,tester", env={"OPENAI_BASE_URL": server.base_url})
    assert code == 1
    assert "one JSON event per line" not in screen and '{"event"' not in screen
    live = screen.split("decisions committed")[0]
    assert "squad run" in live and re.search(r"architect\s*│\s*done", live)
    assert re.search(r"tester\s*│\s*failed", live)
    assert "0001 architect: architect thoughts" in live
    summary = screen.split("decisions committed")[1]
    assert re.search(r"0001\s*│\s*architect\s*│\s*architect thoughts", summary)
    assert "FAILED: " in summary and "tester endpoint down" in summary
    assert "review: git log -p " in summary
    assert "Traceback" not in screen


def test_an_agent_that_crashes_fails_alone_and_its_sibling_commits(
        team: Path, server: ScriptedServer) -> None:
    """An endpoint that sends a token count as text makes the agent's own path raise an
    exception squad does not expect (not a SquadError): that agent fails with one line, and
    the sibling beside it still records and commits its decision."""
    def responder(request: RecordedRequest) -> ToolCalls | Text:
        charter = request.messages[1]["content"].split("# Your charter: ", 1)[1].split()[0]
        if charter == "tester":
            return Text("ok", cached_tokens="lots")  # type: ignore[arg-type]
        if any(m["role"] == "tool" for m in request.messages):
            return Text("done")
        return ToolCalls([("record_decision", DECISION)])

    server.responder = responder
    result = squad(team, "run", "Add rate limiting", "--json", "--agents", "tester,docs",
                   check=False, env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    stream = [json.loads(line) for line in result.stdout.splitlines()]
    (failed,) = [e for e in stream if e["event"] == "failed"]
    assert failed["agent"] == "tester" and failed["round"] == 1
    assert failed["error"].startswith("ValidationError: 1 validation error for Usage")
    assert "\n" not in failed["error"]
    summary = stream[-1]
    rows = {row["agent"]: row for row in summary["agents"]}
    assert not rows["tester"]["ok"] and rows["tester"]["error"] == failed["error"]
    assert rows["docs"]["ok"] and rows["docs"]["drops"] == 1
    assert [(d["agent"], d["id"]) for d in summary["decisions"]] == [("docs", 1)]
    assert git(team, "log", "-1", "--format=%s").startswith("squad run ")
    replayed = squad(team, "replay", check=False, env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert replayed.returncode == 0, replayed.stdout  # the crashed call is in the cassette
