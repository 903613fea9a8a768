"""How the pipeline's stages are carried out: kept, resumed, spread over ranks and threads, shown.

experiment.py says what each stage computes; `Work` carries it out:

    work.models(jobs, folder, spread="ranks")   # teachers: rank r trains jobs r, r + W, ...
    work.models(jobs, folder, spread="ddp")     # students: every rank trains each job together
    work.rows(folder, pattern, parts, K, n, f)  # pool labels: rank r computes its block of rows
    work.shared_array(path, make)               # rank 0 makes a file, every rank reads it
    with work.stage("teachers", times): ...     # seconds spent, into results.json

Every file goes through the run folder's manifest: a finished, intact file is read back instead
of recomputed, a damaged one is reported and recomputed. With one process every rank helper is
a no-op and the same code runs.
"""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from rolemodels.errors import RunError
from rolemodels.runtime.device import on_device, place_model, predict_logits
from rolemodels.runtime.files import append_line, atomic_save_npy, atomic_save_torch, finite_json, load_torch
from rolemodels.runtime.manifest import Manifest
from rolemodels.runtime.progress import Progress
from rolemodels.runtime.threads import side_by_side, trainings_at_once
from rolemodels.runtime.world import World, shard_range


@dataclass
class Training:
    """What the executor hands one training: keyword options for `train.fit` (device, precision,
    checkpoint and logging); the science adds the model, data, targets, recipe and seed."""

    fit_options: dict[str, Any]


@dataclass
class ModelJob:
    """One model to train, or to read back from `<folder>/<name>.pt` when it is finished.

    build: a new model, seeded (called in the calling thread, one at a time, before any training
    of its group starts, so torch's global generator seeds each model alone).
    train: trains the model in place, given the executor's `Training` options.
    task: what `train` trains on (a train_many.FitTask), so that jobs of one architecture and
    recipe can train as one stacked model (its fit_together); None: this job trains alone.
    """

    name: str  # file stem and the metrics log's "model", e.g. "teacher3", "ensemble_distill_k10"
    label: str  # shown in progress, e.g. "seed 0: teacher 4/10"
    epochs: int  # for the progress bar
    build: Callable[[], torch.nn.Module]
    train: Callable[[torch.nn.Module, Training], None]
    task: Any = None


class Work:
    """The run's machinery for one process: run folder, manifest, ranks, device, threads, progress."""

    def __init__(self, out: Path, manifest: Manifest, world: World, device: torch.device, progress: Progress, *,
                 precision: str, eval_batch_size: int, checkpoint_every: int, compile_model: bool,
                 compile_mode: str = "default", stack: bool = False):
        self.out, self.manifest, self.world, self.device, self.progress = out, manifest, world, device, progress
        self.precision, self.eval_batch_size = precision, eval_batch_size
        self.checkpoint_every, self.compile_model, self.compile_mode = checkpoint_every, compile_model, compile_mode
        self.stack = stack  # train models of one architecture and recipe as one stacked model

    # ----------------------------------------------------------------------------- small helpers

    def predict(self, model: torch.nn.Module, x, keep_on_device: bool = False) -> torch.Tensor:
        """Logits float32 [N, C] on the CPU (or left on the device), in eval batches on the run's device."""
        return predict_logits(model, x, self.device, self.precision, self.eval_batch_size, keep_on_device)

    def to_device(self, x):
        """x on the run's device when it fits in half the free device memory (device.on_device), else as it is."""
        return on_device(x, self.device)

    def log(self, record: dict) -> None:
        """One line of metrics.jsonl (metrics.rank<r>.jsonl on rank r > 0: one writer a file)."""
        name = "metrics.jsonl" if self.world.is_main else f"metrics.rank{self.world.rank}.jsonl"
        append_line(self.out / name, json.dumps(finite_json(record), allow_nan=False))

    def is_finished(self, path: Path) -> bool:
        """Whether `path` is finished and intact (a damaged file is reported and deleted: recompute it)."""
        return self.manifest.is_valid(path)

    def save_npy(self, path: Path, array: np.ndarray) -> None:
        atomic_save_npy(path, array)
        self.manifest.record(path)

    def save_torch(self, path: Path, obj: Any) -> None:
        atomic_save_torch(path, obj)
        self.manifest.record(path)

    def delete(self, path: Path) -> None:
        """Remove a file of ours that is no longer needed, and its record."""
        if path.exists():
            self.manifest.forget(path)
            path.unlink()

    @staticmethod
    @contextmanager
    def stage(name: str, times: dict[str, float]) -> Iterator[None]:
        """Add the seconds spent in the block to times[name]."""
        started = time.perf_counter()
        yield
        times[name] = times.get(name, 0.0) + time.perf_counter() - started

    # ----------------------------------------------------------------------------- models

    def models(self, jobs: list[ModelJob], folder: Path, *, spread: str, per_device: int,
               resumable: bool = False, log: dict[str, Any] | None = None) -> list[torch.nn.Module]:
        """Each job's trained model, in order: trained here, or read back from `folder`.

        spread="ranks": rank r trains jobs r, r + W, ... and then reads the others' files (every
        job trains once, with what it has in one process). spread="ddp": every rank trains each
        job together (DistributedDataParallel, through fit's `world`), or all read it back.
        `per_device` jobs train at once in one process (train.side_by_side); under DDP one at a time.
        With `stack` (and one process for these jobs), the unfinished jobs that can train together
        (same architecture, recipe and number of examples: train_many.why_not_together) train as
        one stacked model first, and the others as before.
        resumable: checkpoint each training into `<name>.resume.pt` and continue from it.
        log: fields that head each metrics.jsonl record of these trainings (e.g. the seed).
        """
        if spread not in ("ranks", "ddp"):
            raise ValueError(f"spread must be 'ranks' or 'ddp', got {spread!r}")
        mine = self.world.teachers(len(jobs)) if spread == "ranks" else list(range(len(jobs)))
        at_once = (trainings_at_once(per_device, self.device, self.compile_model)
                   if spread == "ranks" or self.world.size == 1 else 1)
        models: dict[int, torch.nn.Module] = {}
        if self.stack and (spread == "ranks" or self.world.size == 1):
            mine = self._train_stacked(jobs, mine, models, folder, resumable, log or {})
        for first in range(0, len(mine), at_once):
            pending = []
            for i in mine[first:first + at_once]:
                models[i] = jobs[i].build()
                path = folder / f"{jobs[i].name}.pt"
                finished = (self.is_finished(path) if spread == "ranks"
                            else self.world.main_decides(lambda path=path: self.is_finished(path)))  # all train, or none
                if finished:
                    models[i].load_state_dict(load_torch(path))
                    place_model(models[i], self.device)  # as `fit` leaves a trained model, so kernels match
                else:
                    pending.append(i)
            jobs_now = [lambda i=i: self._train(jobs[i], models[i], folder, spread, resumable, log or {},
                                                   show=at_once == 1)
                        for i in pending]
            if jobs_now:
                side_by_side(jobs_now, self.device, slots=at_once)
        if spread == "ranks":
            self.world.barrier()  # every rank's files are on disk, each recorded by the rank that wrote it
            for i in range(len(jobs)):
                if i not in models:
                    models[i] = self._read_other_ranks(jobs[i], folder / f"{jobs[i].name}.pt")
        return [models[i] for i in range(len(jobs))]

    def _train(self, job: ModelJob, model: torch.nn.Module, folder: Path, spread: str, resumable: bool,
               fields: dict[str, Any], show: bool) -> None:
        if show:
            self.progress.start(job.label, job.epochs)
        else:  # several trainings at once: a line each, no progress bar
            self.progress.note(f"{job.label}: training")

        def log(record: dict) -> None:
            if show:
                self.progress.step(record)
            self.log({**fields, "model": job.name, **record})

        checkpoint = folder / f"{job.name}.resume.pt" if resumable else None
        if checkpoint is not None and checkpoint.exists():
            self.is_finished(checkpoint)  # a damaged checkpoint is reported and deleted: train from the start
        options = {"name": job.label, "device": self.device, "precision": self.precision,
                   "compile_model": self.compile_model, "compile_mode": self.compile_mode,
                   "log": log, "checkpoint": checkpoint, "checkpoint_every": self.checkpoint_every,
                   "save": self.save_torch, "world": self.world if spread == "ddp" else World()}
        job.train(model, Training(options))
        if spread == "ranks" or self.world.is_main:  # under DDP every rank holds the same weights
            self.save_torch(folder / f"{job.name}.pt", model.state_dict())
        if checkpoint is not None:
            self.delete(checkpoint)
        if show:
            self.progress.done()
        else:
            self.progress.note(f"{job.label}: done")

    def _train_stacked(self, jobs: list[ModelJob], mine: list[int], models: dict[int, torch.nn.Module],
                       folder: Path, resumable: bool, fields: dict[str, Any]) -> list[int]:
        """Train this rank's unfinished jobs that can go together, as stacked groups, into `models`
        (finished ones are read back there too); returns the jobs left to train one at a time."""
        groups: dict[Any, list[tuple[int, torch.nn.Module]]] = {}
        for i in mine:
            if jobs[i].task is None:
                continue
            model = jobs[i].build()
            path = folder / f"{jobs[i].name}.pt"
            if self.is_finished(path):
                model.load_state_dict(load_torch(path))
                models[i] = place_model(model, self.device)  # as `fit` leaves a trained model, so kernels match
                continue
            task = jobs[i].task
            shapes = tuple((name, tuple(v.shape)) for name, v in model.state_dict().items())
            groups.setdefault((type(model), shapes, repr(task.spec), task.n), []).append((i, model))
        for members in groups.values():
            group = [jobs[i] for i, _ in members]
            if group[0].task.why_not_together([m for _, m in members], [job.task for job in group]) is None:
                self._train_group(group, [m for _, m in members], folder, resumable, fields)
                models.update(members)
        return [i for i in mine if i not in models]  # built again there: `build` seeds each model alone

    def _train_group(self, jobs: list[ModelJob], models: list[torch.nn.Module], folder: Path, resumable: bool,
                     fields: dict[str, Any]) -> None:
        """Train the jobs as one stacked model (their task's fit_together: train_many.fit_many) and keep
        each model's file."""
        names = [job.name for job in jobs]
        self.progress.start(f"{jobs[0].label} .. {jobs[-1].label.rsplit(': ', 1)[-1]} ({len(jobs)} stacked)",
                            jobs[0].epochs)

        def logger(k: int, job: ModelJob) -> Callable[[dict], None]:
            def log(record: dict) -> None:
                if k == 0:  # one progress bar for the group
                    self.progress.step(record)
                self.log({**fields, "model": job.name, "stacked": len(jobs), **record})
            return log

        key = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]  # one checkpoint per group of names
        checkpoint = folder / f"group-{key}.resume.pt" if resumable else None
        if checkpoint is not None and checkpoint.exists():
            self.is_finished(checkpoint)  # a damaged checkpoint is reported and deleted: train from the start
        jobs[0].task.fit_together(models, [job.task for job in jobs], device=self.device, precision=self.precision,
                                  checkpoint=checkpoint, checkpoint_every=self.checkpoint_every, save=self.save_torch,
                                  logs=[logger(k, job) for k, job in enumerate(jobs)], names=names)
        for job, model in zip(jobs, models):  # one process trained them: it keeps them
            self.save_torch(folder / f"{job.name}.pt", model.state_dict())
        if checkpoint is not None:
            self.delete(checkpoint)
        self.progress.done()

    def _read_other_ranks(self, job: ModelJob, path: Path) -> torch.nn.Module:
        """A model another rank trained (it checked and recorded the file before the barrier)."""
        if not path.exists():
            raise RunError(f"{path}: {job.name} is missing after the rank that trains it finished; "
                           f"is the run folder on a filesystem every machine shares?")
        model = job.build()
        model.load_state_dict(load_torch(path))
        return place_model(model, self.device)  # as `fit` leaves a trained model, so kernels match

    # ----------------------------------------------------------------------------- rows

    def rows(self, folder: Path, pattern: str, parts: tuple[str, ...], count: int, n: int,
             compute: Callable[[list[int], slice], list[dict[str, np.ndarray]]], *,
             label: Callable[[list[int]], str], align: int) -> list[dict[str, np.ndarray]]:
        """`count` columns of n rows, each column one array per part; every file kept and read back.

        compute(columns, rows) gives the arrays of each of the listed columns (those not yet kept)
        for a slice of the rows, all at once, by part (e.g. [{"labels": uint8 [b], "logits":
        float16 [b, C]}, ...], one dict per column), so the rows are read once for every column.
        Column k is kept as pattern.format(part=..., k=k) in `folder`. Under torchrun rank r
        computes one contiguous block of rows (whole blocks of `align` rows, so every row is
        computed in the batch it has in one process) into shard files, and rank 0 joins them,
        checking every row is there. Returns each column's arrays, memory-mapped.
        """
        first, last = shard_range(n, self.world.rank, self.world.size, align=align)
        blocks = [shard_range(n, r, self.world.size, align=align) for r in range(self.world.size)]
        blocks = [(a, b) for a, b in blocks if a < b]

        def whole(part: str, k: int) -> Path:
            return folder / pattern.format(part=part, k=k)

        def shard(part: str, k: int, a: int, b: int) -> Path:
            if (a, b) == (0, n):  # one block: written under the final name
                return whole(part, k)
            stem = Path(pattern.format(part=part, k=k))
            return folder / "shards" / f"{stem.stem}.rows{a}-{b}{stem.suffix}"

        # Rank 0 says which columns are finished, so no rank touches files it does not write.
        done = self.world.main_decides(lambda: [all(self.is_finished(whole(p, k)) for p in parts)
                                                for k in range(count)])
        todo = [k for k in range(count) if not done[k] and first < last
                and not all(self.is_finished(shard(p, k, first, last)) for p in parts)]
        if todo:
            self.progress.start(label(todo), 1)
            for k, arrays in zip(todo, compute(todo, slice(first, last))):
                for part in parts:
                    self.save_npy(shard(part, k, first, last), arrays[part])
            self.progress.done()
        self.world.barrier()  # every block is on disk
        if self.world.is_main and blocks[0] != (0, n):
            for k in range(count):
                if not done[k]:
                    for part in parts:
                        self._join(whole(part, k), [shard(part, k, a, b) for a, b in blocks], blocks)
        self.world.barrier()  # the joined files are on disk
        if (first, last) != (0, n):  # the blocks are joined: each rank deletes its own
            for k in range(count):
                for part in parts:
                    self.delete(shard(part, k, first, last))
        return [{part: np.load(whole(part, k), mmap_mode="r") for part in parts} for k in range(count)]

    def _join(self, path: Path, shards: list[Path], blocks: list[tuple[int, int]]) -> None:
        """Rank 0: one column's blocks joined into `path`, every row checked."""
        pieces = []
        for shard_path, (a, b) in zip(shards, blocks):
            if not shard_path.exists():
                raise RunError(f"{shard_path}: rows {a}..{b} are missing after their rank finished; "
                               f"is the run folder on a filesystem every machine shares?")
            piece = np.load(shard_path)
            if len(piece) != b - a:
                raise RunError(f"{shard_path}: {len(piece):,} rows, expected {b - a:,}")
            pieces.append(piece)
        self.save_npy(path, np.concatenate(pieces))

    def shared_array(self, path: Path, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The array in `path`: rank 0 makes and saves it unless finished; then every rank reads it."""
        if self.world.is_main and not self.is_finished(path):
            self.save_npy(path, make())
        self.world.barrier()
        return np.load(path)
