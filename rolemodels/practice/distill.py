"""`rolemodels distill` on a practitioner's own files: noisy labels in, a student to ship out.

The pipeline of experiment.py without what needs clean labels: teachers fit the noisy labels,
label the pool, one student learns from their vote (or from one random teacher per example),
and the student, who never saw the training labels, says which of them look wrong. The run
folder resumes like `rolemodels run`'s and holds:

    student.pt                  the student, self-contained (rolemodels.load_student, `rolemodels predict`)
    pool/pool_labels.npy        uint8 [N, K]: each teacher's label of each pool example
    train/pool_labels.npy       the same for the training inputs, where the pool is small (under
                                3,125 rows), the teachers robust, and the student learns from both
    diagnostics.json            teacher fit and agreement, vote margins, estimated noise, suspected errors
    suspected_label_errors.csv  every training example the student contradicts, most confident first
    report.md                   the same, to read
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rolemodels.config import CHOICES, StudentConfig, TeacherConfig, TrainConfig, apply_overrides, flatten, to_dict
from rolemodels.data import Dataset
from rolemodels.errors import UserError
from rolemodels.method.combine import plurality_vote
from rolemodels.method.metrics import accuracy
from rolemodels.method.teach import softmax_sum
from rolemodels.models import MODELS, SAMPLERS, model_input_stats
from rolemodels.paper.experiment import (
    distillation_targets,
    label_pool_with_teachers,
    train_teachers,
    training_job,
)
from rolemodels.paper.networks import student_architecture
from rolemodels.practice.fit_checks import degenerate_fit, warn_degenerate
from rolemodels.practice.label_errors import distillation_diagnostics, suspected_label_errors
from rolemodels.practice.pool_graph import spread_soft_labels
from rolemodels.practice.recipe import (
    POOL_GRAPH_MAX_ROWS,
    bounded_examples,
    graph_neighbors_auto,
    student_examples,
    teacher_count,
    teacher_recipe,
)
from rolemodels.practice.student import Student, student_state
from rolemodels.practice.userdata import InputFiles, UserData, read_user_data
from rolemodels.recipe import ROBUST_GCE_Q, is_small_pool
from rolemodels.runtime.files import atomic_write_json, atomic_write_text, file_sha256
from rolemodels.runtime.session import open_run, start_session
from rolemodels.seeds import Seeds
from rolemodels.training.train import fixed_targets

# The recipes' losses; every other default of a recipe (epochs, budgets, augmentation, the
# student's targets and the pool graph) is the estimator's, from practice/recipe.py, applied once
# the data says which network the teachers are (`resolved`), to the keys no override set.
RECIPE_LOSSES = {"robust": ("teachers.loss=gce", f"teachers.gce_q={ROBUST_GCE_Q}"),
                 "paper": ("teachers.loss=cross_entropy",)}
COMBINE = ("auto", "soft", "vote", "random")
# What the recipe's teachers should reach on their own labels, relative to the labels the student
# finds right: robust teachers fit about those (they leave the wrong ones), the paper's all of them.
TEACHER_FIT_SHORTFALL = 0.10


@dataclass
class DistillConfig:
    name: str = "distill"
    recipe: str = "robust"  # robust | paper (practice/recipe.py); set by --recipe
    seed: int = 0  # teachers, random-teacher draws, student (seeds.py's rule for experiment seed `seed`)
    # auto: soft for the robust recipe, else vote (the estimator's rule) | soft: the teachers' mean
    # probabilities | vote: ensemble distillation (students.ensemble) | random: one random teacher per example
    combine: str = "auto"
    pool_graph: int = -1  # -1: auto (the estimator's rule) | 0: off | k: spread soft labels over k neighbours
    set_by_overrides: list[str] = field(default_factory=list)  # keys the recipe leaves as the user set them
    inputs: InputFiles = field(default_factory=InputFiles)
    fingerprint: str = ""  # set from the input files: a rerun on other data is refused
    teachers: TeacherConfig = field(default_factory=lambda: TeacherConfig(model="auto"))
    # the student's budget is the estimator's (`resolved`), not `rolemodels run`'s pool budget
    students: StudentConfig = field(default_factory=lambda: StudentConfig(pool_budget=False))
    train: TrainConfig = field(default_factory=TrainConfig)


def load_distill_config(inputs: InputFiles, overrides: list[str] = (), recipe: str = "robust") -> DistillConfig:
    """The defaults of `recipe` with these input files and `section.key=value` overrides (which win
    over the recipe's settings), checked. The recipe's network-dependent settings are applied by
    `resolved`, once the data is read."""
    if recipe not in RECIPE_LOSSES:
        raise UserError(f"--recipe {recipe}: choose one of {', '.join(RECIPE_LOSSES)}")
    cfg = DistillConfig(recipe=recipe, inputs=InputFiles(**{f.name: str(Path(getattr(inputs, f.name)).resolve())
                                                            if getattr(inputs, f.name) else ""
                                                            for f in dataclasses.fields(InputFiles)}))
    # the files (--data, --x-train, ...) and the recipe (--recipe) come from their options
    apply_overrides(cfg, [*RECIPE_LOSSES[recipe], *overrides],
                    fixed=("inputs", "fingerprint", "recipe", "set_by_overrides"))
    cfg.set_by_overrides = sorted({item.split("=", 1)[0].strip() for item in overrides})
    check_distill_config(cfg)
    return cfg


def check_distill_config(cfg: DistillConfig) -> None:
    """Refuse values that cannot make a student, naming the key and what is allowed."""
    flat = flatten(to_dict(cfg))
    for key, allowed in CHOICES.items():
        if key in flat and flat[key] not in allowed:
            raise UserError(f"config key {key}: {flat[key]!r} is not one of {', '.join(allowed)}")
    if cfg.combine not in COMBINE:
        raise UserError(f"config key combine: {cfg.combine!r} is not one of {', '.join(COMBINE)}")
    if cfg.pool_graph < -1:
        raise UserError(f"config key pool_graph: must be -1 (auto), 0 (off) or a number of neighbours, got "
                        f"{cfg.pool_graph}")
    for key in ("teachers.count", "teachers.width", "teachers.epochs", "teachers.batch_size", "students.epochs",
                "students.batch_size"):
        if flat[key] < 1:
            raise UserError(f"config key {key}: must be at least 1, got {flat[key]}")
    for key in ("teachers.min_examples", "students.min_examples", "teachers.per_device", "students.per_device",
                "train.eval_batch_size"):
        if flat[key] < 0:
            raise UserError(f"config key {key}: must be at least 0, got {flat[key]}")
    for key in ("teachers.lr", "students.lr"):
        if not flat[key] > 0:
            raise UserError(f"config key {key}: must be positive, got {flat[key]}")
    if cfg.teachers.model not in (*MODELS, *SAMPLERS, "auto"):
        raise UserError(f"config key teachers.model: unknown model {cfg.teachers.model!r}: choose auto or one of "
                        f"{', '.join([*MODELS, *SAMPLERS])}")
    if cfg.students.model and cfg.students.model not in MODELS:
        raise UserError(f"config key students.model: unknown model {cfg.students.model!r}: choose one of "
                        f"{', '.join(MODELS)}")
    if cfg.students.labels != "pool":
        raise UserError("config key students.labels: distill labels the pool once (pool); online labels need "
                        "`rolemodels run`")


def resolved(cfg: DistillConfig, data: UserData) -> DistillConfig:
    """cfg made concrete for the data: teachers.model=auto becomes a network of the data's kind, the
    recipe's settings for that network and the data's sizes fill the keys no override set (the
    estimator's, from practice/recipe.py), combine=auto is decided, and the input files' fingerprint
    is recorded."""
    cfg = dataclasses.replace(cfg, teachers=dataclasses.replace(cfg.teachers), students=dataclasses.replace(cfg.students))
    network = "cnn2d_wide" if data.x_train.dim() == 4 else "mlp"  # images [H, W, C]: the CPU-friendly CNN
    if cfg.teachers.model == "auto":
        cfg.teachers.model = network
    if cfg.teachers.model in SAMPLERS and not cfg.students.model:  # k-NN or kernel teachers: a network student
        cfg.students.model = network
    free = lambda key: key not in cfg.set_by_overrides  # noqa: E731
    settings = teacher_recipe(cfg.recipe, cfg.teachers.model)
    settings["min_examples"] = bounded_examples(settings["min_examples"], len(data.y_train))
    for key, value in settings.items():
        if free(f"teachers.{key}"):
            setattr(cfg.teachers, key, value)
    if free("teachers.count"):  # the estimator's n_teachers="auto" with a pool
        cfg.teachers.count = teacher_count("auto", pool=True, network=cfg.teachers.model, recipe=cfg.recipe)
    if free("students.min_examples"):
        extra = len(data.y_train) if training_inputs_join(cfg, len(data.x_pool)) else 0  # student_rows
        cfg.students.min_examples = student_examples(len(data.x_pool) + extra)
    if free("students.augment"):  # the student is augmented as its teachers are
        cfg.students.augment = cfg.teachers.augment
    if cfg.combine == "auto":
        cfg.combine = "soft" if cfg.recipe == "robust" else "vote"
    paths = sorted({getattr(cfg.inputs, f.name) for f in dataclasses.fields(InputFiles)} - {""})
    cfg.fingerprint = " ".join(file_sha256(p)[1][:16] for p in paths)
    return cfg


# ---------------------------------------------------------------------------------------------
# The pipeline


def run_distill(cfg: DistillConfig, out: str | Path, quiet: bool = False, force: bool = False) -> dict:
    """Teachers, pool labels, student and diagnostics in folder `out` (resumed when it holds a
    run of this configuration); returns the diagnostics."""
    started, times = time.perf_counter(), {}
    data = read_user_data(cfg.inputs)  # every check before anything is written
    cfg = resolved(cfg, data)
    session = start_session(cfg.train, quiet)
    if session.world.size > 1:
        raise UserError("rolemodels distill runs in one process; start it without torchrun")
    out = Path(out)
    with open_run(session, out, cfg, force) as work:
        dataset = as_dataset(data, out.name)
        arch = student_architecture(cfg, dataset)
        # each network standardises as it should (an mlp per feature: a table's raw columns)
        teacher_stats = model_input_stats(cfg.teachers.model, dataset.x_train)
        student_stats = model_input_stats(arch.model, dataset.x_train)
        seeds, K, C = Seeds(cfg.seed), cfg.teachers.count, data.num_classes
        noisy = data.y_train

        with work.stage("teachers", times):
            teachers, subsets = train_teachers(work, cfg, dataset, teacher_stats, noisy, seeds, out / "teachers")
        fits = [accuracy(work.predict(t, dataset.x_train[s]).argmax(1), noisy[s]) for t, s in zip(teachers, subsets)]
        x_student = student_rows(cfg, dataset.x_pool, dataset.x_train)
        with work.stage("labelling", times):
            pool_labels, pool_logits = label_pool_with_teachers(work, teachers, dataset.x_pool, out / "pool")
            if len(x_student) > len(dataset.x_pool):  # a small pool: the training inputs too
                train_labels, train_logits = label_pool_with_teachers(work, teachers, dataset.x_train, out / "train")
                pool_labels = torch.cat([pool_labels, train_labels])
                pool_logits = [np.concatenate(parts) for parts in zip(pool_logits, train_logits)]
        targets, graph = pool_targets(cfg, teachers, pool_labels, pool_logits, x_student, seeds, C, arch.model)
        job = training_job("student", f"student ({cfg.combine})", arch, cfg.students, x_student,
                           len(x_student), targets, seeds.ensemble_student(0), dataset, student_stats)
        with work.stage("student", times):
            [student] = work.models([job], out / "students", spread="ddp", per_device=1)
        work.save_torch(out / "student.pt", student_state(Student(student, arch.model, arch.width, dataset.input_shape,
                                                                  data.classes, input_dtype(dataset.x_train))))

        proba = torch.softmax(work.predict(student, dataset.x_train), 1).numpy()
        diagnostics = {"classes": [str(c) for c in data.classes], "n_train": len(noisy), "n_pool": len(data.x_pool),
                       "student_rows": len(x_student),
                       "teachers": K, "teacher_model": cfg.teachers.model, "student_model": arch.model,
                       "combine": cfg.combine, **graph,
                       **distillation_diagnostics(noisy.numpy(), proba, fits, pool_labels.numpy(), C)}
        taught = plurality_vote(pool_labels, C, softmax_sum(pool_logits)).numpy()
        on_pool = work.predict(student, x_student).argmax(1).numpy()
        diagnostics["warnings"] = [*teacher_shortfall(cfg, diagnostics),
                                   *degenerate_fit(noisy.numpy(), proba.argmax(1), fits, taught, on_pool,
                                                   diagnostics["teacher_agreement"], [str(c) for c in data.classes])]
        if data.x_test is not None:
            diagnostics["test_accuracy"] = accuracy_on_test(work, teachers, student, data, C)
        diagnostics["seconds"] = {**{k: round(v, 1) for k, v in times.items()},
                                  "total": round(time.perf_counter() - started, 1)}
        atomic_write_json(out / "diagnostics.json", diagnostics)
        write_suspected_errors(out / "suspected_label_errors.csv", noisy.numpy(), proba, data.classes)
        atomic_write_text(out / "report.md", report_markdown(cfg, diagnostics, data.classes))
    session.close()
    warn_degenerate(diagnostics["warnings"], "rolemodels distill")
    session.progress.note(f"student in {out}/student.pt, diagnostics in {out}/diagnostics.json, report in "
                          f"{out}/report.md")
    return diagnostics


def training_inputs_join(cfg: DistillConfig, n_pool: int) -> bool:
    """The training inputs join a small pool (recipe.is_small_pool) where the teachers train on a
    robust loss, as RoleModelClassifier's do (its robust_teachers says why only there)."""
    return is_small_pool(n_pool) and cfg.teachers.loss == "gce" and cfg.teachers.model not in SAMPLERS


def student_rows(cfg: DistillConfig, x_pool, x_train):
    """What the student learns from: the pool, and the training inputs too where training_inputs_join."""
    if not training_inputs_join(cfg, len(x_pool)):
        return x_pool
    pool = x_pool if isinstance(x_pool, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x_pool))
    return torch.cat([pool, x_train.to(pool.device)])


def pool_targets(cfg: DistillConfig, teachers, pool_labels: torch.Tensor, pool_logits: list, x_pool,
                    seeds: Seeds, C: int, student_model: str):
    """What the student learns on the pool, and what the pool graph did ({"pool_graph", and its
    homophily where it was measured}): soft, the teachers' mean probabilities (spread over the
    pool's neighbour graph where the estimator's rule says so); vote or random as experiment.py's
    students learn them."""
    K = cfg.teachers.count
    if cfg.combine != "soft":
        ensemble, random = distillation_targets(cfg.students, teachers, pool_labels, pool_logits, K, seeds.draws(K), C)
        return (ensemble if cfg.combine == "vote" else random), {"pool_graph": 0}
    mean = (softmax_sum(pool_logits) / K).numpy()
    neighbors = graph_neighbors_auto("soft", student_model, len(mean)) if cfg.pool_graph < 0 else cfg.pool_graph
    if neighbors and len(mean) > POOL_GRAPH_MAX_ROWS:
        raise UserError(f"config key pool_graph: the pool has {len(mean):,} rows, and its neighbour graph would cost "
                        f"{len(mean):,}^2 distances; at most {POOL_GRAPH_MAX_ROWS:,} rows (pool_graph=0 turns it off)")
    x = np.asarray(x_pool, dtype=np.float32) if neighbors else None
    mean, graph = spread_soft_labels(mean, x, neighbors, guarded=cfg.pool_graph < 0)
    return fixed_targets(torch.from_numpy(mean.astype(np.float32))), graph


def teacher_shortfall(cfg: DistillConfig, d: dict) -> list[dict]:
    """A finding when the teachers fit fewer of their labels than the recipe's teachers should: robust
    teachers about the labels the student finds right, the paper's every label."""
    right = 1 - d["estimated_noise_rate"]
    expected = right if cfg.teachers.loss == "gce" else 0.99
    fit = float(np.mean(d["teacher_fit"]))
    if fit >= expected - TEACHER_FIT_SHORTFALL:
        return []
    aim = (f"about the {right:.0%} of the labels the student finds right" if cfg.teachers.loss == "gce"
           else "every label (samplers interpolate their noisy labels)")
    return [{"kind": "teachers_short", "message": (
        f"the teachers fit {fit:.1%} of their own labels, where the {cfg.recipe} recipe's should fit {aim}: they "
        f"are stuck or undertrained. Try more teachers.epochs, another teachers.lr, or another network")}]


def as_dataset(data: UserData, name: str) -> Dataset:
    """The user's arrays in the layout experiment.py's stages take (no test set: empty ones)."""
    empty = data.x_train[:0]
    return Dataset(name, data.x_train, data.y_train, data.x_test if data.x_test is not None else empty,
                   data.y_test if data.y_test is not None else torch.zeros(0, dtype=torch.int64), data.x_pool, None,
                   data.num_classes, [str(c) for c in data.classes])


def input_dtype(x: torch.Tensor) -> str:
    return "uint8" if x.dtype == torch.uint8 else "float32"


def accuracy_on_test(work, teachers, student, data: UserData, C: int) -> dict:
    """On the test set: each teacher, their plurality vote and the student."""
    logits = torch.stack([work.predict(t, data.x_test) for t in teachers])  # [K, N, C]
    vote = plurality_vote(logits.argmax(2).T, C, softmax_sum([lg.numpy() for lg in logits]))
    per_teacher = [accuracy(lg.argmax(1), data.y_test) for lg in logits]
    return {"teachers": per_teacher, "teacher_mean": float(np.mean(per_teacher)), "ensemble": accuracy(vote, data.y_test),
            "student": accuracy(work.predict(student, data.x_test).argmax(1), data.y_test)}


def write_suspected_errors(path: Path, given: np.ndarray, proba: np.ndarray, classes: list) -> None:
    """index,given,student,confidence for every contradicted training label, most confident first."""
    rows = ["index,given,student,confidence"]
    for i in suspected_label_errors(given, proba):
        rows.append(f"{i},{classes[given[i]]},{classes[int(proba[i].argmax())]},{proba[i].max():.4f}")
    atomic_write_text(path, "\n".join(rows) + "\n")


def report_markdown(cfg: DistillConfig, d: dict, classes: list) -> str:
    """report.md: what was trained, how the teachers did, what the student says about the labels."""
    fit = d["teacher_fit"]
    margins = d["vote_margin_histogram"]
    lines = [f"# {cfg.name}: distillation from {d['teachers']} teachers", "",
             f"{d['n_train']:,} labelled examples, {d['n_pool']:,} in the pool, {len(classes)} classes. Teachers: "
             f"{d['teacher_model']}; student: {d['student_model']} ({cfg.combine}).", "",
             "## Teachers", "",
             f"- fit to their own (noisy) labels: {min(fit):.1%} to {max(fit):.1%}",
             f"- agreement between two teachers on the pool: {d['teacher_agreement']:.1%}",
             f"- pool examples on which all teachers agree: {d['unanimous_pool_fraction']:.1%}; vote margins 0..K: "
             f"{', '.join(f'{m:,}' for m in margins)}", "",
             "## The labels, as the student sees them", "",
             f"- estimated noise rate: {d['estimated_noise_rate']:.1%} ({d['suspected_label_errors']:,} training labels "
             f"the student contradicts; all in suspected_label_errors.csv, most confident first; "
             f"docs/practitioners.md says how far to trust it)"]
    matrix = np.asarray(d["estimated_transition_matrix"])
    off = [(matrix[i, j], i, j) for i in range(len(classes)) for j in range(len(classes)) if i != j]
    lines += ["- most common confusions (student's class -> given label): "
              + ", ".join(f"{classes[i]} -> {classes[j]} {v:.1%}" for v, i, j in sorted(off, reverse=True)[:5])]
    if "test_accuracy" in d:
        t = d["test_accuracy"]
        lines += ["", "## Test set", "", "| model | accuracy |", "|---|---|",
                  f"| one teacher (mean of {len(t['teachers'])}) | {t['teacher_mean']:.1%} |",
                  f"| teachers' plurality vote | {t['ensemble']:.1%} |", f"| student | {t['student']:.1%} |"]
    if d["warnings"]:
        lines += ["", "## Warnings", "", *[f"- {w['message']}" for w in d["warnings"]]]
    lines += ["", f"Seconds: {d['seconds']}", ""]
    return "\n".join(lines)
