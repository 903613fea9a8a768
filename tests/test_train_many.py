"""Many models trained as one stacked model (rolemodels/training/train_many.py): each as `fit` trains it alone,
within rounding; its own seeds; killed and resumed; refused by name where it cannot be batched."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn

from rolemodels.errors import RunError, UserError
from rolemodels.method.teach import OnlineTeacherLabels, label_pool_by_teachers
from rolemodels.models import build_model
from rolemodels.recipe import FitSpec
from rolemodels.runtime.device import predict_logits
from rolemodels.training.train import fit, fixed_targets
from rolemodels.training.train_many import FitTask, StackedPredictor, fit_many, why_not_together

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
N = 64


def signals(n: int = N, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 40, generator=torch.Generator().manual_seed(seed))


def labels(k: int, n: int = N) -> torch.Tensor:
    return torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(100 + k))


def net(seed: int, name: str = "cnn1d", shape=(40,)) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, shape, 4, 4)


SGD = FitSpec(epochs=3, batch_size=16, lr=0.05, optimizer="sgd", momentum=0.9, schedule="cosine", augment="shift")
ADAMW = FitSpec(epochs=3, batch_size=16, lr=1e-3, optimizer="adamw", schedule="onecycle", augment="shift")


def max_difference(a: nn.Module, b: nn.Module) -> float:
    """The largest difference between two models' weights and buffers, relative to 1 + |value|
    (BatchNorm's running variances run into the hundreds)."""
    return max(((x.float() - y.float()).abs() / (1 + y.float().abs())).max().item()
               for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def alone_and_stacked(spec: FitSpec, xs: list[torch.Tensor], ys: list[torch.Tensor], name="cnn1d", shape=(40,)):
    alone = [fit(net(k, name, shape), xs[k], fixed_targets(ys[k]), spec, seed=10 + k, device="cpu", precision="fp32")
             for k in range(len(xs))]
    stacked = fit_many([net(k, name, shape) for k in range(len(xs))],
                       [FitTask(xs[k], len(xs[k]), fixed_targets(ys[k]), spec, 10 + k) for k in range(len(xs))],
                       device="cpu", precision="fp32")
    return alone, stacked


@pytest.mark.parametrize("spec", [SGD, ADAMW], ids=["sgd", "adamw"])
def test_each_stacked_model_is_the_model_fit_trains_alone_within_rounding(spec):
    x = signals()
    alone, stacked = alone_and_stacked(spec, [x, x, x], [labels(k) for k in range(3)])
    for a, s in zip(alone, stacked):
        # measured: at most 4e-7 (SGD) and 4e-7 (AdamW) on two processors; Adam's normalised steps
        # can magnify rounding where a gradient is near 0, so the margin is wider than the sums' error
        assert max_difference(a, s) < 1e-4
        assert torch.equal(predict_logits(a, x, "cpu").argmax(1), predict_logits(s, x, "cpu").argmax(1))
    assert max_difference(stacked[0], stacked[1]) > 1e-2  # a guard: the models did differ


def test_stacked_models_train_on_gce_with_the_recipes_q_as_alone():
    x = signals()
    spec = dataclasses.replace(SGD, loss="gce", gce_q=0.3)
    alone, stacked = alone_and_stacked(spec, [x, x], [labels(k) for k in range(2)])
    for a, s in zip(alone, stacked):
        assert max_difference(a, s) < 1e-4
    other_q = fit(net(0), x, fixed_targets(labels(0)), dataclasses.replace(spec, gce_q=0.9), seed=10,
                  device="cpu", precision="fp32")
    assert max_difference(stacked[0], other_q) > 1e-2  # q reached the loss (measured: 0.047)


def test_stacked_models_warm_up_on_cross_entropy_as_alone():
    x = signals()
    spec = dataclasses.replace(SGD, loss="gce", gce_q=0.3, gce_warmup=0.5)
    alone, stacked = alone_and_stacked(spec, [x, x], [labels(k) for k in range(2)])
    for a, s in zip(alone, stacked):
        assert max_difference(a, s) < 1e-4
    cold = fit(net(0), x, fixed_targets(labels(0)), dataclasses.replace(spec, gce_warmup=0.0), seed=10,
               device="cpu", precision="fp32")
    assert max_difference(stacked[0], cold) > 1e-2  # the warm-up reached the stacked loop


def test_models_with_their_own_inputs_and_soft_labels_train_as_alone():
    xs = [signals(seed=k) for k in range(3)]
    soft = [torch.softmax(torch.randn(N, 4, generator=torch.Generator().manual_seed(k)), 1) for k in range(3)]
    alone, stacked = alone_and_stacked(SGD, xs, soft)
    assert all(max_difference(a, s) < 1e-4 for a, s in zip(alone, stacked))


def test_models_with_batch_norm_keep_their_own_running_statistics():
    images = torch.randint(0, 256, (32, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    spec = FitSpec(epochs=1, batch_size=16, lr=0.01, optimizer="sgd", schedule="constant", augment="crop_flip")
    alone, stacked = alone_and_stacked(spec, [images, images], [labels(k, 32) for k in range(2)], "resnet18",
                                       (8, 8, 3))
    for a, s in zip(alone, stacked):
        assert max_difference(a, s) < 1e-4
        assert s[1].stem[1].num_batches_tracked.item() == 2  # each model counted its own 2 steps
    assert not torch.equal(stacked[0][1].stem[1].running_mean, stacked[1][1].stem[1].running_mean)


def test_a_model_trains_alike_whichever_models_share_its_group():
    x = signals()
    group = lambda others: fit_many([net(0)] + [net(k) for k in others],
                                    [FitTask(x, N, fixed_targets(labels(0)), SGD, 10)]
                                    + [FitTask(x, N, fixed_targets(labels(k)), SGD, 10 + k) for k in others],
                                    device="cpu", precision="fp32")[0]
    assert max_difference(group([1]), group([2, 3])) < 1e-4
    # its seed is its own: the same initial weights and labels with another seed train another model
    other_seed = fit_many([net(0), net(0)], [FitTask(x, N, fixed_targets(labels(0)), SGD, 10),
                                             FitTask(x, N, fixed_targets(labels(0)), SGD, 11)],
                          device="cpu", precision="fp32")
    assert max_difference(*other_seed) > 1e-3


class Interrupt(Exception):
    pass


def test_a_group_killed_after_a_checkpoint_resumes_with_the_uninterrupted_results(tmp_path):
    x = signals()
    tasks = lambda: [FitTask(x, N, fixed_targets(labels(k)), dataclasses.replace(ADAMW, epochs=4), 10 + k)
                     for k in range(2)]
    names = ["a", "b"]
    run = lambda **options: fit_many([net(0), net(1)], tasks(), device="cpu", precision="fp32", names=names,
                                     checkpoint_every=2, save=lambda p, obj: torch.save(obj, p), **options)
    reference = run()
    seen = []

    def stop_after_epoch_3(record):
        seen.append(record["epoch"])
        if record["epoch"] == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(checkpoint=tmp_path / "g.pt", logs=[stop_after_epoch_3, None])
    assert (tmp_path / "g.pt").exists()
    seen.clear()
    resumed = run(checkpoint=tmp_path / "g.pt", logs=[seen.append, None])
    assert [r["epoch"] for r in seen] == [3, 4]  # from the checkpoint of epoch 2
    for a, b in zip(reference, resumed):  # the same operations on the same state: the same bits
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(UserError, match="checkpoint of the group"):
        fit_many([net(0), net(1)], tasks(), device="cpu", checkpoint=tmp_path / "g.pt", names=["a", "c"])


def test_what_cannot_train_together_is_named():
    x = signals()
    task = lambda **change: FitTask(**{"x": x, "n": N, "targets": fixed_targets(labels(0)), "spec": SGD, "seed": 0,
                                       **change})
    assert why_not_together([net(0), net(1)], [task(), task(seed=1)]) is None
    assert why_not_together([net(0)], [task()]) == "a single model"
    assert why_not_together([net(0), build_model("mlp", (40,), 4, 4)], [task(), task()]) == "different architectures"
    assert why_not_together([net(0), net(1)], [task(), task(spec=ADAMW)]) == "different recipes"
    assert why_not_together([net(0), net(1)], [task(), task(n=N - 1)]) == "different numbers of training examples"
    online = OnlineTeacherLabels([net(2)], "vote", 0, 4)
    assert "online" in why_not_together([net(0), net(1)], [task(), task(targets=online)])
    assert "memory-mapped" in why_not_together([net(0), net(1)], [task(), task(x=x.numpy())])
    with pytest.raises(UserError, match="cannot train as one group: different recipes"):
        fit_many([net(0), net(1)], [task(), task(spec=ADAMW)], device="cpu")


def test_a_diverging_model_is_named():
    xs = [signals(), signals() * 1e30]  # only the second model's inputs are extreme
    with pytest.raises(RunError, match="^second: the training loss became nan"):
        fit_many([net(0), net(1)], [FitTask(xs[k], N, fixed_targets(labels(k)), SGD, k) for k in range(2)],
                 device="cpu", names=["first", "second"])


def test_stacked_teachers_label_the_pool_as_each_teacher_alone():
    pool = signals(100, seed=5)
    teachers = [net(k).eval() for k in range(3)]
    alone = label_pool_by_teachers([lambda xb, t=t: predict_logits(t, xb, "cpu", "fp32") for t in teachers], pool,
                                   chunk=32)
    stacked = label_pool_by_teachers(StackedPredictor(teachers, "cpu", "fp32", batch_size=16), pool, chunk=32)
    for (labels_a, logits_a), (labels_s, logits_s) in zip(alone, stacked):
        np.testing.assert_allclose(logits_a.astype(np.float32), logits_s.astype(np.float32), atol=1e-2)
        assert (labels_a == labels_s).mean() >= 0.99  # only a near-tie's rounding can flip a label


def test_the_pipeline_trains_its_teachers_and_students_stacked(tmp_path):
    """`train.stack=on`: the run's teachers train as one group and its students as another, each
    model keeps its file and its metrics, the numbers are those of one-at-a-time training within
    rounding, and a rerun trains nothing again."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    overrides = ["data.n_train=600", "data.n_test=500", "data.n_pool=3000", "teachers.count=3", "teachers.epochs=20",
                 "teachers.width=16", "teachers.batch_size=64", "students.epochs=2", "sweep.teachers=[1, 3]",
                 "train.checkpoint_every=2", "train.threads=1", "train.stack=on", f"data.cache_dir={tmp_path / 'c'}"]
    run = lambda out, *more: subprocess.run([sys.executable, "-m", "rolemodels", "run", "--config",
                                             str(root / "configs" / "tiny.toml"), "--out", str(out), "--quiet",
                                             *overrides, *more], cwd=root, check=True, capture_output=True, text=True)
    run(tmp_path / "a")
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    stacked = {r["model"]: r["stacked"] for r in records if "stacked" in r}
    assert stacked == {"teacher0": 3, "teacher1": 3, "teacher2": 3, "ensemble_distill_k1": 4,
                       "ensemble_distill_k3": 4, "random_distill_k3": 4, "clean_pool": 4}
    assert {p.name for p in (tmp_path / "a" / "seed0" / "teachers").glob("*.pt")} == \
        {"teacher0.pt", "teacher1.pt", "teacher2.pt"}  # one file a model, no group checkpoint left
    run(tmp_path / "b", "train.stack=off")
    stacked_table, alone_table = (json.loads((tmp_path / r / "results.json").read_text())["table"] for r in "ab")
    for row in ("teacher", "teacher_train_fit", "ensemble", "ensemble_distill", "random_distill"):
        # measured: at most 0.004 apart on an AMD EPYC (rounding, magnified by Adam's steps)
        assert abs(stacked_table[row]["mean"] - alone_table[row]["mean"]) <= 0.03, row
    # A rerun trains nothing again.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.pt")}
    run(tmp_path / "a")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.pt")} == before
