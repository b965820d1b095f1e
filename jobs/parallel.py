"""Training runs side by side: one after another in this process, or in worker processes that share its CPU.

On a CPU, one training run does not use its threads fully (the Python between kernels, single-threaded ops such as
`roi_align`'s backward pass), so two runs of one thread each do more work an hour than one run of two threads: on
2 cores two demo arm runs (20 steps, then 200 test images scored) took 110 s side by side, 135 s one after another.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Sequence, TypeVar

import torch
from tqdm import tqdm

Job = TypeVar("Job")
Outcome = TypeVar("Outcome")


def _use_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def run_all(jobs: Sequence[Job], run: Callable[[Job], Outcome], workers: int = 1, progress: bool = False,
            desc: str = "runs") -> list[Outcome]:
    """Every job's outcome, in the jobs' order: one after another here, or in `workers` processes (spawned: a
    forked torch can hang) sharing this process's CPU threads equally. `run` and the jobs must pickle (a module's
    function, a `functools.partial` of one). A run's error is raised here, as soon as it happens."""
    if workers <= 1 or len(jobs) <= 1:
        return [run(job) for job in jobs]
    workers = min(workers, len(jobs))
    threads = max(1, torch.get_num_threads() // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_use_threads, initargs=(threads,)) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        bar = tqdm(total=len(jobs), desc=f"{desc} ({workers} workers)", unit="run", disable=not progress)
        for future in as_completed(futures):
            future.result()  # an error stops here, not after the slowest run
            bar.update()
        bar.close()
        return [future.result() for future in futures]
