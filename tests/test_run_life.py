"""A run's whole life, as a user meets it: two at once, Ctrl-C mid-call, bad inputs, failure.

Real `squad` processes in real repositories against the scripted server; replies that take
a while are how a test interrupts a run in the middle of a model call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import Process, agent_of, decide, drop_text, events, git, squad
from helpers import start as start_squad
from scripted_server import RecordedRequest, ScriptedServer, Text, ToolCalls

from squad.workspace import Workspace


def start(team: Path, server: ScriptedServer, *args: str, group: bool = False) -> Process:
    """`squad run` as a process; with `group`, the leader of its own process group, as a
    terminal's foreground job is (so Ctrl-C reaches git's helper processes too)."""
    streams: dict[str, Any] = {"start_new_session": True} if group else {}
    return start_squad(team, "run", "Add rate limiting", "--json", *args, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env={"OPENAI_BASE_URL": server.base_url}, **streams)


def wait_for(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)
    assert condition(), "the condition never held"  # type: ignore[operator]



def test_git_starts_where_a_ctrl_c_meant_for_squad_cannot_reach_it(ws: Workspace) -> None:
    """A terminal's Ctrl-C goes to the whole foreground group, and a child is still in it
    between its fork and its setsid: git starts in a session of its own with SIGINT and
    SIGTERM blocked, so it cannot die mid-step (squad hears the signal and stops in order)."""
    sha = git(ws.root, "rev-parse", "HEAD:app.py").strip()
    assert ws.repo.blob(sha) == b"print('hello')\n"  # starts git's long-lived cat-file
    children = [int(pid) for pid in os.listdir("/proc") if pid.isdigit()
                and _parent(int(pid)) == os.getpid() and b"cat-file" in _cmdline(int(pid))]
    assert children, "no git cat-file child found"
    for pid in children:
        assert os.getsid(pid) == pid
        blocked = int(_status(pid)["SigBlk"], 16)
        for sig in (signal.SIGINT, signal.SIGTERM):
            assert blocked & (1 << (sig - 1)), f"git {pid} would die of {sig.name}"


def _parent(pid: int) -> int | None:
    try:
        return int(_status(pid)["PPid"])
    except (FileNotFoundError, ProcessLookupError):
        return None


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""

def test_two_runs_at_once_both_replay(team: Path, server: ScriptedServer) -> None:
    """The first run's model calls are held until the second says it waits for the first,
    so the two truly overlap whatever the machine's speed."""
    released = threading.Event()

    def held(request: RecordedRequest) -> ToolCalls | Text:
        if agent_of(request) != "security":
            released.wait(60)
        return decide(request)

    server.responder = held
    first = start(team, server, "--agents", "architect,tester")
    wait_for(lambda: server.requests)
    time.sleep(0.3)
    second = start(team, server, "--agents", "security")
    heard = [second.stderr.readline() for _ in range(2)]  # type: ignore[union-attr]
    released.set()
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "waiting for it to finish" in heard[1], heard
    runs = {events(out1)[-1]["run"], events(out2)[-1]["run"]}
    replayed = squad(team, "replay", "--json")
    verdicts = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert {v["run"] for v in verdicts} == runs
    assert all(v["ok"] for v in verdicts), verdicts
    assert squad(team, "verify").returncode == 0


@pytest.mark.parametrize("group", [False, True], ids=["process", "terminal-group"])
def test_ctrl_c_mid_call_stops_soon_and_leaves_a_replayable_run(
        team: Path, server: ScriptedServer, group: bool) -> None:
    """The tester's reply is held until squad has exited: Ctrl-C must not wait for a call in
    flight (nor for the client's 60 s timeout, which the bound below stays under)."""
    released = threading.Event()

    def responder(request: RecordedRequest) -> ToolCalls | Text:
        if agent_of(request) == "tester":
            released.wait(300)
            return Text("too late")
        return decide(request)

    server.responder = responder
    before = git(team, "rev-parse", "HEAD").strip()
    proc = start(team, server, "--agents", "architect,tester", group=group)
    try:
        wait_for(lambda: list((team / "decisions").glob("*/0001-*.md"))
                 and any(agent_of(r) == "tester" for r in server.requests))
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=45)  # the reply is still held: never, if it waits
    finally:
        released.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "stopping" in err and "Traceback" not in err
    summary = events(out)[-1]
    assert summary["stopped"] == "interrupted (Ctrl-C)"
    assert [d["agent"] for d in summary["decisions"]] == ["architect"]
    assert list((team / "decisions/inbox/new").iterdir()) == []
    assert git(team, "status", "--porcelain") == ""
    head = git(team, "rev-parse", "HEAD").strip()
    assert head != before
    assert squad(team, "ingest").stdout == ""
    assert git(team, "rev-parse", "HEAD").strip() == head
    assert squad(team, "verify").returncode == 0
    verdict = json.loads(squad(team, "replay", "--json").stdout)
    assert verdict["ok"] and verdict["commits"] == 1, verdict


def test_a_drop_left_by_a_killed_run_is_set_aside_not_committed(team: Path) -> None:
    head = git(team, "rev-parse", "HEAD").strip()
    inbox = team / "decisions/inbox/new"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "20260101-000000-abcdef.r1.tester.001.md").write_text(
        drop_text("Left behind", run="20260101-000000-abcdef"))
    result = squad(team, "ingest", check=False)
    assert result.returncode == 1
    assert "ended without committing it" in result.stderr
    assert git(team, "rev-parse", "HEAD").strip() == head
    assert list(inbox.iterdir()) == []
    kept = team / "decisions/quarantine/20260101-000000-abcdef.r1.tester.001.md"
    assert "Left behind" in kept.read_text()


@pytest.mark.parametrize("args", [
    ("",), ("   ", "--agents", "architect"), ("goal", "--agents", "foo"),
    ("goal", "--agents", ","), ("goal", "--agents", "tester,tester"),
])
def test_bad_inputs_are_refused_before_anything_starts(
        team: Path, server: ScriptedServer, args: tuple[str, ...]) -> None:
    head = git(team, "rev-parse", "HEAD").strip()
    result = squad(team, "run", *args, check=False, env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("squad: ") and len(result.stderr.splitlines()) == 1
    assert server.requests == []
    assert not (team / ".squad").exists()
    assert git(team, "status", "--porcelain") == ""
    assert git(team, "rev-parse", "HEAD").strip() == head


def test_uncommitted_or_broken_charters_are_refused_first(
        team: Path, server: ScriptedServer) -> None:
    charter = team / "agents/tester.md"
    charter.write_text(charter.read_text() + "\nMore.\n")
    result = squad(team, "run", "goal", check=False, env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 2 and "agents/tester.md has uncommitted" in result.stderr
    charter.write_text("---\nname: [tester\n---\nbody\n")
    git(team, "commit", "-qam", "broken charter")
    result = squad(team, "run", "goal", check=False, env={"OPENAI_BASE_URL": server.base_url})
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    assert server.requests == [] and not (team / ".squad").exists()


def test_a_run_that_decides_nothing_says_why_and_commits_nothing(team: Path) -> None:
    head = git(team, "rev-parse", "HEAD").strip()
    url = "http://127.0.0.1:9/v1"
    result = squad(team, "run", "goal", "--agents", "architect", check=False,
                   env={"OPENAI_BASE_URL": url})
    assert result.returncode == 1
    assert f"nothing was decided: architect: {url}: cannot connect" in result.stderr
    assert git(team, "rev-parse", "HEAD").strip() == head
    assert git(team, "status", "--porcelain") == ""
    summary = [json.loads(x) for x in result.stdout.splitlines()][-1]
    assert summary["review"] is None and Path(summary["log"]).is_file()
    # piped, the summary's lines are whole lines (not wrapped at 80 columns) for grep and logs
    said = [x for x in result.stderr.splitlines() if x.startswith("nothing was decided")]
    assert said[0].endswith(f"nothing was committed (the run's log: {summary['log']})")
    assert "git log -p" not in result.stderr


def test_a_run_killed_after_its_first_round_is_finished_by_the_next_command(
        team: Path, server: ScriptedServer) -> None:
    """SIGKILLed in its second round, a run leaves its first round committed, in the
    working tree and in the index (each group writes its index entries with its branch
    move: a person committing then commits on top of the records), and the next command
    keeps nothing of squad's aside as if it were the user's."""
    inbox = team / "decisions/inbox/new"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "first.md").write_text(drop_text("Before the run"))
    squad(team, "ingest")  # the index pages exist before the run
    released = threading.Event()

    def responder(request: RecordedRequest) -> ToolCalls | Text:
        if "thoughts" in request.messages[0]["content"]:  # round two: held
            released.wait(300)
            return Text("too late")
        if agent_of(request) == "tester":
            time.sleep(0.5)  # its drop comes later: two groups, two branch moves
        return decide(request)

    server.responder = responder
    proc = start(team, server, "--agents", "architect,tester", "--rounds", "2")
    try:
        wait_for(lambda: any("thoughts" in r.messages[0]["content"]
                             for r in server.requests))
        proc.kill()
        proc.communicate(timeout=45)
    finally:
        released.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert len(list((team / "decisions").glob("*/000[23]-*.md"))) == 2
    assert "thoughts" in git(team, "log", "-1", "--format=%s", "HEAD@{1}")  # two groups
    assert git(team, "diff", "--cached", "--name-only", "HEAD", "--", "decisions") == ""

    squad(team, "ingest")
    status = git(team, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert status and all(line.startswith("?? .squad/runs/") for line in status), status
    assert list((team / "decisions").rglob("*.mine*")) == []
