"""Keys and passwords never reach a file squad writes, a commit, or the terminal; agents never
read secret-like files. Real `squad` processes against the scripted server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import git, squad
from hypothesis import given
from hypothesis import strategies as st
from scripted_server import Error, ScriptedServer, Text, ToolCalls

from squad import secrets
from squad.charters import Charter
from squad.errors import LLMError
from squad.llm.cassette import Label, Seam
from squad.llm.messages import ChatRequest, Message
from squad.tools import ToolBox
from squad.workspace import Workspace

KEY = "sk-test-KEYSECRET0123456789"
PASSWORD = "hunter2PASSWORD"


@pytest.fixture
def team(initialized: Path) -> Path:
    repo = initialized
    (repo / "squad.toml").write_text("[llm]\nmodel = 'scripted'\nmax_retries = 0\n")
    git(repo, "commit", "-qam", "settings")
    return repo


def endpoint(server: ScriptedServer) -> dict[str, str]:
    return {"OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": server.base_url.replace("http://", f"http://bob:{PASSWORD}@")}


def assert_nowhere(team: Path, *outputs: str) -> None:
    written = [p for p in team.rglob("*") if p.is_file() and ".git" not in p.parts]
    assert any(p.name.startswith("0001-") for p in written)
    for path in written:
        data = path.read_bytes()
        assert KEY.encode() not in data and PASSWORD.encode() not in data, path
    history = git(team, "log", "-p", "--all")
    for text in (history, *outputs):
        assert KEY not in text and PASSWORD not in text and "KEYSECRET" not in text


@pytest.mark.parametrize("reply", [
    Error(401, f"Incorrect API key provided: {KEY}. You can find your key at ..."),
    Error(400, f"Authorization header was Bearer {KEY}"),
    Error(502, f"upstream http://bob:{PASSWORD}@127.0.0.1 refused"),
])
def test_an_endpoint_echoing_credentials_leaks_them_nowhere(team: Path, server: ScriptedServer,
                                                            reply: Error) -> None:
    server.enqueue(ToolCalls([("record_decision", {
        "title": "Before the fault", "context": "c", "decision": "d", "consequences": "e"})]),
        reply)
    result = squad(team, "run", "goal", "--json", "--agents", "tester", check=False,
                   env=endpoint(server))
    assert result.returncode == 1
    summary = json.loads(result.stdout.splitlines()[-1])
    assert "[redacted]" in summary["agents"][0]["error"]
    assert server.requests[0].headers["authorization"]  # the credentials were sent
    assert_nowhere(team, result.stdout, result.stderr)


def test_a_reply_echoing_the_key_and_ask_leak_it_nowhere(team: Path,
                                                         server: ScriptedServer) -> None:
    server.enqueue(ToolCalls([("record_decision", {
        "title": f"Rotate {KEY}", "context": f"Bearer {KEY}", "decision": "d",
        "consequences": f"http://bob:{PASSWORD}@x"})], content=KEY),
        Text(f"done with {KEY}"), Error(401, f"bad key {KEY}"))
    ask = squad(team, "ask", "tester", "task", "--ingest", check=False, env=endpoint(server))
    assert ask.returncode == 0, ask.stderr
    failed = squad(team, "ask", "tester", "task", check=False, env=endpoint(server))
    assert failed.returncode == 1 and "[redacted]" in failed.stderr
    assert_nowhere(team, ask.stdout, ask.stderr, failed.stdout, failed.stderr)
    assert squad(team, "verify").returncode == 0


def test_an_old_cassette_holding_a_key_replays_without_showing_it() -> None:
    request = ChatRequest(model="m", messages=(Message(role="user", content="hi"),))
    seam = Seam("replay", entries=[{
        "label": ["tester", 1, 1], "key": request.key(), "request": request.to_openai(),
        "error": "HTTP 401: Incorrect API key provided: sk-live-abcdefghijklmnopqrstu"}])
    with pytest.raises(LLMError) as caught:
        seam.complete(request, Label("tester", 1, 1))
    assert "abcdefghijklmnop" not in caught.value.message
    assert "[redacted]" in caught.value.message


SECRETS = ["config/prod.env", ".envrc", "ops/service-account.json", "deploy/gcp_credentials.json",
           "certs/site.pem", "certs/client.p12", "vault/team.kdbx", "infra/prod.tfvars",
           "infra/terraform.tfstate", ".npmrc", "keys/id_ed25519"]


def test_secret_like_files_are_never_read_and_the_rules_are_configurable(repo: Path) -> None:
    files = {**{name: "TOKEN=hunter2\n" for name in SECRETS},
             "docs/example.env": "TOKEN=example\n", "src/app.py": "TOKEN = read()\n",
             "src/house.rules": "TOKEN=house\n"}
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    (repo / "squad.toml").write_text(
        "[secrets]\nnames = ['*.rules']\nallow = ['docs/example.env']\n")
    git(repo, "add", "-f", ".")
    git(repo, "commit", "-qm", "files")
    ws = Workspace.open(repo)
    box = ToolBox(ws, Charter(name="architect", role="r"))
    listed = box.call("list_files", "{}").content.splitlines()
    assert "src/app.py" in listed and "docs/example.env" in listed
    found = box.call("grep", '{"pattern": "TOKEN"}').content
    assert "hunter2" not in found and "house" not in found and "example" in found
    for name in [*SECRETS, "src/house.rules"]:
        assert name not in listed
        result = box.call("read_file", json.dumps({"path": name}))
        assert not result.ok and "secret-like" in result.content, name
    ws.repo.close()


def _every_pattern(text: str) -> str:
    """`secrets.redact` without its pre-tests: every pattern over the whole text."""
    for known in sorted(secrets._known, key=len, reverse=True):
        text = text.replace(known, secrets.REDACTED)
    text = secrets._URL_USERINFO.sub(lambda m: m.group(1) + secrets.REDACTED + "@", text)
    text = secrets._BEARER.sub(lambda m: m.group(1) + m.group(2) + secrets.REDACTED, text)
    text = secrets._KEY_SHAPED.sub(lambda m: m.group(1) + "-" + secrets.REDACTED, text)
    return secrets._SECRET_QUERY.sub(lambda m: m.group(1) + secrets.REDACTED, text)


_PIECES = st.sampled_from(["https://", "bob:pw@", "@", "Bearer ", "BASIC\t", "baſic ",
                           "bearer", "sk-", "pk-", "rk-", "k-", "?key=", "&Token=", "=", "?",
                           "&", "abcdefgh", "0123456789ab", "_-.~+/", " ", "\u0131", "é"])


@given(st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=12).map("".join))
def test_redaction_pre_tests_skip_only_what_no_pattern_matches(text: str) -> None:
    assert secrets.redact(text) == _every_pattern(text)
