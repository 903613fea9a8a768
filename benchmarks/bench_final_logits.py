"""How many labels change when the final logits are float32 instead of bf16 (the last layer under autocast).

    python benchmarks/bench_final_logits.py --run runs/tiny     # a finished run folder

Reads the run's configuration and teachers, labels the pool and the test set twice with
`train.precision` as the run had it: once with each network's last layer in bf16 (as it ran
under autocast before `models.FinalLinear`), once in float32 (now), and counts the pool labels,
the exact ties of the top two bf16 logits, the plurality-vote labels and the test predictions
that differ. On a processor where the run's precision is float32 nothing can change.
"""
from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path

import torch


@contextmanager
def last_layer_in_autocast():
    """FinalLinear as a plain Linear: under bf16 autocast its logits are bf16, as before."""
    from rolemodels.models import FinalLinear

    forward = FinalLinear.forward
    FinalLinear.forward = torch.nn.Linear.forward
    try:
        yield
    finally:
        FinalLinear.forward = forward


def main() -> None:
    from rolemodels.config import load_config
    from rolemodels.data import load_dataset
    from rolemodels.method.combine import plurality_vote
    from rolemodels.models import input_stats
    from rolemodels.paper.networks import Architecture, new_model
    from rolemodels.runtime.device import autocast_dtype, predict_logits, resolve_device
    from rolemodels.runtime.files import load_torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished run folder (its config.toml and teachers)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = Path(args.run)
    cfg = load_config(run / "config.toml")
    device = resolve_device(cfg.train.device)
    dtype = autocast_dtype(device, cfg.train.precision, training=False)
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    data = load_dataset(cfg.data)
    stats = input_stats(data.x_train)
    arch = Architecture(cfg.teachers.model, cfg.teachers.width)
    teachers = []
    for k in range(cfg.teachers.count):
        model = new_model(arch, data, stats, 0)
        model.load_state_dict(load_torch(run / f"seed{args.seed}" / "teachers" / f"teacher{k}.pt"))
        teachers.append(model)

    def logits(x) -> torch.Tensor:  # [K, N, C]
        return torch.stack([predict_logits(t, x, device, cfg.train.precision, cfg.train.eval_batch_size)
                            for t in teachers])

    with last_layer_in_autocast():
        pool_before, test_before = logits(data.x_pool), logits(data.x_test)
    pool_now, test_now = logits(data.x_pool), logits(data.x_test)
    top2 = pool_before.topk(2, dim=2).values
    labels_before, labels_now = pool_before.argmax(2).T, pool_now.argmax(2).T  # [N, K]
    k = len(teachers)
    vote = lambda labels, lg: plurality_vote(labels, data.num_classes, torch.softmax(lg, 2).sum(0))
    result = {
        "run": str(run), "device": str(device), "inference_precision": str(dtype), "pool": len(labels_now),
        "teachers": k,
        "pool_labels_changed_per_teacher": (labels_before != labels_now).sum(0).tolist(),
        "pool_labels_changed_fraction": round((labels_before != labels_now).double().mean().item(), 5),
        "bf16_exact_top2_ties_per_teacher": (top2[..., 0] == top2[..., 1]).sum(1).tolist(),
        "vote_labels_changed": int((vote(labels_before, pool_before) != vote(labels_now, pool_now)).sum()),
        "test_predictions_changed_per_teacher": (test_before.argmax(2) != test_now.argmax(2)).sum(1).tolist(),
        "test": test_now.shape[1],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
