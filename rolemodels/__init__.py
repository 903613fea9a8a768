"""rolemodels: knowledge distillation from noisy teachers (bad models can be good role models).

Each idea of the paper is a function over tensors or arrays:
    noisy = apply_noise(labels, transition_matrix("paper", 10), seed=0)
    votes = plurality_vote(teacher_labels, num_classes)
    labels = random_teacher_labels(teacher_labels, seed=0)
"""
from rolemodels.combine import (mean_probability, per_batch_teacher_targets, per_epoch_teacher_targets,
                                plurality_vote, random_teacher_labels, summed_logits_labels, vote_shares)
from rolemodels.device import predict_logits
from rolemodels.errors import RunError, UserError
from rolemodels.metrics import accuracy, confusion, noise_replication
from rolemodels.models import build_model, count_parameters, input_stats
from rolemodels.noise import apply_noise, noise_partner, realized_matrix, transition_matrix
from rolemodels.student import Student, load_student, save_student
from rolemodels.teach import label_pool, teacher_subsets
from rolemodels.train import FitSpec, fit, fixed_targets

__version__ = "0.1.0"

# The scikit-learn layer needs the [sklearn] extra, so it is imported only when asked for.
SKLEARN_NAMES = {"RoleModelClassifier": "rolemodels.estimator", "NetworkClassifier": "rolemodels.network_classifier"}


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
    "transition_matrix", "vote_shares",
]
