"""Several trainings at once in one process: each in its own thread, with a share of the CPU threads
(or its own CUDA stream on a GPU)."""
from __future__ import annotations

import threading
from typing import Callable

import torch


def trainings_at_once(per_device: int, device: torch.device, compiled: bool = False) -> int:
    """How many trainings share a device: per_device, or for 0 (auto) 2 on a CPU with at least two
    threads (small models keep two cores busier as two one-thread trainings than as one
    two-thread training: 1.26x measured, docs/benchmarks.md), 4 on a GPU (each in its own CUDA
    stream: 2.1x one at a time for the 1-D CNN on an H200, 1.2x for ResNet-18), and 1 when the
    models are compiled (torch.compile is not thread-safe: runtime/session.py refuses per_device
    > 1 then). Models that can train stacked (train.stack) do so before any of these."""
    if per_device > 0:
        return per_device
    if compiled:
        return 1
    if device.type == "cuda":
        return 4
    return 2 if device.type == "cpu" and torch.get_num_threads() >= 2 else 1


# Rows per forward when labelling and evaluating, by device type (train.eval_batch_size=0):
# measured by benchmarks/bench_many.py (docs/benchmarks.md). On a CPU the activations of a
# batch of 512 stay in cache, and the pool labels 1.7x faster than in batches of 8192; a GPU
# needs large batches to fill it.
EVAL_BATCH = {"cpu": 512, "cuda": 8192}


def eval_batch_size(setting: int, device: torch.device) -> int:
    """train.eval_batch_size, or for 0 (auto) the device's measured best."""
    return setting or EVAL_BATCH.get(device.type, 8192)


def stack_models(setting: str, device: torch.device) -> bool:
    """Whether models of one architecture and recipe train (and label) as one stacked model
    (train.stack: on | off | auto). auto stacks on GPUs, where one model leaves the GPU idle
    between kernel launches, and not on CPUs, where two one-thread trainings side by side
    measured faster (docs/benchmarks.md)."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def side_by_side(jobs: list[Callable[[], None]], device: torch.device, slots: int | None = None) -> None:
    """Run the jobs at once, each in its own thread (and CUDA stream on a GPU); raise the first error.

    For several small teachers that each leave a GPU idle between kernels, or the cores of a CPU
    idle between small operations: on a CPU each job gets an equal share of torch's threads, so
    two jobs on two cores run every operation on one thread each instead of splitting each
    small operation across both. Whatever a job draws at random must come from its own
    generators: the threads share torch's global one. `slots` (default: len(jobs)) is how many
    jobs share the CPU; a last, smaller group keeps the same share, so every job's arithmetic is
    the same whichever group it falls in.
    """
    slots = slots or len(jobs)
    if slots == 1:
        jobs[0]()
        return
    errors: dict[int, BaseException] = {}
    threads_before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(max(1, threads_before // slots))
    # The caller's stream made the jobs' inputs (data copied to the device, models placed there):
    # each job's stream waits for it before its first kernel, and the caller's waits for every job.
    producer = torch.cuda.current_stream(device) if device.type == "cuda" else None

    def run(index: int, job: Callable[[], None]) -> None:
        try:
            if producer is not None:
                stream = torch.cuda.Stream(device)
                stream.wait_stream(producer)
                with torch.cuda.stream(stream):
                    job()
                producer.wait_stream(stream)
                stream.synchronize()
            else:
                job()
        except BaseException as err:  # re-raised in the caller's thread below
            errors[index] = err

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    torch.set_num_threads(threads_before)
    if errors:  # the first job's error, whichever thread failed first: the same message every time
        raise errors[min(errors)]
