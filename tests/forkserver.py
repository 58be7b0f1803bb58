"""A fork server for the tests: `squad` commands without paying interpreter start and imports.

Most of the suite's time went into starting `python -m squad` hundreds of times, each start
importing pydantic, GitPython, jinja2, rich and the rest again. One server per test process has
imported them once; each command is a fork of it that sets up what a fresh `python -m squad`
would have (argv, cwd, environment, the caller's stdin/stdout/stderr, default signal handling),
runs squad's real entry point as `__main__` and leaves through normal interpreter shutdown
(atexit handlers, non-daemon threads joined, buffers flushed). So each command is still its own
process running squad's real code; only what every start would repeat is shared.

The server is single-threaded (forking a threaded process is unsafe), waits for every child it
forks (their CPU time stays accounted to the test run), and exits, killing what it still runs,
as soon as its client's end of the socket closes: at the end of the session, on Ctrl-C, or when
the test process dies.

Besides `run` (what `subprocess.run` returns), the client starts a child as `subprocess.Popen`
would (`popen`: pid, poll, wait, signals, pipes), and `command_dir` writes a `squad` for a
shell's PATH that asks the server, through a socket in a private temp folder, for a child of
its own: so signalled, concurrent and scripted commands skip interpreter start too.

Run as a script, this file is the server; imported, `ForkServer` is the client.
"""

from __future__ import annotations

import contextlib
import json
import locale
import os
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

# ---- the wire: a length-prefixed JSON message, possibly carrying file descriptors ----------

_HEADER = struct.Struct("!I")


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    data = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def _receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the descriptors that came with it; (None, []) at end of stream."""
    fds: list[int] = []
    data = b""
    size = _HEADER.size
    while len(data) < size:
        chunk, more, _flags, _addr = socket.recv_fds(sock, size - len(data), 8)
        fds += more
        if not chunk:
            for fd in fds:
                os.close(fd)
            return None, []
        data += chunk
        if size == _HEADER.size and len(data) == size:
            size += _HEADER.unpack(data)[0]
    return json.loads(data[_HEADER.size:]), fds


# ---- the server ----------------------------------------------------------------------------

@dataclass
class _Child:
    pid: int
    pidfd: int
    reply: socket.socket


def _preload() -> None:
    """Import what commands import, so that no child pays for it again.

    Only imports: nothing here may read the environment, the working directory or start a
    thread (the module-level state a child inherits must be what a fresh process would build).
    `mcp_server` stays out: the MCP SDK is an optional extra and `squad mcp` runs as a real
    process in its tests.
    """
    import importlib
    import pkgutil

    import squad

    for info in pkgutil.walk_packages(squad.__path__, "squad."):
        if info.name not in {"squad.__main__", "squad.mcp_server"}:
            importlib.import_module(info.name)
    for name in ("openai", "rich.console", "rich.live", "rich.table", "rich.markdown",
                 "rich.progress", "jinja2", "yaml", "git", "click", "pydantic",
                 "watchdog.observers"):
        importlib.import_module(name)
    # what the OpenAI client imports when it is made and first used (names vary by version)
    for name in ("openai.resources.chat", "openai.lib.streaming.chat", "openai.pagination",
                 "h11", "httpcore2", "httpcore", "anyio.streams.tls", "jiter", "truststore"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _import(names: list[str]) -> None:
    """Modules a request asks for that no child should import again (the MCP SDK, say: an
    optional extra, so not preloaded for everyone); one the server cannot import is left for
    the child to fail on, as a fresh process would."""
    import gc
    import importlib

    missing = [name for name in names if name not in sys.modules]
    for name in missing:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if missing:
        assert threading.active_count() == 1, f"importing {missing} started a thread"
        gc.freeze()


def serve(control: socket.socket, listener: socket.socket | None = None
          ) -> dict[str, Any] | None:
    """Fork a child per request until the control socket closes. Returns, in a child only,
    the request that child is to run; the server itself returns None. `listener` takes
    requests from commands started elsewhere (the `squad` of `command_dir`), each on its own
    connection, which then carries that child's pid, signals and status."""

    server = os.getpid()
    assert threading.active_count() == 1, "the fork server must stay single-threaded"
    children: dict[int, _Child] = {}  # by pidfd
    chooser = selectors.DefaultSelector()
    chooser.register(control, selectors.EVENT_READ, "control")
    if listener is not None:
        chooser.register(listener, selectors.EVENT_READ, "listener")
    try:
        while True:
            for key, _ in chooser.select():
                if key.fd not in chooser.get_map():
                    continue  # unregistered by an earlier event of this batch
                if key.data in ("control", "listener"):
                    if key.data == "control":
                        request, fds = _receive(control)
                        if request is None:
                            return None
                        *stdio, reply_fd = fds
                        reply = socket.socket(fileno=reply_fd)
                    else:
                        assert listener is not None
                        reply, _ = listener.accept()
                        reply.settimeout(10)  # the command sends its request at once
                        try:
                            request, stdio = _receive(reply)
                        except OSError:
                            request, stdio = None, []
                        reply.settimeout(None)
                        if request is None or len(stdio) != 3:
                            for fd in stdio:
                                os.close(fd)
                            reply.close()
                            continue
                    _import(request.get("imports", []))
                    pid = os.fork()
                    if pid == 0:
                        chooser.close()
                        control.close()
                        if listener is not None:
                            listener.close()
                        reply.close()
                        for child in children.values():
                            os.close(child.pidfd)
                            child.reply.close()
                        for number, fd in enumerate(stdio):
                            os.dup2(fd, number)  # inheritable, as a fresh process's stdio is
                            os.close(fd)
                        return request
                    for fd in stdio:
                        os.close(fd)
                    child = _Child(pid, os.pidfd_open(pid), reply)
                    children[child.pidfd] = child
                    chooser.register(child.pidfd, selectors.EVENT_READ, "exit")
                    chooser.register(reply, selectors.EVENT_READ, child)
                    _send(reply, {"pid": pid})
                elif key.data == "exit":
                    child = children.pop(key.fd)
                    chooser.unregister(child.pidfd)
                    if child.reply.fileno() in chooser.get_map():
                        chooser.unregister(child.reply)
                    _, status = os.waitpid(child.pid, 0)
                    os.close(child.pidfd)
                    with contextlib.suppress(OSError):  # the client may have gone
                        _send(child.reply, {"status": status})
                    child.reply.close()
                else:  # the client asks for a signal or hangs up (gave up: a timeout, Ctrl-C)
                    child = key.data
                    asked, _ = _receive(child.reply)
                    if asked is None:
                        chooser.unregister(child.reply)
                    with contextlib.suppress(ProcessLookupError):  # it has just exited
                        signal.pidfd_send_signal(
                            child.pidfd, signal.SIGKILL if asked is None else asked["signal"])
    finally:
        if os.getpid() == server:
            for child in children.values():
                signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
                os.waitpid(child.pid, 0)
                os.close(child.pidfd)
                child.reply.close()


def _become(request: dict[str, Any]) -> None:
    """In the child: be what `python -m squad ARGS` started in `cwd` with `env` would be."""
    import runpy
    import tempfile

    from squad.shutdown import exit_status  # what the interpreter makes of a SystemExit

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # found again from this environment, on first use
    try:
        if "code" in request:
            _run_code(request["code"], request["args"])
        else:
            sys.path[0] = os.getcwd()  # `-m` puts the working directory first
            sys.argv = ["-m", *request["args"]]  # runpy sets argv[0] to the module's file
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exit_status(exc)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        _shut_down()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # dies of it, as the interpreter does
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    os._exit(_shut_down() or code)


def _run_code(code: str, args: list[str]) -> None:
    """`python -c CODE ARGS`: the code runs as a new `__main__`, '' first on the path."""
    import builtins
    import types

    sys.path[0] = ""
    sys.argv = ["-c", *args]
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    exec(compile(code, "<string>", "exec"), main.__dict__)


def _shut_down() -> int:
    """What interpreter shutdown does that anyone can see: join non-daemon threads, run the
    atexit handlers (coverage saves its data there), flush stdout and stderr (a failed flush
    makes exit status 120). Tearing down the modules the server imported is skipped: it
    touches every page the fork shares and costs more than the command, to no one's eyes."""
    import atexit

    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    failed = 0
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            failed = 120
    return failed


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    listener = socket.socket(fileno=int(sys.argv[2]))
    _preload()
    import gc

    gc.freeze()  # what the server built stays out of the children's collections
    request = serve(control, listener)
    if request is not None:
        _become(request)
    else:  # the client is gone, however it ended: the socket's folder goes with the server
        shutil.rmtree(sys.argv[3], ignore_errors=True)


# ---- the client ----------------------------------------------------------------------------

Stdio = int | IO[Any] | None  # what Popen's stdin, stdout and stderr take

class ServerGone(RuntimeError):
    """The server ended (closed, or killed) while a command was running."""


@dataclass
class ForkServer:
    """The client side: one server process, started on first use, per test process."""

    process: subprocess.Popen[bytes] | None = None
    control: socket.socket | None = None
    environment: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    sending: threading.Lock = field(default_factory=threading.Lock)
    folder: str | None = None  # the listening socket and the command folders

    def _started(self) -> socket.socket:
        if self.control is None:
            ours, theirs = socket.socketpair()
            self.environment = dict(os.environ)  # what the server's interpreter started with
            self.folder = tempfile.mkdtemp(prefix="forkserver-")  # private: mode 0700
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
                listener.bind(os.path.join(self.folder, "socket"))
                listener.listen(16)
                passed = [theirs.fileno(), listener.fileno()]
                self.process = subprocess.Popen(
                    [sys.executable, __file__, *map(str, passed), self.folder], pass_fds=passed,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            theirs.close()
            self.control = ours
        return self.control

    def close(self) -> None:
        """End the server (it kills what it still runs) and wait for it."""
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.process is not None:
            self.process.wait()
            self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def command_dir(self, module: str, name: str, same_start: tuple[str, ...]) -> str:
        """A folder holding `name`, an executable that runs `python -m module ARGS` as a child
        of this server (a small interpreter without site-packages asks for it), for what
        finds its commands on PATH (a workflow's shell steps). It starts the real thing
        instead if the server is gone or its environment differs in the variables starting
        with `same_start` (read as an interpreter starts)."""
        self._started()
        assert self.folder is not None
        where = os.path.join(self.folder, f"bin-{module}")
        os.makedirs(where, exist_ok=True)
        path = os.path.join(where, name)
        if not os.path.exists(path):
            settings = {"address": os.path.join(self.folder, "socket"), "module": module,
                        "python": sys.executable, "same_start": list(same_start),
                        "start": {k: v for k, v in self.environment.items()
                                  if k.startswith(same_start)}}
            with open(path, "w") as script:
                script.write(f"#!{sys.executable} -IS\n" + _COMMAND.replace(
                    "SETTINGS = {}", f"SETTINGS = {json.dumps(settings)}"))
            os.chmod(path, 0o755)
        return where

    def run(self, args: list[str], cwd: str, env: dict[str, str], stdin: int = 0,
            timeout: float | None = None, module: str = "squad",
            ) -> subprocess.CompletedProcess[str]:
        """What `subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=timeout)` returns or raises, from a forked
        child; `stdin` is the descriptor it reads (by default this process's own, as a
        subprocess inherits it)."""
        control = self._started()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ours, theirs = socket.socketpair()
        try:
            with self.sending:
                _send(control, {"module": module, "args": args, "cwd": cwd, "env": env},
                      [stdin, out_w, err_w, theirs.fileno()])
        finally:
            for fd in (out_w, err_w):
                os.close(fd)
            theirs.close()
        command = [sys.executable, "-m", module, *args]
        output = {out_r: bytearray(), err_r: bytearray()}
        try:
            hello, _ = _receive(ours)
            if hello is None:
                raise ServerGone("the fork server went away")
            status = self._collect(ours, output, timeout, command)
        except BaseException:
            with ours:  # hanging up tells the server to kill the child; then wait for it
                ours.settimeout(None)
                ours.shutdown(socket.SHUT_WR)
                _receive(ours)
            raise
        finally:
            for fd in output:
                os.close(fd)
        ours.close()
        stdout, stderr = (_text(bytes(output[fd])) for fd in (out_r, err_r))
        return subprocess.CompletedProcess(command, os.waitstatus_to_exitcode(status),
                                           stdout, stderr)

    def popen(self, args: list[str], cwd: str, env: dict[str, str], *, module: str = "squad",
              code: str | None = None, stdin: Stdio = None, stdout: Stdio = None,
              stderr: Stdio = None, text: bool = False, imports: tuple[str, ...] = ()
              ) -> Forked:
        """What `subprocess.Popen([sys.executable, "-m", module, *args], ...)` starts (or, given
        `code`, `[sys.executable, "-c", code, *args]`), as a forked child: a handle with Popen's
        pid, poll, wait, send_signal, terminate, kill, communicate and pipes. The streams take
        what Popen's do: None (inherited), PIPE, DEVNULL, STDOUT (stderr only), a descriptor
        or a file. `imports` are modules the server imports first, once for all children."""
        control = self._started()
        theirs: list[int] = []  # the child's ends of pipes and /dev/null, closed once sent
        mine: list[int | None] = [None, None, None]
        fds: list[int] = []
        for number, spec in enumerate((stdin, stdout, stderr)):
            if spec == subprocess.STDOUT and number == 2:
                fd = fds[1]
            elif spec is None:
                fd = number
            elif spec == subprocess.DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR)
                theirs.append(fd)
            elif spec == subprocess.PIPE:
                read, write = os.pipe()
                fd, mine[number] = (read, write) if number == 0 else (write, read)
                theirs.append(fd)
            elif isinstance(spec, int):
                fd = spec
            else:
                fd = spec.fileno()
            fds.append(fd)
        ours, reply = socket.socketpair()
        request: dict[str, Any] = {"module": module, "args": args, "cwd": cwd, "env": env,
                                   "imports": list(imports)}
        if code is not None:
            request["code"] = code
        try:
            with self.sending:
                _send(control, request, [*fds, reply.fileno()])
        finally:
            for fd in theirs:
                os.close(fd)
            reply.close()
        streams = [None if fd is None else open(  # noqa: SIM115  (the handle closes them)
            fd, ("w" if number == 0 else "r") + ("" if text else "b"),
            encoding=locale.getpreferredencoding(False) if text else None)
            for number, fd in enumerate(mine)]
        hello, _ = _receive(ours)
        if hello is None:
            ours.close()
            for stream in streams:
                if stream is not None:
                    stream.close()
            raise ServerGone("the fork server went away")
        command = [sys.executable, *(["-c", code] if code is not None else ["-m", module]),
                   *args]
        return Forked(command, int(hello["pid"]), ours, *streams)

    def _collect(self, reply: socket.socket, output: dict[int, bytearray], timeout: float | None,
                 command: list[str]) -> int:
        """Read both pipes to their end and then the exit status, as `communicate` does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        chooser = selectors.DefaultSelector()
        for fd in output:
            chooser.register(fd, selectors.EVENT_READ)
        with chooser:
            while chooser.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(command, timeout or 0)
                for key, _ in chooser.select(left):
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        output[key.fd] += chunk
                    else:
                        chooser.unregister(key.fd)
        reply.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.001))
        try:
            done, _ = _receive(reply)
        except TimeoutError:
            raise subprocess.TimeoutExpired(command, timeout or 0) from None
        if done is None:
            raise ServerGone("the fork server went away")
        return int(done["status"])


class Forked:
    """A forked child as `subprocess.Popen` shows one: the server reaps it and sends its
    status here; signals go through the server (to the child's pidfd, never a reused pid);
    dropping the handle unwaited makes the server kill the child."""

    def __init__(self, args: list[str], pid: int, reply: socket.socket, stdin: IO[Any] | None,
                 stdout: IO[Any] | None, stderr: IO[Any] | None) -> None:
        self.args, self.pid, self._reply = args, pid, reply
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._reply], [], [], 0)[0]:
            self._status()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._reply.settimeout(timeout)
            try:
                self._status()
            except TimeoutError:
                self._reply.settimeout(None)
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
        assert self.returncode is not None
        return self.returncode

    def _status(self) -> None:
        done, _ = _receive(self._reply)
        self._reply.close()
        if done is None:
            raise ServerGone("the fork server went away")
        self.returncode = os.waitstatus_to_exitcode(done["status"])

    def send_signal(self, number: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(OSError):  # the server has just reaped it
                _send(self._reply, {"signal": int(number)})

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, input: Any = None, timeout: float | None = None
                    ) -> tuple[Any, Any]:
        """Write `input`, read both pipes to their end, then wait, as Popen's does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                if input:
                    self.stdin.write(input)
                self.stdin.close()
        read: dict[int, Any] = {}
        readers = [threading.Thread(target=lambda n=n, s=s: read.__setitem__(n, s.read()),
                                    daemon=True)
                   for n, s in ((1, self.stdout), (2, self.stderr)) if s is not None]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(None if deadline is None else max(deadline - time.monotonic(), 0))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        self.wait(None if deadline is None else max(deadline - time.monotonic(), 0.001))
        return read.get(1), read.get(2)

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        self.wait()

    def __del__(self) -> None:
        self._reply.close()


# The command `command_dir` writes: forwards its argv, cwd, environment and stdio to the
# server, SIGINT, SIGTERM and SIGHUP to the child, and ends as the child ended.
_COMMAND = r'''
import json, os, signal, socket, struct, sys

SETTINGS = {}


def fresh():
    python = SETTINGS["python"]
    os.execv(python, [python, "-m", SETTINGS["module"], *sys.argv[1:]])


def receive(sock):
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack("!I", data[:4])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    return json.loads(data[4:])


prefixes = tuple(SETTINGS["same_start"])
if {k: v for k, v in os.environ.items() if k.startswith(prefixes)} != SETTINGS["start"]:
    fresh()
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(SETTINGS["address"])
except OSError:
    fresh()
request = json.dumps({"module": SETTINGS["module"], "args": sys.argv[1:], "cwd": os.getcwd(),
                      "env": dict(os.environ)}).encode()
socket.send_fds(sock, [struct.pack("!I", len(request)) + request], [0, 1, 2])
if receive(sock) is None:
    sys.exit("the fork server went away")


def forward(number, frame):
    request = json.dumps({"signal": number}).encode()
    try:
        sock.sendall(struct.pack("!I", len(request)) + request)
    except OSError:
        pass  # the child has just ended


for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(number, forward)
done = receive(sock)
if done is None:
    sys.exit("the fork server went away")
code = os.waitstatus_to_exitcode(done["status"])
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
'''


def _text(data: bytes) -> str:
    """Decoded as `subprocess.run(text=True)` decodes: locale encoding, universal newlines."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n") \
        .replace("\r", "\n")


if __name__ == "__main__":
    main()
