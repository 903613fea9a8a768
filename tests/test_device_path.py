"""The GPU path, checked on a CPU: checkpoints across devices, float32 final logits, every teacher
labelling a chunk at once, the pool kept on the device, the combinations refused up front.

What only a GPU shows (streams, memory layouts, CUDA generators) is in tests/test_cuda.py.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from fabricate import write_cifar5m_parts

from rolemodels.config import load_config
from rolemodels.data.cifar5m import load_cifar5m
from rolemodels.errors import UserError
from rolemodels.method.teach import label_pool, label_pool_by_teachers
from rolemodels.models import FinalLinear, build_model, has_batch_norm
from rolemodels.runtime.device import on_device, predict_logits
from rolemodels.runtime.manifest import Manifest
from rolemodels.runtime.progress import Progress
from rolemodels.runtime.session import Session, refuse_unworkable
from rolemodels.runtime.threads import trainings_at_once
from rolemodels.runtime.work import Work
from rolemodels.runtime.world import World
from rolemodels.training.train import FitSpec, fit, fixed_targets, load_checkpoint, restore_generator

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    wa, wb = a.state_dict(), b.state_dict()
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def image_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn2d", (8, 8, 3), 4, 2, torch.full((3,), 120.0), torch.full((3,), 70.0))


# ----------------------------------------------------------------------------- checkpoints across devices


def as_if_written_on_a_gpu(path: Path, augment_state: torch.Tensor) -> None:
    """Rewrite a CPU checkpoint as a GPU run writes it: every tensor tagged cuda:0 and the
    augmentation generator's state a CUDA (Philox) state, 16 bytes of seed and offset."""
    state = torch.load(path, weights_only=True)
    state["augment"] = augment_state
    torch.save(state, path)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    pickle_name = next(name for name in entries if name.endswith("data.pkl"))
    assert entries[pickle_name].count(b"X\x03\x00\x00\x00cpu") == 1  # the location, pickled once and memoised
    entries[pickle_name] = entries[pickle_name].replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


CUDA_STATE = torch.tensor([7, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0], dtype=torch.uint8)


def test_a_checkpoint_from_a_gpu_is_read_onto_the_cpu(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"shuffle": torch.Generator().manual_seed(3).get_state(), "w": torch.ones(2)}, path)
    as_if_written_on_a_gpu(path, CUDA_STATE)
    if not torch.cuda.is_available():  # what torch.load does with it by default on a machine without a GPU
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    state = load_checkpoint(path)
    assert all(t.device == CPU for t in state.values() if isinstance(t, torch.Tensor))
    generator = torch.Generator()
    generator.set_state(state["shuffle"])  # accepted: a CPU byte tensor
    assert torch.equal(torch.randperm(9, generator=generator), torch.randperm(9, generator=torch.Generator().manual_seed(3)))


def test_a_generator_state_of_another_device_leaves_the_generator_as_seeded():
    generator = torch.Generator().manual_seed(5)
    assert not restore_generator(generator, CUDA_STATE)
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    saved = torch.Generator().manual_seed(8).get_state()
    assert restore_generator(generator, saved)
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=torch.Generator().manual_seed(8)))


class Interrupt(Exception):
    pass


def test_a_run_checkpointed_on_a_gpu_resumes_on_a_cpu(tmp_path):
    """The model, optimizer, schedule and shuffle continue exactly; the GPU's augmentation generator
    cannot continue on a CPU, so the resumed epochs draw augmentations from the seeded CPU generator."""
    x, y = images(48), torch.arange(48) % 4
    spec = FitSpec(epochs=4, batch_size=16, lr=1e-2, optimizer="sgd", schedule="cosine", augment="crop_flip")
    seen: list[list[int]] = []

    def targets(idx, epoch):
        seen.append(idx.tolist())
        return y[idx]

    def stop_after_epoch_3(record):
        if record["epoch"] == 3:  # after the checkpoint of epoch 2
            raise Interrupt

    def run(checkpoint=None, **options):
        return fit(image_model(1), x, targets, spec, seed=4, device=CPU, precision="fp32", checkpoint=checkpoint,
                   checkpoint_every=2, **options)

    uninterrupted = run()
    order = list(seen)
    gpu, expected = tmp_path / "gpu.pt", tmp_path / "expected.pt"
    with pytest.raises(Interrupt):
        run(gpu, save=lambda p, obj: torch.save(obj, p), log=stop_after_epoch_3)
    state = torch.load(gpu, weights_only=True)
    state["augment"] = torch.Generator().manual_seed(4 + 1).get_state()  # fit's augmentation generator, as seeded
    torch.save(state, expected)
    as_if_written_on_a_gpu(gpu, CUDA_STATE)

    seen.clear()
    resumed = run(gpu)
    assert seen == order[len(order) // 2:]  # epochs 3 and 4, in the uninterrupted run's order
    assert same_weights(resumed, run(expected))  # from the saved model, optimizer and schedule
    assert not same_weights(resumed, uninterrupted)  # a guard: the augmentation draws do matter


# ----------------------------------------------------------------------------- float32 final logits


def test_final_logits_are_float32_at_inference_and_break_a_bf16_tie():
    layer = FinalLinear(1, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0], [1.0 + 2**-10]]))  # logits 1 and 1 + 2^-10: equal in bf16
        layer.bias.zero_()
    x = torch.ones(1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        training = layer.train()(x)
        inference = layer.eval()(x)
    assert training.dtype == torch.bfloat16 and training[0, 0] == training[0, 1]  # training: autocast as before
    assert inference.dtype == torch.float32 and inference.argmax(1).item() == 1
    assert list(layer.state_dict()) == list(nn.Linear(1, 2).state_dict())  # old checkpoints load


@pytest.mark.parametrize("name, shape", [("cnn1d", (40,)), ("cnn2d", (8, 8, 3)), ("cnn2d_wide", (8, 8, 1)),
                                         ("resnet18", (8, 8, 3)), ("mlp", (5,))])
def test_every_model_ends_in_a_final_linear_and_labels_in_float32(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, 3, 2)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert isinstance(last, FinalLinear)
    logits = predict_logits(model, torch.randn(6, *shape), CPU, precision="bf16")
    assert logits.dtype == torch.float32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.eval()(torch.randn(2, *shape)).dtype == torch.float32


# ----------------------------------------------------------------------------- every teacher on each chunk


def small_teachers(count: int = 3) -> list[nn.Module]:
    return [image_model(seed).eval() for seed in range(count)]


class CountingPool:
    """A pool that counts how many rows are read from it."""

    def __init__(self, x: torch.Tensor):
        self.x, self.rows_read = x, 0
        self.shape, self.dtype = x.shape, x.dtype

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index):
        part = self.x[index]
        self.rows_read += len(part)
        return part


@pytest.mark.parametrize("chunk", [5, 16, 64])
def test_every_teacher_per_chunk_gives_the_labels_of_one_teacher_at_a_time(chunk):
    teachers, pool = small_teachers(), images(37, seed=1)
    predicts = [lambda xb, t=t: predict_logits(t, xb, CPU, "auto", batch_size=8) for t in teachers]
    together = label_pool_by_teachers(predicts, pool, chunk=chunk)
    for predict, (labels, logits) in zip(predicts, together):
        alone_labels, alone_logits = label_pool(predict, pool, chunk=chunk)
        assert labels.dtype == np.uint8 and logits.dtype == np.float16 and logits.shape == (37, 4)
        np.testing.assert_array_equal(labels, alone_labels)
        np.testing.assert_array_equal(logits, alone_logits)
    rows = label_pool_by_teachers(predicts, pool, slice(16, 37), chunk=chunk)  # a rank's block of rows
    for (labels, logits), (all_labels, all_logits) in zip(rows, together):
        if 16 % chunk == 0:  # the block starts on a chunk boundary, as torchrun's blocks do
            np.testing.assert_array_equal(labels, all_labels[16:])
            np.testing.assert_array_equal(logits, all_logits[16:])
        assert labels.shape == (21,)


def test_each_chunk_is_read_once_for_all_teachers():
    pool = CountingPool(images(40, seed=2))
    predicts = [lambda xb, t=t: predict_logits(t, xb, CPU, "fp32") for t in small_teachers()]
    label_pool_by_teachers(predicts, pool, chunk=16)
    assert pool.rows_read == 40  # one read of the pool, not one per teacher


def make_work(out: Path, eval_batch_size: int = 8) -> Work:
    out.mkdir(parents=True, exist_ok=True)
    return Work(out, Manifest(out), World(), CPU, Progress(quiet=True), precision="fp32",
                eval_batch_size=eval_batch_size, checkpoint_every=1, compile_model=False)


def test_rows_computes_only_the_missing_columns_together_and_keeps_the_file_names(tmp_path):
    work = make_work(tmp_path / "run")
    calls = []

    def compute(columns, rows):
        calls.append((list(columns), (rows.start, rows.stop)))
        return [{"labels": np.full(rows.stop - rows.start, k, dtype=np.uint8)} for k in columns]

    folder = tmp_path / "run" / "pool"
    first = work.rows(folder, "pool_{part}{k}.npy", ("labels",), 3, 10, compute, label=str, align=4)
    assert calls == [([0, 1, 2], (0, 10))]  # every column in one pass over the rows
    assert sorted(p.name for p in folder.iterdir()) == ["pool_labels0.npy", "pool_labels1.npy", "pool_labels2.npy"]
    assert [c["labels"].tolist() for c in first] == [[k] * 10 for k in range(3)]
    work.delete(folder / "pool_labels1.npy")  # a run stopped before column 1 was kept
    calls.clear()
    again = work.rows(folder, "pool_{part}{k}.npy", ("labels",), 3, 10, compute, label=str, align=4)
    assert calls == [([1], (0, 10))]
    assert [c["labels"].tolist() for c in again] == [[k] * 10 for k in range(3)]


# ----------------------------------------------------------------------------- the pool on the device


@pytest.fixture
def cifar5m_pool(tmp_path):
    x, _ = write_cifar5m_parts(str(tmp_path / "cifar5m"), [30, 22])
    pool, _ = load_cifar5m(tmp_path / "cifar5m", limit=52)
    return pool, torch.from_numpy(x)


def test_the_pool_is_copied_whole_when_it_fits_and_left_as_it_is_otherwise(cifar5m_pool):
    pool, x = cifar5m_pool
    size = 52 * 32 * 32 * 3
    assert on_device(pool, CPU, limit=size - 1) is pool  # too large: streamed batch by batch
    copied = on_device(pool, CPU, limit=size, chunk_bytes=7 * 32 * 32 * 3)  # 8 chunks of 7 rows, across parts
    assert isinstance(copied, torch.Tensor) and copied.dtype == torch.uint8 and torch.equal(copied, x)
    assert on_device(copied, CPU) is copied  # already there
    assert on_device(pool, CPU) is pool  # on a CPU nothing is loaded whole by default


def test_the_pool_on_the_device_and_streamed_from_the_host_train_and_label_alike(cifar5m_pool):
    pool, _ = cifar5m_pool
    resident = on_device(pool, CPU, limit=1 << 30, chunk_bytes=5000)
    assert isinstance(resident, torch.Tensor) and pool is not resident
    y = torch.arange(52) % 10
    spec = FitSpec(epochs=2, batch_size=16, lr=1e-2, augment="crop_flip")
    models = []
    for x in (pool, resident):
        torch.manual_seed(0)
        model = build_model("cnn2d", (32, 32, 3), 10, 2, torch.full((3,), 127.0), torch.full((3,), 73.0))
        models.append(fit(model, x, fixed_targets(y), spec, seed=3, device=CPU, precision="fp32"))
    assert same_weights(*models)
    predicts = [lambda xb, m=m: predict_logits(m, xb, CPU, "auto", batch_size=8) for m in models]
    streamed = label_pool_by_teachers(predicts, pool, chunk=16, device=CPU)
    on_the_device = label_pool_by_teachers(predicts, resident, chunk=16, device=CPU)
    for (a, b), (c, d) in zip(streamed, on_the_device):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


# ----------------------------------------------------------------------------- refused before any work


def session(world: World | None = None, device: torch.device = CPU, cfg=None) -> Session:
    return Session(world or World(), device, Progress(quiet=True), (cfg or load_config()).train)


@pytest.mark.parametrize("overrides, expected", [
    (["train.compile=true", "teachers.per_device=2"], "teachers.per_device=2: trainings side by side run in threads"),
    (["train.compile=true", "students.per_device=3"], "students.per_device=3"),
    (["train.compile_mode=reduce-overhead"], "needs train.compile=true"),
])
def test_unworkable_combinations_are_refused(overrides, expected):
    cfg = load_config("configs/tiny.toml", overrides)
    with pytest.raises(UserError, match=expected):
        refuse_unworkable(cfg, session(cfg=cfg))


def test_compile_with_ddp_and_sync_batch_norm_on_gpus_is_refused():
    cfg = load_config("configs/cifar10-paper.toml", ["train.compile=true"])
    refuse_unworkable(cfg, session(World(0, 2), CPU, cfg))  # gloo on CPUs: no SyncBatchNorm, allowed
    refuse_unworkable(cfg, session(World(), torch.device("cuda"), cfg))  # one process: allowed
    with pytest.raises(UserError, match="SyncBatchNorm \\(resnet18\\)"):
        refuse_unworkable(cfg, session(World(0, 2), torch.device("cuda"), cfg))
    assert has_batch_norm("resnet18") and not has_batch_norm("cnn1d")


def test_a_refused_run_exits_2_in_one_line_and_writes_nothing(tmp_path, capsys):
    from rolemodels.cli import main

    out = tmp_path / "run"
    code = main(["run", "--config", "tiny", "--out", str(out), "--quiet", "train.compile=true", "teachers.per_device=2"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "torch.compile is not thread-safe" in err
    assert not out.exists()


def test_compiled_trainings_run_one_at_a_time_by_default():
    assert trainings_at_once(0, CPU, compiled=True) == 1
    assert trainings_at_once(3, CPU, compiled=True) == 3  # explicit: refused up front when compiled
    assert trainings_at_once(0, torch.device("cuda")) == 4  # CUDA streams: measured on an H200
