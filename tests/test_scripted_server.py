"""Exercise tests/scripted_server.py through the real ``openai`` client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import openai
import pytest
from scripted_server import (
    NO_REPLY,
    Error,
    RecordedRequest,
    Reply,
    ScriptedServer,
    Text,
    ToolCalls,
)

MODEL = "gpt-test"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}}}}]


@pytest.fixture
def srv() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


def client_for(srv: ScriptedServer, **kw: object) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=srv.base_url, api_key="sk-test", **kw)  # type: ignore[arg-type]


def chat(srv: ScriptedServer, **kw: object) -> openai.types.chat.ChatCompletion:
    with client_for(srv) as client:
        return client.chat.completions.create(model=MODEL, messages=MESSAGES, **kw)  # type: ignore


def test_text_reply_and_usage(srv: ScriptedServer) -> None:
    srv.enqueue(Text("hello there"), Text("explicit", prompt_tokens=7, completion_tokens=3,
                                          cached_tokens=2))
    resp = chat(srv)
    assert resp.id == "chatcmpl-scripted-1"
    assert resp.created == 1_700_000_000 and resp.model == MODEL
    choice = resp.choices[0]
    assert choice.message.content == "hello there" and choice.message.role == "assistant"
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == -(-len(json.dumps(MESSAGES)) // 4)
    assert resp.usage.completion_tokens == 3  # ceil(11 / 4)
    assert resp.usage.prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]

    usage = chat(srv).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 3, 10)
    assert usage.prompt_tokens_details.cached_tokens == 2  # type: ignore[union-attr]
    assert srv.pending == 0


def test_tool_calls_parsed(srv: ScriptedServer) -> None:
    srv.enqueue(ToolCalls([("read_file", {"path": "a.py"}), ("list_dir", {"path": "."})],
                          content="let me look"))
    srv.enqueue(ToolCalls([("read_file", {"path": "b.py"})]))
    resp = chat(srv, tools=TOOLS)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "let me look"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_1", "read_file", {"path": "a.py"}), ("call_2", "list_dir", {"path": "."})]
    # ids keep counting across responses
    calls = chat(srv, tools=TOOLS).choices[0].message.tool_calls or []
    assert [c.id for c in calls] == ["call_3"]
    assert srv.requests[0].tools == TOOLS


def test_malformed_arguments_arrive_verbatim(srv: ScriptedServer) -> None:
    bad = '{"path": "a.py",,'
    srv.enqueue(ToolCalls([("read_file", bad)]))
    calls = chat(srv, tools=TOOLS).choices[0].message.tool_calls or []
    assert calls[0].function.arguments == bad


def test_rate_limit_without_retries(srv: ScriptedServer) -> None:
    srv.enqueue(Error(429, "slow down", retry_after=0.01))
    with pytest.raises(openai.RateLimitError) as info:
        chat(srv)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "0.01"
    assert "slow down" in info.value.message
    assert info.value.code == "rate_limit_exceeded"


def test_rate_limit_then_success_with_retries(srv: ScriptedServer) -> None:
    srv.enqueue(Error(429, retry_after=0.01), Text("finally"))
    with client_for(srv, max_retries=2) as client:
        resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore
    assert resp.choices[0].message.content == "finally"
    assert len(srv.requests) == 2


@pytest.mark.parametrize(("status", "exc"), [
    (500, openai.InternalServerError), (503, openai.InternalServerError),
    (400, openai.BadRequestError), (401, openai.AuthenticationError),
])
def test_error_statuses(srv: ScriptedServer, status: int, exc: type[Exception]) -> None:
    srv.enqueue(Error(status, "boom"))
    with pytest.raises(exc) as info:
        chat(srv)
    assert info.value.status_code == status  # type: ignore[attr-defined]
    assert "boom" in str(info.value)


def test_delay_triggers_client_timeout(srv: ScriptedServer) -> None:
    srv.enqueue(Text("late", delay=5.0))
    start = time.monotonic()
    with client_for(srv, timeout=0.1) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore
    assert time.monotonic() - start < 2
    start = time.monotonic()
    srv.stop()  # interrupts the pending sleep
    srv.stop()  # idempotent
    assert time.monotonic() - start < 1


def test_client_disconnect_mid_response_is_silent(
    srv: ScriptedServer, capfd: pytest.CaptureFixture[str]
) -> None:
    srv.enqueue(Text("x" * 20_000, delay=0.15), Text("still alive"))
    with client_for(srv, timeout=0.05) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore
    time.sleep(0.25)  # the handler wakes up and writes into the closed socket
    assert chat(srv).choices[0].message.content == "still alive"
    srv.stop()
    assert capfd.readouterr().err == ""


def _handler_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.endswith("(process_request_thread)")}


def test_stop_releases_idle_and_sleeping_handlers(srv: ScriptedServer) -> None:
    before = _handler_threads()
    srv.enqueue(Text("warm-up"), Text("late", delay=5.0))
    with client_for(srv) as idle:  # leaves an idle keep-alive connection in its pool
        warm = idle.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore
        assert warm.choices[0].message.content == "warm-up"
        with client_for(srv, timeout=0.1) as hung, pytest.raises(openai.APITimeoutError):
            hung.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore
        assert len(_handler_threads() - before) == 2
        srv.stop()
        deadline = time.monotonic() + 1
        while _handler_threads() - before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _handler_threads() - before


def test_requests_recorded(srv: ScriptedServer) -> None:
    srv.enqueue(Text("a"), Text("b"))
    chat(srv)
    chat(srv, temperature=0.5)
    reqs = srv.requests
    assert [r.path for r in reqs] == ["/v1/chat/completions"] * 2
    assert reqs[0].messages == MESSAGES and reqs[0].model == MODEL
    assert reqs[0].system == "You are terse." and reqs[0].tools == []
    assert reqs[1].body["temperature"] == 0.5
    assert reqs[0].headers["authorization"] == "Bearer sk-test"
    assert reqs[0].headers["content-type"] == "application/json"
    srv.clear()
    assert srv.requests == []


def test_responder_used_when_queue_empty(srv: ScriptedServer) -> None:
    def responder(req: RecordedRequest) -> Reply:
        return Text(f"role:{req.system}")

    srv.responder = responder
    srv.enqueue(Text("queued first"))
    assert chat(srv).choices[0].message.content == "queued first"  # queue wins

    def ask(system: str, out: dict[str, str]) -> None:
        with client_for(srv) as client:
            resp = client.chat.completions.create(
                model=MODEL, messages=[{"role": "system", "content": system}])
            out[system] = resp.choices[0].message.content or ""

    results: dict[str, str] = {}
    threads = [threading.Thread(target=ask, args=(f"agent{i}", results)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == {f"agent{i}": f"role:agent{i}" for i in range(6)}
    assert len(srv.requests) == 7


def test_responder_exception_is_loud(srv: ScriptedServer) -> None:
    def responder(req: RecordedRequest) -> Reply:
        raise KeyError("unexpected prompt")

    srv.responder = responder
    with pytest.raises(openai.InternalServerError, match="unexpected prompt"):
        chat(srv)


def test_empty_queue_is_an_error(srv: ScriptedServer) -> None:
    with pytest.raises(openai.InternalServerError, match=NO_REPLY):
        chat(srv)


def test_keep_alive_reuses_connection(srv: ScriptedServer) -> None:
    srv.enqueue(*(Text(str(i)) for i in range(5)))
    with client_for(srv) as client:
        for i in range(5):
            resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore
            assert resp.choices[0].message.content == str(i)
        assert len(srv._conns) == 1  # one pooled connection served all five


def test_stop_before_start_and_base_url() -> None:
    server = ScriptedServer()
    server.stop()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    assert server.start() is server
    try:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1" and server.port > 0
    finally:
        server.stop()
