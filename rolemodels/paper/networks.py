"""The paper's networks: one architecture and one standardisation (the training set's) for every
model of a run, and the check that they take the data's inputs before any work is done."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rolemodels.config import Config
from rolemodels.data import Dataset
from rolemodels.errors import UserError
from rolemodels.models import SAMPLERS, build_model


@dataclass(frozen=True)
class Architecture:
    model: str
    width: int


def new_model(arch: Architecture, data: Dataset, stats: tuple[torch.Tensor, torch.Tensor], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # the initial weights depend on this seed alone
    return build_model(arch.model, data.input_shape, data.num_classes, arch.width, *stats)


def student_architecture(cfg: Config, data: Dataset) -> Architecture:
    """The students' network: the teachers', unless set, or one of the data's kind for sampler teachers."""
    name = cfg.students.model or cfg.teachers.model
    if name in SAMPLERS:
        name = "cnn1d" if len(data.input_shape) == 1 else "cnn2d" if len(data.input_shape) == 3 else "mlp"
    width = cfg.students.width or (cfg.teachers.width if name == cfg.teachers.model else 0)
    return Architecture(name, width)


def check_architectures(cfg: Config, data: Dataset) -> None:
    """Refuse a teacher or student network that cannot take the data's inputs, before any work."""
    networks = [("students.model", student_architecture(cfg, data))]
    if cfg.teachers.model not in SAMPLERS:
        networks.insert(0, ("teachers.model", Architecture(cfg.teachers.model, cfg.teachers.width)))
    for key, arch in networks:
        try:
            with torch.device("meta"):  # shapes only: nothing is allocated
                build_model(arch.model, data.input_shape, data.num_classes, arch.width)
        except UserError as err:
            raise UserError(f"config key {key}: {err}") from None
    # An explicit augmentation must fit the inputs: shifts move 1-D signals, crops and flips images.
    kinds = {"shift": (1, "1-D signals [N, L]"), "crop_flip": (3, "images [N, H, W, C]")}
    for section, recipe in (("teachers", cfg.teachers), ("students", cfg.students)):
        if recipe.augment in kinds and len(data.input_shape) != kinds[recipe.augment][0]:
            raise UserError(f"config key {section}.augment: {recipe.augment} augments {kinds[recipe.augment][1]}; "
                            f"the data has examples of shape {list(data.input_shape)} (augment=auto picks the "
                            f"network's usual one, none turns it off)")
