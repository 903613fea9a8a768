"""Where tensors live: one resolved device, inputs placed on it, pinned host buffers, models laid out
for it, and the dtype it computes in.

Every device is compared in its canonical form (`canonical_device`): `cuda` means the current GPU,
cuda:N, and every CPU is `cpu`, as a tensor's `.device` reports them. torch compares devices by
value, so `torch.device("cuda") != torch.device("cuda", 0)` and `torch.device("cpu", 0) !=
torch.device("cpu")`, although each pair names one device: a tensor already on the GPU would be
sent down a host path (and pinned, which torch refuses for a GPU tensor). Each function here
canonicalises the device it is given, so a caller may spell it as it likes.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from rolemodels.config import PRECISIONS
from rolemodels.errors import UserError

DeviceLike = torch.device | str


# ---------------------------------------------------------------------------------------------
# Naming a device


def parse_device(name: DeviceLike) -> torch.device:
    """The device a user named (auto | cpu | cuda | cuda:N, or a torch.device), as named: `auto`
    is cuda where a GPU is available, else cpu. Refuses what is not a device or not available."""
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"config key train.device: {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"config key train.device: {name} asked for, but no CUDA device is available")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(f"config key train.device: {name} asked for, but this machine has {count} GPU(s) "
                            f"(cuda:0 to cuda:{count - 1})")
    return device


def canonical_device(device: DeviceLike) -> torch.device:
    """`device` as tensors on it report theirs: cuda:N (for an index-less `cuda`, the current GPU)
    or cpu (whatever index it was given). Two spellings of one device become equal."""
    device = torch.device(device)
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if device.index is None:  # another accelerator (mps, xpu): its tensors report index 0
        return torch.device(device.type, 0)
    return device


def resolve_device(name: DeviceLike) -> torch.device:
    """The canonical device for what a user named (parse_device, then canonical_device)."""
    return canonical_device(parse_device(name))


def is_on(x, device: DeviceLike) -> bool:
    """Whether x is a tensor on `device` (in any spelling)."""
    return isinstance(x, torch.Tensor) and x.device == canonical_device(device)


# ---------------------------------------------------------------------------------------------
# Copies between host and device


def pinned(tensor: torch.Tensor, device: DeviceLike) -> torch.Tensor:
    """A host tensor in page-locked memory when it is bound for a GPU, so its copy there does not
    block; anything else (a tensor already on a GPU, or bound for the CPU) as it is."""
    if tensor.device.type == "cpu" and torch.device(device).type == "cuda":
        return tensor.pin_memory()  # the caching host allocator keeps it until the copy is done
    return tensor


def host_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A GPU tensor's copy in pinned host memory, made without blocking (wait for the stream
    before reading it); a CPU tensor as it is."""
    if tensor.device.type != "cuda":
        return tensor
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    return host.copy_(tensor, non_blocking=True)


def input_bytes(x) -> int:
    """Bytes of inputs [N, ...] stored as a tensor, an array or a pool (anything with shape and dtype)."""
    return math.prod(x.shape) * torch.empty(0, dtype=torch_dtype(x.dtype)).element_size()


def torch_dtype(dtype) -> torch.dtype:
    """torch's dtype for a torch or numpy dtype."""
    return dtype if isinstance(dtype, torch.dtype) else torch.from_numpy(np.empty(0, dtype=dtype)).dtype


def device_copy_limit(device: DeviceLike) -> int:
    """Bytes of inputs that may be copied to `device` and kept there: half of a GPU's free memory
    (the other half is left for training and labelling); 0 on a CPU, where inputs stay as they
    are (a memory-mapped pool is never loaded whole)."""
    device = canonical_device(device)
    if device.type != "cuda":
        return 0
    free, _ = torch.cuda.mem_get_info(device)
    return free // 2


def on_device(x, device: DeviceLike, limit: int | None = None, chunk_bytes: int = 1 << 28):
    """x as a tensor on `device` when its inputs fit in `limit` bytes (default device_copy_limit);
    otherwise x as it is (batches then gather from it on the host).

    x: a tensor, array, memory map or pool [N, ...] (uint8 stays uint8). It is read front to
    back in contiguous chunks of about `chunk_bytes`, each copied without blocking from a pinned
    buffer on a GPU, so a pool on disk is read once, in large sequential reads.
    """
    device = canonical_device(device)
    if is_on(x, device):
        return x
    limit = device_copy_limit(device) if limit is None else limit
    size = input_bytes(x)
    if size > limit:
        return x
    n = x.shape[0]
    out = torch.empty(tuple(x.shape), dtype=torch_dtype(x.dtype), device=device)
    rows = max(1, chunk_bytes // max(1, size // max(1, n)))  # rows per chunk
    for first in range(0, n, rows):
        part = pinned(torch.as_tensor(x[first:first + rows]), device)
        out[first:first + rows].copy_(part, non_blocking=True)
    return out


class Resident:
    """A tensor with one copy on each device it is asked for, made on first use.

    Targets keep their labels in one: a GPU step then gathers its labels on the device, where
    copying them from host memory each step would wait for the host.
    """

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor
        self._copies = {tensor.device: tensor}

    def on(self, device: DeviceLike) -> torch.Tensor:
        if device in self._copies:  # every training step asks with its indices' (canonical) device
            return self._copies[device]
        device = canonical_device(device)
        if device not in self._copies:
            self._copies[device] = self.tensor.to(device)
        return self._copies[device]


# ---------------------------------------------------------------------------------------------
# Models on a device


def place_model(model: nn.Module, device: DeviceLike) -> nn.Module:
    """The model on `device`, laid out as training leaves it there: on a GPU NHWC weights
    (channels_last, 4-D tensors only) to match the NHWC batches Standardize makes, so a teacher
    read from disk runs the kernels of a freshly trained one. Always outside inference mode:
    parameters moved inside it would become inference tensors that a later `fit` cannot train."""
    device = canonical_device(device)
    with torch.inference_mode(False):
        model.to(device)
        if device.type == "cuda":
            model.to(memory_format=torch.channels_last)
    return model


@lru_cache(maxsize=None)
def cpu_bf16_support() -> str:
    """"amx" (bf16 matrix units), "avx512" (AVX-512 BF16 dot products only) or "" (none)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return "amx" if "amx_bf16" in flags else "avx512" if "avx512_bf16" in flags else ""


@lru_cache(maxsize=None)
def cuda_has_bf16(device: torch.device) -> bool:
    """Whether a CUDA GPU has native bf16 (compute capability 8.0 on: Ampere, Hopper, ...); older ones
    emulate it, slower than float32."""
    try:
        return torch.cuda.get_device_capability(device)[0] >= 8
    except (AssertionError, RuntimeError):  # a torch without CUDA, or no such GPU: nothing to autocast on
        return False


def autocast_dtype(device: DeviceLike, precision: str, training: bool = True) -> torch.dtype | None:
    """The autocast dtype (None: fp32) for `precision` auto | bf16 | fp32.

    auto picks bf16 on GPUs with native bf16 and on CPUs with AMX. On CPUs with AVX-512 BF16 but no AMX it picks
    bf16 for inference only: measured on such a CPU (docs/benchmarks.md), the default teachers
    trained 25% slower under bf16 than in fp32, while labelling the pool ran 1.6x faster.
    """
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if torch.device(device).type == "cuda":  # auto: bf16 where the GPU computes it natively (Ampere on)
        return torch.bfloat16 if cuda_has_bf16(torch.device(device)) else None
    support = cpu_bf16_support()
    if support == "amx" or (support == "avx512" and not training):
        return torch.bfloat16
    return None


def predict_logits(model: nn.Module, x, device: DeviceLike, precision: str = "auto", batch_size: int = 8192,
                   keep_on_device: bool = False) -> torch.Tensor:
    """Logits float32 [N, C] of inputs x [N, ...] (a tensor on any device, an array or a memory
    map), computed in batches of `batch_size` on `device`; on the CPU, or on `device` with
    keep_on_device (no copy back, no wait for the device)."""
    device = canonical_device(device)
    place_model(model, device)  # outside inference mode: the model stays trainable
    model.eval()
    return _logits(model, x, device, autocast_dtype(device, precision, training=False), batch_size, keep_on_device)


@torch.inference_mode()
def _logits(model: nn.Module, x, device: torch.device, dtype: torch.dtype | None, batch_size: int,
            keep_on_device: bool) -> torch.Tensor:
    out = []
    for first in range(0, x.shape[0], batch_size):
        xb = torch.as_tensor(x[first:first + batch_size]).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(xb).float()
        out.append(logits if keep_on_device else logits.cpu())
    if not out:  # no examples: an empty batch still gives [0, C]
        logits = model(torch.as_tensor(x[:0]).to(device)).float()
        return logits if keep_on_device else logits.cpu()
    return torch.cat(out)
