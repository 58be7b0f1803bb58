"""Helpers the test modules share; imported as `helpers`, never one test module from another.

Fixtures live in conftest.py; this module holds plain functions and constants, so that a test
module reads its dependencies from one place and importing it runs no other module's tests.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest
from forkserver import Forked, ForkServer
from scripted_server import RecordedRequest, Text, ToolCalls

SQUAD = [sys.executable, "-m", "squad"]
START = datetime(2026, 1, 1, tzinfo=UTC)
AGENTS = ("architect", "security", "tester", "docs")
# A decision an agent of the tests records through its tool.
DECIDE = {"title": "Use SQLite for sessions", "context": "Sessions must survive restarts.",
          "decision": "Store sessions in SQLite (WAL).", "consequences": "One writer."}
OFFLINE = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}  # nothing listens there


def git(repo: Path, *args: str, **kwargs: object) -> str:
    out = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                         text=True, **kwargs)  # type: ignore[call-overload]
    return out.stdout


# `squad(...)` forks its process from a server that has imported squad once (forkserver.py);
# SQUAD_TEST_FORK=0 in pytest's environment starts every command as a fresh interpreter instead.
FORKS = ForkServer()
FORKING = os.environ.get("SQUAD_TEST_FORK", "1") != "0"
# Read by the interpreter as it starts: a command given its own value needs its own interpreter.
_AT_START = ("PYTHON", "LC_", "LANG")


def _forkable(env: dict[str, str], kwargs: dict[str, object]) -> bool:
    return FORKING and set(kwargs) <= {"timeout", "stdin"} \
        and kwargs.get("stdin", subprocess.DEVNULL) == subprocess.DEVNULL and _same_start(env)


def _same_start(env: dict[str, str]) -> bool:
    return all(env.get(name) == FORKS.environment.get(name)
               for name in {*env, *FORKS.environment} if name.startswith(_AT_START))


Process = subprocess.Popen[Any] | Forked  # what `start` returns: the same methods either way


def start(cwd: Path, *args: str, code: str | None = None, env: dict[str, str] | None = None,
          imports: tuple[str, ...] = (), **streams: Any) -> Process:
    """`subprocess.Popen` of the real `squad ARGS` (or, given `code`, of `python -c CODE
    ARGS`) in `cwd`, forked from the fork server as `squad(...)` is, for a test that signals,
    kills or runs several commands at once. `streams` are Popen's stdin, stdout, stderr and
    text; anything else (a new session, say) needs a fresh interpreter. `imports`: modules
    the fork server imports once before forking (what the command would import anyway)."""
    environment = {**os.environ, **(env or {})}
    if FORKING and set(streams) <= {"stdin", "stdout", "stderr", "text"} \
            and _same_start(environment):
        return FORKS.popen(list(args), str(cwd), environment, code=code, imports=imports,
                           **streams)
    command = SQUAD if code is None else [sys.executable, "-c", code]
    return subprocess.Popen([*command, *args], cwd=cwd, env=environment, **streams)


def squad(repo: Path, *args: str, check: bool = True, env: dict[str, str] | None = None,
          **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the real `squad` command in `repo` as a separate process (forked from the fork
    server unless the call needs a fresh interpreter)."""
    environment = {**os.environ, **(env or {})}
    if _forkable(environment, kwargs) and Path(repo).is_dir():
        if "stdin" in kwargs:
            with open(os.devnull, "rb") as null:
                result = FORKS.run(list(args), str(repo), environment, null.fileno(),
                                   timeout=kwargs.get("timeout"))
        else:
            result = FORKS.run(list(args), str(repo), environment,
                               timeout=kwargs.get("timeout"))
    else:
        result = subprocess.run([*SQUAD, *args], cwd=repo, capture_output=True, text=True,
                                env=environment, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"squad {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def squad_on_path() -> str:
    """A PATH whose `squad` is a child of the fork server (`FORKS.command_dir`), for commands
    a shell step runs; the venv's own `squad` under SQUAD_TEST_FORK=0."""
    venv = str(Path(sys.executable).parent)
    first = FORKS.command_dir("squad", "squad", _AT_START) if FORKING else venv
    return os.pathsep.join([first, venv, os.environ["PATH"]])


def drop_text(title: str, agent: str = "tester", **extra: str) -> str:
    lines = [f"title: {title!r}", f"agent: {agent}"] + [f"{k}: {v}" for k, v in extra.items()]
    return "---\n" + "\n".join(lines) + "\n---\n\n## Context\n\nc\n\n## Decision\n\nd\n"


def copy_repo(template: Path, where: Path) -> Path:
    """A private copy of a repository built once per session (working tree and `.git`).

    The copy's files have new inodes, so git's index is refreshed once here rather than
    by whichever command happens to look first.
    """
    shutil.copytree(template, where, symlinks=True)
    if (where / ".git").is_dir():
        subprocess.run(["git", "update-index", "-q", "--refresh"], cwd=where,
                       capture_output=True)
    return where


class Templates:
    """Repositories built on first use by the real commands, then only copied.

    Each is built in its own isolated home (as every test runs), and what its builder returns
    (a run id, say) is kept next to it.
    """

    def __init__(self, factory: pytest.TempPathFactory,
                 isolate: Callable[[pytest.MonkeyPatch, Path], None]) -> None:
        self.factory = factory
        self.isolate = isolate
        self.built: dict[str, tuple[Path, Any]] = {}

    def get(self, name: str, build: Callable[[Path], Any]) -> tuple[Path, Any]:
        if name not in self.built:
            with self._isolated():
                where = self.factory.mktemp(f"template-{name}") / "repo"
                self.built[name] = (where, build(where))
        return self.built[name]

    @contextmanager
    def _isolated(self) -> Iterator[None]:
        with pytest.MonkeyPatch.context() as monkeypatch:
            self.isolate(monkeypatch, self.factory.mktemp("template-home"))
            yield

    def copy(self, name: str, build: Callable[[Path], Any], where: Path) -> tuple[Path, Any]:
        template, made = self.get(name, build)
        return copy_repo(template, where), made


def clone(remote: Path, where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(remote), str(where)], check=True,
                   capture_output=True)
    return where


# ---- runs against the scripted server ----------------------------------------------------

def agent_of(request: RecordedRequest) -> str:
    task = request.messages[1]["content"]
    return task.split("# Your charter: ", 1)[1].split(" ", 1)[0]


def decide(request: RecordedRequest) -> ToolCalls | Text:
    """Each agent looks around (all at once, so reads overlap), records one decision per
    round, then says it is done."""
    turns = sum(1 for m in request.messages if m["role"] == "assistant")
    if turns == 0:
        return ToolCalls([("grep", {"pattern": "squad"}), ("read_file", {"path": "AGENTS.md"}),
                          ("list_files", {})])
    if turns > 1:
        return Text("Done.")
    agent = agent_of(request)
    first = "None yet." in request.messages[0]["content"]
    title = f"{agent} {'first' if first else 'second'} thoughts"
    return ToolCalls([("record_decision", {
        "title": title, "context": f"Context from {agent}.", "decision": f"{agent} decides.",
        "consequences": "Some.", "tags": [agent]})])


def decide_once(request: RecordedRequest) -> ToolCalls | Text:
    """Each agent records one decision straight away, then says it is done."""
    if any(m["role"] == "assistant" for m in request.messages):
        return Text("Done.")
    agent = agent_of(request)
    return ToolCalls([("record_decision", {
        "title": f"{agent} thoughts", "context": "C.", "decision": f"{agent} decides.",
        "consequences": "Some.", "tags": [agent]})])


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


# ---- torture: a coordinator SIGKILLed again and again while writers drop ----------------

@dataclass
class Watcher:
    """Incarnations of one coordinator command (`squad watch ...`): each one's output kept."""

    root: Path
    logs: Path
    command: list[str]
    proc: Process | None = None
    handle: IO[str] | None = None
    started: int = 0
    kills: int = 0
    died: list[str] = field(default_factory=list)  # incarnations that exited on their own

    def start(self) -> None:
        self.started += 1
        self.handle = (self.logs / f"watch-{self.started}.log").open("w")
        self.proc = start(self.root, *self.command, text=True, stdout=self.handle,
                          stderr=subprocess.STDOUT)

    def kill_or_reap(self) -> None:
        """SIGKILL the running incarnation; note it if it had already died by itself."""
        assert self.proc is not None and self.handle is not None
        if self.proc.poll() is None:
            self.proc.kill()
            self.kills += 1
        else:
            self.died.append(f"incarnation {self.started} exited {self.proc.returncode}:\n"
                             f"{self.log(self.started)}")
        self.proc.wait()
        self.handle.close()

    def stop(self) -> tuple[int, float]:
        """SIGTERM once the incarnation is up (says it watches; a process still importing
        has no handler yet and dies of the signal, losing nothing); returns the exit code
        and how long the stop took."""
        assert self.proc is not None and self.handle is not None
        deadline = time.monotonic() + 30
        while "watching" not in self.log(self.started) and self.proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.handle.close()
        return code, time.monotonic() - began

    def log(self, number: int) -> str:
        return (self.logs / f"watch-{number}.log").read_text(errors="replace")

    def every_log(self) -> str:
        return "".join(self.log(n) for n in range(1, self.started + 1))


@dataclass
class Tortured:
    """How a torture went: timings for the printout, the last incarnation's stop for audit."""

    writers_done: float
    drained: float
    code: int
    stopping: float


def torture(watcher: Watcher, writers: list[Process], rng: random.Random,
            seed: int, *, min_kills: int, kill_seconds: float, drain_seconds: float,
            waiting: Callable[[], int]) -> Tortured:
    """Kill and restart `watcher` at random moments (mid-commit, mid-recovery, mid-startup)
    until every writer is done and it was killed `min_kills` times; let the last incarnation
    take what is `waiting`, then stop it with SIGTERM. Everything started is ended, whatever
    happens; what the incarnations did is for the caller to audit."""
    began = time.monotonic()
    try:
        watcher.start()
        deadline = began + kill_seconds
        while watcher.kills + len(watcher.died) < min_kills or \
                any(w.poll() is None for w in writers):
            assert time.monotonic() < deadline, f"seed {seed}: writers still running"
            time.sleep(rng.uniform(0.05, 2.0))
            watcher.kill_or_reap()
            watcher.start()  # the last start is the final restart
        writers_done = time.monotonic() - began
        for number, writer in enumerate(writers):
            _, err = writer.communicate(timeout=60)
            assert writer.returncode == 0 and not err, f"writer {number}: {err}"
        until = time.monotonic() + drain_seconds
        while waiting():
            assert watcher.proc is not None
            if watcher.proc.poll() is not None:
                break  # its exit code and log are audited by the caller
            assert time.monotonic() < until, f"seed {seed}: {waiting()} drops never taken"
            time.sleep(0.1)
        drained = time.monotonic() - began
        code, stopping = watcher.stop()
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.communicate()
        if watcher.proc is not None and watcher.proc.poll() is None:
            watcher.proc.kill()
            watcher.proc.wait()
        if watcher.handle is not None:
            watcher.handle.close()
    return Tortured(writers_done, drained, code, stopping)


def titles(where: Path) -> Counter[str]:
    """How many record commits carry each title in `where`'s history."""
    log = git(where, "log", "--format=%s%x00%(trailers:key=Squad-Decision,valueonly)")
    return Counter(line.split("\0")[0] for line in log.splitlines() if line.split("\0")[1:2]
                   and line.split("\0")[1])
