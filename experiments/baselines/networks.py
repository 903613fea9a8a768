"""What the baselines share: a scikit-learn classifier whose `_train` trains one or more of the
registry's networks (rolemodels.models) on labels int64 [n], and predicts with their mean
probabilities.

A baseline subclasses `NoisyLabelNetworks`, adds its own hyperparameters to __init__ (scikit-learn
reads them from its signature) and writes `_train(inputs, labels, seed) -> list[nn.Module]`. It
may set `flagged_` (bool [n]: the training labels it judged wrong) for the label-error scores.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from rolemodels.models import build_model, model_input_stats
from rolemodels.practice.network_classifier import as_value_errors, seed_of
from rolemodels.practice.student import shaped_inputs
from rolemodels.runtime.device import predict_logits, resolve_device
from rolemodels.training.augment import batch_augmentation


class NoisyLabelNetworks(ClassifierMixin, BaseEstimator):
    """Base: model (a registry name: mlp, cnn1d, cnn2d_wide, ...), width (0: its default),
    input_shape (one example's shape when X holds flat rows), augment (none | shift | crop_flip,
    every training batch), random_state, device. Subclasses add their method's settings."""

    def __init__(self, model="mlp", *, width=0, input_shape=None, augment="none", random_state=None, device="cpu"):
        self.model = model
        self.width = width
        self.input_shape = input_shape
        self.augment = augment
        self.random_state = random_state
        self.device = device

    def fit(self, X, y):
        """X [n, ...] or flat rows, y [n] noisy labels of any kind; returns self."""
        X, y = validate_data(self, X, y, allow_nd=True, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y has 1 class ({self.classes_[0]!r}); a classifier needs at least 2")
        with as_value_errors():
            self.device_ = resolve_device(self.device)
            self.input_shape_ = tuple(self.input_shape or X.shape[1:])
            inputs = shaped_inputs(X, self.input_shape_, name="X")
            labels = torch.from_numpy(encoded.astype(np.int64))
            self.networks_ = self._train(inputs, labels, seed_of(self.random_state))
        return self

    def _train(self, inputs: torch.Tensor, labels: torch.Tensor, seed: int) -> list[nn.Module]:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------ parts

    def new_network(self, inputs: torch.Tensor, seed: int) -> nn.Module:
        """A fresh network of `model` for these inputs (standardised with their statistics), its
        initial weights from `seed` alone, on the device, in training mode."""
        mean, std = model_input_stats(self.model, inputs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_model(self.model, self.input_shape_, len(self.classes_), self.width, mean, std)
        return net.to(self.device_).train()

    def augmentation(self):
        """The recipe's batch augmentation: (x [B, ...], generator) -> x', or None."""
        return batch_augmentation(self.augment)

    def logits_of(self, net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """net's logits float32 [N, C] on inputs, in evaluation mode (batch norm's running
        statistics), on the CPU; the network is put back in training mode after."""
        was_training = net.training
        logits = predict_logits(net, inputs, self.device_, "fp32")
        net.train(was_training)
        return logits.float().cpu()

    # ------------------------------------------------------------------------------------ predict

    def predict_proba(self, X) -> np.ndarray:
        """The networks' mean probabilities float64 [N, C], columns in classes_ order."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, allow_nd=True, dtype=np.float32)
        with as_value_errors():
            inputs = shaped_inputs(X, self.input_shape_, name="X")
        probs = [torch.softmax(self.logits_of(net, inputs).double(), 1) for net in self.networks_]
        return (sum(probs) / len(probs)).numpy()

    def predict(self, X) -> np.ndarray:
        probs = self.predict_proba(X)  # first: an unfitted classifier raises NotFittedError
        return self.classes_[probs.argmax(1)]


# The papers' optimiser (SGD with momentum), or AdamW where our network does not train under it in
# the paper's budget (cnn1d has no batch norm: 5 warm-up epochs of SGD at 0.02 left it at chance on
# MNIST-1D, docs/compare.md). momentum is SGD's; AdamW keeps its own betas.
OPTIMIZERS = ("sgd", "adamw")


def new_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """An optimiser named `name` (sgd | adamw) over params; ValueError for another name."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer: {name!r} is not one of {', '.join(OPTIMIZERS)}")

