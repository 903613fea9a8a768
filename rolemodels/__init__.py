"""rolemodels: knowledge distillation from noisy teachers (bad models can be good role models).

Each idea of the paper is a function over tensors or arrays:
    noisy = apply_noise(labels, transition_matrix("paper", 10), seed=0)
    votes = plurality_vote(teacher_labels, num_classes)
    labels = random_teacher_labels(teacher_labels, seed=0)
"""
from rolemodels.errors import RunError, UserError
from rolemodels.method.combine import (
    mean_probability,
    per_batch_teacher_targets,
    per_epoch_teacher_targets,
    plurality_vote,
    random_teacher_labels,
    summed_logits_labels,
    vote_shares,
)
from rolemodels.method.metrics import accuracy, confusion, noise_replication
from rolemodels.method.noise import apply_noise, noise_partner, realized_matrix, transition_matrix
from rolemodels.method.teach import label_pool, teacher_subsets
from rolemodels.models import build_model, count_parameters, input_stats
from rolemodels.practice.student import Student, load_student, save_student
from rolemodels.runtime.device import predict_logits
from rolemodels.training.train import FitSpec, fit, fixed_targets
from rolemodels.version import __version__

# The scikit-learn layer needs the [sklearn] extra, so it is imported only when asked for.
SKLEARN_NAMES = {"RoleModelClassifier": "rolemodels.practice.estimator", "NetworkClassifier": "rolemodels.practice.network_classifier"}


def __getattr__(name: str):
    if name in SKLEARN_NAMES:
        import importlib

        try:
            module = importlib.import_module(SKLEARN_NAMES[name])
        except ModuleNotFoundError as err:
            if err.name != "sklearn":
                raise
            raise ImportError(f"rolemodels.{name} needs scikit-learn: pip install -e \".[sklearn]\"") from None
        return getattr(module, name)
    raise AttributeError(f"module 'rolemodels' has no attribute {name!r}")


__all__ = [
    "FitSpec", "NetworkClassifier", "RoleModelClassifier", "RunError", "Student", "UserError", "accuracy",
    "apply_noise", "build_model", "confusion", "count_parameters", "fit", "fixed_targets", "input_stats",
    "label_pool", "load_student", "mean_probability", "noise_partner", "noise_replication",
    "per_batch_teacher_targets", "per_epoch_teacher_targets", "plurality_vote", "predict_logits",
    "random_teacher_labels", "realized_matrix", "save_student", "summed_logits_labels", "teacher_subsets",
    "transition_matrix", "vote_shares", "__version__",
]
