"""The fork server that most `squad(...)` calls run through: a forked command must be what a
fresh `python -m ...` would be, and nothing it starts may outlive the session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from forkserver import ForkServer
from helpers import FORKS

HERE = Path(__file__).parent


@pytest.fixture
def forks() -> Iterator[ForkServer]:
    """A server of this test's own (the one `squad(...)` uses is shared by the session)."""
    server = ForkServer()
    yield server
    server.close()


@pytest.mark.parametrize("what", ["0", "3", "interrupt", "crash"])
def test_a_forked_child_sees_and_ends_as_a_fresh_process_does(tmp_path: Path, what: str) -> None:
    """Same argv, cwd, environment, signal handling, stdio, exit code and output (atexit
    handlers and non-daemon threads included), after an earlier command in other settings."""
    earlier = FORKS.run(["5"], str(HERE), {**os.environ, "PROBE": "earlier", "HOME": "/"},
                        module="process_probe")
    assert earlier.returncode == 5 and '"probe": "earlier"' in earlier.stdout, earlier
    env = {**os.environ, "PROBE": what, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    expected = subprocess.run([sys.executable, "-m", "process_probe", what], cwd=HERE, env=env,
                              capture_output=True, text=True)
    got = FORKS.run([what], str(HERE), env, module="process_probe")
    assert "atexit ran" in expected.stdout and "thread joined" in expected.stdout
    assert (got.returncode, got.stdout) == (expected.returncode, expected.stdout)
    # a traceback names the server's frames too: the first and last lines are the same
    ends = [(lines[0], lines[-1]) for lines in (got.stderr.splitlines(),
                                                 expected.stderr.splitlines())]
    assert ends[0] == ends[1]


CODE = "import sys, process_probe; process_probe.main(sys.argv[1])"


@pytest.mark.parametrize("how", ["-m", "-c"])
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_a_started_child_has_pipes_and_dies_of_a_signal_as_a_fresh_process_does(
        tmp_path: Path, how: str, number: signal.Signals) -> None:
    """`FORKS.popen` (the torture's writers and coordinators) against `subprocess.Popen`:
    the same start (`-m` module or `-c` code), pipes, wait timeout, and death by a signal."""
    if number == signal.SIGINT and signal.getsignal(number) == signal.SIG_IGN:
        pytest.skip("SIGINT is ignored here (a background job): both children would ignore it")
    env = {**os.environ, "PROBE": "popen", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    streams: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE,
                               "stderr": subprocess.PIPE, "text": True}
    start = {"-m": {"module": "process_probe"}, "-c": {"code": CODE}}[how]
    fresh = subprocess.Popen([sys.executable, how, *start.values(), "ready"], cwd=HERE,
                             env=env, **streams)
    forked = FORKS.popen(["ready"], str(HERE), env, **start, **streams)
    seen = []
    try:
        for process in (fresh, forked):
            assert process.stdout is not None
            line = process.stdout.readline()
            with pytest.raises(subprocess.TimeoutExpired):
                process.wait(timeout=0.01)
            assert process.poll() is None
            process.send_signal(number)
            out, err = process.communicate(timeout=60)
            lines = err.splitlines()
            seen.append((line, process.returncode, out, lines[:1], lines[-1:]))
    finally:
        for process in (fresh, forked):
            process.kill()
            process.wait()
    assert seen[0] == seen[1]
    argv0 = {"-m": "process_probe.py", "-c": "-c"}[how]
    assert seen[0][1] == -number and f'"argv0": "{argv0}"' in seen[0][0]


@pytest.mark.parametrize("what", ["0", "3", "interrupt", "crash"])
def test_a_command_on_path_runs_as_a_child_of_the_server_as_a_fresh_process_does(
        tmp_path: Path, what: str) -> None:
    """`command_dir` (a workflow's shell steps find `squad` there): what a shell runs from
    it is a child of the server, and ends and prints as `python -m` would."""
    folder = FORKS.command_dir("process_probe", "probe", ("PYTHON", "LC_", "LANG"))
    env = {**os.environ, "PROBE": what, "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}
    expected = subprocess.run([sys.executable, "-m", "process_probe", what], cwd=HERE, env=env,
                              capture_output=True, text=True)
    got = subprocess.run(["bash", "-c", f"probe {what}"], cwd=HERE, env=env,
                         capture_output=True, text=True)
    assert (got.returncode, got.stdout) == (expected.returncode, expected.stdout)
    ends = [(lines[0], lines[-1]) for lines in (got.stderr.splitlines(),
                                                 expected.stderr.splitlines())]
    assert ends[0] == ends[1]


def test_a_command_on_path_is_a_child_of_the_server_and_passes_a_signal_on() -> None:
    folder = FORKS.command_dir("process_probe", "probe", ("PYTHON", "LC_", "LANG"))
    env = {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}
    command = subprocess.Popen(["bash", "-c", "probe ready"], cwd=HERE, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert command.stdout is not None and FORKS.process is not None
    assert '"argv": ["ready"]' in command.stdout.readline()  # it waits for a signal now
    [child] = _children(FORKS.process.pid)
    command.send_signal(signal.SIGTERM)
    command.communicate(timeout=60)
    assert command.returncode == -signal.SIGTERM and not _alive(child)


def test_the_server_ends_with_its_client_and_takes_its_children(forks: ForkServer) -> None:
    """Closing the client's socket (the end of a session, or its process dying) ends the
    server, which kills and reaps what it still runs: nothing is left behind."""
    ended: list[BaseException] = []

    def sleep() -> None:
        try:
            forks.run(["sleep"], str(HERE), dict(os.environ), module="process_probe")
        except BaseException as exc:  # the main thread checks what it was
            ended.append(exc)

    running = threading.Thread(target=sleep)
    running.start()
    deadline = time.monotonic() + 60
    while forks.process is None or not _children(forks.process.pid):
        assert running.is_alive() and time.monotonic() < deadline, ended
        time.sleep(0.05)
    server = forks.process.pid
    [child] = _children(server)
    forks.close()
    running.join(60)
    assert forks.process is None and not _alive(server) and not _alive(child)
    assert [str(e) for e in ended] == ["the fork server went away"]


def test_a_timeout_kills_the_child_and_says_so() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        FORKS.run(["sleep"], str(HERE), dict(os.environ), module="process_probe", timeout=1)
    assert FORKS.process is not None and _children(FORKS.process.pid) == []
    assert FORKS.run(["0"], str(HERE), dict(os.environ), module="process_probe").returncode == 0


def _children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                state, ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except OSError:
                continue
            if int(ppid) == pid and state != "Z":
                found.append(int(proc.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
