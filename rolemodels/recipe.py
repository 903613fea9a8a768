"""One model's training recipe (FitSpec): what teachers and students each have, and its valid values.

A run's configuration (config.py) holds two of these, [teachers] and [students]; the practitioner's
estimator and `rolemodels distill` build theirs in code. The ground of the package: every layer may import it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from rolemodels.errors import UserError

LOSSES = ("cross_entropy", "gce")


@dataclass
class FitSpec:
    """How to train one model: the recipe that teachers and students each have."""

    epochs: int = 1
    batch_size: int = 128
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "onecycle"  # onecycle | cosine | constant
    # none | crop_flip (images: padded crop and flip) | shift (1-D signals: circular shift) |
    # auto: the network's usual one (rolemodels.models.MODELS: shift for cnn1d, crop_flip for the
    # image networks, none for mlp)
    augment: str = "none"
    # the augmentation's size: crop_flip's padding in pixels, shift's largest shift in samples;
    # 0: each one's default (4 pixels, the paper's CIFAR recipe; 2 samples)
    augment_size: int = 0
    # At least this many examples seen, in whole passes: epochs = max(epochs, ceil(min_examples / n)),
    # so a small pool gets enough steps and a large one at least `epochs` passes. 0: `epochs` alone
    # (the default, which every run folder made before this key existed was trained with).
    min_examples: int = 0
    # cross_entropy | gce: generalised cross-entropy (Zhang & Sabuncu 2018), a loss that bounds
    # what a wrong label can cost, so the model fits the noise less
    loss: str = "cross_entropy"
    # gce's q in (0, 1]: a wrong label costs at most 1 / q; towards 0 it is cross-entropy, at 1 the
    # mean absolute error. 0.7 is Zhang & Sabuncu's choice (and what every run folder made before
    # this key existed was trained with).
    gce_q: float = 0.7
    # gce only: this share of the training steps on cross-entropy first, then gce. A model that
    # starts on gce learns its easy classes and can stay stuck on the rest (robust mlps fit 69-76%
    # of Fashion-MNIST's look-alike labels and scored 71-74%; 10% warm-up: 78-79%). 0: none (what
    # every run folder made before this key existed was trained with).
    gce_warmup: float = 0.0

    def epochs_for(self, n: int) -> int:
        """Passes over n examples: `epochs`, or more until `min_examples` have been seen."""
        return max(self.epochs, -(-self.min_examples // max(n, 1)))

    @classmethod
    def from_config(cls, section: "FitSpec") -> "FitSpec":
        """The recipe part of a [teachers] or [students] section."""
        return cls(**{f.name: getattr(section, f.name) for f in dataclasses.fields(cls)})

    def check_loss(self) -> None:
        """Refuse a loss the training loop does not have: a configuration's keys are checked when
        it loads, a recipe built in code (NetworkClassifier's) only here."""
        allowed = LOSSES
        if self.loss not in allowed:
            raise UserError(f"loss: {self.loss!r} is not one of {', '.join(allowed)}")
        if isinstance(self.gce_q, bool) or not isinstance(self.gce_q, (int, float)) or not 0 < self.gce_q <= 1:
            raise UserError(f"gce_q: {self.gce_q!r} is not in (0, 1]")
        warmup = self.gce_warmup
        if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup < 1:
            raise UserError(f"gce_warmup: {warmup!r} is not in [0, 1) (the share of the steps on cross-entropy first)")

    def loss_at(self, step: int, total_steps: int) -> str:
        """The loss of training step `step` (0-based) of `total_steps`: cross_entropy during gce's
        warm-up (the first gce_warmup share of the steps), else the recipe's loss."""
        warming = self.loss == "gce" and step < round(self.gce_warmup * total_steps)
        return "cross_entropy" if warming else self.loss

    def for_model(self, name: str) -> "FitSpec":
        """This recipe for the registered network `name`: augment=auto becomes its usual augmentation."""
        if self.augment != "auto":
            return self
        from rolemodels.models import MODELS

        return dataclasses.replace(self, augment=MODELS[name].augment if name in MODELS else "none")


# The practitioner's robust recipes (RoleModelClassifier's, `rolemodels distill`'s) train their
# teachers on GCE with this q: a wrong label costs at most 1.25, not 0.7's 1.43, and their students
# gained on pair-flip and symmetric noise (digits, MNIST-1D: docs/practitioners.md).
ROBUST_GCE_Q = 0.8


# A student's budget on a pool of N examples, in examples seen: at least 200,000 (one pass of the
# default run's pool), but at most 64 passes of a small pool (51,008 examples for digits' 797
# rows), and at least `min_passes` passes. A pool of 700 trained for one pass is 3 steps: its
# students came out below one teacher.
STUDENT_EXAMPLES = 200_000
STUDENT_MAX_PASSES = 64


def pool_examples(n_pool: int, min_passes: int = 1) -> int:
    """Examples a student sees on a pool of n_pool: at least STUDENT_EXAMPLES and `min_passes`
    passes, at most STUDENT_MAX_PASSES passes."""
    return min(STUDENT_MAX_PASSES * n_pool, max(STUDENT_EXAMPLES, min_passes * n_pool))


def is_small_pool(n_pool: int) -> bool:
    """A pool too small for the student's budget: fewer than STUDENT_EXAMPLES in STUDENT_MAX_PASSES
    passes (under 3,125 rows). Its student is better trained as a teacher is (config.py's
    students.small_pool)."""
    return n_pool * STUDENT_MAX_PASSES < STUDENT_EXAMPLES


# A value's check and what to say when it fails: config.py's RANGES holds one for every number a
# configuration has (tests/test_reliability.py tries a bad value of every key).
Range = tuple[Callable[[Any], bool], str]


def at_least(low: int) -> Range:
    return (lambda v: v >= low), f"at least {low}"


POSITIVE: Range = ((lambda v: v > 0), "positive")


def recipe_ranges(section: str) -> dict[str, Range]:
    """The ranges of a training recipe (FitSpec) in section [teachers] or [students]."""
    return {f"{section}.epochs": at_least(1), f"{section}.batch_size": at_least(1), f"{section}.lr": POSITIVE,
            f"{section}.momentum": ((lambda v: 0 <= v < 1), "in [0, 1)"),
            f"{section}.weight_decay": ((lambda v: v >= 0), "at least 0"),
            f"{section}.min_examples": ((lambda v: v >= 0), "at least 0 (0: the epochs alone)"),
            f"{section}.augment_size": ((lambda v: v >= 0), "at least 0 (0: the augmentation's default)"),
            f"{section}.gce_q": ((lambda v: 0 < v <= 1), "in (0, 1]"),
            f"{section}.gce_warmup": ((lambda v: 0 <= v < 1), "in [0, 1) (the share of the steps on cross-entropy first)")}
