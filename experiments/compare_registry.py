"""experiments/compare.py's methods: each row's label and kind (METHODS, in the tables' order) and
the groups of rows one computation gives, with the settings each applies to (GROUPS)."""
from __future__ import annotations

from typing import Callable

import compare_methods as m
from compare_methods import Case, Method
from compare_sota import SOTA_FUNCTIONS, SOTA_METHODS

METHODS: dict[str, Method] = {
    "noisy_model": Method("one model on the noisy labels (our teacher)", "baseline"),
    "early_stopping": Method("early stopping on a noisy 10% split", "baseline"),
    "estimator_gce": Method("one model on GCE as a user calls it: NetworkClassifier(loss='gce')", "baseline"),
    "gce": Method("generalised cross-entropy (q = 0.7)", "baseline"),
    "cleanlab": Method("cleanlab CleanLearning (prune, retrain)", "baseline"),
    "cleanlab_student": Method("cleanlab, then a student on the pool", "baseline"),
    "self_training": Method("scikit-learn SelfTrainingClassifier", "baseline"),
    "label_spreading": Method("scikit-learn LabelSpreading", "baseline"),
    **SOTA_METHODS,
    "ensemble": Method("ours: test-time ensemble (vote)", "ours"),
    "ensemble_distill": Method("ours: ensemble distillation", "ours"),
    "random_distill": Method("ours: random-teacher distillation", "ours"),
    "best_ensemble_distill": Method("ours, mnist1d-best: ensemble distillation", "ours"),
    "best_random_distill": Method("ours, mnist1d-best: random-teacher distillation", "ours"),
    "estimator": Method("ours as a user calls it: RoleModelClassifier's defaults", "ours"),
    "cleanlab_distill": Method("cleanlab-pruned teachers, ensemble-distilled", "combination"),
    "gce_ensemble_distill": Method("GCE teachers, ensemble-distilled", "combination"),
    "gce_random_distill": Method("GCE teachers, random-teacher distilled", "combination"),
    "clean_train": Method("reference: the model on clean labels", "reference"),
    "clean_pool": Method("reference: the student on the pool's true labels", "reference"),
}

# Groups of rows one computation gives, and the (data, noise) each applies to.
Group = tuple[Callable[[Case], dict[str, dict]], tuple[str, ...], Callable[[str, str], bool]]
EVERY = lambda data, noise: True  # noqa: E731
# The field's methods apply everywhere; they cost far more than ours (docs/compare.md, "Cost"), so
# `--methods` runs them apart, and the page says on which settings they have been run.
GROUPS: list[Group] = [
    (m.ours, ("noisy_model", "ensemble", "ensemble_distill", "random_distill", "clean_train", "clean_pool"), EVERY),
    (m.early_stopping, ("early_stopping",), EVERY),
    (m.robust_loss, ("gce",), EVERY),
    (m.cleanlab, ("cleanlab",), EVERY),
    (m.cleanlab_student, ("cleanlab_student",), EVERY),
    (m.cleanlab_then_distill, ("cleanlab_distill",), EVERY),
    (m.gce_then_distill, ("gce_ensemble_distill", "gce_random_distill"), EVERY),
    (m.estimators, ("estimator", "estimator_gce"), EVERY),
    # The preset was chosen on MNIST-1D with the paper's noise (docs/findings.md): measured there.
    (m.ours_best, ("best_ensemble_distill", "best_random_distill"),
     lambda data, noise: (data, noise) == ("mnist1d", "paper20")),
    (m.self_training, ("self_training",), lambda data, noise: data == "digits"),  # scikit-learn's: on the table
    (m.label_spreading, ("label_spreading",), lambda data, noise: data == "digits"),
    *[(compute, (name,), EVERY) for name, compute in SOTA_FUNCTIONS.items()],
]
assert {n for _, names, _ in GROUPS for n in names} == set(METHODS), "every row has a label and a group"
