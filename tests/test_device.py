"""One device in any spelling (rolemodels/runtime/device.py), checked on a CPU.

torch compares devices by value: torch.device("cpu", 0) != torch.device("cpu") and, on a GPU,
torch.device("cuda") != torch.device("cuda", 0). Before the devices were made canonical, a tensor
already on the GPU was sent down the host path and pinned, and every training crashed at its
first batch. The CPU shows the same mistake with "cpu:0"; these tests pass every spelling.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from rolemodels.config import TrainConfig
from rolemodels.errors import UserError
from rolemodels.method.teach import label_pool_by_teachers
from rolemodels.models import build_model
from rolemodels.runtime.device import (
    Resident,
    canonical_device,
    is_on,
    on_device,
    parse_device,
    pinned,
    place_model,
    predict_logits,
    resolve_device,
)
from rolemodels.runtime.session import start_session
from rolemodels.training.train import FitSpec, batches, fit, fixed_targets, load_optimizer_state

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
CPU_SPELLINGS = ["cpu", "cpu:0", torch.device("cpu"), torch.device("cpu", 0)]


def signals(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 40, generator=torch.Generator().manual_seed(seed))


def small_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn1d", (40,), 4, 4)


@pytest.mark.parametrize("spelling", CPU_SPELLINGS)
def test_every_spelling_of_the_cpu_is_one_canonical_device(spelling):
    assert canonical_device(spelling) == torch.device("cpu")
    assert resolve_device(spelling) == torch.device("cpu")
    assert canonical_device(spelling) == torch.empty(0).device  # as a tensor reports it
    assert is_on(torch.zeros(2), spelling)


def test_what_is_not_a_device_or_not_here_is_refused_by_name():
    with pytest.raises(UserError, match="'gpu0' is not a device"):
        parse_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            parse_device("cuda:1")
        assert resolve_device("auto") == torch.device("cpu")
    else:  # a GPU: `cuda` is the current one, with its index, as its tensors report it
        assert resolve_device("cuda") == torch.zeros(1, device="cuda").device
        with pytest.raises(UserError, match="GPU"):
            parse_device(f"cuda:{torch.cuda.device_count()}")


def test_is_on_is_false_for_arrays_and_other_devices():
    assert not is_on(np.zeros(2), "cpu")
    assert not is_on(torch.zeros(2, device="meta"), "cpu")


def test_only_a_host_tensor_bound_for_a_gpu_is_pinned(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a: calls.append(self) or self)
    on_meta = torch.empty(3, device="meta")  # stands in for a tensor already on a device
    assert pinned(on_meta, "cuda") is on_meta  # a tensor not on the host is never pinned
    host = torch.zeros(3)
    assert pinned(host, "cpu:0") is host and pinned(host, torch.device("cpu", 0)) is host
    assert calls == []
    pinned(host, "cuda")  # the one case that pins
    assert calls == [host]


@pytest.mark.parametrize("spelling", CPU_SPELLINGS)
def test_inputs_already_on_the_device_stay_where_they_are(spelling):
    x = signals(8)
    assert on_device(x, spelling, limit=1 << 30) is x  # no copy of what is already there
    labels = torch.arange(8)
    resident = Resident(labels)
    assert resident.on(spelling) is labels  # one copy per device, whatever the spelling


@pytest.mark.parametrize("spelling", CPU_SPELLINGS)
def test_batches_of_inputs_on_the_device_are_gathered_there_without_the_host_path(spelling, monkeypatch):
    monkeypatch.setattr("rolemodels.training.train.pinned", lambda *a: pytest.fail("inputs on the device sent to the host path"))
    x, order = signals(10), torch.randperm(10, generator=torch.Generator().manual_seed(1))
    seen = list(batches(x, order, 4, spelling))
    assert [len(idx) for idx, _ in seen] == [4, 4, 2]
    for idx, xb in seen:
        assert torch.equal(xb, x[idx])


def test_fit_and_predict_give_the_same_model_for_every_spelling_of_the_device():
    x, y = signals(48), torch.arange(48) % 4
    spec = FitSpec(epochs=2, batch_size=16, lr=1e-2, augment="shift")
    models = [fit(small_model(3), x, fixed_targets(y), spec, seed=5, device=d, precision="fp32")
              for d in CPU_SPELLINGS]
    first = models[0].state_dict()
    for model in models[1:]:
        assert all(torch.equal(first[k], v) for k, v in model.state_dict().items())
    logits = [predict_logits(m, x, d, precision="fp32") for m, d in zip(models, CPU_SPELLINGS)]
    assert all(torch.equal(logits[0], other) for other in logits[1:])


def test_the_pool_labels_alike_whatever_the_spelling_of_the_device():
    pool = signals(30, seed=2)
    teachers = [small_model(k).eval() for k in range(2)]
    predicts = [lambda xb, t=t: predict_logits(t, xb, "cpu", precision="fp32") for t in teachers]
    reference = label_pool_by_teachers(predicts, pool, chunk=8)
    for spelling in CPU_SPELLINGS:
        for (labels, logits), (ref_labels, ref_logits) in zip(
                label_pool_by_teachers(predicts, pool, chunk=8, device=spelling), reference):
            np.testing.assert_array_equal(labels, ref_labels)
            np.testing.assert_array_equal(logits, ref_logits)


@pytest.mark.parametrize("spelling", ["cpu", "cpu:0"])
def test_a_session_holds_the_canonical_device(spelling):
    session = start_session(TrainConfig(device=spelling, threads=1), quiet=True)
    try:
        assert session.device == torch.device("cpu") and session.device == torch.empty(0).device
    finally:
        session.close()


# ----------------------------------------------------------------------------- optimizer state across layouts


def conv_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))


def trained_state(optimizer: str) -> dict:
    """An optimizer's state after one step, on contiguous (NCHW) weights: as a CPU run saves it."""
    model = conv_model(0)
    opt = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if optimizer == "sgd"
           else torch.optim.AdamW(model.parameters(), lr=0.1))
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    return opt.state_dict()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("fused", [False, True])
def test_saved_optimizer_state_takes_the_layout_of_the_parameters_it_continues(optimizer, fused):
    """A GPU lays weights out as channels_last, and its fused kernels refuse state of other strides
    (the CPU's contiguous momentum buffers); `step` must be where the implementation keeps it."""
    saved = trained_state(optimizer)
    model = conv_model(1).to(memory_format=torch.channels_last)  # as place_model leaves it on a GPU
    make = torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW
    options = {"momentum": 0.9} if optimizer == "sgd" else {}
    opt = make(model.parameters(), lr=0.1, fused=fused, **options)
    load_optimizer_state(opt, saved)
    assert opt.param_groups[0]["fused"] == fused  # this optimizer's implementation, not the saver's
    weight = model[0].weight
    for key, value in opt.state[weight].items():
        if key == "step":
            assert value.dtype == torch.float32 and value.device == weight.device
        else:
            assert value.stride() == weight.stride() and value.device == weight.device
            expected = next(v for k, v in saved["state"][0].items() if k == key)
            assert torch.equal(value, expected)  # the values are the saved ones
    model(torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)).sum().backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_model_placed_on_the_cpu_in_any_spelling_keeps_its_layout():
    model = conv_model(0)
    for spelling in CPU_SPELLINGS:
        place_model(model, spelling)
        assert model[0].weight.is_contiguous()  # channels_last is for a GPU only


def test_precision_is_one_of_three_and_auto_picks_bf16_only_on_gpus_that_have_it(monkeypatch):
    from rolemodels.runtime import device as device_module

    for bad in ("fp16", "FP32", "bfloat16", ""):
        with pytest.raises(UserError, match=f"precision {bad!r}: expected one of auto, bf16, fp32"):
            device_module.autocast_dtype("cpu", bad)
    for major, expected in ((7, None), (8, torch.bfloat16), (9, torch.bfloat16)):  # Volta; Ampere; Hopper
        device_module.cuda_has_bf16.cache_clear()
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, major=major: (major, 0))
        assert device_module.autocast_dtype("cuda", "auto") is expected
        assert device_module.autocast_dtype("cuda", "bf16") is torch.bfloat16  # asked for: given
        assert device_module.autocast_dtype("cuda", "fp32") is None
    device_module.cuda_has_bf16.cache_clear()
