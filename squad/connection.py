"""Choose the backend: an endpoint from flags > environment > squad.toml, else the embedded
local model (started now, or reused if `squad local serve` keeps one up)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from squad.config import Config
from squad.errors import LLMError
from squad.llm import local
from squad.llm.backend import Backend
from squad.llm.messages import ChatReply, ChatRequest
from squad.llm.profiles import PROFILES, Profile


@dataclass
class Connection:
    backend: Backend
    profile: Profile
    label: str  # what the user is told: which backend is used
    model: str | None = None  # overrides the configured model (the local model has one name)
    server: local.LocalServer | None = field(default=None, repr=False)

    @property
    def demo(self) -> bool:
        """True when the embedded demo model answers (its output is a demonstration)."""
        return self.profile.name == "llama-cpp" and (self.model or "").startswith("local/")

    def close(self) -> None:
        try:
            self.backend.close()
        finally:
            if self.server is not None:
                self.server.stop()

    def kill_now(self) -> None:
        """For a hard quit: the server we started goes with us, without waiting."""
        if self.server is not None:
            self.server.kill()


class Offline:
    """The backend of a connection that must not reach a model (a replay: every reply comes
    from the cassette, so a call that gets here is a bug, refused in one line)."""

    def complete(self, request: ChatRequest) -> ChatReply:
        raise LLMError("no model endpoint: this command answers from a recorded cassette")

    def close(self) -> None:
        pass


def offline(profile: Profile, model: str | None, label: str) -> Connection:
    """A connection that only says how the recorded run talked to its model."""
    return Connection(Offline(), profile, label, model=model)


def connect(config: Config, env: Mapping[str, str] | None = None) -> Connection:
    """Connect as `config` says (the environment's settings already applied, see
    Workspace.open); from `env` only the API key is read, never kept in the config."""
    from squad.llm.openai_backend import OpenAIBackend

    env = os.environ if env is None else env
    settings = config.llm
    key = env.get("OPENAI_API_KEY")
    profile = PROFILES[settings.profile]
    if settings.base_url or key:
        backend = OpenAIBackend(settings.base_url, key, timeout=settings.timeout,
                                max_retries=settings.max_retries)
        return Connection(backend, profile, f"endpoint {backend.shown_url}")
    reused = local.running()
    server = None if reused else local.start()
    base_url = reused or (server.base_url if server else "")
    try:
        backend = OpenAIBackend(base_url, None, timeout=max(settings.timeout, 600),
                                max_retries=settings.max_retries)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    how = "reusing the server of `squad local serve`" if reused else "started for this command"
    return Connection(backend, PROFILES["llama-cpp"],
                      f"embedded local model {local.MODEL_NAME} at {base_url} ({how})",
                      model=f"local/{local.MODEL_NAME}", server=server)
