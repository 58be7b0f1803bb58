"""squad.heap: when the cyclic collector runs during a command's start and a run, and that
both leave the collector as they found it (the service and tests run many in one process)."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from squad import heap


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()
    heap._paused_froze = False  # what a test's paused() froze is unfrozen again just above
    if enabled:
        gc.enable()


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_quiet_raises_the_young_threshold_and_restores_it() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    with heap.quiet():
        assert gc.get_threshold() == (heap.YOUNG, 10, 10)
        assert gc.get_freeze_count() > 0  # what existed at the start is out of sight
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_a_cycle_made_during_a_run_is_still_collected() -> None:
    with heap.quiet():
        node = Node()
        gone = weakref.ref(node)
        del node
        gc.collect()
        assert gone() is None


def test_overlapping_runs_restore_once_the_last_ends() -> None:
    gc.unfreeze()
    gc.set_threshold(500, 5, 5)
    first_in, second_done = threading.Event(), threading.Event()

    def second() -> None:
        first_in.wait()
        with heap.quiet():
            pass
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    with heap.quiet():
        first_in.set()
        second_done.wait()
        assert gc.get_threshold() == (heap.YOUNG, 5, 5)  # still inside the first run
    thread.join()
    assert gc.get_threshold() == (500, 5, 5)
    assert gc.get_freeze_count() == 0


def test_a_host_that_froze_first_keeps_its_frozen_objects() -> None:
    gc.freeze()
    before = gc.get_freeze_count()
    with heap.quiet():
        pass
    assert gc.get_freeze_count() >= before > 0


def test_paused_collects_nothing_then_freezes_what_was_made() -> None:
    gc.unfreeze()
    gc.enable()
    with heap.paused():
        assert not gc.isenabled()
        kept = [Node() for _ in range(100)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(kept)
    walked = {id(o) for o in gc.get_objects()}  # the generations a collection walks
    assert not any(id(n) in walked for n in kept)


def test_a_run_after_a_paused_start_keeps_the_start_frozen() -> None:
    """A command's start froze its imports: a run then neither counts the frozen objects
    (a walk of all of them) nor unfreezes them when it ends."""
    gc.unfreeze()
    with heap.paused():
        kept = [Node() for _ in range(100)]
    with heap.quiet():
        pass
    assert gc.get_freeze_count() >= len(kept)


def test_paused_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    with heap.paused():
        pass
    assert not gc.isenabled()


def test_loading_pauses_and_freezes_only_inside_a_run() -> None:
    gc.unfreeze()
    gc.enable()
    with heap.loading():
        assert not gc.isenabled()
        outside = Node()
    assert gc.isenabled() and gc.get_freeze_count() == 0  # a host keeps sight of it
    gone = weakref.ref(outside)
    del outside
    gc.collect()
    assert gone() is None
    with heap.quiet():
        frozen = gc.get_freeze_count()
        with heap.loading():
            log = [Node() for _ in range(100)]
        assert gc.get_freeze_count() >= frozen + 100  # the log read in a run is out of sight
        assert gc.isenabled()
        del log
    assert gc.get_freeze_count() == 0  # and back in sight once the run ends
