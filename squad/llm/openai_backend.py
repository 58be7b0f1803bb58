"""The only module that imports `openai`: any OpenAI-compatible chat-completions endpoint.

Retries of 429, 5xx, timeouts and dropped connections are the client's own (exponential
backoff honouring Retry-After), capped by `max_retries`. Whatever still fails becomes an
LLMError whose message names the endpoint and the fault, never the key nor the URL's
credentials (see `squad.secrets`); every reply passes `guard.guard_reply`.
"""

from __future__ import annotations

import openai
from openai.types.chat import ChatCompletion

from squad import secrets
from squad.errors import LLMError
from squad.llm.guard import guard_reply
from squad.llm.messages import ChatReply, ChatRequest, ToolCall, Usage


def warm_up() -> None:
    """Build and drop a plain-HTTP client: what a client's construction imports only then
    (the HTTP transport's connection pool, a tenth of a second) is imported by whoever
    calls this first, so a command can do it in a thread beside its git work."""
    openai.DefaultHttpxClient(verify=False).close()


class OpenAIBackend:
    def __init__(self, base_url: str | None, api_key: str | None, *, timeout: float,
                 max_retries: int) -> None:
        self.base_url = base_url or "https://api.openai.com/v1"
        secrets.register(api_key)
        secrets.register_url(self.base_url)
        self.shown_url = secrets.shown_url(self.base_url)
        # A plain-HTTP endpoint (the local model, a proxy on loopback) never uses TLS, so
        # the client skips loading the CA bundle, about 55 ms of every command's start.
        plain = self.base_url.lower().startswith("http://")
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key or "unused", timeout=timeout,
            max_retries=max_retries,
            http_client=openai.DefaultHttpxClient(verify=False) if plain else None)

    def close(self) -> None:
        self._client.close()

    def complete(self, request: ChatRequest) -> ChatReply:
        try:
            return guard_reply(self._complete(request))
        except LLMError as exc:
            raise LLMError(secrets.redact(exc.message)) from None

    def _complete(self, request: ChatRequest) -> ChatReply:
        try:
            # The body is already plain JSON (`ChatRequest.to_openai`), so it goes through the
            # client's own `post` (retries, timeouts, auth and errors as for `create`), not
            # `create`, whose walk of the body against the SDK's parameter types costs more
            # CPU per call than the rest of squad's per-call work together.
            response = self._client.post("/chat/completions", cast_to=ChatCompletion,
                                         body=request.to_openai(),
                                         options={"security": {"bearer_auth": True}})
        except openai.APITimeoutError:
            raise LLMError(f"{self.shown_url}: no reply within {self._client.timeout} s "
                           f"(after {self._client.max_retries} retries)") from None
        except openai.APIStatusError as exc:
            raise LLMError(f"{self.shown_url}: HTTP {exc.status_code}: {_message(exc)}") from None
        except openai.APIConnectionError:
            raise LLMError(f"{self.shown_url}: cannot connect") from None
        except openai.OpenAIError as exc:
            raise LLMError(f"{self.shown_url}: {type(exc).__name__}: {exc}") from None
        if not response.choices:
            raise LLMError(f"{self.shown_url}: the reply has no choices")
        choice = response.choices[0]
        calls = tuple(
            ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments or "")
            for call in (choice.message.tool_calls or []) if call.type == "function")
        usage = response.usage
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        return ChatReply(
            content=choice.message.content, tool_calls=calls,
            finish_reason=choice.finish_reason, model=response.model or request.model,
            usage=Usage(prompt_tokens=usage.prompt_tokens if usage else 0,
                        completion_tokens=usage.completion_tokens if usage else 0,
                        cached_tokens=(details.cached_tokens or 0) if details else 0))


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return " ".join(str(inner["message"]).split())[:300]
    return " ".join(str(exc.message).split())[:300]
