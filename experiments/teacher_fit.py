"""Is a teacher recipe a sampler? Train a few teachers of a recipe and measure what decides it.

    python experiments/teacher_fit.py [--config PRESET] [--teachers 2] [section.key=value ...]
    python experiments/teacher_fit.py --config configs/fashion-mnist.toml teachers.augment=crop_flip \
        teachers.augment_size=2 teachers.epochs=30

A teacher must interpolate its noisy labels to be one of the paper's samplers, and then it
reproduces the noise on new inputs. For the run's data and seed-0 noise this trains teachers
0 .. N-1 of the recipe (the seeds `rolemodels run` gives them, two at a time on a CPU) and prints
their fit on their own noisy labels, their clean test accuracy, their noise replication (20% for
a perfect sampler of the paper's noise) and how often two of them agree on the test set: what a
recipe must be judged by before a whole run (docs/findings.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rolemodels.config import load_config  # noqa: E402
from rolemodels.data import load_dataset  # noqa: E402
from rolemodels.method import noise as noise_lib  # noqa: E402
from rolemodels.method.metrics import accuracy, noise_replication  # noqa: E402
from rolemodels.models import input_stats  # noqa: E402
from rolemodels.paper.experiment import noisy_training_labels
from rolemodels.paper.networks import Architecture, new_model  # noqa: E402
from rolemodels.recipe import FitSpec  # noqa: E402
from rolemodels.runtime.device import predict_logits, resolve_device  # noqa: E402
from rolemodels.runtime.threads import side_by_side  # noqa: E402
from rolemodels.seeds import Seeds  # noqa: E402
from rolemodels.training.train import fit, fixed_targets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="a preset (default: the default run)")
    parser.add_argument("--teachers", type=int, default=2)
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    data = load_dataset(cfg.data)
    noisy_np, T = noisy_training_labels(cfg, data, Seeds(0).noise)
    noisy, partner = torch.from_numpy(noisy_np).long(), torch.from_numpy(noise_lib.noise_partner(T))
    stats, device = input_stats(data.x_train), resolve_device(cfg.train.device)
    arch = Architecture(cfg.teachers.model, cfg.teachers.width)
    spec = FitSpec.from_config(cfg.teachers).for_model(arch.model)
    found: dict[int, tuple[float, float, float, float, torch.Tensor]] = {}

    def teacher(k: int, model: torch.nn.Module) -> None:
        seed = Seeds(0).teacher(k)
        started = time.perf_counter()
        fit(model, data.x_train, fixed_targets(noisy), spec, seed=seed, device=device, precision=cfg.train.precision)
        seconds = time.perf_counter() - started
        on_train = predict_logits(model, data.x_train, device, cfg.train.precision).argmax(1)
        on_test = predict_logits(model, data.x_test, device, cfg.train.precision).argmax(1)
        found[k] = (accuracy(on_train, noisy), accuracy(on_test, data.y_test),
                    noise_replication(on_test, data.y_test, partner), seconds, on_test)

    slots = 2 if device.type == "cpu" and torch.get_num_threads() >= 2 else 1
    for start in range(0, args.teachers, slots):
        # Built here, not in the threads: torch's global generator seeds the initial weights.
        ks = range(start, min(start + slots, args.teachers))
        models = {k: new_model(arch, data, stats, Seeds(0).teacher(k)) for k in ks}
        side_by_side([lambda k=k, models=models: teacher(k, models[k]) for k in ks], device, slots=slots)
    print(f"recipe: {spec}")
    for k in sorted(found):
        fit_, test, rep, seconds, _ = found[k]
        print(f"teacher {k}: fit on its noisy labels {fit_:.4f}, test accuracy {test:.4f}, noise replication "
              f"{rep:.4f} ({seconds:.0f} s)")
    preds = [found[k][4] for k in sorted(found)]
    pairs = [(preds[i] == preds[j]).float().mean().item() for i in range(len(preds)) for j in range(i)]
    mean = lambda i: sum(found[k][i] for k in found) / len(found)  # noqa: E731
    print(f"mean: fit {mean(0):.4f} (min {min(v[0] for v in found.values()):.4f}), test {mean(1):.4f}, "
          f"replication {mean(2):.4f}" + (f", pairwise test agreement {sum(pairs) / len(pairs):.3f}" if pairs else ""))


if __name__ == "__main__":
    main()
