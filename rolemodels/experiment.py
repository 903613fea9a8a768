"""The paper's experiment, top-down: noise, teachers, ensemble, pool labels, students, sweep.

Every stage writes its artifact atomically into the run folder and records it in the
manifest; a rerun with the same configuration reuses what is finished and intact.

Seeds: experiment seed s (s = seed .. seed + seeds - 1) fixes the noise (s), teacher k
(1000 s + k), the random-teacher draws and the students (derived in `_seed`). The data
(data.seed) stays the same across experiment seeds.
"""
from __future__ import annotations

import json
import time
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
from rolemodels.errors import UserError
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


@dataclass
class Context:
    """What every stage of one run needs: the config, data, device and the run folder."""

    cfg: Config
    data: Dataset
    device: torch.device
    out: Path
    manifest: Manifest
    progress: Progress
    mean: torch.Tensor
    std: torch.Tensor

    def new_model(self, model: str, width: int, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)  # the initial weights depend on this seed alone
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
        with open(self.out / "metrics.jsonl", "a") as handle:
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

    Returns the teachers and the indices of the training examples each one saw."""
    cfg = ctx.cfg.teachers
    x = ctx.data.x_train
    subsets = teacher_subsets(len(noisy), cfg.count, cfg.data, cfg.overlap, _seed(seed, "subsets"))
    spec = FitSpec.from_config(cfg)
    teachers = []
    for k, subset in enumerate(subsets):
        if cfg.model in SAMPLERS:  # k-NN and kernel teachers are fitted in seconds: never cached
            teachers.append(fit_sampler(cfg.model, x[subset], noisy[subset], ctx.data.num_classes,
                                        cfg.neighbors, cfg.bandwidth))
            continue
        path = folder / f"teacher{k}.pt"
        model = ctx.new_model(cfg.model, cfg.width, _seed(seed, "teacher", k))
        if ctx.cached(path):
            model.load_state_dict(load_torch(path))
        else:
            ctx.progress.start(f"seed {seed}: teacher {k + 1}/{cfg.count}", spec.epochs)
            checkpoint = folder / f"teacher{k}.resume.pt"
            if checkpoint.exists():
                ctx.cached(checkpoint)  # a damaged checkpoint is reported and deleted: train from the start
            fit(model, x[subset], len(subset), fixed_targets(noisy[subset]), spec, _seed(seed, "teacher", k),
                ctx.device, ctx.cfg.train.precision, checkpoint=checkpoint,
                checkpoint_every=ctx.cfg.train.checkpoint_every, save=ctx.save_torch,
                compile_model=ctx.cfg.train.compile,
                log=lambda r, k=k: (ctx.progress.step(r), ctx.log({"seed": seed, "model": f"teacher{k}", **r})))
            ctx.save_torch(path, model.state_dict())
            if checkpoint.exists():
                ctx.manifest.forget(checkpoint)
                checkpoint.unlink()
            ctx.progress.done()
        teachers.append(model)
    return teachers, subsets


# ---------------------------------------------------------------------------------------------
# Stage 5: pool labelling


def label_pool_with_teachers(ctx: Context, teachers: list[torch.nn.Module], folder: Path
                             ) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Each teacher labels the pool once: uint8 [N, K] labels and K float16 [N, C] logits."""
    labels_path = folder / "pool_labels.npy"
    logit_paths = [folder / f"pool_logits{k}.npy" for k in range(len(teachers))]
    for k, teacher in enumerate(teachers):
        label_path = folder / f"pool_labels{k}.npy"
        if ctx.cached(label_path) and ctx.cached(logit_paths[k]):
            continue
        ctx.progress.start(f"labelling the pool with teacher {k + 1}/{len(teachers)}", 1)
        labels, logits = label_pool(lambda xb: ctx.predict(teacher, xb), ctx.data.x_pool,
                                    chunk=max(ctx.cfg.train.eval_batch_size, 65536))
        ctx.save_npy(logit_paths[k], logits)
        ctx.save_npy(label_path, labels)
        ctx.progress.done()
    if not ctx.cached(labels_path):
        columns = [np.load(folder / f"pool_labels{k}.npy") for k in range(len(teachers))]
        ctx.save_npy(labels_path, np.stack(columns, axis=1))
    matrix = torch.from_numpy(np.load(labels_path))
    if matrix.shape != (len(ctx.data.x_pool), len(teachers)):
        raise UserError(f"{labels_path}: shape {tuple(matrix.shape)} does not match the pool and teachers")
    return matrix, [np.load(path, mmap_mode="r") for path in logit_paths]


# ---------------------------------------------------------------------------------------------
# Stage 6: students


def train_student(ctx: Context, name: str, seed: int, index: int, x: torch.Tensor, targets, n: int,
                  folder: Path, recipe: str = "students") -> torch.Tensor:
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
    if ctx.cached(path):
        model.load_state_dict(load_torch(path))
    else:
        spec = FitSpec.from_config(section)
        ctx.progress.start(f"seed {seed}: student {name}", spec.epochs)
        fit(model, x, n, targets, spec, _seed(seed, "student", index), ctx.device, ctx.cfg.train.precision,
            compile_model=ctx.cfg.train.compile,
            log=lambda r: (ctx.progress.step(r), ctx.log({"seed": seed, "model": name, **r})))
        ctx.save_torch(path, model.state_dict())
        ctx.progress.done()
    return ctx.predict(model, ctx.data.x_test).argmax(1)


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
    n_pool = len(data.x_pool)
    sweep = sorted({k for k in cfg.sweep.teachers if k <= cfg.teachers.count} | {cfg.teachers.count})
    # Students for every K of Figure 2, or only for all K teachers (the ensemble is swept regardless).
    student_sweep = sweep if cfg.sweep.students else [cfg.teachers.count]
    student_pred: dict[str, torch.Tensor] = {}
    for i, k in enumerate(student_sweep):
        ensemble_t, random_t = distillation_targets(ctx, teachers, pool_labels, pool_logits, k, seed)
        student_pred[f"ensemble_distill_k{k}"] = train_student(ctx, f"ensemble_distill_k{k}", seed, 2 * i,
                                                               data.x_pool, ensemble_t, n_pool, folder / "students")
        if k == 1:  # one teacher: both students see the same labels
            student_pred["random_distill_k1"] = student_pred["ensemble_distill_k1"]
        else:
            student_pred[f"random_distill_k{k}"] = train_student(ctx, f"random_distill_k{k}", seed, 2 * i + 1,
                                                                 data.x_pool, random_t, n_pool, folder / "students")
    clean_train = train_student(ctx, "clean_train", seed, 98, data.x_train, fixed_targets(data.y_train.long()),
                                len(data.y_train), folder / "students", recipe="teachers")
    clean_pool = None
    if data.y_pool is not None:
        clean_pool = train_student(ctx, "clean_pool", seed, 99, data.x_pool, fixed_targets(data.y_pool.long()),
                                   n_pool, folder / "students")
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


def run_experiment(cfg: Config, out: str | Path, quiet: bool = False, force: bool = False) -> dict:
    """Run (or resume) the experiment in folder `out`; write results.json, report.md, figures/."""
    from rolemodels.report import summarize_run, write_report

    out = Path(out)
    progress = Progress(quiet=quiet)
    started = time.perf_counter()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    if device.type == "cpu":  # same seed, same results: ask for the deterministic kernels where torch has them
        torch.use_deterministic_algorithms(True, warn_only=True)
    # Bad data or noise is refused before anything is written to the run folder.
    data = load_dataset(cfg.data, progress=progress.note)
    check_dataset(data)
    noisy_training_labels(cfg, data, cfg.seed)
    ensure_writable(out)
    with RunLock(out):
        check_config(out, to_dict(cfg), force, ignore=NOT_RESULTS)
        remove_temp_files(out)  # what a killed run was writing
        atomic_write_text(out / "config.toml", to_toml(cfg))
        manifest = Manifest(out)
        mean, std = input_stats(data.x_train)
        ctx = Context(cfg, data, device, out, manifest, progress, mean, std)
        per_seed = [run_seed(ctx, seed) for seed in range(cfg.seed, cfg.seed + cfg.seeds)]
        results = summarize_run(cfg, data, per_seed, time.perf_counter() - started)
        atomic_write_json(out / "results.json", results)
        write_report(out, cfg, data, results, per_seed)
    progress.note(f"results in {out}/results.json, report in {out}/report.md")
    return results


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
