"""`rolemodels predict --model student.pt --inputs x.npy --out labels.npy [--proba]`."""
from __future__ import annotations

import argparse

CHUNK = 65536  # inputs predicted at a time, so a memory-mapped file of any size fits


def register(commands) -> None:
    parser = commands.add_parser("predict", help="a saved student's predictions for an .npy of inputs",
                                 description="Predict with a student file written by `rolemodels distill` or "
                                             "RoleModelClassifier.save_student: the class of each input (its name "
                                             "when the classes have names), or with --proba the probabilities "
                                             "float32 [N, C].")
    parser.add_argument("--model", required=True, help="student file (.pt)")
    parser.add_argument("--inputs", required=True, help=".npy of inputs [N, ...] shaped like the training inputs "
                                                        "(or flat rows)")
    parser.add_argument("--out", required=True, help=".npy to write")
    parser.add_argument("--proba", action="store_true", help="write probabilities [N, C] instead of labels")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--debug", dest="sub_debug", action="store_true", help="show tracebacks")
    parser.set_defaults(func=predict_command)


def predict_command(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from rolemodels.errors import UserError
    from rolemodels.practice.student import load_student
    from rolemodels.runtime.device import resolve_device
    from rolemodels.runtime.files import atomic_save_npy

    student = load_student(args.model)
    device = resolve_device(args.device)
    try:
        x = np.load(args.inputs, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"inputs {args.inputs}: not found") from None
    except (ValueError, OSError, EOFError) as err:
        raise UserError(f"inputs {args.inputs}: not a readable .npy ({' '.join(str(err).split())})") from None
    if not isinstance(x, np.ndarray) or x.ndim < 2:
        raise UserError(f"inputs {args.inputs}: expected an array [N, ...] with one row per example")
    logits = torch.cat([student.logits(x[first:first + CHUNK], device) for first in range(0, len(x), CHUNK)]
                       or [torch.zeros(0, len(student.classes))])
    if args.proba:
        result = torch.softmax(logits.double(), 1).float().numpy()
    else:
        result = np.asarray(student.classes)[logits.argmax(1).numpy()]
    atomic_save_npy(args.out, result)
    print(f"{len(result):,} {'probabilities' if args.proba else 'labels'} written to {args.out}")
    return 0
