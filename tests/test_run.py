"""`squad run` against the scripted server, in real repositories, as a real process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

from helpers import AGENTS, agent_of, decide, decide_once, drop_text, events, git, squad, start
from scripted_server import Error, RecordedRequest, ScriptedServer, Text, ToolCalls

from squad.dropbox import Inbox


def run(team: Path, server: ScriptedServer, *args: str, check: bool = True,
        ) -> subprocess.CompletedProcess[str]:
    return squad(team, "run", "Add rate limiting", "--json", *args, check=check,
                 env={"OPENAI_BASE_URL": server.base_url})


def test_four_agents_two_rounds(team: Path, server: ScriptedServer) -> None:
    server.responder = decide
    start = git(team, "rev-parse", "HEAD").strip()
    result = run(team, server, "--agents", ",".join(AGENTS), "--rounds", "2",
                 "--concurrency", "4")
    summary = events(result.stdout)[-1]
    assert summary["event"] == "summary" and summary["ok"]
    assert len(summary["decisions"]) == 8
    assert {d["agent"] for d in summary["decisions"]} == set(AGENTS)
    titles = git(team, "log", "--format=%s", f"{start}..HEAD").splitlines()
    assert titles[0].startswith("squad run ")
    assert sorted(titles[1:]) == sorted(f"{a} {w} thoughts" for a in AGENTS
                                        for w in ("first", "second"))
    # first-round decisions all come before second-round ones, one commit each
    assert all("first" in t for t in titles[5:]) and all("second" in t for t in titles[1:5])
    # second-round prompts contain every first-round decision
    second = [r for r in server.requests if "None yet." not in r.messages[0]["content"]
              and len(r.messages) == 2]  # the first call of each round-two agent
    assert len(second) == 4
    for request in second:
        for agent in AGENTS:
            assert f"{agent} first thoughts" in request.messages[0]["content"]
    # all four see the same log, so everything before their charters is one shared prefix
    assert len({r.messages[0]["content"] for r in second}) == 1
    assert {a["agent"]: a["cost"] for a in summary["agents"]}.keys() == set(AGENTS)
    assert all(a["cost"] > 0 for a in summary["agents"])
    assert summary["review"] == f"git log -p {start[:12]}..{summary['end'][:12]}"
    assert squad(team, "verify").returncode == 0
    assert git(team, "status", "--porcelain") == ""
    run_id = summary["run"]
    assert (team / f".squad/runs/{run_id}/events.jsonl").exists()
    assert len((team / f".squad/runs/{run_id}/cassette.jsonl").read_text().splitlines()) == 24


def test_one_agent_failing_fails_alone(team: Path, server: ScriptedServer) -> None:
    def responder(request: RecordedRequest) -> ToolCalls | Text | Error:
        if agent_of(request) == "security":
            return Error(500, "security endpoint down")
        return decide(request)

    server.responder = responder
    result = run(team, server, "--agents", ",".join(AGENTS), check=False)
    assert result.returncode == 1
    summary = events(result.stdout)[-1]
    assert not summary["ok"]
    failed = [a for a in summary["agents"] if not a["ok"]]
    assert [(a["agent"], a["error"]) for a in failed] == \
        [("security", f"{server.base_url}: HTTP 500: security endpoint down")]
    assert sorted(d["agent"] for d in summary["decisions"]) == ["architect", "docs", "tester"]
    assert squad(team, "verify").returncode == 0


def test_a_budget_hit_ends_the_run_cleanly(team: Path, server: ScriptedServer) -> None:
    server.responder = decide
    result = run(team, server, "--agents", ",".join(AGENTS), "--concurrency", "1",
                 "--max-calls", "3", check=False)
    assert result.returncode == 1
    stream = events(result.stdout)
    summary = stream[-1]
    assert summary["stopped"] == "call budget reached (3 calls)"
    assert len(server.requests) == 3
    drops = [e["drop"] for e in stream if e["event"] == "tool" and e.get("drop")]
    committed = [d["drop"] for d in summary["decisions"]]
    assert drops == committed and len(committed) == 1
    assert list((team / "decisions/inbox/new").iterdir()) == []
    assert squad(team, "verify").returncode == 0


def test_routing_by_the_lead(team: Path, server: ScriptedServer) -> None:
    plans = iter([Text("not json at all"),
                  Text(json.dumps({"tasks": [{"agent": "architect", "task": "Design it."},
                                             {"agent": "tester", "task": "Test it."}]}))])

    def responder(request: RecordedRequest) -> ToolCalls | Text:
        if request.body.get("response_format"):
            return next(plans)
        return decide(request)

    server.responder = responder
    summary = events(run(team, server).stdout)[-1]
    assert sorted(d["agent"] for d in summary["decisions"]) == ["architect", "tester"]
    retry = [r for r in server.requests if r.body.get("response_format")][1]
    assert "That plan is invalid: the plan is not JSON" in retry.messages[-1]["content"]


def test_an_invalid_plan_twice_stops_the_run(team: Path, server: ScriptedServer) -> None:
    server.enqueue(Text('{"tasks": [{"agent": "nobody", "task": "x"}]}'),
                   Text('{"tasks": []}'))
    result = run(team, server, check=False)
    assert result.returncode == 1
    assert "the lead's plan was invalid twice" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigint_keeps_every_drop(team: Path, server: ScriptedServer) -> None:
    def slow(request: RecordedRequest) -> ToolCalls | Text:
        reply = decide(request)
        return Text("Done.", delay=0.4) if isinstance(reply, Text) else reply

    server.responder = slow
    proc = start(team, "run", "goal", "--json", "--agents", ",".join(AGENTS), "--rounds", "3",
                 "--concurrency", "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 env={"OPENAI_BASE_URL": server.base_url})
    deadline = time.monotonic() + 20
    while not list((team / "decisions").glob("*/0002-*.md")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    summary = events(out)[-1]
    assert summary["stopped"] == "interrupted (Ctrl-C)"
    drops = [e["drop"] for e in events(out) if e["event"] == "tool" and e.get("drop")]
    assert sorted(d["drop"] for d in summary["decisions"]) == sorted(drops)
    assert list((team / "decisions/inbox/new").iterdir()) == []
    assert squad(team, "verify").returncode == 0
    assert git(team, "status", "--porcelain") == ""


def test_branch_runs_on_its_own_branch_and_comes_back(team: Path, server: ScriptedServer) -> None:
    server.responder = decide
    (team / "notes.txt").write_text("uncommitted work\n")
    main = git(team, "rev-parse", "main").strip()
    summary = events(run(team, server, "--agents", "architect,tester", "--branch").stdout)[-1]
    assert git(team, "branch", "--show-current").strip() == "main"
    assert git(team, "rev-parse", "main").strip() == main
    assert (team / "notes.txt").read_text() == "uncommitted work\n"
    branch = f"squad/{summary['run']}"
    log = git(team, "log", "--format=%s", f"main..{branch}").splitlines()
    assert len(log) == 3 and log[0].startswith("squad run ")
    assert summary["end"] == git(team, "rev-parse", f"{branch}~1").strip()


def test_live_mode_records_no_cassette(team: Path, server: ScriptedServer) -> None:
    server.responder = decide
    summary = events(run(team, server, "--agents", "tester", "--live").stdout)[-1]
    folder = team / f".squad/runs/{summary['run']}"
    assert (folder / "events.jsonl").exists() and not (folder / "cassette.jsonl").exists()
    assert len(summary["decisions"]) == 1


def test_the_key_is_in_no_file_a_run_writes(team: Path, server: ScriptedServer) -> None:
    server.responder = decide
    squad(team, "run", "goal", "--json", "--agents", "architect,tester",
          env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-SECRET"})
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-SECRET"
    written = [p for p in team.rglob("*") if p.is_file() and ".git" not in p.parts]
    assert any(p.name == "cassette.jsonl" for p in written)
    for path in written:
        assert b"SECRET" not in path.read_bytes(), f"the key leaked into {path}"
    assert "SECRET" not in git(team, "log", "-p", "--all")


def test_the_summary_reads_its_titles_without_pruning_the_parse_cache(
        team: Path, server: ScriptedServer) -> None:
    """The printed summary names the run's decisions by title, read from their own folder:
    a partial read of the log must not rewrite the parsed-log cache down to those records
    (every command after the run would parse the whole log again)."""
    inbox = Inbox(team / "decisions" / "inbox")
    for n in range(120):
        inbox.drop(drop_text(f"Earlier {n}"), durable=False)
    squad(team, "ingest")
    squad(team, "log")  # the long way: the log parsed and cached
    cache = team / ".git" / "squad" / "log-cache"
    entry = re.compile(rb"^[0-9a-f]{40} [0-9a-f]{64} \d+$", re.MULTILINE)
    assert len(entry.findall(cache.read_bytes())) >= 120
    server.responder = decide_once
    result = squad(team, "run", "Add rate limiting", "--agents", "architect,tester",
                   env={"OPENAI_BASE_URL": server.base_url})
    assert "architect thoughts" in result.stderr and "tester thoughts" in result.stderr
    assert len(entry.findall(cache.read_bytes())) >= 120


def test_a_two_round_run_leaves_the_status_clean_and_prints_its_log_lines(
        team: Path, server: ScriptedServer) -> None:
    """Each group of drops is its own branch move with the index written at once (a person
    committing mid-run must see the run's records as committed, not deleted); --json prints
    the very lines the run log holds."""
    server.responder = decide
    result = squad(team, "run", "Add rate limiting", "--json", "--agents", ",".join(AGENTS),
                   "--rounds", "2", "--concurrency", "4",
                   env={"OPENAI_BASE_URL": server.base_url})
    assert len(events(result.stdout)[-1]["decisions"]) == 8
    moves = git(team, "reflog", "--format=%gs", git(team, "symbolic-ref", "HEAD").strip())
    assert moves.count("squad") >= 3  # two rounds: two groups at least, then the run's log
    assert git(team, "status", "--porcelain", "--untracked-files=all") == ""
    assert squad(team, "verify").returncode == 0
    # --json prints the very lines the run log holds (formatted once, for both)
    run_id = events(result.stdout)[-1]["run"]
    logged = (team / f".squad/runs/{run_id}/events.jsonl").read_text().splitlines()
    assert sorted(result.stdout.splitlines(), key=lambda line: json.loads(line)["seq"]) \
        == logged
