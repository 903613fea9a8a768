"""The paper's experiment, top-down: noise, teachers, test-time ensemble, pool labels, students, numbers.

This file says what is computed. How it is kept, resumed, spread over torchrun's ranks and run
side by side lives in `runtime/` (`Work`); the seeds of every random choice in `seeds.py`; the
networks and their check against the data in `networks.py`; the numbers of one seed in
`measure.py`; results.json, report.md and the figures in `report.py`.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from rolemodels.config import Config, StudentConfig, TeacherConfig
from rolemodels.data import Dataset, check_dataset, load_dataset
from rolemodels.method import noise as noise_lib
from rolemodels.method.combine import (
    per_batch_teacher_targets,
    per_epoch_teacher_targets,
    plurality_vote,
    random_teacher_labels,
    vote_shares,
)
from rolemodels.method.metrics import accuracy
from rolemodels.method.teach import (
    OnlineTeacherLabels,
    fit_sampler,
    label_pool_by_teachers,
    softmax_sum,
    teacher_subsets,
)
from rolemodels.models import SAMPLERS, input_stats
from rolemodels.paper.measure import SeedOutcome, measure_seed
from rolemodels.paper.networks import Architecture, check_architectures, new_model, student_architecture
from rolemodels.recipe import FitSpec, pool_examples
from rolemodels.runtime.files import arrays_sha256
from rolemodels.runtime.session import open_run, refuse_unworkable, start_session
from rolemodels.runtime.work import ModelJob, Training, Work
from rolemodels.seeds import Seeds
from rolemodels.training.train import Targets, fit, fixed_targets
from rolemodels.training.train_many import FitTask

# ---------------------------------------------------------------------------------------------
# Noise


def noisy_training_labels(cfg: Config, data: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The teachers' labels int64 [n] and the transition matrix T float64 [C, C] they come from."""
    clean = data.y_train.numpy()
    num_classes = data.num_classes
    if cfg.noise.labels_file:
        from rolemodels.data.labelfiles import read_labels

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
# Training one model: the network (networks.py), its recipe, its targets


def training_job(name: str, label: str, arch: Architecture, recipe: TeacherConfig | StudentConfig,
                 x: torch.Tensor, n: int, targets: Targets, seed: int, data: Dataset, stats) -> ModelJob:
    """Train `arch` (seeded with `seed`) on x[:n] with `targets` and the section's recipe."""
    spec = FitSpec.from_config(recipe).for_model(arch.model)
    if getattr(recipe, "pool_budget", False):  # students: enough steps on a small pool (StudentConfig)
        spec = dataclasses.replace(spec, min_examples=max(spec.min_examples, pool_examples(n)))
    task = FitTask(x, n, targets, spec, seed)

    def train(model: torch.nn.Module, run: Training) -> None:
        fit(model, task.x, task.targets, task.spec, n=task.n, seed=task.seed, **run.fit_options)

    return ModelJob(name, label, task.spec.epochs_for(n), lambda: new_model(arch, data, stats, seed), train, task)


# ---------------------------------------------------------------------------------------------
# Teachers


def train_teachers(work: Work, cfg: Config, data: Dataset, stats, noisy: torch.Tensor, seeds: Seeds,
                   folder: Path) -> tuple[list[torch.nn.Module], list[torch.Tensor]]:
    """K teachers on the noisy training set (or their teachers.data subsets of it), each with its own
    seed; returns them and the indices of the training examples each one saw."""
    t = cfg.teachers
    subsets = teacher_subsets(len(noisy), t.count, t.data, t.overlap, seeds.subsets)
    if t.model in SAMPLERS:  # k-NN and kernel teachers are fitted in seconds: never kept
        return [fit_sampler(t.model, data.x_train[s], noisy[s], data.num_classes, t.neighbors, t.bandwidth)
                for s in subsets], subsets
    arch = Architecture(t.model, t.width)
    everything = lambda s: len(s) == len(noisy) and bool((s == torch.arange(len(noisy))).all())
    inputs = [data.x_train if everything(s) else data.x_train[s] for s in subsets]  # shared, where it can be
    jobs = [training_job(f"teacher{k}", f"seed {seeds.experiment}: teacher {k + 1}/{t.count}", arch, t,
                         inputs[k], len(subsets[k]), fixed_targets(noisy[subsets[k]]),
                         seeds.teacher(k), data, stats) for k in range(t.count)]
    return work.models(jobs, folder, spread="ranks", per_device=t.per_device, resumable=True,
                       log={"seed": seeds.experiment}), subsets


# ---------------------------------------------------------------------------------------------
# Pool labels


def label_pool_with_teachers(work: Work, teachers: list[torch.nn.Module], x_pool, folder: Path
                             ) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The teachers label the pool, every teacher on each chunk while it is on the device:
    uint8 [N, K] labels and K float16 [N, C] logits."""
    chunk = work.eval_batch_size * max(1, 65536 // work.eval_batch_size)

    def label(columns: list[int], rows: slice) -> list[dict[str, np.ndarray]]:
        # One teacher at a time: stacked teachers (train_many.StackedPredictor) labelled 1.2x faster
        # for the 1-D CNN on an H200, but 3x slower for ResNet-18 there and 0.8x on a CPU.
        predicts = [lambda xb, k=k: work.predict(teachers[k], xb, keep_on_device=True) for k in columns]
        return [{"labels": labels, "logits": logits} for labels, logits in
                label_pool_by_teachers(predicts, x_pool, rows, chunk=chunk, device=work.device)]

    columns = work.rows(folder, "pool_{part}{k}.npy", ("labels", "logits"), len(teachers), len(x_pool), label,
                        label=lambda ks: f"labelling the pool with {len(ks)} of {len(teachers)} teachers",
                        align=work.eval_batch_size)
    matrix = work.shared_array(folder / "pool_labels.npy", lambda: np.stack([c["labels"] for c in columns], axis=1))
    return torch.from_numpy(matrix), [c["logits"] for c in columns]


# ---------------------------------------------------------------------------------------------
# Students


def distillation_targets(cfg: StudentConfig, teachers: list[torch.nn.Module], pool_labels: torch.Tensor,
                         pool_logits: list[np.ndarray], k: int, draw_seed: int, num_classes: int
                         ) -> tuple[Targets, Targets]:
    """Targets for the two students that learn from the first k teachers: (ensemble, random teacher)."""
    if cfg.labels == "online":  # the authors' code: the teachers label each augmented batch
        random_mode = "batch" if cfg.random_teacher == "batch" else "example"
        return (OnlineTeacherLabels(teachers[:k], cfg.ensemble, draw_seed, num_classes),
                OnlineTeacherLabels(teachers[:k], random_mode, draw_seed, num_classes))
    subset = pool_labels[:, :k]
    if cfg.ensemble == "sum_logits":  # the authors' code
        ensemble = sum(torch.from_numpy(np.asarray(pool_logits[t], dtype=np.float32)) for t in range(k)).argmax(1)
    elif cfg.ensemble == "vote_shares":  # soft: the fraction of the k teachers voting for each class
        ensemble = vote_shares(subset, num_classes)
    elif cfg.ensemble == "mean_prob":  # soft: the teachers' mean softmax
        ensemble = softmax_sum(pool_logits[:k]) / k
    else:  # the paper: plurality vote, ties broken by the summed probabilities
        ensemble = plurality_vote(subset, num_classes, softmax_sum(pool_logits[:k]))
    if cfg.random_teacher == "batch":  # the authors' code: one teacher per training batch
        random = per_batch_teacher_targets(subset, draw_seed)
    elif cfg.random_teacher == "epoch":  # a fresh draw every time an example is seen
        random = per_epoch_teacher_targets(subset, draw_seed)
    else:  # the paper: one teacher drawn for each example, fixed
        random = fixed_targets(random_teacher_labels(subset, draw_seed))
    return fixed_targets(ensemble), random


@dataclasses.dataclass
class StudentInputs:
    """What the students learn from: the first n rows of x (y: their true labels, for the clean_pool
    reference, or None), trained with `recipe`."""
    x: torch.Tensor
    n: int
    y: torch.Tensor | None
    recipe: StudentConfig | FitSpec
    small_pool: bool = False
    random_teacher: str = "example"  # students.random_teacher, as the random-teacher student draws


def student_inputs(cfg: Config, data: Dataset, n_pool: int) -> StudentInputs:
    """The pool's first n_pool rows with the students' recipe; or, on a pool too small for the pool
    budget (students.small_pool), the pool and the training inputs, both labelled by the teachers,
    with a teacher's recipe and steps: a 700-row pool trained for 64 passes of the students'
    recipe gave students below one teacher (docs/practitioners.md)."""
    s = cfg.students
    if not s.trains_as_teacher(n_pool):
        return StudentInputs(data.x_pool, n_pool, data.y_pool, s, random_teacher=s.random_teacher)
    x = torch.cat([data.x_pool[:n_pool], data.x_train.to(data.x_pool.device)])
    y = None if data.y_pool is None else torch.cat([data.y_pool[:n_pool], data.y_train])
    teacher = FitSpec.from_config(cfg.teachers)
    n_train = len(data.y_train)
    recipe = dataclasses.replace(teacher, epochs=1, min_examples=teacher.epochs_for(n_train) * n_train,
                                 loss=s.loss, gce_q=s.gce_q, gce_warmup=s.gce_warmup)  # the students' loss
    # The paper's student sees each pool example once, labelled by one random teacher. Seen a
    # teacher's many passes, a fixed draw would have it memorise one teacher's mistakes on every
    # row: a fresh teacher at every visit (700-row MNIST-1D arrays, seed 2: fixed draws scored
    # under one teacher, docs/practitioners.md).
    draws = "epoch" if s.random_teacher == "example" else s.random_teacher
    return StudentInputs(x, len(x), y, recipe, small_pool=True, random_teacher=draws)


def student_jobs(cfg: Config, data: Dataset, stats, teachers, pool_labels, pool_logits, seeds: Seeds,
                 student_sweep: list[int], inputs: StudentInputs) -> list[ModelJob]:
    """For each K: an ensemble-distilled and a random-teacher student; then the two clean references.
    pool_labels, pool_logits: the teachers' labels of inputs.x."""
    arch, x, n = student_architecture(cfg, data), inputs.x, inputs.n
    s = dataclasses.replace(cfg.students, random_teacher=inputs.random_teacher)
    label = lambda name: f"seed {seeds.experiment}: student {name}"
    jobs = []
    for i, k in enumerate(student_sweep):
        ensemble, random = distillation_targets(s, teachers, pool_labels, pool_logits, k, seeds.draws(k),
                                                data.num_classes)
        name = f"ensemble_distill_k{k}"
        jobs.append(training_job(name, label(name), arch, inputs.recipe, x, n, ensemble,
                                 seeds.ensemble_student(i), data, stats))
        if k > 1:  # one teacher: both students see the same labels (random_distill_k1 is ensemble_distill_k1)
            name = f"random_distill_k{k}"
            jobs.append(training_job(name, label(name), arch, inputs.recipe, x, n, random,
                                     seeds.random_student(i), data, stats))
    # References: the teacher recipe on the clean training labels; the student recipe on the pool's true labels.
    jobs.append(training_job("clean_train", label("clean_train"), Architecture(cfg.teachers.model, cfg.teachers.width),
                             cfg.teachers, data.x_train, len(data.y_train), fixed_targets(data.y_train.long()),
                             seeds.clean_train, data, stats))
    if inputs.y is not None:
        jobs.append(training_job("clean_pool", label("clean_pool"), arch, inputs.recipe, x, n,
                                 fixed_targets(inputs.y.long()), seeds.clean_pool, data, stats))
    return jobs


def train_students(work: Work, cfg: Config, data: Dataset, jobs: list[ModelJob], folder: Path, seed: int
                   ) -> dict[str, torch.Tensor]:
    """Train (or read back) each student; their test predictions int64 [N_test] by name."""
    if cfg.teachers.model in SAMPLERS:  # the clean-label reference of a sampler recipe is a sampler
        jobs = [job for job in jobs if job.name != "clean_train"]
    students = work.models(jobs, folder, spread="ddp", per_device=cfg.students.per_device, log={"seed": seed})
    predictions = {job.name: work.predict(model, data.x_test).argmax(1) for job, model in zip(jobs, students)}
    if cfg.teachers.model in SAMPLERS:
        t = cfg.teachers
        sampler = fit_sampler(t.model, data.x_train, data.y_train.long(), data.num_classes, t.neighbors, t.bandwidth)
        predictions["clean_train"] = work.predict(sampler, data.x_test).argmax(1)
    return predictions


# ---------------------------------------------------------------------------------------------
# One experiment seed


def run_seed(work: Work, cfg: Config, data: Dataset, stats: tuple[torch.Tensor, torch.Tensor], seed: int) -> dict:
    """Table 1 and Figure 2 for one experiment seed; returns its numbers (measure.measure_seed).
    stats: the training inputs' mean and std, with which every network standardises its input."""
    seeds, folder, times = Seeds(seed), work.out / f"seed{seed}", {}
    folder.mkdir(parents=True, exist_ok=True)

    # Noise: one noisy training set for every teacher of this seed.
    noisy_np, T = noisy_training_labels(cfg, data, seeds.noise)
    noisy = torch.from_numpy(noisy_np).long()

    # Teachers, and how well each fits the noisy labels it was trained on (1.0: it interpolates them).
    with work.stage("teachers", times):
        teachers, subsets = train_teachers(work, cfg, data, stats, noisy, seeds, folder / "teachers")
    train_fit = [accuracy(work.predict(t, data.x_train[s]).argmax(1), noisy[s]) for t, s in zip(teachers, subsets)]
    test_logits = torch.stack([work.predict(t, data.x_test) for t in teachers])  # [K, N_test, C]: the ensembles

    # Pool labels: the teachers label the unlabelled pool (its first n_pool examples; a small pool
    # with the training inputs), each chunk read once for all of them.
    inputs = student_inputs(cfg, data, cfg.students.pool_rows(len(data.x_pool)))
    with work.stage("labelling", times):
        pool_labels, pool_logits = label_pool_with_teachers(work, teachers, inputs.x, folder / "pool")

    # Students, for every K of Figure 2 or only for all K teachers.
    sweep = sorted({k for k in cfg.sweep.teachers if k <= cfg.teachers.count} | {cfg.teachers.count})
    student_sweep = sweep if cfg.sweep.students else [cfg.teachers.count]
    with work.stage("students", times):
        jobs = student_jobs(cfg, data, stats, teachers, pool_labels, pool_logits, seeds, student_sweep, inputs)
        students = train_students(work, cfg, data, jobs, folder / "students", seed)
    if 1 in student_sweep:
        students["random_distill_k1"] = students["ensemble_distill_k1"]

    # Numbers.
    return measure_seed(SeedOutcome(seed, data.y_train.numpy(), noisy_np, T, torch.from_numpy(noise_lib.noise_partner(T)),
                                    data.y_test, test_logits, train_fit, sweep, students, times))


# ---------------------------------------------------------------------------------------------
# The whole run


def input_fingerprints(cfg: Config, data: Dataset, noisy: np.ndarray, T: np.ndarray) -> dict[str, dict]:
    """What the run read, by the key that names it: the data's arrays and the noise files' contents."""
    source = cfg.data.path or ", ".join(filter(None, [cfg.data.root, cfg.data.pool_root])) or f"{cfg.data.name}, generated"
    found = {"data": (source, arrays_sha256(data.x_train, data.y_train, data.x_test, data.y_test, data.x_pool,
                                            data.y_pool))}
    if cfg.noise.labels_file:
        found["noise.labels_file"] = (cfg.noise.labels_file, arrays_sha256(noisy))
    if cfg.noise.matrix_file:
        found["noise.matrix_file"] = (cfg.noise.matrix_file, arrays_sha256(T))
    return {key: {"what": what, "size": size, "sha256": sha} for key, (what, (size, sha)) in found.items()}


def run_experiment(cfg: Config, out: str | Path, quiet: bool = False, force: bool = False) -> dict | None:
    """Run (or resume) the experiment in folder `out`; write results.json, report.md, figures/.

    Under torchrun every rank calls this (runtime/world.py says how the work is shared); rank 0
    writes the reports and returns the results, the other ranks return None."""
    from rolemodels.paper.report import summarize_run, write_report

    started = time.perf_counter()
    session = start_session(cfg.train, quiet)
    refuse_unworkable(cfg, session)
    # Bad data or noise is refused before anything is written to the run folder.
    data = session.world.main_first(lambda: load_dataset(cfg.data, progress=session.progress.note))
    check_dataset(data)
    noisy, T = noisy_training_labels(cfg, data, cfg.seed)
    check_architectures(cfg, data)
    results = None
    with open_run(session, Path(out), cfg, force, inputs=lambda: input_fingerprints(cfg, data, noisy, T)) as work:
        stats = input_stats(data.x_train)
        data.x_pool = work.to_device(data.x_pool)  # on a GPU where it fits: labelled and learnt from there
        per_seed = [run_seed(work, cfg, data, stats, seed) for seed in range(cfg.seed, cfg.seed + cfg.seeds)]
        if work.world.is_main:
            results = summarize_run(cfg, data, per_seed, time.perf_counter() - started)
            write_report(work.out, cfg, data, results, per_seed)
    session.close()
    session.progress.note(f"results in {out}/results.json, report in {out}/report.md")
    return results
