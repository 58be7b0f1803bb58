"""Shared fixtures: real git repositories in temp folders, squad run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scripted_server import ScriptedServer

from squad.clock import fixed_clock
from squad.workspace import Workspace

SQUAD = [sys.executable, "-m", "squad"]
START = datetime(2026, 1, 1, tzinfo=UTC)


def git(repo: Path, *args: str, **kwargs: object) -> str:
    out = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                         text=True, **kwargs)  # type: ignore[call-overload]
    return out.stdout


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the machine's git config or squad settings."""
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in list(os.environ):
        if name.startswith(("SQUAD_", "GIT_AUTHOR", "GIT_COMMITTER", "OPENAI_")):
            monkeypatch.delenv(name)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit of the user's own."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "app.py").write_text("print('hello')\n")
    git(root, "add", "app.py")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def ws(repo: Path) -> Iterator[Workspace]:
    """A workspace on `repo` with a clock that ticks one minute per reading."""
    workspace = Workspace.open(repo, clock=fixed_clock(START, timedelta(minutes=1)))
    yield workspace
    workspace.repo.close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """Our scripted OpenAI-compatible HTTP server on a free loopback port."""
    with ScriptedServer() as srv:
        yield srv


def squad(repo: Path, *args: str, check: bool = True, env: dict[str, str] | None = None,
          **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run the real `squad` command in `repo` as a separate process."""
    result = subprocess.run([*SQUAD, *args], cwd=repo, capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        raise AssertionError(f"squad {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def drop_text(title: str, agent: str = "tester", **extra: str) -> str:
    lines = [f"title: {title!r}", f"agent: {agent}"] + [f"{k}: {v}" for k, v in extra.items()]
    return "---\n" + "\n".join(lines) + "\n---\n\n## Context\n\nc\n\n## Decision\n\nd\n"
