"""Typed configuration: dataclass defaults, TOML presets, `section.key=value` overrides.

A preset file and the command line may only set keys that exist here, with values of the
default's type; anything else is answered with one line naming the key and what is allowed.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolemodels.errors import UserError
from rolemodels.recipe import LOSSES, FitSpec, Range, at_least, is_small_pool, recipe_ranges


@dataclass
class DataConfig:
    name: str = "mnist1d"  # mnist1d | fashion-mnist | cifar10 | arrays
    n_train: int = 4000  # labelled training examples (the teachers' noisy set)
    n_test: int = 10000  # clean test examples
    n_pool: int = 200000  # unlabelled pool for distillation (CIFAR-5m's stand-in)
    seed: int = 0  # seed of the data itself; the experiment's seeds do not change it
    generator: str = "package"  # mnist1d only: package (mnist1d.make_dataset) | fast (vectorised)
    path: str = ""  # arrays: the .npz file
    root: str = ""  # fashion-mnist / cifar10: folder of the files
    pool_root: str = ""  # cifar10: CIFAR-5m folder
    pool_per_class: int = 0  # cifar5m class files: keep this many per class (0 = all)
    download: bool = False  # fetch official files when a network exists
    cache_dir: str = ""  # default: $ROLEMODELS_CACHE or ~/.cache/rolemodels


@dataclass
class NoiseConfig:
    preset: str = "paper"  # paper | symmetric | pairflip | matrix | none
    rate: float = 0.2
    shift: int = -1  # paper preset: c -> (c + shift) mod C; -1 means C // 2
    mode: str = "exact"  # exact (fixed counts per class, the paper's) | sampled
    matrix_file: str = ""  # matrix preset: a row-stochastic C x C file
    labels_file: str = ""  # train the teachers on these noisy labels instead
    labels_key: str = ""  # key inside a .pt dict of label arrays


@dataclass
class TeacherConfig(FitSpec):
    # The paper's recipe on MNIST-1D: every step augmented (auto: shifts of up to 2 samples for the
    # 1-D CNN), and long enough that the teachers still interpolate their noisy labels: 80 epochs
    # at batch 256 fit 99.9% of them (docs/findings.md, "Teachers trained with augmentation").
    epochs: int = 80
    batch_size: int = 256
    lr: float = 6e-3  # twice the batch of the recipe without augmentation, twice its rate
    augment: str = "auto"
    weight_decay: float = 0.0  # teachers must interpolate: keep regularisation off
    count: int = 10
    model: str = "cnn1d"  # a network, or knn | kernel
    width: int = 32
    neighbors: int = 1  # model=knn: neighbours k (1 is a sampler)
    bandwidth: float = 0.0  # model=kernel: Laplace kernel bandwidth (0: median pairwise distance)
    data: str = "same"  # same | overlap | disjoint | bootstrap
    overlap: float = 0.5  # fraction of the training set per teacher with data=overlap
    # teachers trained at once per device (threads; one CUDA stream each, or a share of the CPU
    # threads); 0: auto (2 on a CPU with 2 or more threads, where it measured 1.26x; else 1)
    per_device: int = 0


@dataclass
class StudentConfig(FitSpec):
    epochs: int = 1  # passes over the pool
    batch_size: int = 256
    augment: str = "auto"  # the paper trains its students with augmentation too
    model: str = ""  # empty: the teachers' architecture (a network of the data's kind for knn/kernel teachers)
    width: int = 0  # 0: the teachers' width
    random_teacher: str = "example"  # example (the paper's) | batch (the authors' code) | epoch
    # vote (the paper's plurality) | sum_logits (the authors' code) | soft labels: vote_shares
    # (fraction of teachers per class) or mean_prob (mean of the teachers' softmax)
    ensemble: str = "vote"
    labels: str = "pool"  # pool: the pool labelled once (the paper) | online: on each augmented batch (the code)
    pool_size: int = 0  # students learn from the first pool_size pool examples (0: the whole pool)
    # Budget by the pool's size (recipe.pool_examples): at least 200,000 examples, at most 64
    # passes, so a small pool gets enough steps; a pool of 200,000 or more trains `epochs` passes,
    # as the paper does. false: `epochs` and `min_examples` alone (the presets that keep their counts).
    pool_budget: bool = True
    # With pool_budget, a pool too small for it (fewer than 3,125 rows: recipe.is_small_pool) is a
    # training set, not a stream. teacher_recipe: the students train as a teacher does (its
    # recipe and steps) on the pool and the training inputs, both labelled by the teachers, the
    # random-teacher student with a fresh teacher at every visit (random_teacher=example); on a
    # 700-row pool the pool budget alone gave students below one teacher. pool: the pool alone.
    small_pool: str = "teacher_recipe"
    per_device: int = 0  # students trained at once in one process (as teachers.per_device); with DDP: one at a time

    def pool_rows(self, available: int) -> int:
        """The pool rows the students learn from: the first pool_size of the `available` ones (0: all)."""
        return min(self.pool_size or available, available)

    def trains_as_teacher(self, n_pool: int) -> bool:
        """small_pool applies: the pool budget is on and a pool of n_pool rows is too small for it."""
        return self.pool_budget and self.small_pool == "teacher_recipe" and is_small_pool(n_pool)


@dataclass
class SweepConfig:
    teachers: list[int] = field(default_factory=lambda: [1, 2, 3, 5, 10])
    students: bool = True  # train students for every K (Figure 2), not only the ensemble


@dataclass
class TrainConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | bf16 | fp32
    threads: int = 0  # torch CPU threads; 0 = torch's default
    # rows per forward when labelling and evaluating; 0 (auto): the device's measured best,
    # 512 on a CPU, 8192 on a GPU (runtime/threads.py, docs/benchmarks.md)
    eval_batch_size: int = 0
    # models of one architecture and recipe trained as one stacked model (training/train_many.py): on,
    # off, or auto: where it measured faster, on GPUs (docs/benchmarks.md); only rounding differs
    stack: str = "auto"
    checkpoint_every: int = 5  # teacher epochs between resumable checkpoints
    compile: bool = False  # torch.compile the models (pays on GPUs for long runs)
    compile_mode: str = "default"  # torch.compile's mode: default | reduce-overhead (CUDA graphs) | max-autotune
    # CUDA: deterministic kernels, cudnn.benchmark off, so a rerun or a resumed run repeats an
    # uninterrupted run bit for bit (slower); CPU runs are deterministic either way
    deterministic: bool = False
    dist_timeout: int = 1800  # torchrun: seconds a rank waits for the others (barriers, collectives) before failing


@dataclass
class Config:
    name: str = "mnist1d"
    seed: int = 0  # first experiment seed (noise, teachers, students)
    seeds: int = 1  # repeat the experiment with seeds seed .. seed + seeds - 1
    data: DataConfig = field(default_factory=DataConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    teachers: TeacherConfig = field(default_factory=TeacherConfig)
    students: StudentConfig = field(default_factory=StudentConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


PRECISIONS = ("auto", "bf16", "fp32")  # train.precision, NetworkClassifier's precision

CHOICES = {
    "data.name": ("mnist1d", "fashion-mnist", "cifar10", "arrays"),
    "data.generator": ("package", "fast"),
    "noise.preset": ("paper", "symmetric", "pairflip", "matrix", "none"),
    "noise.mode": ("exact", "sampled"),
    "teachers.optimizer": ("adamw", "sgd"),
    "students.optimizer": ("adamw", "sgd"),
    "teachers.schedule": ("onecycle", "cosine", "constant"),
    "students.schedule": ("onecycle", "cosine", "constant"),
    "teachers.augment": ("auto", "none", "crop_flip", "shift"),
    "students.augment": ("auto", "none", "crop_flip", "shift"),
    "teachers.loss": LOSSES,
    "students.loss": LOSSES,
    "teachers.data": ("same", "overlap", "disjoint", "bootstrap"),
    "students.random_teacher": ("example", "batch", "epoch"),
    "students.ensemble": ("vote", "sum_logits", "vote_shares", "mean_prob"),
    "students.labels": ("pool", "online"),
    "students.small_pool": ("teacher_recipe", "pool"),
    "train.precision": PRECISIONS,
    "train.stack": ("auto", "on", "off"),
    "train.compile_mode": ("default", "reduce-overhead", "max-autotune"),
}

# Keys that change how fast a run goes but not what it computes: a rerun may change them.
NOT_RESULTS = {"train.threads", "train.eval_batch_size", "train.checkpoint_every", "train.compile", "data.cache_dir",
               "teachers.per_device", "students.per_device", "train.dist_timeout", "train.compile_mode",
               "train.deterministic", "train.stack"}


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _check_type(key: str, value: Any, default: Any) -> Any:
    """Return value converted to the default's type, or raise naming key and expected type."""
    expected = type(default)
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
    elif expected is list:
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return value
        raise UserError(f"config key {key}: expected a list of integers, got {value!r}")
    raise UserError(f"config key {key}: expected {expected.__name__}, got {type(value).__name__} {value!r}")


def _parse_value(text: str) -> Any:
    """Parse a command-line value as a TOML value; bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set(cfg: Config, key: str, value: Any) -> None:
    parts = key.split(".")
    target: Any = cfg
    for depth, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(target)]
        if part not in names:
            prefix = ".".join(parts[:depth])
            where = f"section [{prefix}]" if prefix else "the top level"
            valid = ", ".join(
                f"{part_}" if not dataclasses.is_dataclass(getattr(target, part_)) else f"{part_}.*"
                for part_ in names
            )
            raise UserError(f"unknown config key {key!r}: {where} has {valid}")
        current = getattr(target, part)
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(current):
                raise UserError(f"config key {key!r} is a section; set one of its keys, e.g. {key}.{dataclasses.fields(current)[0].name}=...")
            setattr(target, part, _check_type(key, value, current))
            return
        if not dataclasses.is_dataclass(current):
            raise UserError(f"unknown config key {key!r}: {'.'.join(parts[:depth + 1])} is not a section")
        target = current


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}. Values that are not dicts (lists included) are leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, key))
        else:
            flat[key] = value
    return flat


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """The default config, updated by a TOML preset, then by `section.key=value` overrides."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        try:
            table = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"config file {path} cannot be read: {err}") from None
        except tomllib.TOMLDecodeError as err:
            raise UserError(f"config file {path} is not valid TOML: {err}") from None
        for key, value in flatten(table).items():
            _set(cfg, key, value)
    apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def apply_overrides(cfg, overrides: list[str], fixed: tuple[str, ...] = ()) -> None:
    """Set each `section.key=value` of `overrides` on the dataclass tree `cfg` (checked against the
    default's type). Keys in the sections or names of `fixed` are refused: options set them."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r}: expected section.key=value, e.g. teachers.count=5")
        key, text = item.split("=", 1)
        if key.strip().split(".")[0] in fixed:
            raise UserError(f"override {key.strip()}: set by the command's options, not by an override")
        _set(cfg, key.strip(), _parse_value(text.strip()))


RANGES: dict[str, Range] = {
    "seed": at_least(0), "seeds": at_least(1),
    "data.n_train": at_least(1), "data.n_test": at_least(1), "data.n_pool": at_least(1), "data.seed": at_least(0),
    "data.pool_per_class": ((lambda v: v >= 0), "at least 0 (0: all)"),
    "noise.rate": ((lambda v: 0 <= v < 1), "in [0, 1)"),
    "noise.shift": ((lambda v: v >= -1), "at least 0, or -1 for C // 2"),
    **recipe_ranges("teachers"), **recipe_ranges("students"),
    "teachers.count": at_least(1), "teachers.width": at_least(1), "teachers.neighbors": at_least(1),
    "teachers.bandwidth": ((lambda v: v >= 0), "positive, or 0 for the median distance"),
    "teachers.overlap": ((lambda v: 0 < v <= 1), "in (0, 1]"),
    "teachers.per_device": ((lambda v: v >= 0), "at least 0 (0: auto)"),
    "students.width": ((lambda v: v >= 0), "at least 1, or 0 for the teachers' width"),
    "students.pool_size": ((lambda v: v >= 0), "at least 0 (0: the whole pool)"),
    "students.per_device": ((lambda v: v >= 0), "at least 0 (0: auto)"),
    "train.threads": ((lambda v: v >= 0), "at least 0 (0: torch's default)"),
    "train.eval_batch_size": ((lambda v: v >= 0), "at least 0 (0: the device's default)"), "train.checkpoint_every": at_least(1), "train.dist_timeout": at_least(1),
}
HINTS = {"teachers.count": " (K=0 teachers cannot label anything)"}


def validate(cfg: Config) -> None:
    """Reject values that cannot make a run, saying what is allowed."""
    flat = flatten(to_dict(cfg))
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise UserError(f"config key {key}: {flat[key]!r} is not one of {', '.join(allowed)}")
    for key, value in flat.items():
        if isinstance(value, float) and not math.isfinite(value):
            allowed = f" ({RANGES[key][1]})" if key in RANGES else ""
            raise UserError(f"config key {key}: must be a finite number{allowed}, got {value}")
        if key in RANGES and not RANGES[key][0](value):
            raise UserError(f"config key {key}: must be {RANGES[key][1]}, got {value}{HINTS.get(key, '')}")
    if not cfg.name or any(part in ("", ".", "..") for part in cfg.name.split("/")):
        raise UserError(f"config key name: {cfg.name!r} names the run folder runs/NAME; give a plain name")
    if cfg.data.n_pool < cfg.students.batch_size:
        raise UserError(f"config key data.n_pool: the pool ({cfg.data.n_pool}) is smaller than one student batch "
                        f"(students.batch_size={cfg.students.batch_size})")
    from rolemodels.models import MODELS, SAMPLERS

    if cfg.teachers.model not in MODELS and cfg.teachers.model not in SAMPLERS:
        raise UserError(f"config key teachers.model: unknown model {cfg.teachers.model!r}: choose one of "
                        f"{', '.join([*MODELS, *SAMPLERS])}")
    if cfg.students.model and cfg.students.model not in MODELS:
        raise UserError(f"config key students.model: unknown model {cfg.students.model!r}: students are networks, "
                        f"choose one of {', '.join(MODELS)}")
    if cfg.students.pool_size > cfg.data.n_pool and cfg.data.name == "mnist1d":
        raise UserError(f"config key students.pool_size: must be in [0, data.n_pool={cfg.data.n_pool}] "
                        f"(0: the whole pool), got {cfg.students.pool_size}")
    if cfg.students.labels == "online" and cfg.students.ensemble in ("vote_shares", "mean_prob"):
        raise UserError(f"config key students.ensemble: {cfg.students.ensemble} (soft labels) needs "
                        f"students.labels=pool, not online")
    if any(k < 1 for k in cfg.sweep.teachers):
        raise UserError(f"config key sweep.teachers: teacher counts must be at least 1, got {cfg.sweep.teachers}")
