"""What only a GPU shows: resume with CUDA generators, memory layouts, inference tensors, streams,
the pool on the device. Skipped without CUDA; benchmarks/gpu_check.sh runs it on a GPU."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from fabricate import write_cifar5m_parts

from rolemodels.data.cifar5m import load_cifar5m
from rolemodels.method.teach import label_pool, label_pool_by_teachers
from rolemodels.models import build_model
from rolemodels.runtime.device import on_device, predict_logits
from rolemodels.runtime.threads import side_by_side
from rolemodels.training.train import FitSpec, fit, fixed_targets

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.fixture(autouse=True)
def deterministic():
    """Deterministic kernels, as train.deterministic sets them (CUBLAS_WORKSPACE_CONFIG is set by
    benchmarks/gpu_check.py before the process starts; cuBLAS reads it once)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def resnet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("resnet18", (32, 32, 3), 10, 8, torch.full((3,), 127.0), torch.full((3,), 73.0))


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    wa, wb = a.state_dict(), b.state_dict()
    return wa.keys() == wb.keys() and all(torch.equal(wa[k].cpu(), wb[k].cpu()) for k in wa)


class Interrupt(Exception):
    pass


SPEC = FitSpec(epochs=4, batch_size=32, lr=0.05, optimizer="sgd", schedule="cosine", augment="crop_flip")


def run(checkpoint=None, device=CUDA, **options) -> nn.Module:
    x, y = images(96), torch.arange(96) % 10
    return fit(resnet(1), x, fixed_targets(y), SPEC, seed=2, device=device, checkpoint=checkpoint,
               checkpoint_every=2, save=lambda p, obj: torch.save(obj, p), **options)


def stop_after_epoch_3(record):
    if record["epoch"] == 3:
        raise Interrupt


def test_a_run_killed_on_cuda_resumes_with_the_uninterrupted_results(tmp_path):
    reference = run()
    assert same_weights(reference, run())  # deterministic kernels: two runs agree exactly
    with pytest.raises(Interrupt):
        run(tmp_path / "c.pt", log=stop_after_epoch_3)
    state = torch.load(tmp_path / "c.pt", weights_only=True, map_location="cpu")
    assert state["augment"].numel() == torch.Generator(device=CUDA).get_state().numel()  # a CUDA generator's state
    assert same_weights(run(tmp_path / "c.pt"), reference)


def test_a_checkpoint_written_on_the_cpu_resumes_on_cuda(tmp_path):
    with pytest.raises(Interrupt):
        run(tmp_path / "c.pt", device=CPU, log=stop_after_epoch_3)
    resumed = run(tmp_path / "c.pt")  # the CPU's augmentation state cannot continue on CUDA: it is reseeded
    assert all(torch.isfinite(p).all() for p in resumed.parameters())
    assert next(resumed.parameters()).device.type == "cuda"


def test_a_model_predicted_with_on_cuda_stays_trainable_and_keeps_the_training_layout():
    x, y = images(64), torch.arange(64) % 10
    model = resnet(0)  # on the CPU, as a teacher read from disk
    logits = predict_logits(model, x, CUDA)
    assert logits.dtype == torch.float32 and logits.device == CPU
    assert not any(p.is_inference() for p in model.parameters())
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)  # as fit leaves it
    fit(model, x, fixed_targets(y), FitSpec(epochs=1, batch_size=32), seed=0, device=CUDA)  # trains

    trained, read_back = resnet(3), resnet(4)
    fit(trained, x, fixed_targets(y), FitSpec(epochs=1, batch_size=32), seed=0, device=CUDA)
    read_back.load_state_dict({k: v.cpu() for k, v in trained.state_dict().items()})
    assert torch.equal(predict_logits(trained, x, CUDA), predict_logits(read_back, x, CUDA))  # same kernels


def test_side_by_side_jobs_wait_for_the_stream_that_made_their_inputs():
    x = torch.zeros(1 << 20, device=CUDA)
    torch.cuda._sleep(200_000_000)  # the producer stream is busy for a while ...
    x.fill_(1.0)  # ... before it writes the input
    seen = {}

    def job():
        seen["sum"] = x.sum().item()  # on the job's own stream

    side_by_side([job, lambda: None], CUDA)
    assert seen["sum"] == x.numel()
    out = torch.zeros(4, device=CUDA)

    def writer():
        torch.cuda._sleep(100_000_000)
        out.fill_(2.0)

    side_by_side([writer, lambda: None], CUDA)
    assert out.sum().item() == 8.0  # the caller's stream waited for the job's


def test_the_pool_on_cuda_and_streamed_from_the_host_label_alike(tmp_path):
    write_cifar5m_parts(str(tmp_path), [700, 500])
    pool, _ = load_cifar5m(tmp_path, limit=1200)
    resident = on_device(pool, CUDA)
    assert isinstance(resident, torch.Tensor) and resident.device.type == "cuda"
    assert torch.equal(resident.cpu(), pool[:])
    assert on_device(pool, CUDA, limit=1000) is pool
    teachers = [resnet(k).eval() for k in range(3)]
    predicts = [lambda xb, t=t: predict_logits(t, xb, CUDA, batch_size=256, keep_on_device=True) for t in teachers]
    on_gpu = label_pool_by_teachers(predicts, resident, chunk=512, device=CUDA)
    streamed = label_pool_by_teachers(predicts, pool, chunk=512, device=CUDA)
    for predict, (labels, logits), (s_labels, s_logits) in zip(predicts, on_gpu, streamed):
        np.testing.assert_array_equal(labels, s_labels)
        np.testing.assert_array_equal(logits, s_logits)
        alone_labels, alone_logits = label_pool(predict, resident, chunk=512)
        np.testing.assert_array_equal(labels, alone_labels)
        np.testing.assert_array_equal(logits, alone_logits)
        assert not np.isnan(logits.astype(np.float32)).any()


def test_training_on_the_resident_pool_equals_training_on_the_streamed_pool(tmp_path):
    write_cifar5m_parts(str(tmp_path), [150, 50])
    pool, _ = load_cifar5m(tmp_path, limit=200)
    y = torch.arange(200) % 10
    models = [fit(resnet(5), x, fixed_targets(y), FitSpec(epochs=1, batch_size=64, augment="crop_flip"), seed=1,
                  device=CUDA) for x in (pool, on_device(pool, CUDA))]
    assert same_weights(*models)


def test_fused_optimizer_and_fp32_final_logits_on_cuda():
    from rolemodels.training.train import make_optimizer

    model = resnet(0).to(CUDA)
    assert make_optimizer(model.parameters(), SPEC, CUDA).param_groups[0]["fused"]
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert model.eval()(images(4).to(CUDA)).dtype == torch.float32
