"""A real, scripted OpenAI chat-completions server for tests.

Why: mocking the ``openai`` client hides what we need to test (retries, timeouts, SSE
parsing, error mapping), so tests drive the *real* client over a real 127.0.0.1 socket.
Replies come from a FIFO queue (``enqueue``), else a ``responder`` callable (for parallel
agents whose request order is not deterministic). It serves what squad asks of an endpoint:
non-streamed chat completions (text or tool calls, with usage), error statuses, and delays
that run into the client's timeout; nothing squad never sends (streaming, say) is faked here.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import socket
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["NO_REPLY", "Error", "RecordedRequest", "Reply", "ScriptedServer", "Text",
           "ToolCalls"]

CREATED = 1_700_000_000  # fixed so responses are deterministic
DEFAULT_MODEL = "scripted-model"
NO_REPLY = "scripted server: no reply queued"
_ERROR_CODES = {401: "invalid_api_key", 404: "not_found", 429: "rate_limit_exceeded"}


@dataclass(frozen=True, kw_only=True)
class _Completion:
    """Usage overrides (``None`` = deterministic estimate) and a pre-reply delay."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    delay: float = 0.0


@dataclass(frozen=True)
class Text(_Completion):
    content: str


@dataclass(frozen=True)
class ToolCalls(_Completion):
    """``calls``: (name, arguments); ``str`` arguments are sent verbatim, dicts as JSON."""

    calls: Sequence[tuple[str, dict[str, Any] | str]]
    _: KW_ONLY
    content: str | None = None


@dataclass(frozen=True)
class Error:
    status: int
    message: str = "scripted error"
    _: KW_ONLY
    retry_after: float | None = None
    delay: float = 0.0


Reply = Text | ToolCalls | Error


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)
    method: str = "POST"

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages") or []

    @property
    def model(self) -> str | None:
        return self.body.get("model")

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.body.get("tools") or []

    @property
    def system(self) -> str | None:
        """Content of the first system message, handy for responders."""
        return next((m.get("content") for m in self.messages if m.get("role") == "system"), None)


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    kind = "rate_limit_error" if status == 429 else kind
    return {"error": {"message": message, "type": kind, "param": None,
                      "code": _ERROR_CODES.get(status)}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        owner = self.server.owner
        with owner._lock:
            owner._conns.add(self.connection)
        try:
            super().handle()
        except ConnectionError:
            pass  # client went away mid-response
        finally:
            with owner._lock:
                owner._conns.discard(self.connection)

    def do_GET(self) -> None:
        req = self._record({})
        self._json(404, _error_body(404, f"scripted server: unknown path {req.path}"))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        req = self._record(body if isinstance(body, dict) else {})
        if req.path != "/v1/chat/completions":
            return self._json(404, _error_body(404, f"scripted server: unknown path {req.path}"))
        if not isinstance(body, dict):
            return self._json(400, _error_body(400, "scripted server: body is not a JSON object"))
        reply = self.server.owner._next_reply(req)
        if reply.delay > 0 and self.server.owner._stopping.wait(reply.delay):
            self.close_connection = True  # server is stopping: drop the request
            return None
        if isinstance(reply, Error):
            extra = {} if reply.retry_after is None else {"Retry-After": f"{reply.retry_after:g}"}
            return self._json(reply.status, _error_body(reply.status, reply.message), extra)
        if body.get("stream"):
            return self._json(400, _error_body(400, "scripted server: streaming is not served"))
        return self._json(200, self.server.owner._completion(req, reply))

    def _record(self, body: dict[str, Any]) -> RecordedRequest:
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = RecordedRequest(self.path.split("?", 1)[0], headers, body, self.command)
        with self.server.owner._lock:
            self.server.owner._requests.append(req)
        return req

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self._head(status, {"Content-Type": "application/json", "Content-Length": str(len(data)),
                            **(headers or {})})
        self.wfile.write(data)

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many agents connect at once: with the default listen backlog of 5, a loaded machine
    # resets some of those connections before the server accepts them.
    request_queue_size = 128
    block_on_close = False
    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self.owner._stopping.is_set():
            super().handle_error(request, client_address)


class ScriptedServer:
    """Scripted OpenAI-compatible server on a daemon thread; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.responder: Callable[[RecordedRequest], Reply] | None = None
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._ids = {"completion": itertools.count(1), "call": itertools.count(1)}
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None

    def start(self) -> ScriptedServer:
        if self._httpd is None:
            self._httpd = _HTTPServer((self.host, self.port), _Handler)
            self._httpd.owner = self
            self.port = self._httpd.server_address[1]
            threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                             name=f"scripted-server-{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is None or self._stopping.is_set():
            return
        self._stopping.set()  # wakes handlers sleeping on a delay
        self._httpd.shutdown()  # returns once serve_forever has exited
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # wake handlers blocked on keep-alive reads
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("ScriptedServer not started")
        return f"http://{self.host}:{self.port}/v1"

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:  # queued replies not yet consumed
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget recorded requests (queued replies are kept)."""
        with self._lock:
            self._requests.clear()

    def _next_reply(self, req: RecordedRequest) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.responder is None:
            return Error(500, NO_REPLY)
        try:
            return self.responder(req) or Error(500, NO_REPLY)
        except Exception as exc:
            return Error(500, f"scripted server: responder raised {exc!r}")

    def _completion(self, req: RecordedRequest, reply: Text | ToolCalls) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        finish, args_text = "stop", ""
        if isinstance(reply, ToolCalls):
            calls = []
            for name, args in reply.calls:
                arguments = args if isinstance(args, str) else json.dumps(args)
                args_text += arguments
                calls.append({"id": f"call_{next(self._ids['call'])}", "type": "function",
                              "function": {"name": name, "arguments": arguments}})
            message["tool_calls"], finish = calls, "tool_calls"
        prompt, completion = reply.prompt_tokens, reply.completion_tokens
        if prompt is None:
            prompt = math.ceil(len(json.dumps(req.messages)) / 4)
        if completion is None:
            completion = math.ceil(len((reply.content or "") + args_text) / 4)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                 "total_tokens": prompt + completion,
                 "prompt_tokens_details": {"cached_tokens": reply.cached_tokens}}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return {"id": f"chatcmpl-scripted-{next(self._ids['completion'])}",
                "object": "chat.completion", "created": CREATED,
                "model": req.model or DEFAULT_MODEL, "choices": [choice], "usage": usage}
