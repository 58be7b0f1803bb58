"""When Python's cyclic garbage collector runs: rarely while a command imports or a run works.

The collector's cost grows with the number of live objects it walks, and a process that has
imported the openai client, pydantic and git holds a few hundred thousand, none of them
garbage. Left at its defaults it walks them again and again: about a tenth of the CPU of
importing what `squad run` needs, and close to a millisecond per model call during a run of
sixteen agents (young collections every 700 allocations, and a full one now and then that
walks the whole heap). So:

- `paused()`: no collection while a command imports its modules (nothing is garbage yet),
  whose objects are then frozen;
- `quiet()`: during a run, what exists at its start is frozen (moved out of the collector's
  sight; it lives as long as the process anyway) and young collections come every 10,000
  allocations instead of 700. Cycles made by the run are still collected, later and in
  fewer passes; both settings are restored afterwards;
- `loading()`: no collection while the log is read (about fifteen objects per record, none
  garbage), and in a run what was read is frozen too: the log lives as long as the run, and
  at 10,000 records every full collection would otherwise walk it again (about a tenth of
  such a run's CPU).

Reference counting, which frees almost everything, is not affected.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

YOUNG = 10_000  # allocations between young collections during a run (Python's default: 700)

_lock = threading.Lock()
_runs = 0  # runs of this process inside quiet() (the service may run several at once)
_saved: tuple[int, int, int] = (700, 10, 10)
_froze = False
_paused_froze = False  # paused() froze this process's start: something is frozen already


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No collection inside (a command's start: its imports), and what it made is frozen
    after: modules, classes and caches live as long as the process, so no later collection
    need walk them (collecting here would only defer that walk to the first collection)."""
    global _paused_froze
    with _collector_off():
        yield
        gc.freeze()
        _paused_froze = True


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Collect less during a run: freeze what exists, collect the young rarely."""
    global _runs, _saved, _froze
    with _lock:
        if _runs == 0:
            _saved = gc.get_threshold()
            # Unfreeze afterwards only what we froze: a host that froze first keeps its own.
            # (Counting walks every frozen object, tens of milliseconds after a command's
            # start froze its imports: that start is known to have frozen, so no count.)
            _froze = not _paused_froze and gc.get_freeze_count() == 0
            gc.freeze()
            gc.set_threshold(max(YOUNG, _saved[0]), *_saved[1:])
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.set_threshold(*_saved)
                if _froze:
                    gc.unfreeze()


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """No collection while the log is read; inside `quiet()` (a run), what was read is then
    frozen. Outside a run only the pause: a long-lived host (the service) keeps its
    collector's sight of everything, so a log it drops is still collected."""
    with _collector_off():
        yield
        with _lock:
            if _runs:
                gc.freeze()


@contextlib.contextmanager
def _collector_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
