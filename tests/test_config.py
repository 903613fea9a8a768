"""Config: defaults, TOML presets, `section.key=value` overrides, validation, to_toml round trip."""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from rolemodels.config import (
    Config,
    DataConfig,
    NoiseConfig,
    StudentConfig,
    SweepConfig,
    TeacherConfig,
    TrainConfig,
    load_config,
    to_dict,
)
from rolemodels.config_toml import to_toml
from rolemodels.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str, name: str = "preset.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- defaults


def test_defaults_are_the_papers_setting():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.teachers.count == 10
    assert cfg.noise.preset == "paper" and cfg.noise.rate == 0.2 and cfg.noise.mode == "exact"
    assert cfg.students.random_teacher == "example"
    assert cfg.students.ensemble == "vote"
    assert cfg.sweep.teachers == [1, 2, 3, 5, 10]
    assert cfg.data.n_train == 4000 and cfg.data.n_pool == 200000


def test_default_list_is_not_shared_between_instances():
    a, b = Config(), Config()
    a.sweep.teachers.append(99)
    assert b.sweep.teachers == [1, 2, 3, 5, 10]


def test_sections_have_their_dataclass_types():
    cfg = Config()
    assert isinstance(cfg.data, DataConfig)
    assert isinstance(cfg.noise, NoiseConfig)
    assert isinstance(cfg.teachers, TeacherConfig)
    assert isinstance(cfg.students, StudentConfig)
    assert isinstance(cfg.sweep, SweepConfig)
    assert isinstance(cfg.train, TrainConfig)


# ----------------------------------------------------------------------------- presets


def test_preset_sets_values_and_leaves_the_rest_default(tmp_path):
    path = write(tmp_path, 'name = "x"\nseeds = 3\n[teachers]\ncount = 4\nlr = 1\n[noise]\nrate = 0.3\n')
    cfg = load_config(path)
    assert cfg.name == "x" and cfg.seeds == 3
    assert cfg.teachers.count == 4
    assert cfg.teachers.lr == 1.0 and isinstance(cfg.teachers.lr, float)  # int accepted for a float key
    assert cfg.noise.rate == 0.3
    expected = Config()
    expected.name, expected.seeds = "x", 3
    expected.teachers.count, expected.teachers.lr = 4, 1.0
    expected.noise.rate = 0.3
    assert cfg == expected


def test_overrides_apply_after_the_preset(tmp_path):
    path = write(tmp_path, "[teachers]\ncount = 4\n")
    cfg = load_config(path, ["teachers.count=7"])
    assert cfg.teachers.count == 7


def test_missing_preset_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_invalid_toml_is_a_user_error(tmp_path):
    path = write(tmp_path, "[teachers\ncount = 4\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(path)


def test_unknown_key_in_preset_lists_the_sections_keys(tmp_path):
    path = write(tmp_path, "[students]\nbatchsize = 4\n")
    with pytest.raises(UserError) as err:
        load_config(path)
    message = str(err.value)
    assert "students.batchsize" in message
    for f in dataclasses.fields(StudentConfig):
        assert f.name in message


def test_repo_default_preset_is_exactly_the_defaults():
    assert load_config(CONFIGS / "mnist1d.toml") == Config()


def test_repo_tiny_preset_loads():
    cfg = load_config(CONFIGS / "tiny.toml")
    raw = tomllib.loads((CONFIGS / "tiny.toml").read_text())
    assert cfg.name == raw["name"]
    assert cfg.teachers.count == raw["teachers"]["count"]
    assert cfg.sweep.teachers == raw["sweep"]["teachers"]
    assert cfg.train.checkpoint_every == raw["train"]["checkpoint_every"]
    assert cfg.data.n_pool >= cfg.students.batch_size
    assert cfg != Config()


# ----------------------------------------------------------------------------- overrides: types


@pytest.mark.parametrize("override, key, value", [
    ("teachers.count=5", ("teachers", "count"), 5),
    ("noise.rate=0.35", ("noise", "rate"), 0.35),
    ("teachers.lr=1e-4", ("teachers", "lr"), 1e-4),
    ("students.lr=2", ("students", "lr"), 2.0),
    ("sweep.students=false", ("sweep", "students"), False),
    ("data.download=true", ("data", "download"), True),
    ("data.name=fashion-mnist", ("data", "name"), "fashion-mnist"),  # bare word -> string
    ('data.path="/tmp/a b.npz"', ("data", "path"), "/tmp/a b.npz"),  # quoted string
    ("data.path=/tmp/x.npz", ("data", "path"), "/tmp/x.npz"),
    ("sweep.teachers=[1, 4, 9]", ("sweep", "teachers"), [1, 4, 9]),
    ("sweep.teachers=[2]", ("sweep", "teachers"), [2]),
    (" teachers.count = 3 ", ("teachers", "count"), 3),  # spaces around key and value
    ("seed=12", ("seed",), 12),
    ("name=hello", ("name",), "hello"),
])
def test_override_parses_value(override, key, value):
    cfg = load_config(None, [override])
    target = cfg
    for part in key:
        target = getattr(target, part)
    assert target == value
    assert type(target) is type(value)


def test_later_override_wins():
    cfg = load_config(None, ["teachers.count=3", "teachers.count=6"])
    assert cfg.teachers.count == 6


def test_override_value_may_contain_equals_sign():
    cfg = load_config(None, ["data.path=a=b.npz"])
    assert cfg.data.path == "a=b.npz"


def test_override_without_equals_is_a_user_error():
    with pytest.raises(UserError, match="section.key=value"):
        load_config(None, ["teachers.count"])


def test_unknown_key_lists_the_valid_keys_of_that_section():
    with pytest.raises(UserError) as err:
        load_config(None, ["teachers.cuont=3"])
    message = str(err.value)
    assert "teachers.cuont" in message
    assert "[teachers]" in message
    for f in dataclasses.fields(TeacherConfig):
        assert f.name in message
    # keys of other sections are not offered
    assert "random_teacher" not in message


def test_unknown_top_level_key_lists_top_level_keys_and_sections():
    with pytest.raises(UserError) as err:
        load_config(None, ["sed=3"])
    message = str(err.value)
    for name in ("name", "seed", "seeds", "data.*", "noise.*", "teachers.*", "students.*", "sweep.*", "train.*"):
        assert name in message


def test_unknown_section_is_a_user_error():
    with pytest.raises(UserError, match="unknown config key"):
        load_config(None, ["teacher.count=3"])


def test_setting_a_whole_section_is_a_user_error():
    with pytest.raises(UserError, match="section"):
        load_config(None, ["teachers=3"])


def test_key_below_a_value_is_a_user_error():
    with pytest.raises(UserError, match="not a section"):
        load_config(None, ["teachers.count.x=3"])


@pytest.mark.parametrize("override, key, expected", [
    ("teachers.count=abc", "teachers.count", "int"),
    ("teachers.count=2.5", "teachers.count", "int"),
    ("teachers.count=true", "teachers.count", "int"),  # a bool is not an int here
    ("noise.rate=high", "noise.rate", "float"),
    ("noise.rate=true", "noise.rate", "float"),
    ("sweep.students=1", "sweep.students", "bool"),
    ("sweep.students=yes", "sweep.students", "bool"),
    ("data.name=3", "data.name", "str"),
    ("sweep.teachers=3", "sweep.teachers", "list of integers"),
    ("sweep.teachers=[1, 2.5]", "sweep.teachers", "list of integers"),
    ('sweep.teachers=["a"]', "sweep.teachers", "list of integers"),
])
def test_wrong_type_names_the_key_and_expected_type(override, key, expected):
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert key in message
    assert expected in message


def test_wrong_type_in_preset_names_the_key(tmp_path):
    path = write(tmp_path, '[teachers]\nepochs = "many"\n')
    with pytest.raises(UserError, match=r"teachers\.epochs.*int"):
        load_config(path)


# ----------------------------------------------------------------------------- impossible values


@pytest.mark.parametrize("override, key, allowed", [
    ("teachers.count=0", "teachers.count", "at least 1"),
    ("teachers.count=-2", "teachers.count", "at least 1"),
    ("seeds=0", "seeds", "at least 1"),
    ("students.batch_size=0", "students.batch_size", "at least 1"),
    ("noise.rate=1.0", "noise.rate", "[0, 1)"),
    ("noise.rate=1", "noise.rate", "[0, 1)"),
    ("noise.rate=-0.1", "noise.rate", "[0, 1)"),
    ("noise.rate=nan", "noise.rate", "[0, 1)"),
    ("teachers.lr=0", "teachers.lr", "positive"),
    ("students.lr=-1e-3", "students.lr", "positive"),
    ("teachers.overlap=0", "teachers.overlap", "(0, 1]"),
    ("teachers.overlap=1.5", "teachers.overlap", "(0, 1]"),
    ("sweep.teachers=[0, 2]", "sweep.teachers", "at least 1"),
])
def test_impossible_values_say_what_is_allowed(override, key, allowed):
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert key in message
    assert allowed in message


@pytest.mark.parametrize("rate", ["0", "0.0", "0.999"])
def test_noise_rate_bounds_that_are_allowed(rate):
    assert load_config(None, [f"noise.rate={rate}"]).noise.rate == float(rate)


def test_pool_smaller_than_a_student_batch_is_rejected():
    with pytest.raises(UserError) as err:
        load_config(None, ["data.n_pool=100", "students.batch_size=256"])
    message = str(err.value)
    assert "data.n_pool" in message and "students.batch_size" in message and "256" in message


def test_pool_equal_to_a_student_batch_is_allowed():
    cfg = load_config(None, ["data.n_pool=256", "students.batch_size=256"])
    assert cfg.data.n_pool == 256


@pytest.mark.parametrize("key, bad", [
    ("students.random_teacher", "foo"),
    ("students.ensemble", "mean"),
    ("teachers.data", "random"),
    ("noise.preset", "uniform"),
    ("train.precision", "fp16"),
    ("data.name", "mnist"),
    ("teachers.schedule", "linear"),
])
def test_unknown_choice_lists_the_choices(key, bad):
    from rolemodels.config import CHOICES
    with pytest.raises(UserError) as err:
        load_config(None, [f"{key}={bad}"])
    message = str(err.value)
    assert key in message and bad in message
    for choice in CHOICES[key]:
        assert choice in message


def test_every_choice_is_accepted():
    from rolemodels.config import CHOICES
    for key, allowed in CHOICES.items():
        for choice in allowed:
            cfg = load_config(None, [f"{key}={choice}"])
            section, name = key.split(".")
            assert getattr(getattr(cfg, section), name) == choice


# ----------------------------------------------------------------------------- to_toml


def round_trip(cfg: Config, tmp_path: Path) -> Config:
    return load_config(write(tmp_path, to_toml(cfg), "resolved.toml"))


def test_to_toml_of_defaults_round_trips(tmp_path):
    assert round_trip(Config(), tmp_path) == Config()


def test_to_toml_round_trips_changed_values(tmp_path):
    cfg = load_config(None, [
        "name=odd", "seed=5", "seeds=3", "teachers.count=4", "noise.rate=0.1", "teachers.lr=1e-5",
        "students.lr=0.1234567890123", "sweep.teachers=[1, 4]", "sweep.students=false",
        "data.download=true", "students.random_teacher=batch", "students.ensemble=sum_logits",
        "noise.shift=3", "teachers.weight_decay=5e-4",
    ])
    cfg.data.path = 'C:\\data\\"quoted" file.npz'  # backslashes and quotes survive
    cfg.data.root = "tab\there"
    back = round_trip(cfg, tmp_path)
    assert back == cfg
    assert to_dict(back) == to_dict(cfg)
    assert back.data.path == 'C:\\data\\"quoted" file.npz'


def test_to_toml_is_valid_toml_with_every_key(tmp_path):
    table = tomllib.loads(to_toml(Config()))
    flat = to_dict(Config())
    assert set(table) == set(flat)
    for key, value in flat.items():
        assert table[key] == value


def test_to_toml_round_trips_strings_with_newlines(tmp_path):
    cfg = Config()
    cfg.data.path = "line1\nline2"
    assert round_trip(cfg, tmp_path) == cfg


@pytest.mark.parametrize("soft", ["vote_shares", "mean_prob"])
def test_soft_ensemble_labels_need_the_labelled_pool(soft):
    assert load_config(None, [f"students.ensemble={soft}"]).students.ensemble == soft
    with pytest.raises(UserError, match="students.labels=pool"):
        load_config(None, [f"students.ensemble={soft}", "students.labels=online"])


def test_students_pool_size_is_within_the_pool():
    assert load_config(None, ["students.pool_size=5000"]).students.pool_size == 5000
    for bad in ("-1", "200001"):
        with pytest.raises(UserError, match="students.pool_size"):
            load_config(None, [f"students.pool_size={bad}"])


def test_best_preset_is_the_default_with_shorter_teacher_training():
    """configs/mnist1d-best.toml is the study's best recipe: the default run (augmented), its teachers
    trained 30 epochs at batch 128 and lr 0.003 (the recipe before augmentation) instead of 80 at 256."""
    best, default = to_dict(load_config(CONFIGS / "mnist1d-best.toml")), to_dict(load_config(None))
    differing = {f"{section}.{key}" for section, values in best.items() if isinstance(values, dict)
                 for key, value in values.items() if value != default[section][key]}
    assert differing == {"teachers.epochs", "teachers.batch_size", "teachers.lr"}
    assert (best["teachers"]["epochs"], best["teachers"]["batch_size"], best["teachers"]["lr"]) == (30, 128, 0.003)
