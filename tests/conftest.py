"""Shared fixtures: real git repositories in temp folders, squad run as a real process.

Setup that many tests share and none of them is about (`squad init`, a recorded run) is done
once per test process into a template, and each test gets its own copy of it: the copy is a
real repository like any other, only cheaper than running the same commands again.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import (  # noqa: F401  (re-exported for modules that import them from here)
    AGENTS,
    FORKS,
    SQUAD,
    START,
    Templates,
    copy_repo,
    decide,
    decide_once,
    drop_text,
    events,
    git,
    squad,
)
from scripted_server import ScriptedServer

from squad.clock import fixed_clock
from squad.workspace import Workspace

GITCONFIG = ("[user]\n\tname = Test User\n\temail = test@example.com\n"
             "[init]\n\tdefaultBranch = main\n")
# The settings of a squad that talks to the scripted server (prices so that costs show).
TEAM_SETTINGS = ("[llm]\nmodel = 'scripted'\nmax_retries = 0\ntimeout = 60\n"
                 "[prices.scripted]\nprompt = 1.0\ncompletion = 2.0\n")


def _isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    (home / ".gitconfig").write_text(GITCONFIG)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in list(os.environ):
        if name.startswith(("SQUAD_", "GIT_AUTHOR", "GIT_COMMITTER", "OPENAI_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def _fork_server() -> Iterator[None]:
    """The fork server `squad(...)` starts on first use ends with the session."""
    yield
    FORKS.close()


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the machine's git config or squad settings."""
    _isolate(monkeypatch, tmp_path_factory.mktemp("home"))


def _make_repo(root: Path) -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "app.py").write_text("print('hello')\n")
    git(root, "add", "app.py")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit of the user's own."""
    return _make_repo(tmp_path / "repo")


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


# ---- templates: built once per test process, copied per test ---------------------------------

@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    return Templates(tmp_path_factory, _isolate)


def _initialized(where: Path) -> None:
    squad(_make_repo(where), "init")


def _initialized_no_agents(where: Path) -> None:
    squad(_make_repo(where), "init", "--no-agents")


def _team(where: Path) -> None:
    _initialized(where)
    (where / "squad.toml").write_text(TEAM_SETTINGS)
    git(where, "commit", "-qam", "settings")


def _recorded(responder: Callable[..., Any], *args: str) -> Callable[[Path], str]:
    def build(where: Path) -> str:
        _team(where)
        with ScriptedServer() as srv:
            srv.responder = responder
            out = squad(where, "run", "Add rate limiting", "--json", *args,
                        env={"OPENAI_BASE_URL": srv.base_url}).stdout
        return events(out)[-1]["run"]
    return build


@pytest.fixture
def initialized(templates: Templates, tmp_path: Path) -> Path:
    """`repo` after `squad init` (charters included), committed."""
    return templates.copy("initialized", _initialized, tmp_path / "repo")[0]


@pytest.fixture
def initialized_no_agents(templates: Templates, tmp_path: Path) -> Path:
    """`repo` after `squad init --no-agents`, committed."""
    return templates.copy("initialized-no-agents", _initialized_no_agents, tmp_path / "repo")[0]


@pytest.fixture
def team(templates: Templates, tmp_path: Path) -> Path:
    """An initialised repository whose committed settings point at the scripted model."""
    return templates.copy("team", _team, tmp_path / "repo")[0]


@pytest.fixture
def four_agent_run(templates: Templates, tmp_path: Path) -> tuple[Path, str]:
    """`team` holding one recorded run: four agents, two rounds, eight decisions; the server
    is gone. Returns the repository and the run id."""
    return templates.copy("four-agent-run", _recorded(
        decide, "--agents", ",".join(AGENTS), "--rounds", "2", "--concurrency", "4"),
        tmp_path / "repo")


@pytest.fixture
def two_agent_run(templates: Templates, tmp_path: Path) -> tuple[Path, str]:
    """`team` holding one recorded run of architect and tester, one decision each."""
    return templates.copy("two-agent-run", _recorded(
        decide_once, "--agents", "architect,tester"), tmp_path / "repo")


# ---- order: the longest tests start first, each on its own worker -------------------------

# Longest first (the two SIGKILL tortures, then the other tests that take seconds, as
# `--durations` measures them); xdist's `load` scheduling with `--maxschedchunk=1` (pyproject)
# hands each worker two tests to begin with and then one at a time, so interleaving these with
# short ones starts one per worker at once and no long test is left to run alone at the end
# while the other workers idle. A test missing here only runs in collection order.
LONGEST = ("test_torture.py::", "test_remote_torture.py::",
           "::test_the_matrix_workflow_plans_fans_out_collects_and_replays",
           "::test_ten_clients_and_a_watch_commit_every_proposal_once",
           "::test_in_process_coordinator_quarantines_every_malformed_drop_once",
           "::test_record_round_trip",
           "::test_the_workflow_writes_the_report_to_the_job_summary",
           "::test_an_index_row_formatted_in_python_is_what_the_row_template_renders",
           "::test_four_agents_on_four_clones_collected_then_replayed_offline")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` (pyproject): one worker more than this process may use cores. The torture
    tests spend most of their time waiting (writers pause, the coordinator is killed at
    random moments), so with one worker per core a core idles while they run; the extra
    worker runs short tests in that time. PYTEST_XDIST_AUTO_NUM_WORKERS still decides."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return len(os.sched_getaffinity(0)) + 1


# Memory-backed temp folders where the machine has them: the suite makes and fsyncs tens of
# thousands of small files (repositories, drops, packs), which a disk makes the slowest part of
# many tests. They are real files either way; a TMPDIR set by the caller is left alone.
SHM = Path("/dev/shm")


def pytest_configure(config: pytest.Config) -> None:
    if "TMPDIR" in os.environ or not (SHM.is_dir() and os.access(SHM, os.W_OK)):
        return
    stat = os.statvfs(SHM)
    if stat.f_bavail * stat.f_frsize >= 4 << 30:  # room for the suite with plenty to spare
        os.environ["TMPDIR"] = str(SHM)  # for xdist workers and every process they start
        tempfile.tempdir = None  # recomputed from TMPDIR on next use


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((n for n, name in enumerate(LONGEST) if name in item.nodeid), len(LONGEST))

    long = sorted((i for i in items if rank(i) < len(LONGEST)), key=rank)
    rest = [i for i in items if rank(i) == len(LONGEST)]
    ordered: list[pytest.Item] = []
    for n, item in enumerate(long):
        ordered += [item, *rest[n:n + 1]]
    ordered += rest[len(long):]
    items[:] = ordered
