"""How a command leaves: its git helpers ended and waited for, its output whole, its status
kept, although it skips the interpreter's object-by-object teardown (squad.shutdown)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import SQUAD, decide, events, squad, start
from scripted_server import RecordedRequest, ScriptedServer, Text, ToolCalls


def left_in(where: Path) -> list[str]:
    """The processes whose working directory is `where` or below it: squad's git helpers
    (cat-file, update-ref) run in the repository. A zombie has no working directory."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if cwd == where or where in cwd.parents:
            found.append(f"{pid}: {command.decode(errors='replace')}")
    return found


def test_a_run_leaves_no_process_behind_and_its_output_whole(
        team: Path, server: ScriptedServer) -> None:
    server.responder = decide
    done = squad(team, "run", "Add rate limiting", "--agents", "architect,tester", "--json",
                 env={"OPENAI_BASE_URL": server.base_url})
    assert left_in(team) == []
    lines = events(done.stdout)
    assert lines[0]["event"] == "run" and lines[-1]["event"] == "summary"
    assert lines[-1]["ok"] and len(lines[-1]["decisions"]) == 2


def test_a_fresh_interpreter_leaves_the_same_way(team: Path, server: ScriptedServer) -> None:
    """The installed program's path (not the tests' fork server): a real start and exit."""
    server.responder = decide
    done = subprocess.run([*SQUAD, "run", "Add rate limiting", "--agents", "architect",
                           "--json"], cwd=team, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OPENAI_BASE_URL": server.base_url})
    assert done.returncode == 0, done.stderr
    assert left_in(team) == []
    assert events(done.stdout)[-1]["event"] == "summary"
    log = subprocess.run([*SQUAD, "log", "--json"], cwd=team, capture_output=True, text=True,
                         timeout=60)
    assert log.returncode == 0, log.stderr
    assert [record["agent"] for record in json.loads(log.stdout)] == ["architect"]


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_run_leaves_no_process_behind(team: Path, server: ScriptedServer,
                                                 number: signal.Signals) -> None:
    held: list[str] = []

    def responder(request: RecordedRequest) -> ToolCalls | Text:
        if request.messages[-1]["role"] == "tool":
            held.append("tester")
            return Text("late", delay=30)  # the run is stopped while this call is out
        return decide(request)

    server.responder = responder
    proc = start(team, "run", "Add rate limiting", "--agents", "tester", "--json", text=True,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 env={"OPENAI_BASE_URL": server.base_url})
    deadline = time.monotonic() + 60
    while not held and time.monotonic() < deadline:
        time.sleep(0.02)
    assert held, "the second call never came"
    proc.send_signal(number)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert left_in(team) == []
    assert events(out)[-1]["event"] == "summary"


def test_a_profiled_command_still_writes_its_profile(team: Path, tmp_path: Path) -> None:
    """Under `python -m cProfile` the ordinary exit is taken, so the profile is written."""
    out = tmp_path / "log.prof"
    done = subprocess.run([SQUAD[0], "-m", "cProfile", "-o", str(out), "-m", "squad", "log"],
                          cwd=team, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0
