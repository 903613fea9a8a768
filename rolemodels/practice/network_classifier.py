"""`NetworkClassifier`: a network of the registry, or your own `nn.Module`, as a scikit-learn classifier.

It trains on rolemodels' own loop (`train.fit`: the device, bf16 where the hardware has it, a
seed for everything) and has no held-out split and no early stopping, on purpose: a teacher
must fit every label it is given, the noisy ones included, to be a sampler. `train_accuracy_`
says how well it did (about 1.0: it interpolates). Needs scikit-learn:
`pip install -e ".[sklearn]"`.

    teacher = NetworkClassifier("mlp", epochs=30, random_state=0).fit(X, y)
    teacher.train_accuracy_          # 1.0 when it fits every label
    own = NetworkClassifier(lambda input_shape, num_classes: torch.nn.Linear(input_shape[0], num_classes))
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from rolemodels.errors import UserError
from rolemodels.models import Standardize, build_model, input_stats, model_input_stats
from rolemodels.practice.student import Student, shaped_inputs
from rolemodels.recipe import FitSpec
from rolemodels.runtime.device import predict_logits, resolve_device
from rolemodels.training.train import fit, fixed_targets


@contextmanager
def as_value_errors() -> Iterator[None]:
    """rolemodels' UserError as the ValueError scikit-learn's callers expect for bad input."""
    try:
        yield
    except UserError as err:
        raise ValueError(str(err)) from None


def seed_of(random_state) -> int:
    """An integer seed from scikit-learn's random_state: an int as it is, else a draw (None: fresh)."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


class NetworkClassifier(ClassifierMixin, BaseEstimator):
    """A network trained to fit its labels: a registry name (`rolemodels models`) or a factory.

    model: "mlp", "cnn1d", "cnn2d", ... or a callable (input_shape, num_classes) -> nn.Module
    (its inputs arrive standardised, in input_shape); width: 0 for the model's default;
    input_shape: one example's shape when X holds flat rows (e.g. (28, 28, 1) for a cnn2d),
    default X.shape[1:]. epochs, min_examples (at least this many examples seen, in whole
    passes), batch_size, optimizer, lr, momentum, weight_decay, schedule, augment, augment_size,
    loss, gce_q, gce_warmup: the recipe (`FitSpec`; augment: none | crop_flip | shift | auto, on
    every training batch; loss: cross_entropy | gce, generalised cross-entropy, which does not fit
    wrong labels, so a teacher trained on it is a learner, not a sampler; gce_q: its q in (0, 1],
    0.7 by default; gce_warmup: the share of the steps on cross-entropy before gce, 0 by default);
    random_state: initial weights and batch order; device: auto | cpu | cuda | cuda:N;
    precision: auto | bf16 | fp32 for training (predict_proba computes in float64).
    """

    def __init__(self, model="mlp", *, width=0, input_shape=None, epochs=30, min_examples=60_000, batch_size=128,
                 optimizer="adamw", lr=3e-3, momentum=0.9, weight_decay=0.0, schedule="onecycle", augment="none",
                 augment_size=0, loss="cross_entropy", gce_q=FitSpec.gce_q, gce_warmup=FitSpec.gce_warmup,
                 random_state=None, device="auto", precision="auto"):
        self.model = model
        self.width = width
        self.input_shape = input_shape
        self.epochs = epochs
        self.min_examples = min_examples
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.augment = augment
        self.augment_size = augment_size
        self.loss = loss
        self.gce_q = gce_q
        self.gce_warmup = gce_warmup
        self.random_state = random_state
        self.device = device
        self.precision = precision

    # ------------------------------------------------------------------------------------ fit

    def fit(self, X, y):
        """Train on inputs X [n, ...] (or flat rows) and labels y [n] of any kind; returns self."""
        X, y = validate_data(self, X, y, allow_nd=True, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        labels = torch.from_numpy(encoded.astype(np.int64))
        logits = self._train(X, labels)
        self.train_accuracy_ = float((logits.argmax(1) == labels).double().mean())
        return self

    def fit_proba(self, X, probabilities):
        """Train on soft labels: class probabilities float [n, C] (non-negative rows that sum to
        1, columns the classes 0..C-1, e.g. teachers' mean probabilities); returns self.
        train_accuracy_ is the agreement with each row's most probable class."""
        X = validate_data(self, X, allow_nd=True, dtype=np.float32)
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.ndim != 2 or len(probs) != len(X) or probs.shape[1] < 2:
            raise ValueError(f"probabilities: expected an array [{len(X)}, C] with C >= 2 classes, got shape "
                             f"{list(probs.shape)}")
        if not np.isfinite(probs).all() or (probs < 0).any() or not np.allclose(probs.sum(1), 1.0, atol=1e-4):
            raise ValueError("probabilities: every row must hold non-negative finite values that sum to 1")
        self.classes_ = np.arange(probs.shape[1])
        targets = torch.from_numpy(probs.astype(np.float32))
        logits = self._train(X, targets)
        self.train_accuracy_ = float((logits.argmax(1) == targets.argmax(1)).double().mean())
        return self

    def _train(self, X: np.ndarray, targets: torch.Tensor) -> torch.Tensor:
        """Train the network on checked inputs and targets (labels int64 [n] or probabilities
        float [n, C] of len(classes_) classes); returns its logits on X (for train_accuracy_)."""
        with as_value_errors():
            self.device_ = resolve_device(self.device)
            self.input_shape_ = tuple(self.input_shape or X.shape[1:])
            inputs = shaped_inputs(X, self.input_shape_, name="X")
            seed = seed_of(self.random_state)
            self.model_ = self._build(inputs, len(self.classes_), seed)
            spec = FitSpec(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
                           momentum=self.momentum, weight_decay=self.weight_decay, schedule=self.schedule,
                           augment=self.augment, augment_size=self.augment_size, min_examples=self.min_examples,
                           loss=self.loss, gce_q=self.gce_q, gce_warmup=self.gce_warmup,
                           ).for_model(self.model if isinstance(self.model, str) else "")  # auto: its usual one
            fit(self.model_, inputs, fixed_targets(targets), spec, seed=seed, device=self.device_,
                precision=self.precision)
        return self.fast_logits(inputs)

    def _build(self, inputs: torch.Tensor, num_classes: int, seed: int) -> nn.Module:
        """Standardize (with these inputs' statistics) + the body, initialised from `seed` alone."""
        # a network of the registry standardises as it should (per feature for an mlp's table columns)
        mean, std = input_stats(inputs) if callable(self.model) else model_input_stats(self.model, inputs)
        with torch.random.fork_rng(devices=[]):  # the caller's global generator is left as it was
            torch.manual_seed(seed)
            if not callable(self.model):
                return build_model(self.model, self.input_shape_, num_classes, self.width, mean, std)
            body = self.model(self.input_shape_, num_classes)
        if not isinstance(body, nn.Module):
            raise UserError(f"model: the factory returned a {type(body).__name__}, expected a torch.nn.Module")
        return nn.Sequential(Standardize(mean, std, "keep"), body)

    # ------------------------------------------------------------------------------------ predict

    def fast_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits float32 [N, C] of checked inputs, in the training precision (for labelling pools)."""
        return predict_logits(self.model_, inputs, self.device_, self.precision)

    def fast_proba(self, X) -> np.ndarray:
        """Probabilities float32 [N, C] in the training precision: quicker, for labelling a pool."""
        check_is_fitted(self)
        with as_value_errors():
            inputs = shaped_inputs(np.asarray(X), self.input_shape_, name="X")
        return torch.softmax(self.fast_logits(inputs), 1).numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities float64 [N, C], columns in classes_ order; a row's values do not depend on
        the other rows (computed by a float64 copy of the network)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, allow_nd=True, dtype=np.float32)
        with as_value_errors():
            logits = self.as_student().logits(X, self.device_)
        return torch.softmax(logits.double(), 1).numpy()

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row, from classes_."""
        probs = self.predict_proba(X)  # first: an unfitted estimator raises NotFittedError
        return self.classes_[probs.argmax(1)]

    def as_student(self, classes: list | None = None) -> Student:
        """The trained network as a `Student` (save_student writes it to one file); classes: the
        names of its outputs (default classes_)."""
        check_is_fitted(self)
        name = self.model if isinstance(self.model, str) else getattr(self.model, "__name__", "custom")
        names = list(self.classes_) if classes is None else list(classes)
        return Student(self.model_, name, self.width, self.input_shape_, names)
