"""The methods experiments/compare.py compares, one small function each: a setting's `Case` in,
its rows (test accuracy, noise replication, fits, seconds, label-error scores) out.

Baselines train the configuration's own networks and recipes through the library's loop
(`train.fit`) or its scikit-learn estimator (`NetworkClassifier`); ours is `rolemodels run`
itself (`experiment.run_experiment`) on the saved noisy labels.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rolemodels.config import Config, load_config
from rolemodels.data import Dataset
from rolemodels.method.combine import plurality_vote
from rolemodels.method.metrics import accuracy, noise_replication
from rolemodels.method.teach import softmax_sum
from rolemodels.models import input_stats
from rolemodels.paper.experiment import run_experiment
from rolemodels.paper.networks import Architecture, new_model, student_architecture
from rolemodels.practice.label_errors import suspected_label_errors
from rolemodels.recipe import FitSpec
from rolemodels.runtime.device import predict_logits
from rolemodels.runtime.files import arrays_sha256
from rolemodels.runtime.threads import eval_batch_size
from rolemodels.seeds import Seeds
from rolemodels.training.train import fit, fixed_targets

ROOT = Path(__file__).resolve().parents[1]


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
    network: str | None = None  # the network the estimator's row names (None: the estimator's default)
    quick: bool = False  # the quick mode's tiny sizes
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
    def eval_batch(self) -> int:
        """Rows per forward when predicting: train.eval_batch_size, 0 made the device's default."""
        return eval_batch_size(self.cfg.train.eval_batch_size, self.device)

    @property
    def teacher_recipe(self) -> tuple[Architecture, FitSpec]:
        arch = Architecture(self.cfg.teachers.model, self.cfg.teachers.width)
        return arch, FitSpec.from_config(self.cfg.teachers).for_model(arch.model)

    @property
    def student_recipe(self) -> tuple[Architecture, FitSpec]:
        arch = student_architecture(self.cfg, self.data)
        return arch, FitSpec.from_config(self.cfg.students).for_model(arch.model)


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


def train_network(case: Case, recipe: tuple[Architecture, FitSpec], x, labels: np.ndarray,
                  seed: int) -> torch.nn.Module:
    """A network of `recipe` trained on x with labels int64 [n] by the library's loop."""
    arch, spec = recipe
    model = new_model(arch, case.data, case.stats, seed)
    return fit(model, x, fixed_targets(torch.from_numpy(labels).long()), spec, seed=seed, device=case.device,
               precision=case.cfg.train.precision)


def predicted(case: Case, model: torch.nn.Module, x=None) -> torch.Tensor:
    """The model's classes int64 [N] of x (default: the test set)."""
    x = case.data.x_test if x is None else x
    return predict_logits(model, x, case.device, case.cfg.train.precision, case.eval_batch).argmax(1)


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
    pred = predicted(case, tracker.restore())
    row = scored(case, pred, fits=1, seconds=time.perf_counter() - started, labels=case.noisy)
    return {"early_stopping": {**row, "best_epoch": tracker.best_epoch, "epochs": len(tracker.history)}}


def robust_loss(case: Case) -> dict[str, dict]:
    """The teacher recipe with generalised cross-entropy (q = 0.7) instead of cross-entropy."""
    started = time.perf_counter()
    arch, spec = case.teacher_recipe
    spec = dataclasses.replace(spec, loss="gce")
    model = train_network(case, (arch, spec), case.data.x_train, case.noisy, case.seeds.teacher(0))
    return {"gce": scored(case, predicted(case, model), fits=1, seconds=time.perf_counter() - started,
                          labels=case.noisy)}


def network_classifier(case: Case, seed: int):
    """The teacher recipe as the scikit-learn estimator cleanlab and self-training wrap."""
    from rolemodels.practice.network_classifier import NetworkClassifier

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
    return case.cfg.students.pool_rows(len(case.data.x_pool))


def cleanlab_student(case: Case) -> dict[str, dict]:
    """cleanlab, then the student recipe on the pool labelled by cleanlab's retrained model, so that
    cleanlab too learns from the unlabelled data."""
    p = cleanlab_pruning(case)
    started = time.perf_counter()
    n = pool_students(case)
    student = train_network(case, case.student_recipe, case.data.x_pool[:n], p.pool_labels[:n],
                            case.seeds.ensemble_student(0))
    seconds = p.seconds + time.perf_counter() - started
    return {"cleanlab_student": scored(case, predicted(case, student), fits=Pruning.FITS + 1,
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


def pipeline_rows(case: Case, preset: str | None, folder: Path, prefix: str = "",
                  extra: tuple[str, ...] = ()) -> dict[str, dict]:
    """Run `rolemodels run` (preset, the setting's overrides, then `extra`) into `folder`: its
    numbers as rows."""
    cfg = case.cfg if preset == case.preset and not extra else load_config(preset, [*case.overrides, *extra])
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
    logits = predict_logits(model, case.data.x_train, case.device, cfg.train.precision, case.eval_batch)
    return suspected_label_errors(case.noisy, torch.softmax(logits, 1).numpy())


def ours(case: Case) -> dict[str, dict]:
    return pipeline_rows(case, case.preset, case.folder / "rolemodels-run")


def ours_best(case: Case) -> dict[str, dict]:
    """docs/findings.md's best recipe: the mnist1d-best preset (teachers trained 30 epochs at batch
    128, learners that fit about 83% of their noisy labels)."""
    return pipeline_rows(case, str(ROOT / "configs" / "mnist1d-best.toml"), case.folder / "rolemodels-best",
                         prefix="best_")


def gce_then_distill(case: Case) -> dict[str, dict]:
    """A combination: `rolemodels run` with the teachers trained on generalised cross-entropy
    (`teachers.loss=gce`), the students as they are. GCE teachers do not copy the noise, so this
    trades samplers for learners, as mnist1d-best does by stopping early."""
    return pipeline_rows(case, case.preset, case.folder / "rolemodels-gce", prefix="gce_",
                         extra=("teachers.loss=gce",))


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
                                     case.eval_batch).numpy())
    votes = torch.stack([torch.from_numpy(lg.argmax(1)) for lg in logits], 1)
    pool_labels = plurality_vote(votes, case.data.num_classes, softmax_sum(logits)).numpy()
    student = train_network(case, case.student_recipe, x_pool, pool_labels, case.seeds.ensemble_student(0))
    seconds = p.seconds + time.perf_counter() - started
    return {"cleanlab_distill": scored(case, predicted(case, student), fits=Pruning.FITS + K + 1,
                                       seconds=seconds, labels=case.noisy, flags=flag_scores(p.issues, case.flipped))}


# ---------------------------------------------------------------------------------------------
# As a user calls them: the scikit-learn estimators with their defaults


def estimator_calls(case: Case) -> tuple[dict, dict, str]:
    """The options of RoleModelClassifier's call and of the one-model NetworkClassifier(loss="gce")
    beside it, and the call as a user writes it. They name only the setting's network; the quick
    mode shrinks the networks and budgets (a check of the code, not a result)."""
    from rolemodels.practice.network_classifier import NetworkClassifier

    named = {} if case.network is None else {"teacher": case.network}
    call = "RoleModelClassifier(" + ", ".join(f"{k}={v!r}" for k, v in named.items()) + ")"
    if not case.quick:
        return named, {"model": case.network or "mlp", "augment": "auto"}, call  # augmented as the estimator's teachers
    small = {"model": case.network or "mlp", "width": 4, "epochs": 2, "min_examples": 0, "device": "cpu"}
    return ({"teacher": NetworkClassifier(**small, loss="gce"), "student": NetworkClassifier(**small), "n_teachers": 3},
            small, call)


def estimators(case: Case) -> dict[str, dict]:
    """`RoleModelClassifier(...).fit(X, y, X_pool=...)` with its defaults, and one network on GCE
    through the same API (NetworkClassifier(network, loss="gce")), timed on the same machine."""
    from rolemodels.practice.estimator import RoleModelClassifier
    from rolemodels.practice.network_classifier import NetworkClassifier

    x, x_pool, x_test = (as_numpy_inputs(v) for v in (case.data.x_train, case.data.x_pool, case.data.x_test))
    ours_options, gce_options, call = estimator_calls(case)
    started = time.perf_counter()
    clf = RoleModelClassifier(**ours_options, random_state=case.seed).fit(x, case.noisy, X_pool=x_pool)
    seconds = time.perf_counter() - started
    given = np.searchsorted(clf.classes_, case.noisy)  # the labels as columns of predict_proba
    flags = flag_scores(suspected_label_errors(given, clf.predict_proba(x)), case.flipped)
    rows = {"estimator": {**scored(case, clf.predict(x_test), fits=len(clf.teachers_) + 1, seconds=seconds,
                                   labels=case.noisy, flags=flags), "call": call, "combine": clf.diagnostics_["combine"]}}
    started = time.perf_counter()
    one = NetworkClassifier(**gce_options, loss="gce", random_state=case.seed).fit(x, case.noisy)
    rows["estimator_gce"] = scored(case, one.predict(x_test), fits=1, seconds=time.perf_counter() - started,
                                   labels=case.noisy)
    return rows


@dataclass(frozen=True)
class Method:
    """A row's label in the tables and its kind (the figure's colour): baseline | ours | combination |
    reference | field | field-oracle."""

    label: str
    kind: str
