"""`rolemodels models [--json] [--input-shape ...]`: the registered models and their sizes."""
from __future__ import annotations

import argparse
import json


def register(commands) -> None:
    parser = commands.add_parser("models", help="list the registered models with their parameter counts")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--input-shape", help="one example's shape, e.g. 32,32,3 or 40 (default: each model's usual)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--width", type=int, default=0, help="model width (0: each model's default)")
    parser.set_defaults(func=models_command)


def models_command(args: argparse.Namespace) -> int:
    import torch

    from rolemodels.errors import UserError
    from rolemodels.models import MODELS, build_model, count_parameters

    shape = parse_shape(args.input_shape) if args.input_shape else None
    if args.num_classes < 1:
        raise UserError(f"--num-classes {args.num_classes}: must be at least 1")
    if args.width < 0:
        raise UserError(f"--width {args.width}: must be at least 1, or 0 for each model's default")
    rows = []
    for name, spec in MODELS.items():
        model_shape = shape or spec.usual_shape
        try:
            with torch.device("meta"):  # counted without allocating: a huge --input-shape costs no memory
                params = count_parameters(build_model(name, model_shape, args.num_classes, args.width))
        except UserError:
            continue  # this model does not take inputs of that shape
        rows.append({"name": name, "parameters": params, "input_shape": list(model_shape),
                     "width": args.width or spec.default_width, "augment": spec.augment,
                     "description": spec.description})
    if not rows:
        raise UserError(f"--input-shape {args.input_shape}: no registered model takes inputs of that shape")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            shape_text = "x".join(map(str, row["input_shape"]))
            print(f"{row['name']:10} {row['parameters']:>12,} parameters  input {shape_text:10} "
                  f"augment=auto: {row['augment']:9} {row['description']}")
    return 0


def parse_shape(text: str) -> tuple[int, ...]:
    """'32,32,3' -> (32, 32, 3): one example's shape, every size at least 1."""
    from rolemodels.errors import UserError

    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--input-shape {text!r}: expected integers separated by commas, e.g. 32,32,3") from None
    if any(size < 1 for size in shape):
        raise UserError(f"--input-shape {text!r}: every size must be at least 1")
    return shape
