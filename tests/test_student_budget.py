"""A training budget in examples seen (FitSpec.min_examples): small pools get enough steps, the default run
trains exactly as before, and run folders made before the key existed still resume."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rolemodels.config import Config, load_config, to_dict
from rolemodels.config_toml import to_toml
from rolemodels.errors import UserError
from rolemodels.recipe import FitSpec, pool_examples
from rolemodels.runtime.runfolder import check_config
from rolemodels.training.train import fit, fixed_targets

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


@pytest.mark.parametrize("epochs, min_examples, n, expected", [
    (1, 200_000, 200_000, 1),  # the default run's pool: one pass, as before
    (1, 200_000, 700, 286),  # a small pool: enough passes for 200,000 examples
    (1, 200_000, 5_000_000, 1),  # a large pool: at least one pass
    (3, 200_000, 200_000, 3),  # epochs is a floor
    (2, 0, 700, 2),  # 0: epochs alone
    (1, 1, 1, 1),
])
def test_epochs_for_a_pool(epochs, min_examples, n, expected):
    spec = FitSpec(epochs=epochs, min_examples=min_examples)
    assert spec.epochs_for(n) == expected
    assert spec.epochs_for(n) * n >= min_examples


def test_fit_trains_the_passes_the_budget_asks_for(one_thread):
    x, y = torch.randn(10, 3), torch.arange(10) % 2
    model = torch.nn.Linear(3, 2)
    records = []
    fit(model, x, fixed_targets(y), FitSpec(epochs=1, batch_size=4, min_examples=35), seed=0,
        device=torch.device("cpu"), log=records.append)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]  # ceil(35 / 10) passes


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_trains_the_epochs_it_names(preset):
    """min_examples is 0 in every preset and the pool budget asks for no more than one pass of the
    presets' pools (or is off), so every model trains as many steps as before either existed."""
    cfg = load_config(preset)
    n_pool = cfg.students.pool_size or cfg.data.n_pool
    for section, n in ((cfg.teachers, cfg.data.n_train), (cfg.students, n_pool)):
        assert section.min_examples == 0
        assert section.epochs_for(n) == section.epochs
    if cfg.students.pool_budget:
        assert pool_examples(n_pool) <= cfg.students.epochs * n_pool


@pytest.mark.parametrize("n_pool, examples", [(700, 44_800), (3_125, 200_000), (200_000, 200_000),
                                              (5_000_000, 5_000_000)])
def test_the_pool_budget_gives_a_small_pool_enough_steps_and_a_large_one_a_pass(n_pool, examples):
    assert pool_examples(n_pool) == examples  # at least 200,000 examples, at most 64 passes, at least one
    assert pool_examples(n_pool, min_passes=4) == min(64 * n_pool, max(200_000, 4 * n_pool))


def test_run_trains_students_on_a_small_pool_for_the_pool_budget_and_teachers_as_named():
    """A user's 700-row pool: 64 passes (44,800 examples), not the 3 steps of one pass."""
    from rolemodels.config import StudentConfig, TeacherConfig
    from rolemodels.paper.experiment import training_job
    from rolemodels.paper.networks import Architecture

    x, targets = torch.zeros(700, 4), fixed_targets(torch.zeros(700, dtype=torch.long))
    job = lambda recipe: training_job("m", "m", Architecture("mlp", 4), recipe, x, 700, targets, 0, None, None)
    assert job(StudentConfig()).epochs == 64
    assert job(StudentConfig(pool_budget=False)).epochs == 1
    assert job(StudentConfig(min_examples=100_000)).epochs == 143  # a larger explicit budget wins
    assert job(TeacherConfig()).epochs == TeacherConfig().epochs  # teachers: their epochs


def test_default_run_trains_the_same_number_of_student_steps():
    s, n = Config().students, Config().data.n_pool
    assert s.epochs_for(n) * math.ceil(n / s.batch_size) == 782  # one pass of 200,000 at batch 256


def test_negative_budget_is_refused():
    with pytest.raises(UserError, match="students.min_examples"):
        load_config(None, ["students.min_examples=-1"])


def test_a_run_folder_made_before_the_key_existed_resumes(tmp_path):
    old = to_dict(Config())
    for section in ("teachers", "students"):
        del old[section]["min_examples"]
    (tmp_path / "config.toml").write_text(to_toml(old))
    check_config(tmp_path, to_dict(Config()), force=False, defaults=to_dict(Config()))  # no UserError
    with pytest.raises(UserError, match="students.min_examples 0 -> 1000"):
        check_config(tmp_path, to_dict(load_config(None, ["students.min_examples=1000"])), force=False,
                     defaults=to_dict(Config()))


def small_dataset(n_train: int, n_pool: int):
    from rolemodels.data import Dataset

    x = torch.arange((n_train + n_pool + 3) * 4, dtype=torch.float32).reshape(-1, 4)
    y = torch.arange(len(x)) % 3
    return Dataset("small", x[:n_train], y[:n_train], x[-3:], y[-3:], x[n_train:n_train + n_pool],
                   y[n_train:n_train + n_pool], 3, ["a", "b", "c"])


def test_a_small_pool_is_learnt_with_the_training_inputs_and_a_teachers_recipe():
    """Under 3,125 rows (64 passes short of 200,000 examples), the students train as a teacher
    does, on the pool and then the training inputs; their clean reference on both true labels."""
    from rolemodels.paper.experiment import student_inputs

    cfg = load_config(None, ["teachers.lr=0.01", "teachers.epochs=7", "students.lr=0.002"])
    data = small_dataset(50, 3_124)
    inputs = student_inputs(cfg, data, 3_124)
    assert inputs.small_pool and inputs.n == 3_124 + 50
    assert torch.equal(inputs.x, torch.cat([data.x_pool, data.x_train]))
    assert torch.equal(inputs.y, torch.cat([data.y_pool, data.y_train]))
    assert inputs.recipe.lr == 0.01 and inputs.recipe.batch_size == cfg.teachers.batch_size
    assert inputs.recipe.epochs_for(inputs.n) * inputs.n >= 7 * 50  # a teacher's examples, at least
    assert inputs.recipe.loss == cfg.students.loss
    assert inputs.random_teacher == "epoch"  # a fresh teacher at every visit of its many passes
    batch = load_config(None, ["students.random_teacher=batch"])
    assert student_inputs(batch, data, 3_124).random_teacher == "batch"  # other draws as named
    # its first pool_size rows only
    cut = load_config(None, ["students.pool_size=10"])
    assert student_inputs(cut, data, 10).n == 10 + 50
    # not small, or turned off: the pool alone, with the students' recipe and the pool budget
    for other, n_pool in ((cfg, 3_125), (load_config(None, ["students.small_pool=pool"]), 700),
                          (load_config(None, ["students.pool_budget=false"]), 700)):
        data = small_dataset(50, n_pool)
        inputs = student_inputs(other, data, n_pool)
        assert not inputs.small_pool and inputs.x is data.x_pool and inputs.n == n_pool
        assert inputs.recipe is other.students and inputs.random_teacher == "example"


def test_the_default_run_and_the_presets_keep_the_pool_alone():
    for cfg in [Config(), *(load_config(p) for p in PRESETS)]:
        n_pool = cfg.students.pool_size or cfg.data.n_pool
        assert not cfg.students.trains_as_teacher(n_pool), cfg.name
