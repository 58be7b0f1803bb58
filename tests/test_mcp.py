"""`squad mcp` as a real subprocess, driven by the MCP SDK's own client over stdio and HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from helpers import FORKS, SQUAD, Process, git, squad, start
from mcp import Client, StdioServerParameters
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage
from mcp.types import CallToolResult, Implementation
from mcp_types import jsonrpc_message_adapter

MCP = ("squad.mcp_server",)  # what `squad mcp` imports: the fork server imports it once
READ_TOOLS = {"search_decisions", "get_decision", "log", "propose_decision"}


def servers_alive() -> list[int]:
    """Pids of this test process's children that run `squad mcp`, and of anything the fork
    server still runs between tests (zombies count as gone)."""
    forks = FORKS.process.pid if FORKS.process is not None else None
    alive = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z" and (int(ppid) == forks or (int(ppid) == os.getpid()
                             and b"mcp" in cmdline and b"squad" in cmdline)):
            alive.append(int(proc.name))
    return alive


@pytest.fixture(autouse=True)
def _no_server_left() -> Iterator[None]:
    yield
    assert servers_alive() == []


@pytest.fixture
def logged(initialized_no_agents: Path) -> Path:
    repo = initialized_no_agents
    squad(repo, "decide", "--title", "Store sessions in SQLite", "--decision",
          "SQLite in WAL mode for sessions.", "--tag", "storage", "--agent", "architect")
    squad(repo, "decide", "--title", "Rate limit the API", "--decision",
          "A token bucket per key.", "--context", "Abuse last month.", "--tag", "api")
    return repo


def stdio(repo: Path, *args: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[*SQUAD[1:], "mcp", *args],
                                 cwd=str(repo), env=dict(os.environ))


@asynccontextmanager
async def forked_stdio(repo: Path) -> AsyncIterator[TransportStreams]:
    """`squad mcp` on stdin and stdout as the SDK's stdio transport speaks to it (a JSON-RPC
    message a line; the end of stdin ends the server), forked from the fork server: for the
    test that needs several at once. The tests of the stdio transport itself use the SDK's."""
    proc = start(repo, "mcp", stdin=subprocess.PIPE, stdout=subprocess.PIPE, imports=MCP)
    assert proc.stdin is not None and proc.stdout is not None
    reader, incoming = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    outgoing, writer = anyio.create_memory_object_stream[SessionMessage](0)

    async def read(stdout: IO[bytes]) -> None:
        async with reader:
            while line := await anyio.to_thread.run_sync(stdout.readline):
                with contextlib.suppress(anyio.BrokenResourceError):
                    await reader.send(SessionMessage(
                        jsonrpc_message_adapter.validate_json(line, by_name=False)))

    def send(stdin: IO[bytes], data: bytes) -> None:
        stdin.write(data)
        stdin.flush()

    async def write(stdin: IO[bytes]) -> None:
        async with writer:
            async for message in writer:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await anyio.to_thread.run_sync(send, stdin, data.encode() + b"\n")
        stdin.close()

    async with anyio.create_task_group() as group:
        group.start_soon(read, proc.stdout)
        group.start_soon(write, proc.stdin)
        try:
            yield incoming, outgoing
        finally:
            await outgoing.aclose()
            await incoming.aclose()
            code = await anyio.to_thread.run_sync(proc.wait, 30)
            proc.stdout.close()
            assert code == 0, f"squad mcp exited {code}"


def talk(target: Any, work: Callable[[Client], Awaitable[Any]], name: str = "claude-code"
         ) -> Any:
    async def main() -> Any:
        async with Client(target, client_info=Implementation(name=name, version="1")) as client:
            return await work(client)
    return anyio.run(main)


def data(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error(result: CallToolResult) -> str:
    assert result.is_error
    return result.content[0].text  # type: ignore[union-attr]


def proposal(title: str, **more: Any) -> dict[str, Any]:
    return {"title": title, "context": "Why.", "decision": "What.", "consequences": "Then.",
            **more}


def squad_commits(repo: Path) -> list[str]:
    out = git(repo, "log", "--format=%(trailers:key=Squad-Decision,valueonly)%x00")
    return [chunk.strip() for chunk in out.split("\0") if chunk.strip()]


def test_tools_over_stdio(logged: Path) -> None:
    before = len(squad_commits(logged))

    async def work(client: Client) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["tools"] = {tool.name for tool in (await client.list_tools()).tools}
        out["search"] = data(await client.call_tool("search_decisions", {"query": "sqlite wal"}))
        out["by_tag"] = data(await client.call_tool("search_decisions", {"tags": ["api"]}))
        out["get"] = data(await client.call_tool("get_decision", {"id": 1}))
        out["missing"] = error(await client.call_tool("get_decision", {"id": 99}))
        out["new"] = data(await client.call_tool("propose_decision", proposal(
            "Replace SQLite with Postgres", supersedes=[1], tags=["storage"])))
        out["second"] = data(await client.call_tool("propose_decision", proposal("Log JSON")))
        out["log"] = data(await client.call_tool("log", {"since": 2}))
        out["log_date"] = data(await client.call_tool("log", {"since": "2026-01-01",
                                                              "limit": 1}))
        out["bad"] = error(await client.call_tool("propose_decision",
                                                  proposal("Two\nlines")))
        out["dangling"] = error(await client.call_tool("propose_decision",
                                                       proposal("X", supersedes=[42])))
        out["assigned"] = [error(await client.call_tool("propose_decision",
                                                        proposal("X", **{key: value})))
                           for key, value in (("id", 7), ("date", "2026-01-01"),
                                              ("prev", "sha256:" + "0" * 64))]
        out["resource"] = (await client.read_resource("decision://3")).contents[0].text
        prompt = await client.get_prompt("decisions_for_task", {"task": "Speed up storage"})
        out["prompt"] = prompt.messages[0].content.text  # type: ignore[union-attr]
        return out

    out = talk(stdio(logged), work)
    assert out["tools"] == READ_TOOLS
    assert [hit["id"] for hit in out["search"]["results"]] == [1]
    assert out["search"]["results"][0]["agent"] == "architect"
    assert "WAL" in out["search"]["results"][0]["snippet"]
    assert [hit["title"] for hit in out["by_tag"]["results"]] == ["Rate limit the API"]
    assert out["get"]["decision"] == "SQLite in WAL mode for sessions."
    assert out["get"]["current_status"] == "proposed"
    assert out["missing"] == "error: no record 99 in decisions/"
    assert out["new"]["id"] == 3 and out["new"]["agent"] == "claude-code"
    assert out["second"]["id"] == 4
    assert [r["id"] for r in out["log"]["records"]] == [3, 4]
    assert [r["id"] for r in out["log_date"]["records"]] == [4]
    assert out["log"]["records"][0]["supersedes"] == [1]
    # the same words `record_decision` and the CLI use
    assert out["bad"] == "error: field title: must be a single line without control characters"
    assert out["dangling"] == "error: supersedes 42, which is not in the log"
    assert out["assigned"] == [f"error: a proposal may not set {key}: the coordinator "
                               "assigns them" for key in ("id", "date", "prev")]
    assert out["resource"] == (logged / out["new"]["file"]).read_text()
    assert "0003. Replace SQLite with Postgres" in out["prompt"]
    assert "0001." not in out["prompt"]  # superseded decisions are not live
    assert out["prompt"].rstrip().endswith("Speed up storage")
    # one commit per accepted proposal, none for the refused ones
    assert squad_commits(logged)[: len(squad_commits(logged)) - before] == ["0004", "0003"]
    assert json.loads(squad(logged, "show", "1", "--json").stdout)["current_status"] \
        == "superseded"
    squad(logged, "verify")
    assert git(logged, "status", "--porcelain") == ""


def test_status_tools_only_with_the_flag_and_a_configured_author(logged: Path) -> None:
    async def work(client: Client) -> dict[str, Any]:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        accepted = data(await client.call_tool("accept", {"id": 1, "reason": "Fine."}))
        refused = error(await client.call_tool("reject", {"id": accepted["id"],
                                                          "reason": "No."}))
        listed = data(await client.call_tool("search_decisions", {"status": "accepted"}))
        return {"tools": tools, "accepted": accepted, "refused": refused, "listed": listed}

    out = talk(stdio(logged, "--allow-status", "--agent", "Ada Lovelace"), work)
    assert out["tools"] == READ_TOOLS | {"accept", "reject"}
    assert out["accepted"] == {**out["accepted"], "id": 3, "kind": "accept",
                               "agent": "Ada Lovelace"}
    assert out["refused"] == "error: 0003 is a status event, not a decision"
    assert [hit["id"] for hit in out["listed"]["results"]] == [1]
    squad(logged, "verify")


def test_reads_see_committed_records_only(logged: Path) -> None:
    squad(logged, "decide", "--title", "Waiting in the inbox", "--decision", "d",
          "--no-ingest")
    record = next((logged / "decisions").glob("*/0002-*.md"))
    record.write_text(record.read_text().replace("A token bucket", "Nothing"))

    async def work(client: Client) -> dict[str, Any]:
        return {"inbox": data(await client.call_tool("search_decisions", {"query": "inbox"})),
                "edited": data(await client.call_tool("get_decision", {"id": 2}))}

    out = talk(stdio(logged), work)
    assert out["inbox"]["results"] == []
    assert out["edited"]["decision"] == "A token bucket per key."


def start_http(repo: Path, *args: str) -> tuple[Process, str]:
    server = start(repo, "mcp", "--http", "0", *args, stderr=subprocess.PIPE, text=True,
                   imports=MCP)
    assert server.stderr is not None
    line = server.stderr.readline()
    assert line.startswith("serving MCP at http://127.0.0.1:"), line
    return server, line.split()[3]


def stop(server: Process) -> None:
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    if server.stderr is not None:
        server.stderr.close()


def test_tools_over_http(logged: Path) -> None:
    server, url = start_http(logged)
    try:
        async def work(client: Client) -> dict[str, Any]:
            return {"tools": {tool.name for tool in (await client.list_tools()).tools},
                    "new": data(await client.call_tool("propose_decision", proposal("Over HTTP"))),
                    "got": data(await client.call_tool("get_decision", {"id": 3}))}

        out = talk(url, work, name="cursor")
    finally:
        stop(server)
    assert out["tools"] == READ_TOOLS
    assert out["new"]["id"] == 3 and out["got"]["agent"] == "cursor"
    assert out["got"]["title"] == "Over HTTP"
    squad(logged, "verify")


@pytest.mark.slow
def test_ten_clients_and_a_watch_commit_every_proposal_once(logged: Path) -> None:
    """Five clients share one HTTP server, five have a stdio server each, and `squad watch`
    competes for every drop: 200 proposals, 200 commits, each title once."""
    (logged / "squad.toml").write_text("[coordinator]\nsettle_seconds = 0\n")
    git(logged, "commit", "-qam", "settle at once")
    server, url = start_http(logged)
    watch = start(logged, "watch", stderr=subprocess.DEVNULL)
    ids: list[int] = []

    async def client(target: Any, n: int) -> None:
        async with Client(target, client_info=Implementation(name=f"c{n}", version="1")) as c:
            for i in range(20):
                ids.append(data(await c.call_tool("propose_decision",
                                                  proposal(f"Client {n} decision {i}")))["id"])

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for n in range(10):
                group.start_soon(client, url if n < 5 else forked_stdio(logged), n)

    try:
        anyio.run(main)
    finally:
        stop(server)
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=30) == 0
    assert sorted(ids) == list(range(3, 203))
    titles = [r["title"] for r in json.loads(squad(logged, "log", "--json", "--all").stdout)[2:]]
    assert sorted(titles) == sorted(f"Client {n} decision {i}" for n in range(10)
                                    for i in range(20))
    assert len(squad_commits(logged)) == 202
    assert not list((logged / "decisions" / "inbox" / "new").iterdir())
    squad(logged, "verify")


@pytest.mark.parametrize(("client", "rel", "key"), [
    ("claude", ".mcp.json", "mcpServers"),
    ("vscode", ".vscode/mcp.json", "servers"),
    ("cursor", ".cursor/mcp.json", "mcpServers"),
])
def test_init_writes_each_clients_config(repo: Path, client: str, rel: str, key: str) -> None:
    out = squad(repo, "init", "--mcp", client).stdout
    assert f"created {rel}" in out
    config = json.loads((repo / rel).read_text())
    assert list(config) == [key]
    entry = config[key]["squad"]
    assert entry["type"] == "stdio" and entry["command"] == "squad"
    assert entry["args"][0] == "mcp"
    if client != "claude":  # Claude Code starts project servers in the project folder
        assert entry["args"][1:] == ["--repo", "${workspaceFolder}"]
    assert "already has the squad server" in squad(repo, "init", "--mcp", client).stdout
    assert rel not in git(repo, "ls-files")  # the user's file to review and commit


def test_init_merges_into_a_users_config_and_never_overwrites(repo: Path) -> None:
    mine = {"mcpServers": {"db": {"command": "db-mcp", "args": ["--ro"]}}, "other": 1}
    (repo / ".mcp.json").write_text(json.dumps(mine))
    squad(repo, "init", "--mcp", "claude")
    merged = json.loads((repo / ".mcp.json").read_text())
    assert merged["mcpServers"]["db"] == mine["mcpServers"]["db"] and merged["other"] == 1
    assert merged["mcpServers"]["squad"]["args"] == ["mcp"]

    (repo / ".vscode").mkdir()
    commented = '{\n  // mine\n  "servers": {}\n}\n'
    (repo / ".vscode" / "mcp.json").write_text(commented)
    failed = squad(repo, "init", "--mcp", "vscode", check=False)
    assert failed.returncode == 2 and "not plain JSON" in failed.stderr
    assert (repo / ".vscode" / "mcp.json").read_text() == commented

    (repo / ".cursor").mkdir()
    theirs = '{"mcpServers": {"squad": {"command": "other"}}}'
    (repo / ".cursor" / "mcp.json").write_text(theirs)
    failed = squad(repo, "init", "--mcp", "cursor", check=False)
    assert failed.returncode == 2 and "different server named 'squad'" in failed.stderr
    assert (repo / ".cursor" / "mcp.json").read_text() == theirs


def test_init_never_writes_through_a_symlink(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "mcp.json").write_text("{}")
    (repo / ".mcp.json").symlink_to(outside / "mcp.json")
    (repo / ".cursor").symlink_to(outside, target_is_directory=True)
    for client in ("claude", "cursor"):
        failed = squad(repo, "init", "--mcp", client, check=False)
        assert failed.returncode == 2 and "left as it is" in failed.stderr
    assert (outside / "mcp.json").read_text() == "{}"
    assert sorted(p.name for p in outside.iterdir()) == ["mcp.json"]
