"""`squad log` shows the newest page and says how much it left out; --limit and --all page."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import drop_text, squad

from squad.dropbox import Inbox


def test_log_shows_the_newest_fifty_and_pages(repo: Path) -> None:
    inbox = Inbox(repo / "decisions" / "inbox")
    for i in range(1, 56):
        inbox.drop(drop_text(f"Decision {i}"))
    squad(repo, "ingest")

    default = squad(repo, "log")
    rows = [line for line in default.stdout.splitlines() if line[:4].isdigit()]
    assert [row[:4] for row in rows] == [f"{i:04d}" for i in range(6, 56)]
    assert default.stderr.strip() == "5 older records not shown (--all shows every one)"

    three = squad(repo, "log", "--limit", "3")
    assert [line[:4] for line in three.stdout.splitlines()[1:]] == ["0053", "0054", "0055"]
    assert "52 older records" in three.stderr

    every = squad(repo, "log", "--all")
    assert sum(line[:4].isdigit() for line in every.stdout.splitlines()) == 55
    assert every.stderr == ""

    page = json.loads(squad(repo, "log", "--json").stdout)
    assert [e["id"] for e in page] == list(range(6, 56))
    assert len(json.loads(squad(repo, "log", "--json", "--all").stdout)) == 55
    assert [e["id"] for e in json.loads(
        squad(repo, "log", "--json", "--limit", "1").stdout)] == [55]

    wrong = squad(repo, "log", "--limit", "0", check=False)
    assert wrong.returncode == 2 and "--limit" in wrong.stderr
