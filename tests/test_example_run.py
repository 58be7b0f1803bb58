"""The committed example run (examples/shop-run.bundle) still replays with today's squad.

A change to squad that alters what agents are asked (a prompt template, the context order,
a tool's output) fails here with the first diverging call and a diff. If the change is meant,
re-record: `.venv/bin/python examples/record.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import git, squad

BUNDLE = Path(__file__).resolve().parent.parent / "examples" / "shop-run.bundle"


def test_the_example_run_replays(tmp_path: Path) -> None:
    git(tmp_path, "clone", "-q", "-b", "main", str(BUNDLE), "shop")
    repo = tmp_path / "shop"
    assert squad(repo, "verify").returncode == 0
    result = squad(repo, "replay", "--json", check=False)
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(verdicts) == 1
    verdict = verdicts[0]
    assert verdict["ok"], f"{verdict['problem']}\n{verdict['diff']}"
    assert verdict["commits"] >= 3
