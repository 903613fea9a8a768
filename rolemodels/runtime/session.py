"""Starting a run: threads, ranks and device (a Session), then the run folder ready for `Work`.

    session = start_session(cfg.train, quiet)      # torch threads, torchrun's world, the device
    refuse_unworkable(cfg, session)                # combinations torch cannot run, in one line
    with open_run(session, out, cfg, force) as work:
        ...                                        # the pipeline's stages (experiment.py)
    session.close()
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from rolemodels.config import Config, TrainConfig
from rolemodels.errors import UserError
from rolemodels.runtime.device import canonical_device, parse_device
from rolemodels.runtime.progress import Progress
from rolemodels.runtime.runfolder import run_folder
from rolemodels.runtime.threads import eval_batch_size, stack_models
from rolemodels.runtime.work import Work
from rolemodels.runtime.world import World, join_world


@dataclass
class Session:
    world: World
    device: torch.device
    progress: Progress
    train: TrainConfig

    def close(self) -> None:
        self.world.close()


def start_session(train: TrainConfig, quiet: bool = False) -> Session:
    """This process's threads, place among torchrun's ranks and device; progress on rank 0 only."""
    if train.threads:
        torch.set_num_threads(train.threads)
    world, device = join_world(parse_device(train.device), train.dist_timeout)  # under torchrun: cuda:LOCAL_RANK
    device = canonical_device(device)  # the one device every later comparison uses
    if device.type == "cpu":  # same seed, same results: ask for the deterministic kernels where torch has them
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        configure_cuda(train)
    return Session(world, device, Progress(quiet=quiet or not world.is_main), train)


def configure_cuda(train: TrainConfig) -> None:
    """What is reproducible on a GPU, and what is fast.

    By default cudnn.benchmark times the convolution algorithms for each shape and keeps the
    fastest: the choice, and with it the last bits of every result, may differ between runs, as
    it may where backward passes sum with atomics. train.deterministic asks for deterministic
    kernels (cudnn.benchmark off; cuBLAS with a fixed workspace), so that a rerun, or a run
    resumed from its checkpoints, repeats an uninterrupted one bit for bit on the same GPU and
    software; an operation torch has no deterministic kernel for warns once. precision=fp32 is
    float32 throughout (TF32 convolutions and matrix products off); under bf16 the few float32
    operations left (the final logits) are float32 too, since torch's matrix products default to it.
    """
    if train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not train.deterministic
    torch.backends.cudnn.deterministic = train.deterministic
    if train.precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def refuse_unworkable(cfg: Config, session: Session) -> None:
    """Refuse, in one line and before any work, the combinations that would fail deep inside torch."""
    compiled = cfg.train.compile
    for section in ("teachers", "students"):
        per_device = getattr(cfg, section).per_device
        if compiled and per_device > 1:
            raise UserError(f"config: train.compile=true with {section}.per_device={per_device}: trainings side by "
                            f"side run in threads, and torch.compile is not thread-safe; set {section}.per_device=1 "
                            f"(or 0) or train.compile=false")
    if cfg.train.compile_mode != "default" and not compiled:
        raise UserError(f"config: train.compile_mode={cfg.train.compile_mode} needs train.compile=true")
    if compiled and session.world.size > 1 and session.device.type == "cuda":
        from rolemodels.models import has_batch_norm

        names = sorted({name for name in (cfg.teachers.model, cfg.students.model) if name and has_batch_norm(name)})
        if names:
            raise UserError(f"config: train.compile=true under torchrun on GPUs: the students train as "
                            f"DistributedDataParallel with SyncBatchNorm ({', '.join(names)}), which torch.compile "
                            f"cannot trace; set train.compile=false or run one process")


@contextmanager
def open_run(session: Session, out: Path, cfg: Config, force: bool,
             inputs: Callable[[], dict[str, dict]] | None = None) -> Iterator[Work]:
    """The run folder `out` checked against `cfg` (and the inputs' fingerprints), locked and ready:
    the Work that carries out the stages."""
    with run_folder(out, cfg, force, session.world, inputs) as manifest:
        t = session.train
        yield Work(out, manifest, session.world, session.device, session.progress, precision=t.precision,
                   eval_batch_size=eval_batch_size(t.eval_batch_size, session.device),
                   checkpoint_every=t.checkpoint_every, compile_model=t.compile, compile_mode=t.compile_mode,
                   stack=stack_models(t.stack, session.device) and not t.compile)
