"""The run's own machinery under many threads: the run log's order and the call workers."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from squad.clock import fixed_clock
from squad.events import RoundStarted
from squad.runlog import RunLog
from squad.workers import Workers


def test_lines_from_many_threads_land_in_seq_order_each_whole(tmp_path: Path) -> None:
    seen: list[int] = []
    log = RunLog(fixed_clock(datetime(2026, 1, 1, tzinfo=UTC), timedelta(seconds=1)),
                 lambda event: seen.append(event.seq))
    log.write_to(tmp_path / "events.jsonl")
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        for i in range(200):
            log(RoundStarted(round=n * 1000 + i, snapshot=None, agents=[f"a{n}"] * (i % 7)))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close_file()
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 1601))
    times = [line["t"] for line in lines]
    assert times == sorted(times)  # stamped in the order they are numbered
    assert sorted(seen) == list(range(1, 1601))


def test_workers_run_every_job_reuse_threads_and_retire_when_idle() -> None:
    workers = Workers(idle_seconds=1.0)  # no worker retires between two bursts
    before = threading.active_count()
    done = threading.Semaphore(0)
    results: list[int] = []
    threads: set[int] = set()

    def job(n: int) -> None:
        results.append(n)
        threads.add(threading.get_ident())
        done.release()

    for burst in range(3):
        for i in range(16):
            workers.submit(lambda n=burst * 16 + i: job(n))
        for _ in range(16):
            assert done.acquire(timeout=30)
    assert sorted(results) == list(range(48))
    assert len(threads) <= 16  # 48 jobs on reused threads, never one thread per job
    for _ in range(600):  # idle workers leave: nothing lingers after a run
        if threading.active_count() == before:
            break
        threading.Event().wait(0.05)
    assert threading.active_count() == before
