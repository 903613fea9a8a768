"""The paper's experiment, top-down: noise, teachers, ensemble, pool labels, students, sweep.

Every stage writes its artifact atomically into the run folder and records it in the
manifest; a rerun with the same configuration reuses what is finished and intact.

Seeds: experiment seed s (s = seed .. seed + seeds - 1) fixes the noise (s), teacher k
(1000 s + k), the random-teacher draws and the students (derived in `_seed`). The data
(data.seed) stays the same across experiment seeds.

Under torchrun every rank runs this same pipeline on its share of the work (distributed.py):
its teachers, its block of the pool, its slice of each student batch; rank 0 alone holds the
run folder's lock and writes the reports.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rolemodels import noise as noise_lib
from rolemodels.combine import (mean_probability, per_batch_teacher_targets, per_epoch_teacher_targets,
                                plurality_vote, random_teacher_labels, summed_logits_labels,
                                vote_shares)
from rolemodels.config import NOT_RESULTS, Config, to_dict, to_toml
from rolemodels.data import Dataset, load_dataset
from rolemodels.diagnostics import (pointwise_sampler_distance, sampler_distance, teacher_agreement,
                                    vote_share_histogram)
from rolemodels.distributed import World, join_world, shard_range, side_by_side, trainings_at_once
from rolemodels.errors import RunError, UserError
from rolemodels.metrics import accuracy, confusion, noise_replication
from rolemodels.models import SAMPLERS, build_model, input_stats
from rolemodels.progress import Progress
from rolemodels.store import (Manifest, RunLock, atomic_save_npy, atomic_save_torch, atomic_write_json,
                              atomic_write_text, check_config, ensure_writable, load_torch,
                              remove_temp_files)
from rolemodels.teach import OnlineTeacherLabels, fit_sampler, label_pool, softmax_sum, teacher_subsets
from rolemodels.train import FitSpec, fit, fixed_targets, predict_logits, resolve_device


def _seed(seed: int, stage: str, index: int = 0) -> int:
    """A distinct, stable seed for each stage of experiment seed `seed`."""
    offsets = {"teacher": 0, "draws": 500, "student": 700, "subsets": 900}
    return 1000 * seed + offsets[stage] + index


MODEL_SEEDING = threading.Lock()  # torch's global generator seeds new models; one model at a time


@dataclass
class Context:
    """What every stage of one run needs: the config, data, device, run folder and ranks."""

    cfg: Config
    data: Dataset
    device: torch.device
    out: Path
    manifest: Manifest
    progress: Progress
    mean: torch.Tensor
    std: torch.Tensor
    world: World

    def new_model(self, model: str, width: int, seed: int) -> torch.nn.Module:
        with MODEL_SEEDING:  # the initial weights depend on this seed alone, even with trainings side by side
            torch.manual_seed(seed)
            return build_model(model, self.data.input_shape, self.data.num_classes, width, self.mean, self.std)

    def cached(self, path: Path) -> bool:
        return self.manifest.is_valid(path)

    def save_npy(self, path: Path, array: np.ndarray) -> None:
        atomic_save_npy(path, array)
        self.manifest.record(path)

    def save_torch(self, path: Path, obj) -> None:
        atomic_save_torch(path, obj)
        self.manifest.record(path)

    def log(self, record: dict) -> None:
        name = "metrics.jsonl" if self.world.is_main else f"metrics.rank{self.world.rank}.jsonl"  # one writer a file
        with open(self.out / name, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def predict(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return predict_logits(model, x, self.device, self.cfg.train.precision, self.cfg.train.eval_batch_size)


# ---------------------------------------------------------------------------------------------
# Stage 2: noise


def noisy_training_labels(cfg: Config, data: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The teachers' labels int64 [n] and the transition matrix T float64 [C, C] they come from."""
    clean = data.y_train.numpy()
    num_classes = data.num_classes
    if cfg.noise.labels_file:
        from rolemodels.labelfiles import read_labels

        noisy = read_labels(cfg.noise.labels_file, key=cfg.noise.labels_key or None, num_classes=num_classes,
                            expected_length=len(clean))
        # The realised matrix is the best description of a given file's noise.
        counts, _ = noise_lib.realized_matrix(clean, noisy, num_classes)
        rows = counts.sum(1, keepdims=True)
        T = np.where(rows > 0, counts / np.maximum(rows, 1), np.eye(num_classes))
        return noisy, T
    if cfg.noise.preset == "none" or cfg.noise.rate == 0 and cfg.noise.preset != "matrix":
        return clean.copy(), np.eye(num_classes)
    shift = None if cfg.noise.shift < 0 else cfg.noise.shift
    T = noise_lib.transition_matrix(cfg.noise.preset, num_classes, cfg.noise.rate, shift,
                                    cfg.noise.matrix_file or None)
    return noise_lib.apply_noise(clean, T, seed, cfg.noise.mode), T


# ---------------------------------------------------------------------------------------------
# Stage 3: teachers


def train_teachers(ctx: Context, seed: int, noisy: torch.Tensor, folder: Path
                   ) -> tuple[list[torch.nn.Module], list[torch.Tensor]]:
    """K teachers on the noisy training set, each checkpointed; finished ones are reused.

    Under torchrun rank r trains teachers r, r + W, ..., each with the seed it has in one
    process (so the teachers do not depend on the number of processes), then loads the others'
    from the run folder. teachers.per_device of a rank's teachers train at once: on a GPU each
    in its own CUDA stream, on a CPU each with an equal share of the process's threads.
    Returns the teachers and the indices of the training examples each one saw."""
    cfg = ctx.cfg.teachers
    x = ctx.data.x_train
    subsets = teacher_subsets(len(noisy), cfg.count, cfg.data, cfg.overlap, _seed(seed, "subsets"))
    if cfg.model in SAMPLERS:  # k-NN and kernel teachers are fitted in seconds, on every rank: never cached
        return [fit_sampler(cfg.model, x[subset], noisy[subset], ctx.data.num_classes, cfg.neighbors, cfg.bandwidth)
                for subset in subsets], subsets
    paths = [folder / f"teacher{k}.pt" for k in range(cfg.count)]
    mine = ctx.world.teachers(cfg.count)
    at_once = trainings_at_once(cfg.per_device, ctx.device)
    trained = {}
    for first in range(0, len(mine), at_once):
        jobs = []
        for k in mine[first:first + at_once]:
            trained[k] = ctx.new_model(cfg.model, cfg.width, _seed(seed, "teacher", k))  # seeded here, not in a thread
            if ctx.cached(paths[k]):
                trained[k].load_state_dict(load_torch(paths[k]))
            else:
                jobs.append(lambda k=k: train_teacher(ctx, seed, k, trained[k], x[subsets[k]], noisy[subsets[k]],
                                                      folder, show=at_once == 1))
        if jobs:
            side_by_side(jobs, ctx.device, slots=at_once)
    ctx.world.barrier()  # every rank's teachers are on disk, each recorded by the rank that trained it
    return [trained[k] if k in trained else load_teacher(ctx, paths[k], seed, k) for k in range(cfg.count)], subsets


def train_teacher(ctx: Context, seed: int, k: int, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  folder: Path, show: bool = True) -> None:
    """Train teacher k on (x, y), resuming from its checkpoint, and save it."""
    spec = FitSpec.from_config(ctx.cfg.teachers)
    label = f"seed {seed}: teacher {k + 1}/{ctx.cfg.teachers.count}"
    if show:
        ctx.progress.start(label, spec.epochs)
    else:  # several teachers train at once: a line each, no progress bar
        ctx.progress.note(f"{label}: training")

    def log(record: dict) -> None:
        if show:
            ctx.progress.step(record)
        ctx.log({"seed": seed, "model": f"teacher{k}", **record})

    checkpoint = folder / f"teacher{k}.resume.pt"
    if checkpoint.exists():
        ctx.cached(checkpoint)  # a damaged checkpoint is reported and deleted: train from the start
    fit(model, x, len(x), fixed_targets(y), spec, _seed(seed, "teacher", k),
        ctx.device, ctx.cfg.train.precision, checkpoint=checkpoint,
        checkpoint_every=ctx.cfg.train.checkpoint_every, save=ctx.save_torch,
        compile_model=ctx.cfg.train.compile, log=log)
    ctx.save_torch(folder / f"teacher{k}.pt", model.state_dict())
    if checkpoint.exists():
        ctx.manifest.forget(checkpoint)
        checkpoint.unlink()
    if show:
        ctx.progress.done()
    else:
        ctx.progress.note(f"{label}: done")


def load_teacher(ctx: Context, path: Path, seed: int, k: int) -> torch.nn.Module:
    """Teacher k as another rank trained it (it checked and recorded the file before the barrier)."""
    if not path.exists():
        raise RunError(f"{path}: teacher {k} is missing after the rank that trains it finished; "
                       f"is the run folder on a filesystem every machine shares?")
    model = ctx.new_model(ctx.cfg.teachers.model, ctx.cfg.teachers.width, _seed(seed, "teacher", k))
    model.load_state_dict(load_torch(path))
    if ctx.device.type == "cuda":  # the memory format `fit` leaves a trained teacher in, so kernels match
        model.to(ctx.device, memory_format=torch.channels_last)
    return model


# ---------------------------------------------------------------------------------------------
# Stage 5: pool labelling


def label_pool_with_teachers(ctx: Context, teachers: list[torch.nn.Module], folder: Path
                             ) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Each teacher labels the pool once: uint8 [N, K] labels and K float16 [N, C] logits.

    Under torchrun rank r labels its block of rows (`pool_rows`) with every teacher into shard
    files; rank 0 joins them into the files one process writes and checks every row is there.
    With one process the only block is the whole pool, written under the final names."""
    n, K = len(ctx.data.x_pool), len(teachers)
    labels_path = folder / "pool_labels.npy"
    label_paths = [folder / f"pool_labels{k}.npy" for k in range(K)]
    logit_paths = [folder / f"pool_logits{k}.npy" for k in range(K)]
    # Rank 0 says which teachers' columns are finished, so no rank touches files it does not write.
    done = ctx.world.main_decides(lambda: [ctx.cached(label_paths[k]) and ctx.cached(logit_paths[k])
                                           for k in range(K)])
    first, last = pool_rows(ctx, ctx.world.rank)
    chunk = ctx.cfg.train.eval_batch_size * max(1, 65536 // ctx.cfg.train.eval_batch_size)
    for k, teacher in enumerate(teachers):
        shard_labels, shard_logits = pool_shard_paths(folder, k, first, last, n)
        if done[k] or first == last or (ctx.cached(shard_labels) and ctx.cached(shard_logits)):
            continue
        ctx.progress.start(f"labelling the pool with teacher {k + 1}/{K}", 1)
        labels, logits = label_pool(lambda xb: ctx.predict(teacher, xb), ctx.data.x_pool[first:last], chunk=chunk)
        ctx.save_npy(shard_logits, logits)
        ctx.save_npy(shard_labels, labels)
        ctx.progress.done()
    ctx.world.barrier()  # every block is on disk
    if ctx.world.is_main:
        for k in range(K):
            if not done[k]:
                join_pool_shards(ctx, folder, k, label_paths[k], logit_paths[k])
        if not ctx.cached(labels_path):
            columns = [np.load(path) for path in label_paths]
            ctx.save_npy(labels_path, np.stack(columns, axis=1))
    ctx.world.barrier()  # the joined files are on disk
    if (first, last) != (0, n):  # the blocks are joined: each rank deletes its own
        for k in range(K):
            for path in pool_shard_paths(folder, k, first, last, n):
                if path.exists():
                    ctx.manifest.forget(path)
                    path.unlink()
    matrix = torch.from_numpy(np.load(labels_path))
    if matrix.shape != (n, K):
        raise UserError(f"{labels_path}: shape {tuple(matrix.shape)} does not match the pool and teachers")
    return matrix, [np.load(path, mmap_mode="r") for path in logit_paths]


def pool_rows(ctx: Context, rank: int) -> tuple[int, int]:
    """The pool rows [a, b) that `rank` labels: contiguous, in whole eval batches, so that every
    row is computed in the same batch as in one process and the labels match it bit for bit."""
    return shard_range(len(ctx.data.x_pool), rank, ctx.world.size, align=ctx.cfg.train.eval_batch_size)


def pool_shard_paths(folder: Path, k: int, first: int, last: int, n: int) -> tuple[Path, Path]:
    """Where teacher k's labels and logits of rows [first, last) go; the whole pool's are the final files."""
    if (first, last) == (0, n):
        return folder / f"pool_labels{k}.npy", folder / f"pool_logits{k}.npy"
    rows = f"rows{first}-{last}"
    return folder / "shards" / f"pool_labels{k}.{rows}.npy", folder / "shards" / f"pool_logits{k}.{rows}.npy"


def join_pool_shards(ctx: Context, folder: Path, k: int, labels_path: Path, logits_path: Path) -> None:
    """Rank 0: teacher k's blocks joined into uint8 [N] labels and float16 [N, C] logits, every row checked."""
    n = len(ctx.data.x_pool)
    blocks = [pool_rows(ctx, rank) for rank in range(ctx.world.size)]
    blocks = [(first, last) for first, last in blocks if first < last]
    if blocks[0] == (0, n):  # one block: it was written under the final names
        return
    labels, logits = [], []
    for first, last in blocks:
        for path, parts in zip(pool_shard_paths(folder, k, first, last, n), (labels, logits)):
            if not path.exists():
                raise RunError(f"{path}: pool rows {first}..{last} of teacher {k} are missing after their rank "
                               f"finished; is the run folder on a filesystem every machine shares?")
            part = np.load(path)
            if len(part) != last - first:
                raise RunError(f"{path}: {len(part):,} rows, expected {last - first:,}")
            parts.append(part)
    ctx.save_npy(logits_path, np.concatenate(logits))
    ctx.save_npy(labels_path, np.concatenate(labels))


# ---------------------------------------------------------------------------------------------
# Stage 6: students


def train_student(ctx: Context, name: str, seed: int, index: int, x: torch.Tensor, targets, n: int,
                  folder: Path, recipe: str = "students", show: bool = True) -> torch.Tensor:
    """Train (or reload) one student and return its test predictions int64 [N_test]."""
    section = ctx.cfg.students if recipe == "students" else ctx.cfg.teachers
    if recipe == "teachers" and section.model in SAMPLERS:  # the clean-label reference of a sampler
        sampler = fit_sampler(section.model, x[:n], targets(torch.arange(n), 0), ctx.data.num_classes,
                              section.neighbors, section.bandwidth)
        return ctx.predict(sampler, ctx.data.x_test).argmax(1)
    model_name, width = student_architecture(ctx.cfg, ctx.data)
    if recipe == "teachers":
        model_name, width = section.model, section.width
    path = folder / f"{name}.pt"
    model = ctx.new_model(model_name, width, _seed(seed, "student", index))
    if ctx.world.main_decides(lambda: ctx.cached(path)):  # the ranks train a student together, or none does
        model.load_state_dict(load_torch(path))
    else:
        spec = FitSpec.from_config(section)
        label = f"seed {seed}: student {name}"
        if show:
            ctx.progress.start(label, spec.epochs)
        else:  # several students train at once: a line each, no progress bar
            ctx.progress.note(f"{label}: training")

        def log(record: dict) -> None:
            if show:
                ctx.progress.step(record)
            ctx.log({"seed": seed, "model": name, **record})

        fit(model, x, n, targets, spec, _seed(seed, "student", index), ctx.device, ctx.cfg.train.precision,
            compile_model=ctx.cfg.train.compile, world=ctx.world, log=log)
        if ctx.world.is_main:  # every rank holds the same weights
            ctx.save_torch(path, model.state_dict())
        if show:
            ctx.progress.done()
        else:
            ctx.progress.note(f"{label}: done")
    return ctx.predict(model, ctx.data.x_test).argmax(1)


def train_students(ctx: Context, seed: int, students: list[tuple], folder: Path) -> dict[str, torch.Tensor]:
    """Train (or reload) each student; their test predictions by name.

    In one process students.per_device of them train at once (side by side, as teachers do);
    under torchrun all ranks train each student together with DDP, one student at a time.
    """
    at_once = trainings_at_once(ctx.cfg.students.per_device, ctx.device) if ctx.world.size == 1 else 1
    predictions: dict[str, torch.Tensor] = {}

    def job(name, index, x, targets, n, recipe):
        predictions[name] = train_student(ctx, name, seed, index, x, targets, n, folder, recipe, show=at_once == 1)

    for first in range(0, len(students), at_once):
        group = students[first:first + at_once]
        side_by_side([lambda s=s: job(*s) for s in group], ctx.device, slots=at_once)
    return predictions


def student_architecture(cfg: Config, data: Dataset) -> tuple[str, int]:
    """The students' model and width: the teachers' network, unless set or the teachers are samplers."""
    name = cfg.students.model or cfg.teachers.model
    if name in SAMPLERS:
        name = "cnn1d" if len(data.input_shape) == 1 else "cnn2d" if len(data.input_shape) == 3 else "mlp"
    width = cfg.students.width or (cfg.teachers.width if name == cfg.teachers.model else 0)
    return name, width


def distillation_targets(ctx: Context, teachers: list[torch.nn.Module], pool_labels: torch.Tensor,
                         pool_logits: list[np.ndarray], k: int, seed: int):
    """Targets for the two students that learn from the first k teachers: (ensemble, random)."""
    cfg = ctx.cfg.students
    draw_seed = _seed(seed, "draws", k)
    if cfg.labels == "online":  # the authors' code: the teachers label each augmented batch
        C = ctx.data.num_classes
        random_mode = "batch" if cfg.random_teacher == "batch" else "example"
        return (OnlineTeacherLabels(teachers[:k], cfg.ensemble, draw_seed, C),
                OnlineTeacherLabels(teachers[:k], random_mode, draw_seed, C))
    subset = pool_labels[:, :k]
    if cfg.ensemble == "sum_logits":  # the authors' code
        summed = sum(torch.from_numpy(np.asarray(pool_logits[t], dtype=np.float32)) for t in range(k))
        ensemble = summed.argmax(1)
    elif cfg.ensemble == "vote_shares":  # soft: the fraction of the k teachers voting for each class
        ensemble = vote_shares(subset, ctx.data.num_classes)
    elif cfg.ensemble == "mean_prob":  # soft: the teachers' mean softmax
        ensemble = softmax_sum(pool_logits[:k]) / k
    else:
        ensemble = plurality_vote(subset, ctx.data.num_classes, softmax_sum(pool_logits[:k]))
    if cfg.random_teacher == "batch":  # the authors' code: one teacher per training batch
        random = per_batch_teacher_targets(subset, draw_seed)
    elif cfg.random_teacher == "epoch":  # a fresh draw every time an example is seen
        random = per_epoch_teacher_targets(subset, draw_seed)
    else:  # the paper: one teacher drawn for each example, fixed
        random = fixed_targets(random_teacher_labels(subset, draw_seed))
    return fixed_targets(ensemble), random


# ---------------------------------------------------------------------------------------------
# One experiment seed


def run_seed(ctx: Context, seed: int) -> dict:
    """Table 1 and Figure 2 for one experiment seed; returns the numbers as a dict."""
    cfg, data = ctx.cfg, ctx.data
    folder = ctx.out / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    times = {}

    # Noise: the same noisy set for every teacher of this seed.
    noisy_np, T = noisy_training_labels(cfg, data, seed)
    counts, rates = noise_lib.realized_matrix(data.y_train.numpy(), noisy_np, data.num_classes)
    noisy = torch.from_numpy(noisy_np).long()
    partner = torch.from_numpy(noise_lib.noise_partner(T))
    y_test = data.y_test

    # Teachers.
    started = time.perf_counter()
    teachers, subsets = train_teachers(ctx, seed, noisy, folder / "teachers")
    times["teachers"] = time.perf_counter() - started
    test_logits = torch.stack([ctx.predict(t, data.x_test) for t in teachers])  # [K, N_test, C]
    # How well each teacher fits the noisy labels it was trained on (1.0: it interpolates them).
    train_fit = [accuracy(ctx.predict(t, data.x_train[subset]).argmax(1), noisy[subset])
                 for t, subset in zip(teachers, subsets)]
    teacher_test = test_logits.argmax(2).T  # [N_test, K]

    # Pool labels.
    started = time.perf_counter()
    pool_labels, pool_logits = label_pool_with_teachers(ctx, teachers, folder / "pool")
    times["labelling"] = time.perf_counter() - started

    # Students: for every K of the sweep, an ensemble-distilled and a random-teacher student.
    started = time.perf_counter()
    n_pool = min(cfg.students.pool_size or len(data.x_pool), len(data.x_pool))  # students see x_pool[:n_pool]
    sweep = sorted({k for k in cfg.sweep.teachers if k <= cfg.teachers.count} | {cfg.teachers.count})
    # Students for every K of Figure 2, or only for all K teachers (the ensemble is swept regardless).
    student_sweep = sweep if cfg.sweep.students else [cfg.teachers.count]
    # (name, seed index, inputs, targets, examples, recipe): every student is independent of the others.
    students = []
    for i, k in enumerate(student_sweep):
        ensemble_t, random_t = distillation_targets(ctx, teachers, pool_labels, pool_logits, k, seed)
        students.append((f"ensemble_distill_k{k}", 2 * i, data.x_pool, ensemble_t, n_pool, "students"))
        if k > 1:  # one teacher: both students see the same labels (random_distill_k1 is ensemble_distill_k1)
            students.append((f"random_distill_k{k}", 2 * i + 1, data.x_pool, random_t, n_pool, "students"))
    students.append(("clean_train", 98, data.x_train, fixed_targets(data.y_train.long()), len(data.y_train), "teachers"))
    if data.y_pool is not None:
        students.append(("clean_pool", 99, data.x_pool, fixed_targets(data.y_pool.long()), n_pool, "students"))
    student_pred = train_students(ctx, seed, students, folder / "students")
    if 1 in student_sweep:
        student_pred["random_distill_k1"] = student_pred["ensemble_distill_k1"]
    clean_train, clean_pool = student_pred.pop("clean_train"), student_pred.pop("clean_pool", None)
    times["students"] = time.perf_counter() - started

    # Numbers.
    K = cfg.teachers.count
    probs_sum = torch.softmax(test_logits, 2).sum(0)

    def ensemble_of(k: int) -> torch.Tensor:
        return plurality_vote(teacher_test[:, :k], data.num_classes, torch.softmax(test_logits[:k], 2).sum(0))

    ensemble = plurality_vote(teacher_test, data.num_classes, probs_sum)
    mean_prob = mean_probability(test_logits).argmax(1)
    sum_logits = summed_logits_labels(test_logits)
    predictions = {"ensemble": ensemble, "ensemble_mean_prob": mean_prob, "ensemble_sum_logits": sum_logits,
                   "ensemble_distill": student_pred[f"ensemble_distill_k{K}"],
                   "random_distill": student_pred[f"random_distill_k{K}"], "clean_train": clean_train}
    if clean_pool is not None:
        predictions["clean_pool"] = clean_pool
    teacher_acc = [accuracy(teacher_test[:, k], y_test) for k in range(K)]
    C = data.num_classes
    sampler = {
        "sampler_distance": {"teacher": [sampler_distance(y_test, teacher_test[:, k], T, C) for k in range(K)],
                             **{name: sampler_distance(y_test, pred, T, C) for name, pred in predictions.items()}},
        "pointwise_sampler_distance": pointwise_sampler_distance(y_test, teacher_test, T),
        "teacher_agreement": teacher_agreement(teacher_test) if K > 1 else 1.0,
        "vote_share_histogram": vote_share_histogram(y_test, teacher_test, partner).tolist(),
    }
    teacher_rep = [noise_replication(teacher_test[:, k], y_test, partner) for k in range(K)]
    return {
        "seed": seed,
        "teacher": teacher_acc,
        "teacher_train_fit": train_fit,
        "accuracy": {name: accuracy(pred, y_test) for name, pred in predictions.items()},
        "noise_replication": {"teacher": teacher_rep,
                              **{name: noise_replication(pred, y_test, partner) for name, pred in predictions.items()}},
        "sweep": {
            "teachers": sweep,
            "ensemble": [accuracy(ensemble_of(k), y_test) for k in sweep],
            # None where no student was trained for that K (sweep.students=false).
            "ensemble_distill": [accuracy(student_pred[f"ensemble_distill_k{k}"], y_test)
                                 if f"ensemble_distill_k{k}" in student_pred else None for k in sweep],
            "random_distill": [accuracy(student_pred[f"random_distill_k{k}"], y_test)
                               if f"random_distill_k{k}" in student_pred else None for k in sweep],
        },
        "noise": {"matrix": T.tolist(), "realized_counts": counts.tolist(), "realized_matrix": rates.tolist(),
                  "rate": float((noisy_np != data.y_train.numpy()).mean()), "partner": partner.tolist()},
        "sampler": sampler,
        "confusion": {name: confusion(pred, y_test, C).tolist()
                      for name, pred in [("teacher", teacher_test[:, 0]), *predictions.items()]},
        "seconds": times,
    }


# ---------------------------------------------------------------------------------------------
# The whole run


def run_experiment(cfg: Config, out: str | Path, quiet: bool = False, force: bool = False) -> dict | None:
    """Run (or resume) the experiment in folder `out`; write results.json, report.md, figures/.

    Under torchrun every rank calls this; rank 0 writes the reports and returns the results,
    the other ranks return None."""
    from rolemodels.report import summarize_run, write_report

    out = Path(out)
    started = time.perf_counter()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    world, device = join_world(resolve_device(cfg.train.device), cfg.train.dist_timeout)
    progress = Progress(quiet=quiet or not world.is_main)
    if device.type == "cpu":  # same seed, same results: ask for the deterministic kernels where torch has them
        torch.use_deterministic_algorithms(True, warn_only=True)
    # Bad data or noise is refused before anything is written to the run folder.
    data = world.main_first(lambda: load_dataset(cfg.data, progress=progress.note))  # rank 0 fills the cache
    check_dataset(data)
    noisy_training_labels(cfg, data, cfg.seed)
    results = None
    with open_run_folder(out, cfg, force, world) as manifest:
        mean, std = input_stats(data.x_train)
        ctx = Context(cfg, data, device, out, manifest, progress, mean, std, world)
        per_seed = [run_seed(ctx, seed) for seed in range(cfg.seed, cfg.seed + cfg.seeds)]
        if world.is_main:
            results = summarize_run(cfg, data, per_seed, time.perf_counter() - started)
            atomic_write_json(out / "results.json", results)
            write_report(out, cfg, data, results, per_seed)
    world.close()
    progress.note(f"results in {out}/results.json, report in {out}/report.md")
    return results


@contextmanager
def open_run_folder(out: Path, cfg: Config, force: bool, world: World):
    """The run folder, ready, and this rank's Manifest; the folder stays locked until every rank is done.

    Rank 0 takes the lock, checks the configuration, removes half-written files and folds in
    what other ranks recorded before a restart, while the other ranks wait; they then check
    that they see the same folder (on several machines it must be on a shared filesystem)."""
    if world.is_main:
        ensure_writable(out)
        with RunLock(out):
            check_config(out, to_dict(cfg), force, ignore=NOT_RESULTS, defaults=to_dict(Config()))
            remove_temp_files(out)  # what a killed run was writing
            atomic_write_text(out / "config.toml", to_toml(cfg))
            manifest = Manifest(out)
            world.barrier()  # the folder is ready
            yield manifest
            world.barrier()  # no rank writes any more
            manifest.absorb_ranks()
        return
    world.barrier()
    wait_for_file(out / "config.toml", f"rank {world.rank} does not see the run folder {out} that rank 0 "
                                       f"prepared: on several machines it must be on a filesystem they all share")
    yield Manifest(out, rank=world.rank)
    world.barrier()


def wait_for_file(path: Path, message: str, seconds: float = 30.0) -> None:
    """Wait a little for a file another machine wrote (network filesystems cache), else UserError."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise UserError(message)
        time.sleep(0.5)


def check_dataset(data: Dataset) -> None:
    """Refuse data the pipeline cannot use, naming what is wrong."""
    for part in ("train", "test", "pool"):
        x = getattr(data, f"x_{part}")
        if len(x) == 0:
            raise UserError(f"dataset {data.name}: the {part} set is empty")
    for part in ("train", "test"):
        x, y = getattr(data, f"x_{part}"), getattr(data, f"y_{part}")
        if len(x) != len(y):
            raise UserError(f"dataset {data.name}: {len(x):,} {part} inputs but {len(y):,} labels")
        if y.min() < 0 or y.max() >= data.num_classes:
            raise UserError(f"dataset {data.name}: {part} labels must be in [0, {data.num_classes}), "
                            f"found {int(y.min())}..{int(y.max())}")
    if data.x_train.is_floating_point() and not torch.isfinite(data.x_train).all():
        raise UserError(f"dataset {data.name}: the training inputs contain NaN or inf")
