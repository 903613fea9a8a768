"""`rolemodels models [--json] [--input-shape ...]`: the registered models and their sizes."""
from __future__ import annotations

import argparse
import json

DEFAULT_SHAPES = {"cnn1d": (40,), "cnn2d": (32, 32, 3), "resnet18": (32, 32, 3), "mlp": (40,)}


def register(commands) -> None:
    parser = commands.add_parser("models", help="list the registered models with their parameter counts")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--input-shape", help="one example's shape, e.g. 32,32,3 or 40 (default: each model's usual)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--width", type=int, default=0, help="model width (0: each model's default)")
    parser.set_defaults(func=models_command)


def models_command(args: argparse.Namespace) -> int:
    from rolemodels.errors import UserError
    from rolemodels.models import MODELS, build_model, count_parameters

    shape = None
    if args.input_shape:
        try:
            shape = tuple(int(part) for part in args.input_shape.split(","))
        except ValueError:
            raise UserError(f"--input-shape {args.input_shape!r}: expected integers separated by commas, e.g. 32,32,3") from None
    rows = []
    for name, (_, default_width, description) in MODELS.items():
        model_shape = shape or DEFAULT_SHAPES[name]
        try:
            params = count_parameters(build_model(name, model_shape, args.num_classes, args.width))
        except UserError:
            continue  # this model does not take inputs of that shape
        rows.append({"name": name, "parameters": params, "input_shape": list(model_shape),
                     "width": args.width or default_width, "description": description})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            shape_text = "x".join(map(str, row["input_shape"]))
            print(f"{row['name']:10} {row['parameters']:>12,} parameters  input {shape_text:10} {row['description']}")
    return 0
