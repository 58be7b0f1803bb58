"""`squad log` filters and the decision graph in `squad show`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import drop_text, squad

from squad.dropbox import Inbox


def at(day: str) -> dict[str, str]:
    return {"SQUAD_NOW": f"{day}T09:00:00Z"}


@pytest.fixture
def log(initialized_no_agents: Path) -> Path:
    """1 alice (storage), 2 bob (api), 3 carol in run r1 with inputs 1 and 2,
    4 alice superseding 1, 5 accepting 2."""
    repo = initialized_no_agents
    squad(repo, "decide", "--agent", "alice", "--title", "Use SQLite", "--tag", "storage",
          "--decision", "SQLite in WAL mode.", env=at("2026-01-01"))
    squad(repo, "decide", "--agent", "bob", "--title", "Rate limit", "--tag", "api",
          "--decision", "A token bucket.", env=at("2026-02-01"))
    Inbox(repo / "decisions/inbox").drop(drop_text("Test the limiter", agent="carol",
                                                   run="r1", inputs="[1, 2]"))
    squad(repo, "ingest", env=at("2026-03-01"))
    squad(repo, "supersede", "1", "--agent", "alice", "--title", "Use Postgres",
          "--decision", "Postgres.", env=at("2026-03-02"))
    squad(repo, "accept", "2", env=at("2026-03-03"))
    return repo


def ids(repo: Path, *args: str) -> list[int]:
    return [r["id"] for r in json.loads(squad(repo, "log", "--json", *args).stdout)]


def test_filters_errors_and_the_graph_in_show(log: Path) -> None:
    assert ids(log) == [1, 2, 3, 4, 5]
    assert ids(log, "--agent", "alice") == [1, 4]
    assert ids(log, "--agent", "alice", "--agent", "bob") == [1, 2, 4]
    assert ids(log, "--status", "superseded") == [1]
    assert ids(log, "--status", "accepted") == [2]
    assert ids(log, "--status", "proposed") == [3, 4]
    assert ids(log, "--tag", "storage") == [1]
    assert ids(log, "--run", "r1") == [3]
    assert ids(log, "--since", "2026-02-15") == [3, 4, 5]
    assert ids(log, "--since", "2026-03-02T09:00:00Z") == [4, 5]
    assert ids(log, "--grep", "wal MODE") == [1]
    assert ids(log, "--grep", "limit") == [2, 3, 5]
    assert ids(log, "--agent", "alice", "--status", "proposed") == [4]
    assert ids(log, "--agent", "nobody") == []
    table = squad(log, "log", "--agent", "bob").stdout
    assert "0002" in table and "Rate limit" in table and "0001" not in table
    # the log is built once (slow on a busy machine); errors and `show` use it too
    result = squad(log, "log", "--since", "last tuesday", check=False)
    assert result.returncode == 2
    assert result.stderr == "squad: --since: not an ISO 8601 date: 'last tuesday'\n"
    result = squad(log, "log", "--status", "maybe", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr

    shown = squad(log, "show", "1").stdout
    graph = shown.split("## Graph\n\n", 1)[1]
    assert graph == ("0001 Use SQLite [alice, superseded]\n"
                     "├─ superseded by\n"
                     "│  └─ 0004 Use Postgres [alice, proposed]\n"
                     "└─ input to\n"
                     "   └─ 0003 Test the limiter [carol, proposed]\n")
    graph = squad(log, "show", "3").stdout.split("## Graph\n\n", 1)[1]
    assert graph == ("0003 Test the limiter [carol, proposed]\n"
                     "└─ inputs\n"
                     "   ├─ 0001 Use SQLite [alice, superseded]\n"
                     "   └─ 0002 Rate limit [bob, accepted]\n")
    assert "├─ accepted/rejected by\n" in squad(log, "show", "2").stdout
    record = json.loads(squad(log, "show", "1", "--json").stdout)
    assert record["input_to"] == [3] and record["superseded_by"] == [4]
