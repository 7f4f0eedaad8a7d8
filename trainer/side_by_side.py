"""Independent fits run at once in spawned worker processes, each with its own share of the torch threads.

Why: a fit's small networks gain little from a second torch thread (a 400-row GAN fit: 8.0 and 8.9 s on one
thread against 9.2 and 6.9 s on two), so on 2 cores two fits of one thread each finish sooner than the same
two fits one after the other on two threads. Spawned, not forked: a fork of a process whose torch threads
run can deadlock. Every job is seeded in its worker as the fit seeds itself in-process, so a fit reads the
same in a worker as it does here at the same thread count (tests/unit/test_cross_fit.py, test_level_fits.py).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from trainer.cores import threads_per_worker, usable_cores
from trainer.provenance import seed_everything

Job = TypeVar("Job")
Result = TypeVar("Result")


def share(jobs: int, threads: int) -> tuple[int, int]:
    """(workers, torch threads per worker) for `jobs` fits that may use `threads` in all: as many at once as
    the threads and the usable cores allow, never more than the jobs, splitting the threads between them."""
    workers = max(1, min(jobs, threads, usable_cores()))
    return workers, threads_per_worker(threads // workers, workers, usable_cores())


def run_side_by_side(
    work: Callable[[Job], Result],
    jobs: Sequence[Job],
    split: tuple[int, int],
    seed: int,
    finished: Callable[[Job, float], None],
    tag_of: Callable[[Job], str] | None = None,
) -> list[Result]:
    """`work(job)` for every job in spawned processes (`split`: workers, torch threads each, from `share`);
    results in the jobs' order.

    Each job is seeded in its worker (`seed`, the fit's, with its deterministic kernels) before `work` runs,
    as the fit is in-process. `work` must be a module-level function (a spawned worker imports it).
    `finished(job, seconds since the start)` runs here as each job completes, so the parent can say so.
    With `tag_of`, a worker's own log lines reach stderr at this process's level, marked with its job's tag;
    without, they stay in the worker. The first job to raise stops the reporting, and its exception is
    raised here, in the jobs' order.
    """
    workers, threads = split
    level = logging.getLogger().getEffectiveLevel()
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            pool.submit(_in_worker, work, job, seed, threads, level, tag_of(job) if tag_of else None): job
            for job in jobs
        }
        for future in as_completed(futures):
            if future.exception() is not None:
                break
            finished(futures[future], time.perf_counter() - started)
        return [future.result() for future in futures]


def _in_worker(
    work: Callable[[Job], Result], job: Job, seed: int, threads: int, log_level: int, tag: str | None
) -> Result:
    """One job in its spawned worker: its log (when tagged), threads and seed, then the work."""
    if tag is not None:
        logging.basicConfig(
            level=log_level, format=f"%(asctime)s %(levelname)s %(name)s [{tag}]: %(message)s", force=True
        )
    seed_everything(seed, threads)
    return work(job)
