"""Several processes under torchrun: one code path for one process and for N.

torchrun starts N copies of `rolemodels run` and tells each one its place in environment
variables (WORLD_SIZE, RANK, LOCAL_RANK). A `World` holds that place. With one process (no
torchrun, or --nproc-per-node 1) nothing distributed is initialised and every helper here does
nothing, so the single-process run is the N = 1 case of the same code.

How a run shares its work (README, "Several processes or machines"):
    teachers       rank r trains teachers r, r + W, r + 2W, ... with their single-process seeds
    pool labels    rank r labels one contiguous block of the pool's rows with every teacher
    students       DistributedDataParallel: each global batch split into W contiguous slices

The run folder must be one folder that every rank sees (a shared filesystem across machines).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

from rolemodels.errors import RunError, UserError


@dataclass(frozen=True)
class World:
    """This process's place among torchrun's: rank in 0 .. size - 1, local_rank on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that holds the run folder's lock and writes the reports."""
        return self.rank == 0

    def teachers(self, count: int) -> list[int]:
        """The teachers this rank trains: r, r + W, r + 2W, ... (every teacher exactly once)."""
        return list(range(self.rank, count, self.size))

    def barrier(self) -> None:
        """Wait until every rank gets here (at most train.dist_timeout seconds)."""
        if self.size > 1:
            _collective(torch.distributed.barrier)

    def main_decides(self, decide: Callable[[], Any]) -> Any:
        """Rank 0's answer to `decide()` on every rank (only rank 0 calls it).

        For choices all ranks must make alike, e.g. whether a student is already trained: they
        train it together, so one rank skipping it would leave the others waiting."""
        if self.size == 1:
            return decide()
        box = [decide() if self.is_main else None]
        _collective(lambda: torch.distributed.broadcast_object_list(box, src=0))
        return box[0]

    def main_first(self, work: Callable[[], Any]) -> Any:
        """Run `work` on rank 0, then on the others: rank 0 fills caches (data) they then read."""
        if self.is_main:
            result = work()
            self.barrier()
            return result
        self.barrier()
        return work()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor summed over the ranks, in place."""
        if self.size > 1:
            _collective(lambda: torch.distributed.all_reduce(tensor))
        return tensor

    def close(self) -> None:
        if self.size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


SINGLE = World()


def _collective(call: Callable[[], Any]) -> None:
    """Run a collective; its failure (a peer gone, or the timeout) becomes one RunError line."""
    try:
        call()
    except RuntimeError as err:  # gloo and nccl raise RuntimeError (or DistError, a subclass)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise RunError(f"waiting for the other ranks failed ({reason}); another rank stopped (its message is "
                       f"above) or took longer than train.dist_timeout seconds") from err


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError(f"environment variable {name}={text!r}: expected an integer (torchrun sets it)") from None


def world_from_env() -> World:
    """The World torchrun's environment variables describe; one process without them."""
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if size < 1 or not 0 <= rank < size:
        raise UserError(f"environment: RANK={rank} with WORLD_SIZE={size}; expected 0 <= RANK < WORLD_SIZE")
    return World(rank, size, local_rank)


def rank_label() -> str:
    """'rank R: ' under torchrun with several processes, else '' (for error messages)."""
    size, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "0")
    return f"rank {rank}: " if size.isdigit() and int(size) > 1 else ""


def rank_device(device: torch.device, world: World) -> torch.device:
    """The device of this rank: on GPUs, cuda:LOCAL_RANK (one GPU per process)."""
    if world.size == 1 or device.type != "cuda":
        return device
    if device.index is not None:
        raise UserError(f"config key train.device: {device} names one GPU, but under torchrun each process uses "
                        f"the GPU of its LOCAL_RANK; set train.device=cuda (or auto)")
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise UserError(f"LOCAL_RANK {world.local_rank}, but this machine has {count} GPU(s): "
                        f"start at most {count} processes per machine (--nproc-per-node)")
    return torch.device("cuda", world.local_rank)


def join_world(device: torch.device, timeout_s: int) -> tuple[World, torch.device]:
    """This process's World and device; under torchrun with N > 1, the process group too.

    gloo on CPUs, nccl on GPUs. Every collective (barriers included) gives up after `timeout_s`
    seconds, so a rank whose peer died never waits forever; torchrun normally stops the others
    first, as soon as one process exits with an error.
    """
    world = world_from_env()
    if world.size == 1:
        return world, device
    if not torch.distributed.is_available():
        raise UserError("WORLD_SIZE > 1, but this torch build has no torch.distributed")
    device = rank_device(device, world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                         timeout=datetime.timedelta(seconds=timeout_s))
    return world, device


def shard_range(n: int, rank: int, size: int, align: int = 1) -> tuple[int, int]:
    """Rows [a, b) of rank `rank` when n rows are split into `size` contiguous parts.

    Parts are as equal as whole blocks of `align` rows allow (the first ones get the extra
    block); every boundary but n is a multiple of `align`. Some parts are empty when there are
    fewer blocks than ranks.
    """
    blocks = -(-n // align)
    per, extra = divmod(blocks, size)
    first = rank * per + min(rank, extra)
    last = first + per + (1 if rank < extra else 0)
    return min(first * align, n), min(last * align, n)


def my_slice(batch: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices."""
    if world.size == 1:
        return batch
    first, last = shard_range(len(batch), world.rank, world.size)
    return batch[first:last]


def wrap_model(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """The model to call in training: DistributedDataParallel over the ranks, or itself alone.

    On GPUs BatchNorm layers become SyncBatchNorm, so their statistics are those of the global
    batch, as in one process; on CPUs (SyncBatchNorm needs a GPU) each rank normalises by its
    own slice. The parameters stay the model's own, so the optimizer and state_dict see them."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
