"""How the `squad` command leaves: what interpreter shutdown does that anyone can see, then
the exit itself, without tearing down every module and object one by one.

A command that imported the openai client, pydantic and git holds a few hundred thousand
objects; the interpreter's own shutdown frees them all, module by module (a bare openai
script spends about a quarter of a second there; squad, whose start froze its imports out of
the collector's sight, about 20 ms of the 40 ms from a run's summary to its exit), time
nobody can observe: the kernel takes the memory back at once. What can be observed is done
here, in the interpreter's order:

- non-daemon threads are joined (the interpreter waits for them too);
- atexit handlers run (a model server squad started is stopped there; coverage saves);
- stdout and stderr are flushed; a failed flush makes the exit status 120, as Python's.

Everything else a command opens is closed by the command itself before it returns (the
run log and the cassette, the repository's kept git processes through `Context`'s close,
temp folders in `finally` blocks), so nothing is left for object finalizers. The tests'
fork server ends every command this way, so the suite checks it on every command it runs.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def run(main: Callable[[], object]) -> NoReturn:
    """Run `main` (a click command in standalone mode), then leave with its status. An
    exception other than SystemExit (a KeyboardInterrupt before the command's own handling)
    takes the interpreter's ordinary way out, traceback and all."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exit_status(exc)
    leave(code)


def exit_status(exc: SystemExit) -> int:
    """The exit status the interpreter makes of a SystemExit (a message goes to stderr)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def leave(code: int) -> NoReturn:
    """Join non-daemon threads, run atexit handlers, flush stdout and stderr, and exit.
    Under a profiler (`python -m cProfile -m squad ...`) the ordinary exit is taken, so the
    profiler's own code after the program still runs and writes its report."""
    if sys.getprofile() is not None:
        sys.exit(code)
    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            code = 120  # as the interpreter: a lost write outranks the command's status
    os._exit(code)
