"""Starting a run: threads, ranks and device (a Session), then the run folder ready for `Work`.

    session = start_session(cfg.train, quiet)      # torch threads, torchrun's world, the device
    with open_run(session, out, cfg, force) as work:
        ...                                        # the pipeline's stages (experiment.py)
    session.close()
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from rolemodels.config import Config, TrainConfig
from rolemodels.runtime.progress import Progress
from rolemodels.runtime.runfolder import run_folder
from rolemodels.runtime.work import Work
from rolemodels.runtime.world import World, join_world
from rolemodels.train import resolve_device


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
    world, device = join_world(resolve_device(train.device), train.dist_timeout)
    if device.type == "cpu":  # same seed, same results: ask for the deterministic kernels where torch has them
        torch.use_deterministic_algorithms(True, warn_only=True)
    return Session(world, device, Progress(quiet=quiet or not world.is_main), train)


@contextmanager
def open_run(session: Session, out: Path, cfg: Config, force: bool,
             inputs: Callable[[], dict[str, dict]] | None = None) -> Iterator[Work]:
    """The run folder `out` checked against `cfg` (and the inputs' fingerprints), locked and ready:
    the Work that carries out the stages."""
    with run_folder(out, cfg, force, session.world, inputs) as manifest:
        t = session.train
        yield Work(out, manifest, session.world, session.device, session.progress, precision=t.precision,
                   eval_batch_size=t.eval_batch_size, checkpoint_every=t.checkpoint_every, compile_model=t.compile)
