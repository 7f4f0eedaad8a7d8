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

Job = TypeVar("Job")
Result = TypeVar("Result")


def run_side_by_side(
    work: Callable[[Job], Result],
    jobs: Sequence[Job],
    workers: int,
    finished: Callable[[Job, float], None],
) -> list[Result]:
    """`work(job)` for every job in `workers` spawned processes; results in the jobs' order.

    `work` must be a module-level function (a spawned worker imports it) that sets its own threads and seed.
    `finished(job, seconds since the start)` runs here as each job completes, so the parent can say so:
    the workers' logs stay in their processes unless `work` sets up its own. The first job to raise stops
    the reporting, and its exception is raised here, in the jobs' order.
    """
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(work, job): job for job in jobs}
        for future in as_completed(futures):
            if future.exception() is not None:
                break
            finished(futures[future], time.perf_counter() - started)
        return [future.result() for future in futures]


def log_as(level: int, tag: str) -> None:
    """A spawned worker's log lines on its inherited stderr, at the parent's level and marked with `tag`,
    so a user watching a fit still sees its epochs while it runs out of process."""
    logging.basicConfig(
        level=level, format=f"%(asctime)s %(levelname)s %(name)s [{tag}]: %(message)s", force=True
    )
