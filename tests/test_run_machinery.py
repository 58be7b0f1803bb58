"""The run's own machinery under many threads: the run log's order and the call workers."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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


def test_fan_out_runs_every_job_within_its_width_and_returns_when_all_ended() -> None:
    workers = Workers(idle_seconds=1.0)
    lock, running, peak, ended = threading.Lock(), [0], [0], []

    def job(n: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.01)
        with lock:
            running[0] -= 1
            ended.append(n)
        if n == 3:
            raise ValueError("job 3")
        return n * n

    futures = workers.fan_out([lambda n=n: job(n) for n in range(12)], width=4)
    assert sorted(ended) == list(range(12))  # every job ended before fan_out returned
    assert peak[0] <= 4
    assert [f.result() for f in futures[:3]] == [0, 1, 4]
    with pytest.raises(ValueError, match="job 3"):
        futures[3].result()
    assert [f.result() for f in futures[4:]] == [n * n for n in range(4, 12)]
    assert workers.fan_out([], width=4) == []
