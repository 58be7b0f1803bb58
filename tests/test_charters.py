"""Charters validate with messages that name the file and the field; defaults ship and load."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import squad

from squad.charters import load_team
from squad.errors import UsageError
from squad.scaffold import packaged_agents_dir


def test_the_default_specialists_load() -> None:
    folder = packaged_agents_dir()
    assert folder is not None
    team = load_team(folder.parent)
    assert {"architect", "security", "tester", "docs", "lead"} <= set(team)
    for charter in team.values():
        assert charter.body and charter.role and "record_decision" in charter.tools


@pytest.mark.parametrize(("front", "fault"), [
    ("name: x\nrole: r\ntools: [shell]", "field tools.0"),
    ("name: x\nrole: r\ntemperature: hot", "field temperature"),
    ("name: x\nrole: r\ncolour: red", "field colour"),
    ("name: x", "field role"),
    ("name: Bad Name\nrole: r", "field name"),
    ("name: other\nrole: r", "must match the file name"),
    ("name: x\nrole: [unclosed", "not valid YAML"),
])
def test_a_bad_charter_names_file_and_field(tmp_path: Path, front: str, fault: str) -> None:
    (tmp_path / "agents").mkdir()
    path = tmp_path / "agents" / "x.md"
    path.write_text(f"---\n{front}\n---\nbody\n")
    with pytest.raises(UsageError, match=fault) as caught:
        load_team(tmp_path)
    assert str(path) in caught.value.message


def test_init_installs_the_specialists_and_ask_reports_a_bad_charter(repo: Path) -> None:
    squad(repo, "init")
    assert (repo / "agents/architect.md").exists()
    (repo / "agents/architect.md").write_text("---\nname: architect\nrole: r\ntools: 3\n---\n")
    result = squad(repo, "ask", "architect", "do it", check=False,
                   env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"squad: {repo / 'agents/architect.md'}: field tools: Input should be a valid tuple")
