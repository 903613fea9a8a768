"""How it compares: the noisy-label methods a practitioner would use instead, on the same data and
the very same noisy labels, side by side with ours.

    python experiments/compare.py --threads 2                  # the full benchmark (about an hour on 2 cores)
    python experiments/compare.py --quick --out runs/compare-quick/compare.json   # tiny sizes, under a minute
    python experiments/compare.py --markdown                   # docs/compare.md's tables from docs/data/compare.json
    python experiments/compare.py --figure docs/figures/compare.png

A setting is (data, noise, seed). For each, the noisy training labels are drawn once, saved, and
every method trains on them (each row records their SHA-256). The methods:

    baselines     early stopping on a noisy 10% split; generalised cross-entropy (`teachers.loss=gce`);
                  cleanlab's CleanLearning (5-fold out-of-fold probabilities, prune, retrain); cleanlab,
                  then a student on the pool pseudo-labelled by the cleaned model; on the table only:
                  scikit-learn's SelfTrainingClassifier and LabelSpreading
    ours          `rolemodels run` itself (the default configuration, whatever it is, reading the saved
                  labels through noise.labels_file): one teacher, the test-time ensemble, ensemble and
                  random-teacher distillation; on MNIST-1D also the mnist1d-best preset
    combination   teachers trained on the cleanlab-pruned set, then ensemble-distilled
    references    the teacher recipe on the clean labels, the student recipe on the pool's true labels

Every network is the configuration's: the teachers' architecture and recipe for the one-model
methods, the students' for the pool students. Results go to one JSON file, row by row; a rerun
computes only the rows it lacks (a group of rows that one computation gives is kept whole).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rolemodels.combine import plurality_vote  # noqa: E402
from rolemodels.config import Config, FitSpec, load_config  # noqa: E402
from rolemodels.data import Dataset, load_dataset  # noqa: E402
from rolemodels.experiment import (Architecture, new_model, noisy_training_labels, run_experiment,  # noqa: E402
                                   student_architecture)
from rolemodels.label_errors import suspected_label_errors  # noqa: E402
from rolemodels.labelfiles import write_labels  # noqa: E402
from rolemodels.metrics import accuracy, noise_replication, summarize  # noqa: E402
from rolemodels.models import input_stats  # noqa: E402
from rolemodels.noise import noise_partner  # noqa: E402
from rolemodels.runtime.files import arrays_sha256, atomic_save_npy, atomic_write_json  # noqa: E402
from rolemodels.seeds import Seeds  # noqa: E402
from rolemodels.teach import softmax_sum  # noqa: E402
from rolemodels.train import fit, fixed_targets, predict_logits, resolve_device  # noqa: E402

RESULTS = ROOT / "docs" / "data" / "compare.json"
FIGURE = ROOT / "docs" / "figures" / "compare.png"
WORK = ROOT / "runs" / "compare"
FASHION_ROOT = "/usr/share/datasets/fashion-mnist"

# ---------------------------------------------------------------------------------------------
# Settings: data, noise, seeds

# name -> (noise.preset, noise.rate); the paper's pair noise, symmetric noise, and c -> c + 1.
NOISES = {"paper20": ("paper", 0.2), "symmetric40": ("symmetric", 0.4), "pairflip30": ("pairflip", 0.3)}
PARTNERED = ("paper", "pairflip")  # noises whose wrong labels have one partner class (noise replication)

# The tabular set: scikit-learn's 8x8 digits (1,797 rows, 64 features, 10 classes, so the paper's
# (c + 5) mod 10 pairs exist), split once: a test set, the labelled training set, the rest the pool.
DIGITS_TEST, DIGITS_TRAIN = 400, 600


@dataclass(frozen=True)
class Data:
    """One dataset: the preset the pipeline starts from (None: the default) and its overrides."""

    preset: str | None
    overrides: tuple[str, ...]
    quick: tuple[str, ...]  # the quick mode's sizes, after the overrides


QUICK_RECIPE = ("teachers.count=3", "teachers.epochs=3", "teachers.width=8", "students.batch_size=128",
                "sweep.teachers=[1, 3]", "train.eval_batch_size=1024")
DATA = {
    # The default run's data and recipe, unchanged.
    "mnist1d": Data(None, (), ("data.n_train=1000", "data.n_test=500", "data.n_pool=4000", "data.generator=fast",
                               *QUICK_RECIPE, "teachers.epochs=10", "teachers.width=16",
                               "students.min_examples=20000")),
    # The preset's sizes: 10,000 noisy images, a 50,000-image pool, the 10,000 test images.
    "fashion": Data(str(ROOT / "configs" / "fashion-mnist.toml"), (f"data.root={FASHION_ROOT}",),
                    ("data.n_train=300", "data.n_test=300", "data.n_pool=1024", *QUICK_RECIPE)),
    # A table: the MLP, and enough steps for 600 rows and a pool of 797 (the sklearn estimator's budgets:
    # teachers see 60,000 examples, students 200,000).
    "digits": Data(None, ("data.name=arrays", "teachers.model=mlp", "teachers.min_examples=60000",
                          "students.min_examples=200000"),
                   ("teachers.min_examples=0", "students.min_examples=3000", *QUICK_RECIPE)),
}

# What the full run covers (about an hour on 2 cores, see docs/compare.md): MNIST-1D and the
# table on every noise, Fashion-MNIST (about 15 minutes a setting) on the paper's noise, one seed;
# --fashion all gives it every noise and seed.
SEEDS = (0, 1, 2)
QUICK_SETTINGS = [("mnist1d", "paper20", 0), ("digits", "pairflip30", 0)]


def full_settings(fashion: str) -> list[tuple[str, str, int]]:
    settings = [(d, n, s) for d in ("mnist1d", "digits") for n in NOISES for s in SEEDS]
    fashion_settings = ([("fashion", n, s) for n in NOISES for s in SEEDS] if fashion == "all"
                        else [("fashion", "paper20", 0)] if fashion == "paper" else [])
    return settings + fashion_settings


@dataclass
class Case:
    """One (data, noise, seed): the pipeline's configuration reading the saved noisy labels, the
    data, and what every method shares."""

    data_name: str
    noise: str
    seed: int
    cfg: Config  # ours: the pipeline's configuration, noise.labels_file = the saved labels
    preset: str | None
    overrides: list[str]  # the pipeline's overrides (for the other presets of ours)
    data: Dataset
    noisy: np.ndarray  # int64 [n]: the training labels every method gets
    partner: np.ndarray | None  # int64 [C]: each class's noise partner, None for symmetric noise
    folder: Path
    device: torch.device
    stats: tuple[torch.Tensor, torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        self.stats = input_stats(self.data.x_train)  # every network standardises with the training set's

    @property
    def flipped(self) -> np.ndarray:
        return self.noisy != self.data.y_train.numpy()

    @property
    def seeds(self) -> Seeds:
        return Seeds(self.seed)

    @property
    def teacher_recipe(self) -> tuple[Architecture, FitSpec]:
        return Architecture(self.cfg.teachers.model, self.cfg.teachers.width), FitSpec.from_config(self.cfg.teachers)

    @property
    def student_recipe(self) -> tuple[Architecture, FitSpec]:
        return student_architecture(self.cfg, self.data), FitSpec.from_config(self.cfg.students)


def digits_file(folder: Path) -> Path:
    """scikit-learn's digits as the pipeline's arrays file (written once): float32 [N, 64] features."""
    path = folder / "digits.npz"
    if not path.exists():
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(y))
        x, y = x[order].astype(np.float32), y[order].astype(np.int64)
        test, train = slice(0, DIGITS_TEST), slice(DIGITS_TEST, DIGITS_TEST + DIGITS_TRAIN)
        pool = slice(DIGITS_TEST + DIGITS_TRAIN, None)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "digits.tmp.npz"
        np.savez(tmp, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test], x_pool=x[pool],
                 y_pool=y[pool])
        tmp.replace(path)
    return path


def make_case(data_name: str, noise: str, seed: int, *, quick: bool, threads: int, work: Path,
              loaded: dict[str, Dataset]) -> Case:
    """Draw the setting's noisy labels with the pipeline's own noise code, save them, and point the
    pipeline's configuration at the file."""
    spec = DATA[data_name]
    preset, rate = NOISES[noise]
    folder = work / data_name / noise / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    overrides = [*spec.overrides, *(spec.quick if quick else ()), f"seed={seed}", "seeds=1",
                 f"noise.preset={preset}", f"noise.rate={rate}", f"train.threads={threads}",
                 # Figure 2's students for K < K_max are not compared here: not trained.
                 "sweep.students=false"]
    if data_name == "digits":
        overrides.insert(0, f"data.path={digits_file(work)}")
    cfg = load_config(spec.preset, overrides)
    if data_name not in loaded:
        loaded[data_name] = load_dataset(cfg.data)
    data = loaded[data_name]
    noisy, T = noisy_training_labels(cfg, data, Seeds(seed).noise)
    labels = folder / "noisy_labels.npy"
    if not labels.exists():
        write_labels(labels, noisy)
    overrides.append(f"noise.labels_file={labels}")
    cfg = load_config(spec.preset, overrides)
    return Case(data_name, noise, seed, cfg, spec.preset, overrides, data, noisy,
                noise_partner(T) if preset in PARTNERED else None, folder, resolve_device(cfg.train.device))


# ---------------------------------------------------------------------------------------------
# Numbers of one row


def labels_sha256(labels: np.ndarray) -> str:
    return arrays_sha256(np.asarray(labels, dtype=np.int64))[1]


def flag_scores(flagged: np.ndarray, flipped: np.ndarray) -> dict:
    """How well flagged examples (bool [n], or int indices) find the truly flipped labels (bool [n]):
    {"flagged": count, "precision": flipped among flagged, "recall": flagged among flipped}."""
    mask = np.zeros(len(flipped), dtype=bool)
    if flagged.dtype == bool:
        mask[:] = flagged
    else:
        mask[flagged] = True
    hits = int((mask & flipped).sum())
    return {"flagged": int(mask.sum()), "precision": hits / mask.sum() if mask.any() else float("nan"),
            "recall": hits / flipped.sum() if flipped.any() else float("nan")}


def scored(case: Case, pred: torch.Tensor | np.ndarray, *, fits: int, seconds: float, labels: np.ndarray,
           flags: dict | None = None) -> dict:
    """A row's numbers from its test predictions int [N_test]; labels: what the method trained on."""
    pred = torch.as_tensor(np.asarray(pred)).long()
    y_test = case.data.y_test
    return {"accuracy": accuracy(pred, y_test),
            "replication": None if case.partner is None else noise_replication(pred, y_test,
                                                                                torch.from_numpy(case.partner)),
            "fits": fits, "seconds": round(seconds, 2), "labels_sha256": labels_sha256(labels), **(flags or {})}


def train_network(case: Case, recipe: tuple[Architecture, FitSpec], x, labels: np.ndarray, seed: int,
                  log: Callable[[dict], None] | None = None) -> torch.nn.Module:
    """A network of `recipe` trained on x with labels int64 [n] by the library's loop."""
    arch, spec = recipe
    model = new_model(arch, case.data, case.stats, seed)
    return fit(model, x, fixed_targets(torch.from_numpy(labels).long()), spec, seed=seed, device=case.device,
               precision=case.cfg.train.precision, log=log)


def test_predictions(case: Case, model: torch.nn.Module, x=None) -> torch.Tensor:
    x = case.data.x_test if x is None else x
    return predict_logits(model, x, case.device, case.cfg.train.precision, case.cfg.train.eval_batch_size).argmax(1)


# ---------------------------------------------------------------------------------------------
# Baselines


class BestOnValidation:
    """`fit`'s per-epoch log callback for early stopping: the model's accuracy on held-out labels
    after every epoch, and the weights of the best epoch (the first, on a tie)."""

    def __init__(self, model: torch.nn.Module, x_val, y_val: torch.Tensor, device: torch.device, precision: str):
        self.model, self.x_val, self.y_val, self.device, self.precision = model, x_val, y_val, device, precision
        self.history: list[float] = []
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def __call__(self, record: dict) -> None:
        score = accuracy(predict_logits(self.model, self.x_val, self.device, self.precision).argmax(1), self.y_val)
        self.model.train()  # predict_logits left it in eval mode; the next epoch trains
        self.history.append(score)
        if self.best_state is None or score > max(self.history[:-1]):
            self.best_epoch = record["epoch"]
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def restore(self) -> torch.nn.Module:
        self.model.load_state_dict(self.best_state)
        return self.model.eval()


def early_stopping(case: Case) -> dict[str, dict]:
    """The teacher recipe on 90% of the noisy labels, keeping the epoch with the best accuracy on the
    other 10% (noisy too: a practitioner has no clean labels to choose with)."""
    started = time.perf_counter()
    n = len(case.noisy)
    order = np.random.default_rng(case.seed).permutation(n)
    val, train = np.sort(order[:n // 10]), np.sort(order[n // 10:])
    arch, spec = case.teacher_recipe
    model = new_model(arch, case.data, case.stats, case.seeds.teacher(0))
    tracker = BestOnValidation(model, case.data.x_train[val], torch.from_numpy(case.noisy[val]), case.device,
                               case.cfg.train.precision)
    fit(model, case.data.x_train[train], fixed_targets(torch.from_numpy(case.noisy[train])), spec,
        seed=case.seeds.teacher(0), device=case.device, precision=case.cfg.train.precision, log=tracker)
    pred = test_predictions(case, tracker.restore())
    row = scored(case, pred, fits=1, seconds=time.perf_counter() - started, labels=case.noisy)
    return {"early_stopping": {**row, "best_epoch": tracker.best_epoch, "epochs": len(tracker.history)}}


def robust_loss(case: Case) -> dict[str, dict]:
    """The teacher recipe with generalised cross-entropy (q = 0.7) instead of cross-entropy."""
    started = time.perf_counter()
    arch, spec = case.teacher_recipe
    spec = dataclasses.replace(spec, loss="gce")
    model = train_network(case, (arch, spec), case.data.x_train, case.noisy, case.seeds.teacher(0))
    return {"gce": scored(case, test_predictions(case, model), fits=1, seconds=time.perf_counter() - started,
                          labels=case.noisy)}


def network_classifier(case: Case, seed: int):
    """The teacher recipe as the scikit-learn estimator cleanlab and self-training wrap."""
    from rolemodels.network_classifier import NetworkClassifier

    arch, spec = case.teacher_recipe
    return NetworkClassifier(arch.model, width=arch.width, input_shape=case.data.input_shape, epochs=spec.epochs,
                             min_examples=spec.min_examples, batch_size=spec.batch_size, optimizer=spec.optimizer,
                             lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
                             schedule=spec.schedule, augment=spec.augment, augment_size=spec.augment_size,
                             random_state=seed, device=str(case.device), precision=case.cfg.train.precision)


def as_numpy_inputs(x) -> np.ndarray:
    return np.asarray(torch.as_tensor(x).numpy())


@dataclass
class Pruning:
    """What cleanlab's CleanLearning gives, kept for the methods built on it."""

    issues: np.ndarray  # bool [n]: the training labels it flags (and drops)
    test_pred: np.ndarray  # int64 [N_test]: the model retrained on the rest
    pool_labels: np.ndarray  # int64 [N_pool]: that model's labels of the pool
    seconds: float

    FITS = 6  # 5 fold models for the out-of-fold probabilities, 1 retrained


def cleanlab_pruning(case: Case) -> Pruning:
    """CleanLearning around the teacher recipe, its defaults (5 folds, find_label_issues' defaults),
    computed once per setting and kept in the setting's folder."""
    path = case.folder / "cleanlab.npz"
    if path.exists():
        with np.load(path) as kept:
            return Pruning(kept["issues"], kept["test_pred"], kept["pool_labels"], float(kept["seconds"]))
    from cleanlab.classification import CleanLearning

    started = time.perf_counter()
    learner = CleanLearning(network_classifier(case, case.seeds.teacher(0)), seed=case.seed, cv_n_folds=5)
    learner.fit(as_numpy_inputs(case.data.x_train), case.noisy)
    issues = learner.label_issues_df["is_label_issue"].to_numpy(dtype=bool)
    test_pred = learner.predict(as_numpy_inputs(case.data.x_test)).astype(np.int64)
    seconds = time.perf_counter() - started
    pool = learner.clf.fast_proba(as_numpy_inputs(case.data.x_pool)).argmax(1)
    pruning = Pruning(issues, test_pred, learner.clf.classes_[pool].astype(np.int64), seconds)
    tmp = case.folder / "cleanlab.tmp.npz"
    np.savez(tmp, issues=pruning.issues, test_pred=pruning.test_pred, pool_labels=pruning.pool_labels,
             seconds=pruning.seconds)
    tmp.replace(path)
    return pruning


def cleanlab(case: Case) -> dict[str, dict]:
    p = cleanlab_pruning(case)
    return {"cleanlab": scored(case, p.test_pred, fits=Pruning.FITS, seconds=p.seconds, labels=case.noisy,
                               flags=flag_scores(p.issues, case.flipped))}


def pool_students(case: Case) -> int:
    return min(case.cfg.students.pool_size or len(case.data.x_pool), len(case.data.x_pool))


def cleanlab_student(case: Case) -> dict[str, dict]:
    """cleanlab, then the student recipe on the pool labelled by cleanlab's retrained model, so that
    cleanlab too learns from the unlabelled data."""
    p = cleanlab_pruning(case)
    started = time.perf_counter()
    n = pool_students(case)
    student = train_network(case, case.student_recipe, case.data.x_pool[:n], p.pool_labels[:n],
                            case.seeds.ensemble_student(0))
    seconds = p.seconds + time.perf_counter() - started
    return {"cleanlab_student": scored(case, test_predictions(case, student), fits=Pruning.FITS + 1,
                                       seconds=seconds, labels=case.noisy, flags=flag_scores(p.issues, case.flipped))}


def self_training(case: Case) -> dict[str, dict]:
    """scikit-learn's SelfTrainingClassifier around the teacher recipe: the pool as unlabelled rows
    (-1), its confident predictions (threshold 0.75, the default) added round by round."""
    from sklearn.semi_supervised import SelfTrainingClassifier

    started = time.perf_counter()
    x = np.concatenate([as_numpy_inputs(case.data.x_train), as_numpy_inputs(case.data.x_pool)])
    y = np.concatenate([case.noisy, np.full(len(case.data.x_pool), -1)])
    learner = SelfTrainingClassifier(network_classifier(case, case.seeds.teacher(0))).fit(x, y)
    pred = learner.predict(as_numpy_inputs(case.data.x_test))
    return {"self_training": scored(case, pred, fits=learner.n_iter_ + 1, seconds=time.perf_counter() - started,
                                    labels=case.noisy)}


def label_spreading(case: Case) -> dict[str, dict]:
    """scikit-learn's LabelSpreading on standardised features, k-nearest-neighbour graph (its rbf
    default's gamma=20 assumes features of unit scale)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.semi_supervised import LabelSpreading

    started = time.perf_counter()
    flat = lambda x: as_numpy_inputs(x).reshape(len(x), -1)
    x = np.concatenate([flat(case.data.x_train), flat(case.data.x_pool)])
    y = np.concatenate([case.noisy, np.full(len(case.data.x_pool), -1)])
    learner = make_pipeline(StandardScaler(), LabelSpreading(kernel="knn")).fit(x, y)
    pred = learner.predict(flat(case.data.x_test))
    return {"label_spreading": scored(case, pred, fits=1, seconds=time.perf_counter() - started, labels=case.noisy)}


# ---------------------------------------------------------------------------------------------
# Ours: the pipeline itself, and the combination


def pipeline_rows(case: Case, preset: str | None, folder: Path, prefix: str = "") -> dict[str, dict]:
    """Run `rolemodels run` (preset, the setting's overrides) into `folder`: its numbers as rows."""
    cfg = case.cfg if preset == case.preset else load_config(preset, case.overrides)
    results = run_experiment(cfg, folder, quiet=True)
    seed_folder = folder / f"seed{case.seed}"
    read = json.loads((folder / "inputs.json").read_text())["noise.labels_file"]["sha256"]
    own = model_seconds(folder / "metrics.jsonl")
    K = cfg.teachers.count
    table, replication, stages = results["table"], results["sampler"]["noise_replication"], results["seconds"]

    def row(name: str, *, fits: int, seconds: float, value: float | None = None, flags: dict | None = None) -> dict:
        rep = replication[name]["mean"] if name in replication else None
        return {"accuracy": table[name]["mean"] if value is None else value,
                "replication": None if case.partner is None else rep, "fits": fits, "seconds": round(seconds, 2),
                "labels_sha256": read, **(flags or {})}

    teachers = [own.get(f"teacher{k}", 0.0) for k in range(K)]
    pooled = stages["teachers"] + stages["labelling"]
    student_flags = {name: flag_scores(suspects(case, cfg, seed_folder / "students" / f"{name}_k{K}.pt"),
                                       case.flipped) for name in ("ensemble_distill", "random_distill")}
    rows = {"ensemble_distill": row("ensemble_distill", fits=K + 1, flags=student_flags["ensemble_distill"],
                                    seconds=pooled + own.get(f"ensemble_distill_k{K}", 0.0)),
            "random_distill": row("random_distill", fits=K + 1, flags=student_flags["random_distill"],
                                  seconds=pooled + own.get(f"random_distill_k{K}", 0.0))}
    if prefix:  # another recipe of ours: its students only
        return {f"{prefix}{name}": r for name, r in rows.items()}
    return {"noisy_model": row("teacher", fits=1, seconds=float(np.mean(teachers))),
            "ensemble": row("ensemble", fits=K, seconds=stages["teachers"]),
            **rows,
            "clean_train": row("clean_train", fits=1, seconds=own.get("clean_train", 0.0)),
            "clean_pool": row("clean_pool", fits=1, seconds=own.get("clean_pool", 0.0))}


def model_seconds(metrics: Path) -> dict[str, float]:
    """Training seconds by model name, summed over the epochs of the run folder's metrics.jsonl."""
    seconds: dict[str, float] = {}
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        if "model" in record and "seconds" in record:
            seconds[record["model"]] = seconds.get(record["model"], 0.0) + record["seconds"]
    return seconds


def suspects(case: Case, cfg: Config, student_file: Path) -> np.ndarray:
    """Our student's suspected label errors on the training set (label_errors.suspected_label_errors):
    the student never saw these labels, only the teachers' labels of the pool."""
    model = new_model(student_architecture(cfg, case.data), case.data, case.stats, 0)
    model.load_state_dict(torch.load(student_file, map_location="cpu", weights_only=True))
    logits = predict_logits(model, case.data.x_train, case.device, cfg.train.precision, cfg.train.eval_batch_size)
    return suspected_label_errors(case.noisy, torch.softmax(logits, 1).numpy())


def ours(case: Case) -> dict[str, dict]:
    return pipeline_rows(case, case.preset, case.folder / "rolemodels-run")


def ours_best(case: Case) -> dict[str, dict]:
    """docs/findings.md's best recipe: the mnist1d-best preset (teachers stopped after 12 epochs)."""
    return pipeline_rows(case, str(ROOT / "configs" / "mnist1d-best.toml"), case.folder / "rolemodels-best",
                         prefix="best_")


def cleanlab_then_distill(case: Case) -> dict[str, dict]:
    """A combination none of them offers: the configuration's K teachers trained on the set cleanlab
    pruned, their plurality vote labelling the pool, the student recipe on it."""
    p = cleanlab_pruning(case)
    started = time.perf_counter()
    kept = np.flatnonzero(~p.issues)
    K, n = case.cfg.teachers.count, pool_students(case)
    x_pool = case.data.x_pool[:n]
    logits = []
    for k in range(K):
        teacher = train_network(case, case.teacher_recipe, case.data.x_train[kept], case.noisy[kept],
                                case.seeds.teacher(k))
        logits.append(predict_logits(teacher, x_pool, case.device, case.cfg.train.precision,
                                     case.cfg.train.eval_batch_size).numpy())
    votes = torch.stack([torch.from_numpy(lg.argmax(1)) for lg in logits], 1)
    pool_labels = plurality_vote(votes, case.data.num_classes, softmax_sum(logits)).numpy()
    student = train_network(case, case.student_recipe, x_pool, pool_labels, case.seeds.ensemble_student(0))
    seconds = p.seconds + time.perf_counter() - started
    return {"cleanlab_distill": scored(case, test_predictions(case, student), fits=Pruning.FITS + K + 1,
                                       seconds=seconds, labels=case.noisy, flags=flag_scores(p.issues, case.flipped))}


# ---------------------------------------------------------------------------------------------
# The methods, in the tables' order

@dataclass(frozen=True)
class Method:
    label: str
    kind: str  # baseline | ours | combination | reference


METHODS = {
    "noisy_model": Method("one model on the noisy labels (our teacher)", "baseline"),
    "early_stopping": Method("early stopping on a noisy 10% split", "baseline"),
    "gce": Method("generalised cross-entropy (q = 0.7)", "baseline"),
    "cleanlab": Method("cleanlab CleanLearning (prune, retrain)", "baseline"),
    "cleanlab_student": Method("cleanlab, then a student on the pool", "baseline"),
    "self_training": Method("scikit-learn SelfTrainingClassifier", "baseline"),
    "label_spreading": Method("scikit-learn LabelSpreading", "baseline"),
    "ensemble": Method("ours: test-time ensemble (vote)", "ours"),
    "ensemble_distill": Method("ours: ensemble distillation", "ours"),
    "random_distill": Method("ours: random-teacher distillation", "ours"),
    "best_ensemble_distill": Method("ours, mnist1d-best: ensemble distillation", "ours"),
    "best_random_distill": Method("ours, mnist1d-best: random-teacher distillation", "ours"),
    "cleanlab_distill": Method("cleanlab-pruned teachers, ensemble-distilled", "combination"),
    "clean_train": Method("reference: the model on clean labels", "reference"),
    "clean_pool": Method("reference: the student on the pool's true labels", "reference"),
}

# Groups of rows one computation gives, and the data each applies to (None: every dataset).
Group = tuple[Callable[[Case], dict[str, dict]], tuple[str, ...], tuple[str, ...] | None]
GROUPS: list[Group] = [
    (ours, ("noisy_model", "ensemble", "ensemble_distill", "random_distill", "clean_train", "clean_pool"), None),
    (early_stopping, ("early_stopping",), None),
    (robust_loss, ("gce",), None),
    (cleanlab, ("cleanlab",), None),
    (cleanlab_student, ("cleanlab_student",), None),
    (cleanlab_then_distill, ("cleanlab_distill",), None),
    (ours_best, ("best_ensemble_distill", "best_random_distill"), ("mnist1d",)),
    (self_training, ("self_training",), ("digits",)),
    (label_spreading, ("label_spreading",), ("digits",)),
]


# ---------------------------------------------------------------------------------------------
# The run: rows kept in one JSON, each group computed once


def row_key(row: dict) -> tuple[str, str, int, str]:
    return row["data"], row["noise"], row["seed"], row["method"]


def load_rows(out: Path) -> dict[tuple, dict]:
    return {row_key(r): r for r in json.loads(out.read_text())["rows"]} if out.exists() else {}


def machine() -> str:
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")] if Path("/proc/cpuinfo").exists() else []
    return f"{names[0] if names else 'unknown processor'}, {len(os.sched_getaffinity(0))} cores"


def save(out: Path, rows: dict[tuple, dict], command: str, threads: int, quick: bool) -> None:
    order = {name: i for i, name in enumerate(METHODS)}
    ordered = sorted(rows.values(), key=lambda r: (r["data"], list(NOISES).index(r["noise"]), r["seed"],
                                                   order[r["method"]]))
    atomic_write_json(out, {"command": command, "machine": machine(), "threads": threads, "quick": quick,
                            "methods": {name: m.__dict__ for name, m in METHODS.items()}, "rows": ordered})


def run(settings: list[tuple[str, str, int]], *, out: Path, work: Path, quick: bool, threads: int,
        command: str) -> dict[tuple, dict]:
    """Compute every row the settings call for that `out` lacks, saving after each group."""
    rows = load_rows(out)
    loaded: dict[str, Dataset] = {}
    for data_name, noise, seed in settings:
        case = None
        for compute, names, only in GROUPS:
            if (only is not None and data_name not in only) or all((data_name, noise, seed, n) in rows for n in names):
                continue
            case = case or make_case(data_name, noise, seed, quick=quick, threads=threads, work=work, loaded=loaded)
            print(f"{data_name} / {noise} / seed {seed}: {', '.join(names)}", flush=True)
            computed = compute(case)
            finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
            for name, numbers in computed.items():
                rows[(data_name, noise, seed, name)] = {"data": data_name, "noise": noise, "seed": seed,
                                                        "method": name, **numbers, "finished": finished}
            out.parent.mkdir(parents=True, exist_ok=True)
            save(out, rows, command, threads, quick)
    return rows


# ---------------------------------------------------------------------------------------------
# Tables and the figure, from the JSON alone


def aggregate(rows: list[dict]) -> dict[tuple[str, str], dict[str, dict]]:
    """(data, noise) -> method -> {"accuracy", "replication", "precision", "recall": summarize(...),
    "fits", "seconds" (means), "seeds"}: the mean and std over seeds."""
    grouped: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for r in rows:
        grouped.setdefault((r["data"], r["noise"]), {}).setdefault(r["method"], []).append(r)
    table = {}
    for setting, methods in grouped.items():
        table[setting] = {}
        for name in [m for m in METHODS if m in methods]:
            rs = methods[name]
            numbers = {key: summarize([r[key] for r in rs]) if rs[0].get(key) is not None else None
                       for key in ("accuracy", "replication", "precision", "recall", "flagged")}
            table[setting][name] = {**numbers, "fits": float(np.mean([r["fits"] for r in rs])),
                                    "seconds": float(np.mean([r["seconds"] for r in rs])), "seeds": len(rs)}
    return table


def pm(summary: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    if summary is None:
        return "–"
    mean, std = scale * summary["mean"], scale * summary["std"]
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(summary["values"]) > 1 else f"{mean:.{digits}f}"


def full_table(results: dict) -> str:
    """Every (data, noise): one row per method, accuracy and replication in %, mean ± std over seeds."""
    parts = []
    for (data, noise), methods in aggregate(results["rows"]).items():
        seeds = max(m["seeds"] for m in methods.values())
        parts.append(f"#### {data}, {noise} ({seeds} seed{'s' if seeds > 1 else ''})\n\n"
                     "| method | test accuracy % | noise replication % | fits | seconds | flagged | precision | recall |\n"
                     "|---|---|---|---|---|---|---|---|")
        for name, m in methods.items():
            flagged = f"{m['flagged']['mean']:,.0f}" if m["flagged"] else "–"
            parts.append(f"| {METHODS[name].label} | {pm(m['accuracy'])} | {pm(m['replication'])} | "
                         f"{m['fits']:.0f} | {m['seconds']:.{0 if m['seconds'] >= 10 else 1}f} | {flagged} | {pm(m['precision'], 1, 2)} | "
                         f"{pm(m['recall'], 1, 2)} |")
        parts.append("")
    return "\n".join(parts)


README_METHODS = ("noisy_model", "early_stopping", "gce", "cleanlab", "cleanlab_student", "ensemble",
                  "ensemble_distill", "random_distill", "cleanlab_distill", "clean_train")


def short_table(results: dict) -> str:
    """The README's table: the main methods' test accuracy (%), one column per (data, noise)."""
    table = aggregate(results["rows"])
    settings = list(table)
    lines = ["| method | " + " | ".join(f"{d} {n}" for d, n in settings) + " |",
             "|---|" + "---|" * len(settings)]
    for name in README_METHODS:
        cells = [pm(table[s][name]["accuracy"]) if name in table[s] else "–" for s in settings]
        lines.append(f"| {METHODS[name].label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


COLOURS = {"baseline": "#9e9e9e", "ours": "#1f77b4", "combination": "#2ca02c", "reference": "#d9d9d9"}


def draw_figure(results: dict, path: Path) -> None:
    """Accuracy by method (mean ± std over seeds), one panel per (data, noise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = aggregate(results["rows"])
    columns = min(3, len(table))
    rows = -(-len(table) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.2 * rows), squeeze=False)
    for ax, ((data, noise), methods) in zip(axes.flat, table.items()):
        names = list(methods)[::-1]  # top to bottom in the tables' order
        means = [100 * methods[n]["accuracy"]["mean"] for n in names]
        stds = [100 * methods[n]["accuracy"]["std"] for n in names]
        ax.barh(range(len(names)), means, xerr=stds, color=[COLOURS[METHODS[n].kind] for n in names])
        ax.set_yticks(range(len(names)), [METHODS[n].label for n in names], fontsize=7)
        low = min(means) - 5
        ax.set_xlim(max(0, low), 100)
        ax.set_xlabel("clean test accuracy (%)")
        ax.set_title(f"{data}, {noise}", fontsize=10)
    for ax in list(axes.flat)[len(table):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, two settings: a check, not a result")
    parser.add_argument("--fashion", choices=("paper", "all", "none"), default="paper",
                        help="Fashion-MNIST settings: the paper's noise with seed 0 (default), every noise and "
                             "seed, or none")
    parser.add_argument("--out", help=f"results JSON (default {RESULTS.relative_to(ROOT)}; with --quick "
                                      "runs/compare-quick/compare.json)")
    parser.add_argument("--work", help=f"folder for noisy labels and run folders (default {WORK.relative_to(ROOT)})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--markdown", action="store_true", help="print the full table and the README's, and exit")
    parser.add_argument("--figure", metavar="PNG", help="draw the figure from the results JSON, and exit")
    args = parser.parse_args(argv)
    quick_root = ROOT / "runs" / "compare-quick"
    out = Path(args.out) if args.out else quick_root / "compare.json" if args.quick else RESULTS
    if args.markdown or args.figure:
        results = json.loads(out.read_text())
        if args.figure:
            draw_figure(results, Path(args.figure))
        if args.markdown:
            print(full_table(results), "\n### README\n", short_table(results), sep="\n")
        return
    work = Path(args.work) if args.work else quick_root if args.quick else WORK
    torch.set_num_threads(args.threads)
    settings = QUICK_SETTINGS if args.quick else full_settings(args.fashion)
    command = "python experiments/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    run(settings, out=out, work=work, quick=args.quick, threads=args.threads, command=command.strip())
    print(f"{out}: {len(load_rows(out))} rows ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
