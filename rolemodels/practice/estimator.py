"""`RoleModelClassifier`: the paper's recipe as a scikit-learn estimator, a thin layer over array functions.

    clf = RoleModelClassifier(teacher="mlp", random_state=0)
    clf.fit(X, y_noisy, X_pool=X_unlabelled)      # or unlabelled rows in X with y == -1
    clf.predict(X_new); clf.diagnostics_["estimated_noise_rate"]

fit: K teachers fit the noisy labels (each cloned with its own random_state, on the data
`teacher_data` gives it); each labels the pool (`pool_labels_`, uint8 [N, K]); the labels are
combined (the teachers' mean probabilities, their plurality vote, or one random teacher per
example) and one student learns them. Without
a pool the training set is its own pool, by cross-fitting: the teachers of each of `cv` folds are
trained on the other folds and label the fold they did not see. Needs scikit-learn:
`pip install -e ".[sklearn]"`.
"""
from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from rolemodels.config import PRECISIONS
from rolemodels.method.combine import plurality_vote
from rolemodels.method.teach import teacher_subsets
from rolemodels.practice.fit_checks import degenerate_fit, warn_degenerate
from rolemodels.practice.label_errors import distillation_diagnostics
from rolemodels.practice.network_classifier import NetworkClassifier, as_value_errors, seed_of
from rolemodels.practice.outputs import (
    class_labels,
    class_probabilities,
    noisy_agreement,
    student_targets,
    unlabelled_rows,
)
from rolemodels.practice.pool_graph import spread_soft_labels
from rolemodels.practice.recipe import (
    POOL_GRAPH_MAX_ROWS,
    RECIPES,
    STUDENT_BATCH,
    bounded_examples,
    graph_neighbors_auto,
    student_examples,
    teacher_count,
    teacher_recipe,
)
from rolemodels.recipe import is_small_pool
from rolemodels.seeds import Seeds

# soft: the student learns the teachers' mean probabilities; vote: their plurality vote (the
# paper's ensemble distillation); random: one random teacher per example; auto: soft for the
# robust recipe where the student is a network and the teachers give probabilities, else vote
COMBINE = ("auto", "soft", "vote", "random")
TEACHER_DATA = ("auto", "same", "bootstrap", "disjoint", "overlap")
POOL_WITH_TRAINING = "given, with the training inputs"  # diagnostics_["pool"] where they joined a small pool
EPOCH_CHOICES = (10, 30, 100)  # teacher_epochs="auto" picks one by held-out agreement with the noisy labels


def robust_teachers(teacher) -> bool:
    """Teachers on a robust loss, which do not fit the labels they find wrong. Only their labels of
    the training inputs may join a small pool: an interpolating teacher gives back the noisy label,
    and a student that learnt those flags none of them (the paper's recipe on 700 table rows: 0.1%
    estimated noise for 20%)."""
    return isinstance(teacher, NetworkClassifier) and teacher.loss == "gce"


class RoleModelClassifier(ClassifierMixin, BaseEstimator):
    """Noisy labels in, one student out: teachers that fit the noise, their labels on a pool, a student.

    teacher: a network of the registry by name ("mlp", "cnn1d", ...), a factory
    (input_shape, num_classes) -> nn.Module, a NetworkClassifier, or any scikit-learn classifier
    (cloned n_teachers times, each with its own random_state). It must fit its noisy labels.
    n_teachers: "auto" (with a pool 10, or 3 for the robust recipe's generic networks such as mlp;
    without one, 2 for each cross-fitting fold) or an integer.
    student: None (a NetworkClassifier of the teacher's architecture, or an mlp for other
    teachers, that sees at least 200,000 examples and 4 passes over the pool, at most 64 passes
    of a small one), a name, a factory, or any classifier. A pool under 3,125 rows is small: where
    the teachers train on a robust loss (the default recipe's), the training inputs join it,
    labelled by the teachers like the pool rows (pool_labels_: the pool's rows, then theirs; on
    700-row MNIST-1D arrays the student of cnn1d teachers scored 51.5% on the pool alone, under
    their 57.1%, and 60.1% with them: experiments/small_pools.py). combine: "auto" (the default: "soft" for the
    robust recipe when it can, else "vote"), "soft" (the student learns the teachers' mean
    probabilities; needs a network student), "vote" (the paper's ensemble distillation) or
    "random" (one random teacher per example). teacher_data: "same" (the paper), "bootstrap", "disjoint", "overlap"
    (a random `overlap` share each), or "auto": "same", except "bootstrap" for teachers without
    a random_state (1-NN: K copies of one teacher would be useless). cv: folds when there is no
    pool. recipe: "robust" (the default: teachers made from names or factories train on
    generalised cross-entropy (q = 0.8) for 30 epochs, or as the network's preset trains it (cnn1d,
    cnn2d_wide: ROBUST_BY_NETWORK), which keeps them from fitting the labels they find wrong, and
    the student learns their mean probabilities; the best recipe measured) or "paper"
    (the paper's teachers, which interpolate the noise, and the plurality vote); a teacher given
    as a NetworkClassifier or any other classifier keeps its own recipe. teacher_epochs: None
    (the recipe's), an integer (exactly that many passes), or "auto": one of 10, 30 and 100,
    whichever's teachers best predict held-out noisy labels over 5 folds (15 more fits; no clean
    label needed), for teachers made from names or factories. pool_graph: "auto" (the default:
    10 for an mlp student's soft labels on a pool of at most 5,000 rows, else 0), 0 (off) or k:
    the teachers' mean probabilities are spread over the pool's k-nearest-neighbour graph (label
    spreading with them as the prior, alpha 0.8) before the student learns them; needs combine
    "soft". input_shape, device, precision: for the networks made from names. verbose: a line per stage on stderr.
    """

    def __init__(self, teacher="mlp", student=None, *, recipe="robust", n_teachers="auto", combine="auto",
                 teacher_data="auto", overlap=0.5, cv=5, teacher_epochs=None, pool_graph="auto", input_shape=None,
                 device="auto", precision="auto", random_state=None, verbose=False):
        self.teacher = teacher
        self.recipe = recipe
        self.student = student
        self.n_teachers = n_teachers
        self.combine = combine
        self.teacher_data = teacher_data
        self.overlap = overlap
        self.cv = cv
        self.teacher_epochs = teacher_epochs
        self.pool_graph = pool_graph
        self.input_shape = input_shape
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------ parts

    def _network(self, model, **recipe) -> NetworkClassifier:
        return NetworkClassifier(model, input_shape=self.input_shape, device=self.device, precision=self.precision,
                                 **recipe)

    def _named_teacher(self) -> bool:
        return isinstance(self.teacher, str) or (callable(self.teacher) and not hasattr(self.teacher, "fit"))

    def _base_teacher(self, n: int, epochs: int | None = None):
        """The teacher every one is cloned from; n: the labelled rows (bounds a budget in steps)."""
        if not self._named_teacher():
            return self.teacher
        recipe = teacher_recipe(self.recipe, self.teacher)
        recipe["min_examples"] = bounded_examples(recipe["min_examples"], n)
        if epochs is not None:  # chosen or given: exactly this many passes
            recipe.update(epochs=epochs, min_examples=0)
        return self._network(self.teacher, **recipe)

    def _choose_epochs(self, x, y, seed: int) -> tuple[int | None, dict | None]:
        """teacher_epochs made concrete: None (the recipe's) or the number given; for "auto" the
        choice of EPOCH_CHOICES whose teachers best predict held-out noisy labels (5 folds),
        and every choice's score."""
        if self.teacher_epochs != "auto":
            return self.teacher_epochs, None
        scores = {e: noisy_agreement(self._base_teacher(len(y), e).set_params(random_state=seed % 2**32), x, y, 5, seed)
                  for e in EPOCH_CHOICES}
        self._say("held-out noisy agreement by teacher epochs: " + ", ".join(f"{e}: {a:.3f}" for e, a in scores.items()))
        return max(scores, key=scores.get), scores  # the fewest epochs on a tie (EPOCH_CHOICES' order)

    def _base_student(self, teacher, n_pool: int):
        # the student is augmented as its teachers were (as the presets train both)
        augment = (teacher.augment if isinstance(teacher, NetworkClassifier)
                   else RECIPES[self.recipe].get("augment", "none"))
        budget = {"epochs": 1, "min_examples": student_examples(n_pool), "batch_size": STUDENT_BATCH, "augment": augment}
        if self.student is None:
            if isinstance(teacher, NetworkClassifier):  # where and how its teachers ran
                return NetworkClassifier(teacher.model, width=teacher.width, input_shape=teacher.input_shape,
                                         device=teacher.device, precision=teacher.precision, **budget)
            return self._network("mlp", **budget)
        if isinstance(self.student, str) or (callable(self.student) and not hasattr(self.student, "fit")):
            return self._network(self.student, **budget)
        return self.student

    def _combine(self, teacher, student) -> str:
        """The combine rule this fit uses: `combine`, with auto made concrete (see COMBINE)."""
        soft_ok = isinstance(student, NetworkClassifier) and hasattr(teacher, "predict_proba")
        if self.combine == "auto":
            return "soft" if self.recipe == "robust" and soft_ok else "vote"
        if self.combine == "soft" and not soft_ok:
            raise ValueError(f"combine='soft': the student learns the teachers' mean probabilities, so it must be a "
                             f"NetworkClassifier (got {type(student).__name__}) and the teachers must have "
                             f"predict_proba ({type(teacher).__name__}); use combine='vote'")
        return self.combine

    def _graph_neighbors(self, combine: str, student, n_pool: int) -> int:
        """pool_graph made concrete: the neighbours of the pool graph the soft labels spread over
        (0: none); refused before any teacher trains where it cannot apply."""
        if self.pool_graph == "auto":
            network = student.model if isinstance(student, NetworkClassifier) else None
            return graph_neighbors_auto(combine, network, n_pool)
        if self.pool_graph and combine != "soft":
            raise ValueError(f"pool_graph={self.pool_graph!r} spreads the teachers' mean probabilities, but this fit's "
                             f"student learns combine={combine!r} labels; use combine='soft' or pool_graph=0")
        if self.pool_graph and n_pool > POOL_GRAPH_MAX_ROWS:
            raise ValueError(f"pool_graph={self.pool_graph!r}: the pool has {n_pool:,} rows, and its neighbour graph "
                             f"would cost {n_pool:,}^2 distances; at most {POOL_GRAPH_MAX_ROWS:,} rows (a large pool "
                             f"needs no graph: pool_graph=0)")
        return int(self.pool_graph)

    def _teacher_mode(self, teacher) -> str:
        deterministic = "random_state" not in teacher.get_params()
        if self.teacher_data == "auto":
            return "bootstrap" if deterministic else "same"
        if self.teacher_data == "same" and deterministic and self.n_teachers != 1:
            raise ValueError(f"teacher_data='same': {type(teacher).__name__} has no random_state, so "
                             f"{self.n_teachers} teachers on the same data would be copies of one; use "
                             f"teacher_data='bootstrap', 'disjoint', 'overlap' or 'auto'")
        return self.teacher_data

    def _say(self, text: str) -> None:
        if self.verbose:
            print(f"RoleModelClassifier: {text}", file=sys.stderr, flush=True)

    def _check_params(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe={self.recipe!r}: expected one of {', '.join(RECIPES)}")
        if self.combine not in COMBINE:
            raise ValueError(f"combine={self.combine!r}: expected one of {', '.join(COMBINE)}")
        if self.teacher_data not in TEACHER_DATA:
            raise ValueError(f"teacher_data={self.teacher_data!r}: expected one of {', '.join(TEACHER_DATA)}")
        count = self.n_teachers
        if not (count == "auto" or (isinstance(count, (int, np.integer)) and not isinstance(count, bool)
                                    and count >= 1)):
            raise ValueError(f"n_teachers={count!r}: expected 'auto' or an integer of at least 1")
        overlap = self.overlap
        if isinstance(overlap, bool) or not isinstance(overlap, (int, float, np.number)) or not 0 < overlap <= 1:
            raise ValueError(f"overlap={overlap!r}: expected the share of the training set each teacher sees, "
                             f"in (0, 1]")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if not isinstance(self.cv, (int, np.integer)) or self.cv < 2:
            raise ValueError(f"cv={self.cv!r}: expected an integer of at least 2 folds")
        epochs = self.teacher_epochs
        if not (epochs is None or epochs == "auto" or (isinstance(epochs, (int, np.integer)) and epochs >= 1)):
            raise ValueError(f"teacher_epochs={epochs!r}: expected None (the recipe's), 'auto' or an integer >= 1")
        graph = self.pool_graph
        neighbours = isinstance(graph, (int, np.integer)) and not isinstance(graph, bool) and graph >= 0
        if not (graph == "auto" or neighbours):
            raise ValueError(f"pool_graph={graph!r}: expected 'auto', 0 (off) or a number of neighbours >= 1")
        if epochs is not None and not self._named_teacher():
            raise ValueError(f"teacher_epochs={epochs!r} sets the epochs of teachers made from a name or factory; "
                             f"set the epochs of your own {type(self.teacher).__name__} instead")

    # ------------------------------------------------------------------------------------ fit

    def fit(self, X, y, X_pool=None):
        """X [n, ...], y [n] noisy labels of any kind (-1: an unlabelled row, unless the labels are
        exactly -1 and 1); X_pool [N, ...] unlabelled inputs like X's. Returns self. A fit that
        went wrong (a near-constant student, teachers at chance, a student that did not learn what
        they taught) warns with a DegenerateFitWarning and is listed in diagnostics_["warnings"]."""
        self._check_params()
        X, y = validate_data(self, X, y, allow_nd=True, dtype="numeric")
        unlabelled = unlabelled_rows(y)
        check_classification_targets(y[~unlabelled])
        self.classes_, given = np.unique(y[~unlabelled], return_inverse=True)
        n, C = int((~unlabelled).sum()), len(self.classes_)
        if n < 2:
            raise ValueError(f"RoleModelClassifier needs at least 2 labelled samples, got n_samples = {n}")
        if C < 2:
            marked = (f" and {int(unlabelled.sum()):,} rows of -1, which mark unlabelled rows (scikit-learn's "
                      f"semi-supervised convention); if -1 is a class, recode it" if unlabelled.any() else "")
            raise ValueError(f"RoleModelClassifier needs labelled samples of at least 2 classes; y has 1 class "
                             f"({self.classes_[0]!r}){marked}")
        if C > 256:
            raise ValueError(f"y has {C} classes; pool labels are kept as uint8, so at most 256")
        x_train = X[~unlabelled]
        pool_parts = [X[unlabelled]]
        if X_pool is not None:
            extra = check_array(X_pool, allow_nd=True, dtype="numeric", input_name="X_pool")
            if extra.shape[1:] != X.shape[1:]:
                raise ValueError(f"X_pool: examples of shape {list(extra.shape[1:])}, but X's are {list(X.shape[1:])}")
            pool_parts.append(extra)
        n_given = sum(len(p) for p in pool_parts)

        seeds = Seeds(seed_of(self.random_state))
        self.n_teachers_ = teacher_count(self.n_teachers, pool=n_given > 0,
                                         network=self.teacher if isinstance(self.teacher, str) else None,
                                         recipe=self.recipe)
        with as_value_errors():
            epochs, agreement = self._choose_epochs(x_train, given, seeds.subsets)
        base = self._base_teacher(n, epochs)
        mode = self._teacher_mode(base)
        if n_given and is_small_pool(n_given) and robust_teachers(base):
            pool_parts.append(x_train)  # a small pool: the training inputs join it (robust_teachers says why)
        x_pool = np.concatenate(pool_parts) if n_given else None
        n_pool = len(x_pool) if x_pool is not None else n
        student = clone(self._base_student(base, n_pool))
        combine = self._combine(base, student)
        neighbors = self._graph_neighbors(combine, student, n_pool)  # every setting refused before any training
        with as_value_errors():
            if x_pool is not None:
                self.teachers_, fits, self.pool_labels_, prob_sum = self._teach(base, mode, x_train, given, x_pool,
                                                                               C, seeds)
            else:  # no pool: the training inputs, labelled by teachers that did not see them
                x_pool = x_train
                self.teachers_, fits, self.pool_labels_, prob_sum = self._cross_fit(base, mode, x_train, given, C,
                                                                                   seeds)
            targets = student_targets(combine, self.pool_labels_, prob_sum, C, seeds.draws(self.n_teachers_))
            targets, graph = spread_soft_labels(targets, x_pool, neighbors, guarded=self.pool_graph == "auto")
            if graph["pool_graph"]:
                self._say(f"soft labels spread over the pool's {neighbors}-nearest-neighbour graph")
            self._say(f"student on {len(x_pool):,} examples ({combine})")
            if "random_state" in student.get_params():
                student.set_params(random_state=seeds.ensemble_student(0) % 2**32)
            self.student_ = student.fit_proba(x_pool, targets) if combine == "soft" else student.fit(x_pool, targets)
            proba = self._student_proba(x_train)
            on_pool = class_labels(self.student_, x_pool, C)[0]
        pool = "cross-fitted" if not n_given else "given" if len(x_pool) == n_given else POOL_WITH_TRAINING
        self.diagnostics_ = {"pool": pool, "n_train": n, "n_pool": len(x_pool), "n_teachers": self.n_teachers_,
                             "teacher_data": mode, "combine": combine,
                             "teacher_epochs": getattr(base, "epochs", None) if self._named_teacher() else None,
                             "teacher_epoch_agreement": agreement, **graph,
                             **distillation_diagnostics(given, proba, fits, self.pool_labels_, C)}
        taught = plurality_vote(torch.from_numpy(self.pool_labels_), C, prob_sum).numpy()
        findings = degenerate_fit(given, proba.argmax(1), fits, taught, on_pool,
                                  self.diagnostics_["teacher_agreement"], list(self.classes_))
        self.diagnostics_["warnings"] = findings
        warn_degenerate(findings, "RoleModelClassifier")
        return self

    def _fit_teacher(self, base, x, y, seed: int):
        teacher = clone(base)
        if "random_state" in teacher.get_params():
            teacher.set_params(random_state=seed % 2**32)
        teacher.fit(x, y)
        fitted = getattr(teacher, "train_accuracy_", None)
        return teacher, float(np.mean(teacher.predict(x) == y)) if fitted is None else fitted

    def _teach(self, base, mode, x, given, x_pool, C, seeds: Seeds):
        """K teachers on (their subsets of) the training set, and their labels of the pool."""
        subsets = teacher_subsets(len(x), self.n_teachers_, mode, self.overlap, seeds.subsets)
        teachers, fits = [], []
        labels = np.empty((len(x_pool), self.n_teachers_), dtype=np.uint8)
        prob_sum = np.zeros((len(x_pool), C))
        for k, subset in enumerate(subsets):
            self._say(f"teacher {k + 1}/{self.n_teachers_}")
            rows = subset.numpy()
            teacher, fitted = self._fit_teacher(base, x[rows], given[rows], seeds.teacher(k))
            teachers.append(teacher)
            fits.append(fitted)
            labels[:, k], probs = class_labels(teacher, x_pool, C)
            prob_sum = None if probs is None or prob_sum is None else prob_sum + probs
        return teachers, fits, labels, None if prob_sum is None else torch.from_numpy(prob_sum)

    def _cross_fit(self, base, mode, x, given, C, seeds: Seeds):
        """cv folds; each fold's K teachers train on the other folds and label this fold's rows."""
        folds = torch.randperm(len(x), generator=torch.Generator().manual_seed(seeds.subsets + 1))
        folds = [f.numpy() for f in folds.tensor_split(min(self.cv, len(x)))]
        teachers, fits = [], []
        labels = np.empty((len(x), self.n_teachers_), dtype=np.uint8)
        prob_sum = np.zeros((len(x), C))
        for f, held in enumerate(folds):
            rest = np.setdiff1d(np.arange(len(x)), held)
            subsets = teacher_subsets(len(rest), self.n_teachers_, mode, self.overlap, seeds.subsets + 2 + f)
            for k, subset in enumerate(subsets):
                self._say(f"fold {f + 1}/{len(folds)}: teacher {k + 1}/{self.n_teachers_}")
                rows = rest[subset.numpy()]
                seed = seeds.teacher(f * self.n_teachers_ + k)
                teacher, fitted = self._fit_teacher(base, x[rows], given[rows], seed)
                teachers.append(teacher)
                fits.append(fitted)
                labels[held, k], probs = class_labels(teacher, x[held], C)
                if probs is None or prob_sum is None:
                    prob_sum = None
                else:
                    prob_sum[held] += probs
        return teachers, fits, labels, None if prob_sum is None else torch.from_numpy(prob_sum)

    # ------------------------------------------------------------------------------------ predict

    def _student_proba(self, X) -> np.ndarray:
        C = len(self.classes_)
        probs = class_probabilities(self.student_, X, C)
        if probs is None:  # a student without predict_proba: its label, with certainty
            probs = np.eye(C)[np.asarray(self.student_.predict(X), dtype=np.int64)]
        return probs

    def predict_proba(self, X) -> np.ndarray:
        """The student's probabilities float64 [N, C], columns in classes_ order."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, allow_nd=True, dtype="numeric")
        with as_value_errors():
            return self._student_proba(X)

    def predict(self, X) -> np.ndarray:
        """The student's class for each row, from classes_."""
        probs = self.predict_proba(X)  # first: an unfitted estimator raises NotFittedError
        return self.classes_[probs.argmax(1)]

    def ensemble_predict(self, X) -> np.ndarray:
        """The teachers' test-time plurality vote (ties to their summed probabilities), from classes_."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, allow_nd=True, dtype="numeric")
        C = len(self.classes_)
        with as_value_errors():
            outputs = [class_labels(teacher, X, C) for teacher in self.teachers_]
        labels = torch.from_numpy(np.stack([o[0] for o in outputs], 1))
        probs = None if any(o[1] is None for o in outputs) else torch.from_numpy(sum(o[1] for o in outputs))
        return self.classes_[plurality_vote(labels, C, probs).numpy()]

    def save_student(self, path) -> None:
        """Write the student to one file (rolemodels.load_student and `rolemodels predict` read it).
        The student must be a network of the registry."""
        from rolemodels.practice.student import save_student

        check_is_fitted(self)
        if not isinstance(self.student_, NetworkClassifier):
            raise ValueError(f"save_student: the student is a {type(self.student_).__name__}; only a "
                             f"NetworkClassifier can be saved as a student file (pickle or joblib the estimator)")
        names = self.classes_[np.asarray(self.student_.classes_, dtype=np.int64)]
        with as_value_errors():
            save_student(path, self.student_.as_student(list(names)))
