"""The training loop: learning, determinism by seed, checkpoint and resume, precision, prediction."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from rolemodels.errors import UserError
from rolemodels.models import build_model
from rolemodels.runtime.device import autocast_dtype, cpu_bf16_support, predict_logits
from rolemodels.training.train import FitSpec, fit, fixed_targets

CPU = torch.device("cpu")
N, D, C = 96, 5, 3


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def separable_problem(seed: int = 0, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    """x float32 [n, 5]; y = argmax of a fixed linear map, so a linear classifier gets 100%."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=gen)
    w = torch.randn(D, C, generator=gen)
    return x, (x @ w).argmax(1)


def new_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", (D,), C, width=2)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    wa, wb = a.state_dict(), b.state_dict()
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def train(seed: int = 0, epochs: int = 6, precision: str = "fp32", **kwargs) -> torch.nn.Module:
    x, y = separable_problem()
    spec = FitSpec(epochs=epochs, batch_size=16, lr=1e-2, **{k: kwargs.pop(k) for k in list(kwargs)
                                                              if k in FitSpec.__dataclass_fields__})
    model = kwargs.pop("model", None) or new_model(seed)
    return fit(model, x, fixed_targets(y), spec, n=N, seed=seed, device=CPU, precision=precision, **kwargs)


def train_accuracy(model: torch.nn.Module) -> float:
    x, y = separable_problem()
    return (predict_logits(model, x, CPU, precision="fp32").argmax(1) == y).double().mean().item()


# ----------------------------------------------------------------------------- learning


def test_fit_learns_a_separable_problem():
    model = new_model(0)
    before = train_accuracy(model)
    train(epochs=30, model=model)
    assert train_accuracy(model) >= 0.95
    assert before < 0.8  # it was not solved at initialisation
    assert not model.training  # fit leaves the model in eval mode


def test_log_reports_every_epoch_with_decreasing_loss():
    records = []
    train(epochs=8, log=records.append)
    assert [r["epoch"] for r in records] == list(range(1, 9))
    assert all(set(r) >= {"epoch", "loss", "lr", "seconds"} for r in records)
    assert records[-1]["loss"] < records[0]["loss"]


def test_fit_on_empty_set_is_a_user_error():
    x, y = separable_problem()
    with pytest.raises(UserError, match="empty"):
        fit(new_model(0), x, fixed_targets(y), FitSpec(epochs=1, batch_size=8), n=0, seed=0, device=CPU)


def test_fit_asks_targets_for_a_permutation_of_the_first_n_each_epoch():
    x, y = separable_problem()
    n = 50  # x has 96 rows; only the first 50 are the training set
    seen: dict[int, list[int]] = {}

    def targets(idx, epoch):
        seen.setdefault(epoch, []).extend(idx.tolist())
        return y[idx]

    fit(new_model(0), x, targets, FitSpec(epochs=3, batch_size=16), n=n, seed=0, device=CPU, precision="fp32")
    assert sorted(seen) == [0, 1, 2]
    for order in seen.values():
        assert sorted(order) == list(range(n))
    assert seen[0] != seen[1]  # reshuffled each epoch
    assert seen[0] != list(range(n))


def test_fixed_targets_returns_labels_of_the_batch_whatever_the_epoch():
    labels = torch.tensor([4, 0, 2, 2, 1, 3])
    targets = fixed_targets(labels)
    idx = torch.tensor([5, 0, 3])
    assert targets(idx, 0).tolist() == [3, 4, 2]
    assert torch.equal(targets(idx, 7), targets(idx, 0))


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_weights():
    assert same_weights(train(seed=3), train(seed=3))


def test_different_seed_gives_different_weights():
    assert not same_weights(train(seed=3), train(seed=4))


def test_shuffle_seed_alone_changes_the_result():
    x, y = separable_problem()
    spec = FitSpec(epochs=2, batch_size=16, lr=1e-2)
    a = fit(new_model(0), x, fixed_targets(y), spec, n=N, seed=0, device=CPU, precision="fp32")
    b = fit(new_model(0), x, fixed_targets(y), spec, n=N, seed=1, device=CPU, precision="fp32")
    assert not same_weights(a, b)


# ----------------------------------------------------------------------------- checkpoint and resume


class Interrupt(Exception):
    pass


def save(path: Path, obj: dict) -> None:
    torch.save(obj, path)


@pytest.mark.parametrize("schedule, optimizer, augment", [("onecycle", "adamw", "none"), ("cosine", "sgd", "none"),
                                                       ("onecycle", "adamw", "shift")])  # the shifts' generator too
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, schedule, optimizer, augment):
    epochs = 7
    reference = train(seed=5, epochs=epochs, schedule=schedule, optimizer=optimizer, augment=augment,
                      checkpoint=tmp_path / "reference.pt", checkpoint_every=2, save=save)

    def stop_after_epoch_3(record):
        if record["epoch"] == 3:
            raise Interrupt

    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        train(seed=5, epochs=epochs, schedule=schedule, optimizer=optimizer, augment=augment,
              checkpoint=checkpoint, checkpoint_every=2, save=save, log=stop_after_epoch_3)
    assert checkpoint.exists()
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2

    resumed_epochs = []
    resumed = train(seed=5, epochs=epochs, schedule=schedule, optimizer=optimizer, augment=augment, checkpoint=checkpoint,
                    checkpoint_every=2, save=save, log=lambda r: resumed_epochs.append(r["epoch"]))
    assert resumed_epochs == [3, 4, 5, 6, 7]  # continues after the saved epoch
    assert same_weights(resumed, reference)


def test_shifts_reach_the_training_loop():
    """augment=shift trains other weights than no augmentation, and its size matters."""
    plain = train(seed=5, epochs=2)
    one, two = (train(seed=5, epochs=2, augment="shift", augment_size=size) for size in (1, 2))
    assert not same_weights(one, plain) and not same_weights(one, two)


def test_resume_differs_from_restarting_without_the_checkpoint(tmp_path):
    # guards the test above: an interrupted run that restarts from scratch for the remaining epochs
    # would not match, so equality really comes from the checkpoint
    reference = train(seed=5, epochs=6)
    partial = new_model(5)
    x, y = separable_problem()
    fit(partial, x, fixed_targets(y), FitSpec(epochs=4, batch_size=16, lr=1e-2), n=N, seed=5, device=CPU,
        precision="fp32")
    assert not same_weights(partial, reference)


def test_checkpoints_are_saved_every_k_epochs_but_not_after_the_last(tmp_path):
    saved = []

    def record(path, obj):
        saved.append(obj["epoch"])
        assert set(obj) >= {"model", "optimizer", "scheduler", "shuffle", "augment", "epoch"}
        save(path, obj)

    train(epochs=6, checkpoint=tmp_path / "c.pt", checkpoint_every=2, save=record)
    assert saved == [2, 4]
    saved.clear()
    train(epochs=7, checkpoint=tmp_path / "d.pt", checkpoint_every=3, save=record)
    assert saved == [3, 6]


def test_no_checkpoint_written_without_save(tmp_path):
    train(epochs=4, checkpoint=tmp_path / "c.pt", checkpoint_every=1)
    assert not (tmp_path / "c.pt").exists()


# ----------------------------------------------------------------------------- precision


def test_autocast_dtype_choices():
    assert autocast_dtype(CPU, "fp32") is None
    assert autocast_dtype(CPU, "bf16") == torch.bfloat16
    support = cpu_bf16_support()
    assert autocast_dtype(CPU, "auto") == (torch.bfloat16 if support == "amx" else None)
    assert autocast_dtype(CPU, "auto", training=False) == (torch.bfloat16 if support else None)
    assert autocast_dtype(torch.device("cuda"), "fp32") is None
    # cuda with auto: bf16 where the GPU has it (tests/test_device.py, with the capability faked)


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_reduced_precision_trains_and_is_deterministic(precision):
    a = train(seed=1, epochs=30, precision=precision)
    assert train_accuracy(a) >= 0.9
    assert same_weights(a, train(seed=1, epochs=30, precision=precision))
    for p in a.parameters():
        assert p.dtype == torch.float32  # autocast keeps the master weights in fp32


def test_bf16_and_fp32_are_different_computations():
    assert not same_weights(train(seed=1, epochs=3, precision="bf16"), train(seed=1, epochs=3, precision="fp32"))


# ----------------------------------------------------------------------------- predict_logits


def test_predict_logits_chunked_equals_unchunked_and_the_model():
    model = train(seed=2, epochs=2)
    x = torch.randn(37, D, generator=torch.Generator().manual_seed(9))
    whole = predict_logits(model, x, CPU, precision="fp32", batch_size=1000)
    assert whole.dtype == torch.float32 and whole.shape == (37, C)
    with torch.no_grad():
        direct = model(x)
    assert torch.allclose(whole, direct, rtol=0, atol=1e-6)
    for batch_size in (1, 5, 36, 37):
        chunked = predict_logits(model, x, CPU, precision="fp32", batch_size=batch_size)
        assert chunked.shape == (37, C)
        assert torch.allclose(chunked, whole, rtol=0, atol=1e-6)


def test_predict_logits_in_bf16_is_close_and_float32():
    model = train(seed=2, epochs=2)
    x, _ = separable_problem()
    low = predict_logits(model, x, CPU, precision="bf16", batch_size=10)
    high = predict_logits(model, x, CPU, precision="fp32")
    assert low.dtype == torch.float32
    assert torch.allclose(low, high, atol=0.1, rtol=0.05)


def test_predict_logits_of_empty_input_has_class_axis():
    out = predict_logits(new_model(0), torch.zeros(0, D), CPU, precision="fp32")
    assert out.shape == (0, C)


# ----------------------------------------------------------------------------- schedules and optimizers


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_schedules_and_optimizers_run(schedule, optimizer):
    records = []
    before = weights(new_model(0))
    model = train(seed=0, epochs=3, schedule=schedule, optimizer=optimizer, log=records.append)
    after = weights(model)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    assert all(torch.isfinite(p).all() for p in model.parameters())
    lrs = [r["lr"] for r in records]
    lr = 1e-2
    if schedule == "constant":
        assert lrs == pytest.approx([lr] * 3)
    elif schedule == "cosine":
        # cosine to zero over all steps: (1 + cos(pi * t / T)) / 2 after t of T steps
        steps, total = 6, 18
        expected = [lr * (1 + math.cos(math.pi * steps * e / total)) / 2 for e in (1, 2, 3)]
        assert lrs == pytest.approx(expected, abs=1e-9)
    else:
        # warm-up ends within the first epoch (15% of 18 steps); then the rate only falls
        assert max(lrs) <= lr + 1e-12
        assert lrs[0] > lrs[1] > lrs[2]
        assert lrs[-1] < lr / 20  # one cycle ends far below the peak


def test_sgd_without_momentum_runs():
    model = train(seed=0, epochs=2, optimizer="sgd", momentum=0.0)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_soft_targets_train_toward_the_given_distribution():
    """Probability targets float [B, C] (soft ensemble labels) go through the same loop: a model
    fitted to a fixed soft label predicts close to that distribution, unlike hard labels."""
    x, y = separable_problem(n=256)
    soft = torch.full((len(y), C), 0.15)
    soft[torch.arange(len(y)), y] = 0.7
    spec = FitSpec(epochs=60, batch_size=32, lr=0.02)
    model = fit(new_model(0), x, fixed_targets(soft), spec, n=len(y), seed=0, device=CPU)
    probs = torch.softmax(predict_logits(model, x, CPU, "fp32"), 1)
    assert (probs.argmax(1) == y).float().mean() > 0.95
    assert abs(probs.max(1).values.mean().item() - 0.7) < 0.1  # calibrated to the soft label, not to 1
    hard = fit(new_model(0), x, fixed_targets(y), spec, n=len(y), seed=0, device=CPU)
    assert torch.softmax(predict_logits(hard, x, CPU, "fp32"), 1).max(1).values.mean() > 0.9


def test_generalized_cross_entropy_is_its_formula_for_hard_and_soft_labels():
    from rolemodels.training.train import GCE_Q, generalized_cross_entropy

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    p = torch.softmax(logits, 1)
    q = GCE_Q
    hard = generalized_cross_entropy(logits, torch.tensor([0, 1]))
    assert q == 0.7 and torch.allclose(hard, ((1 - p[0, 0] ** q) / q + (1 - p[1, 1] ** q) / q) / 2)
    soft = torch.tensor([[0.25, 0.75, 0.0], [0.0, 0.0, 1.0]])
    expected = ((0.25 * (1 - p[0, 0] ** q) + 0.75 * (1 - p[0, 1] ** q)) / q + (1 - p[1, 2] ** q) / q) / 2
    assert torch.allclose(generalized_cross_entropy(logits, soft), expected)
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 1]), 3).float()
    assert torch.allclose(generalized_cross_entropy(logits, one_hot), hard)
    # A confidently wrong label costs at most 1/q; cross-entropy's cost grows without bound.
    wrong = torch.tensor([[30.0, -30.0, 0.0]])
    assert generalized_cross_entropy(wrong, torch.tensor([1])) <= 1 / q + 1e-6


def test_generalized_cross_entropy_has_finite_gradients_where_a_probability_underflows():
    from rolemodels.training.train import generalized_cross_entropy

    # The labelled class's probability is exp(-200) = 0 in float32 (and in bf16): the form
    # softmax(z) ** q would give 0 * inf = NaN gradients here.
    logits = torch.tensor([[100.0, -100.0, 0.0], [1.0, 2.0, 3.0]], requires_grad=True)
    for labels in (torch.tensor([1, 2]), torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])):
        logits.grad = None
        loss = generalized_cross_entropy(logits, labels)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
        assert logits.grad[1].abs().sum() > 0  # the ordinary example still learns


def test_slice_loss_is_cross_entropy_by_default_and_gce_when_asked():
    from rolemodels.runtime.world import SINGLE
    from rolemodels.training.train import generalized_cross_entropy, slice_loss

    x, y = separable_problem()
    logits = torch.randn(len(y), C, generator=torch.Generator().manual_seed(3))
    assert torch.equal(slice_loss(logits, y, len(y), SINGLE), torch.nn.functional.cross_entropy(logits, y))
    assert torch.equal(slice_loss(logits, y, len(y), SINGLE, "cross_entropy"),
                       torch.nn.functional.cross_entropy(logits, y))
    assert torch.allclose(slice_loss(logits, y, len(y), SINGLE, "gce"), generalized_cross_entropy(logits, y))
    assert torch.allclose(slice_loss(logits, y, len(y), SINGLE, "gce", 0.9), generalized_cross_entropy(logits, y, 0.9))
    assert not torch.allclose(generalized_cross_entropy(logits, y, 0.9), generalized_cross_entropy(logits, y))


def test_gce_warmup_trains_its_first_steps_on_cross_entropy_then_gce():
    x, y = separable_problem()
    spec = FitSpec(epochs=4, batch_size=32, lr=3e-2, loss="gce")  # 3 steps an epoch, 12 in all
    assert [spec.loss_at(s, 12) for s in (0, 11)] == ["gce", "gce"]
    warm = dataclasses.replace(spec, gce_warmup=0.25)
    assert [warm.loss_at(s, 12) for s in (0, 2, 3, 11)] == ["cross_entropy"] * 2 + ["gce"] * 2  # 3 steps of 12
    assert dataclasses.replace(warm, loss="cross_entropy").loss_at(11, 12) == "cross_entropy"

    def trained(recipe: FitSpec) -> torch.nn.Module:
        return fit(new_model(0), x, fixed_targets(y), recipe, seed=0, device=CPU)

    ce = trained(dataclasses.replace(spec, loss="cross_entropy"))
    gce, warmed = trained(spec), trained(warm)
    # a warm-up over every step is cross-entropy itself, one over none gce itself
    assert same_weights(trained(dataclasses.replace(spec, gce_warmup=0.99)), ce)
    assert same_weights(trained(dataclasses.replace(spec, gce_warmup=0.0)), gce)
    assert not same_weights(warmed, ce) and not same_weights(warmed, gce)


@pytest.mark.parametrize("warmup", [1.0, -0.1, True, "0.1"])
def test_a_gce_warmup_outside_0_to_1_is_refused(warmup):
    x, y = separable_problem()
    with pytest.raises(UserError, match="gce_warmup"):
        fit(new_model(0), x, fixed_targets(y), FitSpec(loss="gce", gce_warmup=warmup), seed=0, device=CPU)


def test_fit_with_gce_learns_and_differs_from_cross_entropy():
    x, y = separable_problem()
    spec = FitSpec(epochs=30, batch_size=32, lr=3e-2)
    ce = fit(new_model(0), x, fixed_targets(y), spec, seed=0, device=CPU)
    gce = fit(new_model(0), x, fixed_targets(y), FitSpec(**{**spec.__dict__, "loss": "gce"}), seed=0, device=CPU)
    assert not same_weights(ce, gce)
    assert (predict_logits(gce, x, CPU).argmax(1) == y).double().mean() > 0.9
