"""Choose the backend: an endpoint from flags > environment > squad.toml, or none at all."""

from __future__ import annotations

import os
from collections.abc import Mapping

from squad.config import Config
from squad.errors import UsageError
from squad.llm.backend import Backend

NO_ENDPOINT = (
    "no LLM endpoint configured: set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one), "
    "or [llm] base_url in squad.toml")


def open_backend(config: Config, env: Mapping[str, str] | None = None) -> Backend:
    env = os.environ if env is None else env
    settings = config.with_env(env).llm
    key = env.get("OPENAI_API_KEY")
    if not settings.base_url and not key:
        raise UsageError(NO_ENDPOINT)
    from squad.llm.openai_backend import OpenAIBackend

    return OpenAIBackend(settings.base_url, key, timeout=settings.timeout,
                         max_retries=settings.max_retries)
