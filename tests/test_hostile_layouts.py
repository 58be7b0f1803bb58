"""Repositories laid out to trick squad: links where its folders go, files named like its
folders or records, submodules, and templates that try to run code. Real repositories, the
real `squad` command; a model, where one is needed, is the scripted server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import drop_text, git, squad
from scripted_server import ScriptedServer, Text, ToolCalls


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("squad: ")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.parametrize("link", ["decisions", "decisions/inbox", "decisions/inbox/new",
                                  "decisions/quarantine", ".squad", ".squad/runs"])
def test_a_tracked_link_at_one_of_squads_folders_is_refused_and_nothing_moves(
        repo: Path, tmp_path: Path, link: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.md").write_text("not a drop: a file outside the repository")
    (outside / "README.md").write_text("outside index")
    (repo / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, repo / link)
    git(repo, "add", link)
    git(repo, "commit", "-qm", "a link")
    before, head = listing(outside), git(repo, "rev-parse", "HEAD")
    for command in (["ingest"], ["decide", "--title", "T", "--decision", "d"], ["init"],
                    ["verify"]):
        result = squad(repo, *command, check=False)
        assert result.returncode == 3, (command, result.stderr)
        assert "symlink" in one_line(result.stderr) and link in result.stderr
    assert listing(outside) == before
    assert git(repo, "rev-parse", "HEAD") == head


def test_a_file_where_squads_folder_goes_is_refused(repo: Path) -> None:
    (repo / ".squad").write_text("my notes")
    result = squad(repo, "ingest", check=False)
    assert result.returncode == 3 and "not a folder" in one_line(result.stderr)
    assert (repo / ".squad").read_text() == "my notes"


def test_folders_named_like_a_record_or_a_setting_are_one_line_errors(
        initialized_no_agents: Path) -> None:
    repo = initialized_no_agents
    squad(repo, "decide", "--title", "First", "--decision", "d", "--agent", "me")
    (repo / "decisions/000/0002-notes.md").mkdir()
    (repo / "decisions/000/0002-notes.md/x.txt").write_text("x")
    result = squad(repo, "verify", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "decisions/000/0002-notes.md: named like a record but not a regular file" \
        in result.stderr
    (repo / "decisions/000/0002-notes.md/x.txt").unlink()
    (repo / "decisions/000/0002-notes.md").rmdir()

    os.remove(repo / "squad.toml")
    (repo / "squad.toml").mkdir()
    for command in (["log"], ["verify"], ["ingest"]):
        result = squad(repo, *command, check=False)
        assert result.returncode == 2
        assert "squad.toml: not a regular file" in one_line(result.stderr)


def test_a_folder_or_bad_yaml_among_the_charters_is_one_line(initialized: Path) -> None:
    repo = initialized
    (repo / "agents/odd.md").mkdir()  # git keeps no empty folder: only `ask` reads it
    result = squad(repo, "ask", "odd", "task", check=False,
                   env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert "agents/odd.md" in one_line(result.stderr) and result.returncode == 2
    (repo / "agents/odd.md").rmdir()
    (repo / "agents/odd.md").write_text("---\nname: odd\nrole: 2024-02-30\n---\nbody\n")
    result = squad(repo, "ask", "odd", "task", check=False,
                   env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert "agents/odd.md" in one_line(result.stderr) and result.returncode == 2
    (repo / "agents/odd.md").write_text("---\nname: [odd\n---\nbody\n")
    git(repo, "add", "agents/odd.md")
    git(repo, "commit", "-qm", "a bad charter")
    result = squad(repo, "run", "goal", "--agents", "tester", check=False,
                   env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})  # a run reads the commit
    assert "agents/odd.md at " in one_line(result.stderr) and result.returncode == 2


ESCAPES = [
    "{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ 'x' * 100000000000 }}",
    "{{ 9 ** 99999999 }}",
    "{{ range(10**9) | list | length }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_a_repositorys_templates_render_in_the_sandbox(initialized_no_agents: Path,
                                                       template: str) -> None:
    repo = initialized_no_agents
    squad(repo, "decide", "--title", "First", "--decision", "d", "--agent", "me")
    (repo / "templates").mkdir()
    for page in ("index.md.j2", "index_page.md.j2", "index_summary.md.j2"):
        (repo / "templates" / page).write_text(template)
    (repo / "templates/record.md.j2").write_text(template)
    git(repo, "add", "templates")
    git(repo, "commit", "-qm", "hostile templates")
    for command in (["verify"], ["decide", "--title", "Second", "--decision", "d"]):
        result = squad(repo, *command, check=False)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert "templates/" in result.stderr and "cannot render" in result.stderr
    assert not (repo / "PWNED").exists()


def test_grep_and_reads_in_a_repository_with_a_submodule(repo: Path, tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    git(library, "init", "-q", "-b", "main")
    (library / "lib.py").write_text("SESSIONS = 1\n")
    git(library, "add", "lib.py")
    git(library, "commit", "-qm", "lib")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(library),
        "vendor/library")
    git(repo, "commit", "-qm", "submodule")
    squad(repo, "init")
    (repo / "squad.toml").write_text("[llm]\nmodel = 'scripted'\nmax_retries = 0\n")
    git(repo, "commit", "-qam", "settings")
    with ScriptedServer() as server:
        server.enqueue(
            ToolCalls([("grep", {"pattern": "SESSIONS"}), ("list_files", {}),
                       ("read_file", {"path": "vendor/library"}),
                       ("grep", {"pattern": "x", "path": "vendor/**"})]),
            ToolCalls([("record_decision", {"title": "Vendored", "context": "c",
                                            "decision": "d", "consequences": "e"})]),
            Text("done"))
        result = squad(repo, "run", "goal", "--json", "--agents", "tester", check=False,
                       env={"OPENAI_BASE_URL": server.base_url})
        answers = [m["content"] for m in server.requests[1].messages if m["role"] == "tool"]
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["ok"] and len(summary["decisions"]) == 1, result.stdout + result.stderr
    assert answers[0] == "no matches for 'SESSIONS'"
    assert "vendor/library" not in answers[1]
    assert answers[2].startswith("error: vendor/library: a submodule")
    assert answers[3] == "no matches for 'x'"


def test_an_inbox_replaced_by_a_link_after_init_is_refused(initialized_no_agents: Path,
                                                          tmp_path: Path) -> None:
    """Untracked links count too: `ingest` and `watch` refuse before claiming anything."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.md").write_text(drop_text("Outside"))
    repo = initialized_no_agents
    new = repo / "decisions/inbox/new"
    for child in new.iterdir():
        child.unlink()
    new.rmdir()
    os.symlink(outside, new)
    for command in ("ingest", "watch"):
        result = squad(repo, command, check=False, timeout=60)
        assert result.returncode == 3 and "symlink" in one_line(result.stderr)
    assert (outside / "x.md").exists()
    assert git(repo, "log", "--format=%s", "--grep=^Squad-Decision") == ""


def test_a_sha256_repository_is_refused_in_one_line_and_nothing_is_written(
        tmp_path: Path) -> None:
    """squad hashes objects itself as sha1; in a sha256 repository it would write objects
    git cannot read, so it refuses before touching anything."""
    root = tmp_path / "modern"
    root.mkdir()
    git(root, "init", "-q", "-b", "main", "--object-format=sha256")
    (root / "app.py").write_text("print('hello')\n")
    git(root, "add", "app.py")
    git(root, "commit", "-q", "-m", "initial")
    head = git(root, "rev-parse", "HEAD")
    (root / "decisions" / "inbox" / "new").mkdir(parents=True)
    (root / "decisions" / "inbox" / "new" / "a.md").write_text(drop_text("A drop"))
    for command in (["ingest"], ["decide", "--title", "T", "--decision", "d"], ["verify"]):
        result = squad(root, *command, check=False)
        assert result.returncode == 3, (command, result.stderr)
        line = one_line(result.stderr)
        assert "sha256 object names" in line and str(root) in line
    assert git(root, "rev-parse", "HEAD") == head
    assert git(root, "status", "--porcelain") == "?? decisions/\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the repository away")
def test_a_repository_git_refuses_for_its_owner_is_one_line_and_nothing_written(
        repo: Path) -> None:
    """git will not work in a repository another user owns (unless safe.directory says so):
    squad says so in one line, with the way out, rather than crashing mid-command."""
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 65534, 65534)
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    for command in (["log"], ["verify"], ["init"],
                    ["decide", "--title", "T", "--decision", "d", "--agent", "tester"]):
        result = squad(repo, *command, check=False)
        assert result.returncode == 3, (command, result.stderr)
        assert result.stderr.splitlines() == [
            f"squad: {repo}: git refuses a repository owned by another user; if you trust "
            f"it: git config --global --add safe.directory {repo}"], command
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before
