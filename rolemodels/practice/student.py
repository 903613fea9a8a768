"""A student to ship: one file that holds everything needed to predict, read with weights_only=True.

    save_student("student.pt", student)
    student = load_student("student.pt")
    labels = student.predict(x)            # the class names (strings) or integer classes
    probs = student.predict_proba(x)       # float32 [N, C], columns in the order of student.classes

The file is a plain dict of tensors, strings, numbers and lists (no pickled code): the registry
name and width of the network, one example's input shape, the class names, the input
standardisation (the training inputs' mean and std) and the weights. `build_model` rebuilds the
network from it, so any version of rolemodels with the same registry entry can read it.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from rolemodels.errors import UserError
from rolemodels.models import MODELS, build_model
from rolemodels.runtime.device import predict_logits
from rolemodels.runtime.files import atomic_save_torch

FORMAT = "rolemodels.practice.student"
FORMAT_VERSION = 1


@dataclass
class Student:
    """A trained network of the registry with what it needs to be used on new inputs.

    model: Standardize + body, as `build_model(architecture, input_shape, len(classes), width)`
    makes it; classes: the name of each output, ints or strings; input_dtype: "uint8" (images
    kept as bytes) or "float32".
    """

    model: nn.Module
    architecture: str
    width: int
    input_shape: tuple[int, ...]
    classes: list
    input_dtype: str = "float32"

    def logits(self, x, device: torch.device | str = "cpu", batch_size: int = 8192) -> torch.Tensor:
        """Logits float32 [N, C] for inputs [N, *input_shape] (or flat rows [N, prod(input_shape)]).

        Computed by a float64 copy of the network, so a row's result does not depend on which
        other rows share its batch (float32 kernels may sum in another order for another batch).
        """
        inputs = shaped_inputs(x, self.input_shape, self.input_dtype)
        exact = copy.deepcopy(self.model).double()
        return predict_logits(exact, inputs, torch.device(device), precision="fp32", batch_size=batch_size)

    def predict_proba(self, x, device: torch.device | str = "cpu") -> np.ndarray:
        """Class probabilities float32 [N, C] (softmax of the logits), columns in `classes` order."""
        return torch.softmax(self.logits(x, device).double(), 1).float().numpy()

    def predict(self, x, device: torch.device | str = "cpu") -> np.ndarray:
        """The most probable class of each input: an array [N] of `classes` values."""
        return np.asarray(self.classes)[self.logits(x, device).argmax(1).numpy()]


def shaped_inputs(x, input_shape: tuple[int, ...], dtype: str = "float32", name: str = "inputs") -> torch.Tensor:
    """x [N, *input_shape] or flat [N, prod(input_shape)] -> a tensor [N, *input_shape].

    uint8 inputs stay uint8 when the network was trained on bytes; anything else becomes float32
    and must be finite. UserError, naming `name`, for any other shape.
    """
    array = np.asarray(x)
    if array.dtype.kind not in "uif" or array.dtype == np.bool_:
        raise UserError(f"{name}: {array.dtype} values, expected numbers")
    shape = tuple(input_shape)
    if array.ndim < 1:
        raise UserError(f"{name}: a single value, expected examples [N, {', '.join(map(str, shape))}]")
    if array.shape[1:] != shape:
        if array.ndim == 2 and array.shape[1] == math.prod(shape) and len(shape) > 1:
            array = array.reshape(len(array), *shape)  # flat rows of images
        else:
            raise UserError(f"{name}: examples of shape {list(array.shape[1:])}, but the network takes "
                            f"{list(shape)} (or flat rows of {math.prod(shape)} values)")
    if dtype == "uint8" and array.dtype == np.uint8:
        return torch.from_numpy(np.array(array, copy=True))
    floats = np.array(array, dtype=np.float32, copy=True)  # a copy: read-only or memory-mapped inputs work too
    if not np.isfinite(floats).all():
        raise UserError(f"{name}: {int((~np.isfinite(floats)).sum()):,} NaN or infinite values; expected finite numbers")
    return torch.from_numpy(floats)


# ---------------------------------------------------------------------------------------------
# The file


def student_state(student: Student) -> dict:
    """The dict `save_student` writes: tensors, strings, numbers and lists only."""
    if student.architecture not in MODELS:
        raise UserError(f"student: a {student.architecture!r} network is not in the registry "
                        f"({', '.join(MODELS)}), so a file could not rebuild it; save its state_dict instead")
    standardize = student.model[0]
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": student.architecture,
            "width": int(student.width), "input_shape": [int(d) for d in student.input_shape],
            "classes": [c.item() if hasattr(c, "item") else c for c in student.classes],
            "input_dtype": student.input_dtype,
            "mean": standardize.mean.detach().cpu().clone(), "std": standardize.std.detach().cpu().clone(),
            "weights": {k: v.detach().cpu() for k, v in student.model.state_dict().items()}}


def save_student(path: str | Path, student: Student) -> None:
    """Write `student` to `path` atomically (see the module docstring for what the file holds)."""
    atomic_save_torch(path, student_state(student))


def load_student(path: str | Path) -> Student:
    """Read a file written by `save_student` (torch.load with weights_only=True: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"student file {path}: not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, or truncated
        raise UserError(f"student file {path}: cannot be read ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"student file {path}: not a rolemodels student (written by save_student or "
                        f"`rolemodels distill`)")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"student file {path}: format version {state['format_version']}, but this rolemodels "
                        f"reads up to {FORMAT_VERSION}; upgrade rolemodels")
    if state["architecture"] not in MODELS:
        raise UserError(f"student file {path}: network {state['architecture']!r} is not in this version's "
                        f"registry ({', '.join(MODELS)})")
    shape, classes = tuple(state["input_shape"]), list(state["classes"])
    model = build_model(state["architecture"], shape, len(classes), state["width"], state["mean"], state["std"])
    try:
        model.load_state_dict(state["weights"])
    except RuntimeError as err:
        raise UserError(f"student file {path}: weights do not fit a {state['architecture']} of width "
                        f"{state['width']} ({str(err).splitlines()[0]})") from None
    model.eval()
    return Student(model, state["architecture"], state["width"], shape, classes, state.get("input_dtype", "float32"))
