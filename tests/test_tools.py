"""The agent tools read only what they should, never raise on model input, and only drop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import git

from squad import tools
from squad.charters import Charter
from squad.coordinator import Coordinator
from squad.ledger import Ledger
from squad.records import parse_draft
from squad.tools import TOOL_SPECS, ToolBox, ToolResult, specs_for
from squad.workspace import Workspace

ARCHITECT = Charter(name="architect", role="r", reads=("src/**",))


def commit(repo: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    git(repo, "add", "-f", *files)
    git(repo, "commit", "-q", "-m", "files")


def call(box: ToolBox, name: str, **args: object) -> ToolResult:
    return box.call(name, json.dumps(args))


def refused(result: ToolResult, *words: str) -> None:
    assert not result.ok, result.content
    assert result.content.startswith("error: ")
    assert "\n" not in result.content
    for word in words:
        assert word in result.content, result.content


@pytest.fixture
def src(repo: Path) -> Path:
    commit(repo, {"src/app.py": "import os\n\ndef main():\n    return 1\n",
                  "src/util/strings.py": "def shout(s):\n    return s.upper()\n",
                  "docs/guide.md": "def not_in_scope():\n"})
    return repo


# ---- specs ---------------------------------------------------------------------------------


def test_specs_are_openai_function_tools_in_fixed_order() -> None:
    assert list(TOOL_SPECS) == ["list_files", "read_file", "grep", "record_decision"]
    for name, spec in TOOL_SPECS.items():
        assert spec["type"] == "function"
        assert spec["function"]["name"] == name
        assert spec["function"]["description"]
        params = spec["function"]["parameters"]
        assert params["type"] == "object" and params["additionalProperties"] is False
        assert set(params["required"]) <= set(params["properties"])
    assert TOOL_SPECS["record_decision"]["function"]["parameters"]["required"] == [
        "title", "context", "decision", "consequences"]
    charter = Charter(name="a", role="r", tools=("record_decision", "read_file"))
    assert [s["function"]["name"] for s in specs_for(charter)] == ["read_file",
                                                                   "record_decision"]
    specs_for(charter)[0]["function"]["name"] = "mutated"
    assert TOOL_SPECS["read_file"]["function"]["name"] == "read_file"


# ---- happy paths ---------------------------------------------------------------------------


def test_list_files_is_sorted_tracked_and_in_scope(ws: Workspace, src: Path) -> None:
    (src / "src" / "scratch.py").write_text("untracked\n")
    box = ToolBox(ws, ARCHITECT)
    assert call(box, "list_files") == ToolResult(True, "src/app.py\nsrc/util/strings.py")
    assert call(box, "list_files", path="src/util").content == "src/util/strings.py"
    assert call(box, "list_files", path="*.py").content == "src/app.py\nsrc/util/strings.py"
    assert call(box, "list_files", path="**/strings.py").content == "src/util/strings.py"
    assert box.call("list_files", "").ok  # some models send no arguments at all
    empty = call(box, "list_files", path="docs/**")
    assert empty.ok and "no files" in empty.content


def test_list_files_caps_its_output(ws: Workspace, repo: Path) -> None:
    commit(repo, {f"src/f{n:04d}.txt": "x\n" for n in range(tools.MAX_LIST + 7)})
    lines = call(ToolBox(ws, ARCHITECT), "list_files").content.split("\n")
    assert len(lines) == tools.MAX_LIST + 1
    assert lines[0] == "src/f0000.txt"
    assert lines[-1].startswith("... and 7 more")


def test_read_file_whole_and_by_line_range(ws: Workspace, src: Path) -> None:
    box = ToolBox(ws, ARCHITECT)
    assert call(box, "read_file", path="src/app.py").content == \
        "import os\n\ndef main():\n    return 1"
    assert call(box, "read_file", path="./src//app.py").ok
    part = call(box, "read_file", path="src/app.py", start_line=3, end_line=4)
    assert part.content == "def main():\n    return 1\n[lines 3-4 of 4]"
    assert call(box, "read_file", path="src/app.py", start_line=4, end_line=99).content == \
        "    return 1\n[lines 4-4 of 4]"
    refused(call(box, "read_file", path="src/app.py", start_line=9), "no lines 9 to the end",
            "has 4 lines")
    refused(call(box, "read_file", path="src/app.py", start_line=3, end_line=2), "no lines 3 to 2")
    refused(call(box, "read_file", path="src/app.py", start_line=0), "at least 1")


def test_read_file_caps_lines_and_bytes_and_says_how_to_go_on(ws: Workspace,
                                                              repo: Path) -> None:
    commit(repo, {"src/long.txt": "".join(f"line {n}\n" for n in range(1, 3001)),
                  "src/wide.txt": ("y" * 1000 + "\n") * 200,
                  "src/one.txt": "z" * (tools.MAX_READ_BYTES * 2)})
    box = ToolBox(ws, ARCHITECT)
    lines = call(box, "read_file", path="src/long.txt").content.split("\n")
    assert len(lines) == tools.MAX_READ_LINES + 1
    assert lines[-2] == "line 2000"
    assert "start_line=2001" in lines[-1] and lines[-1].startswith("[truncated:")
    more = call(box, "read_file", path="src/long.txt", start_line=2001).content.split("\n")
    assert more[0] == "line 2001" and more[-2] == "line 3000"
    wide = call(box, "read_file", path="src/wide.txt").content
    assert len(wide.encode()) <= tools.MAX_READ_BYTES + 200
    assert "[truncated:" in wide and "start_line=" in wide
    one = call(box, "read_file", path="src/one.txt").content
    assert one.startswith("z" * 100) and "[truncated:" in one
    assert len(one.encode()) <= tools.MAX_READ_BYTES + 200


def test_grep_reports_path_line_text_over_allowed_files_only(ws: Workspace, src: Path) -> None:
    commit(src, {".env": "def leaked(): SECRET=1\n"})
    box = ToolBox(ws, Charter(name="a", role="r"))  # reads everything
    result = call(box, "grep", pattern=r"def \w+")
    assert result.content == ("docs/guide.md:1: def not_in_scope():\n"
                              "src/app.py:3: def main():\n"
                              "src/util/strings.py:1: def shout(s):")
    assert call(box, "grep", pattern="def", path="src/util/**").content == \
        "src/util/strings.py:1: def shout(s):"
    scoped = call(ToolBox(ws, ARCHITECT), "grep", pattern="def")
    assert "docs/" not in scoped.content and "src/app.py:3" in scoped.content
    none = call(box, "grep", pattern="nowhere")
    assert none.ok and "no matches" in none.content


def test_grep_caps_matches_and_line_length(ws: Workspace, repo: Path) -> None:
    commit(repo, {"src/many.txt": "hit\n" * 300, "src/wide.txt": "hit" + "w" * 1000 + "\n",
                  "src/blob.bin": b"hit\x00\x01"})
    box = ToolBox(ws, ARCHITECT)
    lines = call(box, "grep", pattern="^hit").content.split("\n")
    assert len(lines) == tools.MAX_MATCHES + 1 and lines[-1].startswith("[truncated:")
    wide = call(box, "grep", pattern="^hit", path="src/wide.txt").content
    assert wide.startswith("src/wide.txt:1: hitwww")
    assert len(wide) <= len("src/wide.txt:1: ") + tools.MAX_LINE_CHARS + 1
    assert "blob.bin" not in call(box, "grep", pattern="hit", path="src/b*").content


def test_grep_refuses_bad_patterns(ws: Workspace, src: Path) -> None:
    box = ToolBox(ws, ARCHITECT)
    refused(call(box, "grep", pattern="def ("), "invalid regex")
    refused(call(box, "grep", pattern="a" * (tools.MAX_PATTERN_CHARS + 1)), "1 to 500")
    refused(call(box, "grep", pattern=""), "1 to 500")
    refused(call(box, "grep", pattern="x", path="../**"), "'..'")


# ---- refusals --------------------------------------------------------------------------------


def test_paths_may_not_escape_the_repository(ws: Workspace, src: Path) -> None:
    outside = src.parent / "outside.txt"
    outside.write_text("host secrets\n")
    box = ToolBox(ws, Charter(name="a", role="r"))
    refused(call(box, "read_file", path="../outside.txt"), "../outside.txt", "'..'")
    refused(call(box, "read_file", path="src/../../outside.txt"), "'..'")
    refused(call(box, "read_file", path=str(outside)), "absolute")
    refused(call(box, "read_file", path="/etc/passwd"), "absolute")
    refused(call(box, "list_files", path="/etc/*"), "absolute")


def test_a_tracked_symlink_out_of_the_repository_is_refused(ws: Workspace, src: Path) -> None:
    outside = src.parent / "outside.txt"
    outside.write_text("host secrets\n")
    os.symlink(outside, src / "src" / "link.txt")
    os.symlink("../.env", src / "src" / "env-link")
    (src / ".env").write_text("KEY=1\n")
    os.symlink("app.py", src / "src" / "alias.py")
    git(src, "add", "src/link.txt", "src/env-link", "src/alias.py")
    git(src, "commit", "-q", "-m", "links")
    box = ToolBox(ws, Charter(name="a", role="r"))
    refused(call(box, "read_file", path="src/link.txt"), "src/link.txt", "outside")
    refused(call(box, "read_file", path="src/env-link"), "secret")
    assert call(box, "read_file", path="src/alias.py").content.startswith("import os")
    listed = call(box, "list_files").content.split("\n")
    assert "src/link.txt" not in listed and "src/env-link" not in listed
    assert "src/alias.py" in listed
    assert "host secrets" not in call(box, "grep", pattern="secret|KEY").content


def test_untracked_and_ignored_files_are_refused(ws: Workspace, src: Path) -> None:
    (src / ".gitignore").write_text(".env\nsrc/build.log\n")
    (src / ".env").write_text("OPENAI_API_KEY=sk-123\n")
    (src / "src" / "build.log").write_text("ignored\n")
    (src / "src" / "new.py").write_text("untracked\n")
    box = ToolBox(ws, Charter(name="a", role="r"))
    refused(call(box, "read_file", path=".env"), ".env", "secret")
    refused(call(box, "read_file", path="src/build.log"), "not a git-tracked file")
    refused(call(box, "read_file", path="src/new.py"), "src/new.py", "not a git-tracked file")
    refused(call(box, "read_file", path="src/missing.py"), "not a git-tracked file")
    assert "sk-123" not in call(box, "grep", pattern="sk-").content


@pytest.mark.parametrize("name", [".env", "config/.env.production", "deploy/server.pem",
                                  "ssh/id_rsa", "ssh/id_ed25519.pub", "certs/client.p12",
                                  ".npmrc", ".pypirc", "aws/credentials", "src/my_secret.txt",
                                  "keys/api.KEY"])
def test_tracked_secret_like_files_are_refused(ws: Workspace, repo: Path, name: str) -> None:
    commit(repo, {name: "TOKEN=hunter2\n"})
    box = ToolBox(ws, Charter(name="a", role="r"))
    refused(call(box, "read_file", path=name), name, "secret")
    assert name not in call(box, "list_files").content
    assert "hunter2" not in call(box, "grep", pattern="hunt.r2").content


def test_git_internals_are_refused(ws: Workspace, src: Path) -> None:
    box = ToolBox(ws, Charter(name="a", role="r"))
    refused(call(box, "read_file", path=".git/config"), "secret")
    refused(call(box, "read_file", path=".git/HEAD"))


def test_files_outside_the_read_scope_are_refused(ws: Workspace, src: Path) -> None:
    refused(call(ToolBox(ws, ARCHITECT), "read_file", path="docs/guide.md"),
            "docs/guide.md", "read scope")
    refused(call(ToolBox(ws, ARCHITECT), "read_file", path="app.py"), "read scope")


def test_binary_files_are_refused(ws: Workspace, repo: Path) -> None:
    commit(repo, {"src/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00", "src/latin.txt": b"caf\xe9\n"})
    box = ToolBox(ws, ARCHITECT)
    refused(call(box, "read_file", path="src/logo.png"), "binary")
    refused(call(box, "read_file", path="src/latin.txt"), "binary")


def test_inbox_and_quarantine_are_not_a_channel(ws: Workspace, repo: Path) -> None:
    commit(repo, {"decisions/inbox/new/x.md": "other agent\n",
                  "decisions/quarantine/y.md": "bad\n",
                  "decisions/0001-committed.md": "a record\n"})
    box = ToolBox(ws, Charter(name="a", role="r", reads=("decisions/**",)))
    refused(call(box, "read_file", path="decisions/inbox/new/x.md"), "drops",
            "the records in decisions/")
    refused(call(box, "read_file", path="decisions/quarantine/y.md"), "drops")
    assert call(box, "read_file", path="decisions/0001-committed.md").content == "a record"
    assert call(box, "list_files").content == "decisions/0001-committed.md"


# ---- what the model sends ----------------------------------------------------------------


def test_tools_outside_the_charter_and_unknown_tools_are_errors(ws: Workspace) -> None:
    box = ToolBox(ws, Charter(name="a", role="r", tools=("read_file",)))
    refused(box.call("grep", '{"pattern": "x"}'), "grep", "not available", "read_file")
    refused(box.call("rm_rf", "{}"), "unknown tool", "rm_rf")


@pytest.mark.parametrize(("arguments", "words"), [
    ("{not json", ["not valid JSON", "path (required)"]),
    ("[]", ["JSON object"]),
    ('"src/app.py"', ["JSON object"]),
    ('{"path": 3}', ["'path'", "string"]),
    ('{"path": "src/app.py", "start_line": "1"}', ["'start_line'", "integer"]),
    ('{"path": "src/app.py", "start_line": true}', ["'start_line'", "integer"]),
    ('{"path": "src/app.py", "start_line": 1.5}', ["'start_line'", "integer"]),
    ("{}", ["missing", "'path'"]),
    ('{"path": "src/app.py", "mode": "rb"}', ["unknown argument 'mode'"]),
    ("[" * 100_000, ["not valid JSON"]),
])
def test_malformed_arguments_are_errors_never_exceptions(ws: Workspace, src: Path,
                                                         arguments: str,
                                                         words: list[str]) -> None:
    refused(ToolBox(ws, ARCHITECT).call("read_file", arguments), *words)


def test_null_optional_arguments_count_as_omitted(ws: Workspace, src: Path) -> None:
    result = ToolBox(ws, ARCHITECT).call("read_file", '{"path": "src/app.py", "end_line": null}')
    assert result.ok and result.content.startswith("import os")


# ---- record_decision ---------------------------------------------------------------------

DECISION = {"title": "Use SQLite", "context": "We need storage.", "decision": "Use SQLite.",
            "consequences": "One file to back up.", "tags": ["storage"]}


def ledger_of(repo: Path) -> Ledger:
    return Ledger.from_blobs({p.name: p.read_bytes()
                              for p in (repo / "decisions").glob("[0-9]*/*.md")})


def test_record_decision_drops_a_valid_draft_that_the_coordinator_commits(
        ws: Workspace, repo: Path) -> None:
    box = ToolBox(ws, ARCHITECT, run="run-1", ledger=Ledger())
    result = call(box, "record_decision", **DECISION)
    assert result.ok and result.drop is not None
    assert result.content == f"dropped {result.drop}: it will be committed by the coordinator"
    assert box.drops == [result.drop]
    assert ws.inbox.ready() == [result.drop]
    draft = parse_draft((ws.inbox.new / result.drop).read_text())
    assert (draft.agent, draft.run, draft.inputs, draft.status) == \
        ("architect", "run-1", (), "proposed")
    assert (draft.title, draft.decision, draft.tags) == ("Use SQLite", "Use SQLite.",
                                                         ("storage",))
    assert list((ws.inbox.path / "tmp").iterdir()) == []
    [record] = Coordinator(ws).ingest().committed
    assert record.id == 1 and record.agent == "architect"
    assert "Squad-Run: run-1" in git(repo, "log", "-1", "--format=%B")

    second = ToolBox(ws, ARCHITECT, run="run-2", inputs=(1,), ledger=ledger_of(repo))
    again = call(second, "record_decision", **{**DECISION, "title": "Use Postgres",
                                               "supersedes": [1]})
    assert again.ok, again.content
    [later] = Coordinator(ws).ingest().committed
    assert (later.id, later.inputs, later.supersedes) == (2, (1,), (1,))


@pytest.mark.parametrize(("change", "words"), [
    ({"decision": "   "}, ["field decision", "empty"]),
    ({"tags": ["two words"]}, ["field tags.0"]),
    ({"title": "a\nb"}, ["field title"]),
    ({"context": "x\n## Decision\ny"}, ["field context", "heading"]),
    ({"supersedes": [7]}, ["supersedes 7", "not in the log"]),
    ({"supersedes": [0]}, ["'supersedes'", "at least 1"]),
    ({"tags": "storage"}, ["'tags'", "array"]),
])
def test_record_decision_returns_the_field_error(ws: Workspace, change: dict[str, object],
                                                 words: list[str]) -> None:
    box = ToolBox(ws, ARCHITECT, ledger=Ledger())
    refused(call(box, "record_decision", **{**DECISION, **change}), *words)
    assert box.drops == [] and ws.inbox.ready() == []


def test_record_decision_writes_nothing_but_the_drop(ws: Workspace, repo: Path) -> None:
    before = git(repo, "status", "--porcelain", "--untracked-files=all")
    call(ToolBox(ws, ARCHITECT), "record_decision", **DECISION)
    after = git(repo, "status", "--porcelain", "--untracked-files=all")
    new = set(after.splitlines()) - set(before.splitlines())
    assert len(new) == 1 and next(iter(new)).startswith("?? decisions/inbox/new/")


def test_a_bad_run_id_is_the_callers_bug(ws: Workspace) -> None:
    with pytest.raises(ValueError, match="run"):
        ToolBox(ws, ARCHITECT, run="has spaces")


def test_raw_newlines_inside_json_strings_are_accepted(ws: Workspace) -> None:
    """Weak models put real line breaks inside JSON strings; squad takes them as written."""
    box = ToolBox(ws, Charter(name="architect", role="r"))
    arguments = ('{"title": "Keep orders", "context": "Lost on\nrestart.", '
                 '"decision": "Use SQLite.", "consequences": "One file."}')
    result = box.call("record_decision", arguments)
    assert result.ok and result.drop
    draft = parse_draft((ws.inbox.new / result.drop).read_text())
    assert draft.context == "Lost on\nrestart."
