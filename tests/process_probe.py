"""Run as `python -m process_probe WHAT` (or `-c` code that calls `main`): prints what a
process sees of its own start.

The fork server's test runs it both as a fresh interpreter and as a forked child and
compares the two printouts; nothing else uses it.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import stat
import sys
import tempfile
import threading
import time


def _seen() -> dict[str, object]:
    def handler(number: signal.Signals) -> str:
        current = signal.getsignal(number)
        return getattr(current, "__name__", str(current))

    return {
        "main": __name__, "argv0": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
        "main_module": [sys.modules["__main__"].__name__,
                        os.path.basename(getattr(sys.modules["__main__"], "__file__", "-"))],
        "path0": sys.path[0], "cwd": os.getcwd(), "probe": os.environ.get("PROBE"),
        "home": os.path.expanduser("~"), "tmp": tempfile.gettempdir(),
        "handlers": {s.name: handler(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE,
                                                   signal.SIGCHLD, signal.SIGHUP,
                                                   signal.SIGXFSZ)},
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "threads": threading.active_count(),
        "stdio": [stat.S_ISFIFO(os.fstat(fd).st_mode) for fd in (1, 2)],
        "line_buffered": [sys.stdout.line_buffering, sys.stderr.line_buffering],
        "encoding": [sys.stdout.encoding, sys.stderr.errors],
    }


def _later() -> None:
    time.sleep(0.2)
    print("non-daemon thread joined", flush=True)


def main(what: str) -> None:
    if what == "sleep":
        time.sleep(300)
    print(json.dumps(_seen(), sort_keys=True), flush=what == "ready")
    if what == "ready":  # waits for a signal, to show how it dies of one
        time.sleep(300)
    sys.stdout.write("unflushed at exit\n")
    print("to stderr", file=sys.stderr)
    atexit.register(print, "atexit ran")
    threading.Thread(target=_later).start()
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "crash":
        raise RuntimeError("probe crashed")
    sys.exit(int(what))


if __name__ == "__main__":
    main(sys.argv[1])
