"""The run folder: its configuration checked, --force, a writable folder."""
from __future__ import annotations

import errno
import json
import os
import tomllib

import pytest

from rolemodels.errors import UserError
from rolemodels.runtime.files import atomic_write_bytes
from rolemodels.runtime.lock import RunLock
from rolemodels.runtime.manifest import Manifest
from rolemodels.runtime.runfolder import check_config, ensure_writable


def temp_files(folder):
    return sorted(p.name for p in folder.rglob(".tmp-*"))


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))



# ----------------------------------------------------------------------------
# check_config


CONFIG = {"teachers": {"epochs": 30, "k": 5}, "noise": {"rate": 0.2}, "run": {"quiet": False}}


def changed(**sections):
    new = json.loads(json.dumps(CONFIG))
    for section, values in sections.items():
        new.setdefault(section, {}).update(values)
    return new


def test_check_config_writes_then_accepts_the_same_config(tmp_path):
    check_config(tmp_path, CONFIG, force=False)
    assert tomllib.loads((tmp_path / "config.toml").read_text()) == CONFIG
    check_config(tmp_path, json.loads(json.dumps(CONFIG)), force=False)


def test_check_config_lists_differing_keys(tmp_path):
    run_dir = tmp_path / "runs" / "x"
    check_config(run_dir, CONFIG, force=False)
    new = changed(teachers={"epochs": 40}, noise={"rate": 0.3})
    with pytest.raises(UserError) as info:
        check_config(run_dir, new, force=False)
    assert str(info.value) == (
        f"run folder {run_dir} was made with a different configuration: "
        "teachers.epochs 30 -> 40, noise.rate 0.2 -> 0.3; "
        "use --force to start it over, or another --out")
    assert tomllib.loads((run_dir / "config.toml").read_text()) == CONFIG  # untouched


def test_check_config_shows_added_and_removed_keys(tmp_path):
    check_config(tmp_path, CONFIG, force=False)
    new = changed(data={"name": "cifar10"})
    del new["teachers"]["k"]
    expected = r'teachers.k 5 -> \(unset\), data.name \(unset\) -> "cifar10"'
    with pytest.raises(UserError, match=expected):
        check_config(tmp_path, new, force=False)


def test_check_config_treats_a_key_added_later_at_its_default_as_unchanged(tmp_path):
    """A folder made before a key existed resumes when the key keeps its default, not otherwise."""
    check_config(tmp_path, CONFIG, force=False)
    defaults = changed(students={"pool_size": 0})
    check_config(tmp_path, changed(students={"pool_size": 0}), force=False, defaults=defaults)
    with pytest.raises(UserError, match="students.pool_size 0 -> 5000"):
        check_config(tmp_path, changed(students={"pool_size": 5000}), force=False, defaults=defaults)
    with pytest.raises(UserError, match="students.pool_size"):  # without defaults: a difference, as before
        check_config(tmp_path, changed(students={"pool_size": 0}), force=False)


def test_check_config_ignores_keys_that_do_not_affect_results(tmp_path):
    check_config(tmp_path, CONFIG, force=False)
    (tmp_path / "teacher0.pt").write_bytes(b"finished")
    new = changed(run={"quiet": True})
    check_config(tmp_path, new, force=False, ignore={"run.quiet"})
    assert tomllib.loads((tmp_path / "config.toml").read_text())["run"]["quiet"] is True
    assert (tmp_path / "teacher0.pt").exists()
    with pytest.raises(UserError, match="run.quiet true -> false"):
        check_config(tmp_path, CONFIG, force=False)


def test_check_config_force_starts_over_but_keeps_the_lock(tmp_path):
    check_config(tmp_path, CONFIG, force=False)
    Manifest(tmp_path).mark()
    (tmp_path / "teachers").mkdir()
    atomic_write_bytes(tmp_path / "teachers" / "teacher0.pt", b"old result")
    Manifest(tmp_path).record(tmp_path / "teachers" / "teacher0.pt")
    (tmp_path / "results.json").write_text("{}")
    new = changed(teachers={"epochs": 40})
    notices = []
    with RunLock(tmp_path):
        check_config(tmp_path, new, force=True, notice=notices.append)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "config.toml"]
    assert tomllib.loads((tmp_path / "config.toml").read_text()) == new
    assert len(notices) == 1 and "--force" in notices[0]


def test_force_deletes_only_what_a_run_of_ours_wrote(tmp_path):
    """A file the manifest does not record and our layout does not name stays, with a notice."""
    check_config(tmp_path, CONFIG, force=False)
    Manifest(tmp_path).mark()
    (tmp_path / "seed0" / "teachers").mkdir(parents=True)
    atomic_write_bytes(tmp_path / "seed0" / "teachers" / "teacher0.pt", b"old result")
    Manifest(tmp_path).record(tmp_path / "seed0" / "teachers" / "teacher0.pt")
    (tmp_path / "seed0" / "my-notes.txt").write_text("mine")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "analysis.py").write_text("mine")
    notices = []
    check_config(tmp_path, changed(teachers={"epochs": 40}), force=True, notice=notices.append)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["config.toml", "seed0/my-notes.txt", "src/analysis.py"]
    assert "kept 2 file(s)" in notices[-1] and "my-notes.txt" in notices[-1]


@pytest.mark.parametrize("config_name", ["config.json", "config.toml"])
def test_force_refuses_a_folder_that_is_not_a_run_folder(tmp_path, config_name):
    """A folder that merely holds a file named like our configuration is not ours: nothing is deleted."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.c").write_text("int main;")
    (tmp_path / "thesis.tex").write_text("x")
    (tmp_path / config_name).write_text("{}" if config_name.endswith("json") else "")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    with pytest.raises(UserError, match="not a rolemodels run folder.*nothing was deleted"):
        check_config(tmp_path, CONFIG, force=True)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before


def test_a_changed_input_is_refused_like_a_changed_key(tmp_path):
    inputs = {"noise.labels_file": {"what": "noisy.npy", "size": 8, "sha256": "a" * 64}}
    check_config(tmp_path, CONFIG, force=False, inputs=inputs)
    check_config(tmp_path, CONFIG, force=False, inputs=inputs)  # the same contents: resumes
    changed_inputs = {"noise.labels_file": {"what": "noisy.npy", "size": 8, "sha256": "b" * 64}}
    with pytest.raises(UserError, match=r"other inputs: noise.labels_file \(noisy.npy\): sha256 aaaaaaaaaaaa -> "
                                        r"bbbbbbbbbbbb.*--force"):
        check_config(tmp_path, CONFIG, force=False, inputs=changed_inputs)
    assert json.loads((tmp_path / "inputs.json").read_text()) == inputs  # untouched
    Manifest(tmp_path).mark()
    check_config(tmp_path, CONFIG, force=True, inputs=changed_inputs)
    assert json.loads((tmp_path / "inputs.json").read_text()) == changed_inputs


def test_a_folder_made_before_inputs_were_kept_records_them_now(tmp_path):
    check_config(tmp_path, CONFIG, force=False)
    inputs = {"data": {"what": "x.npz", "size": 8, "sha256": "c" * 64}}
    check_config(tmp_path, CONFIG, force=False, inputs=inputs)
    assert json.loads((tmp_path / "inputs.json").read_text()) == inputs


def test_check_config_force_on_a_folder_without_config_deletes_nothing(tmp_path):
    (tmp_path / "precious.txt").write_text("not ours")
    check_config(tmp_path, CONFIG, force=True)
    assert (tmp_path / "precious.txt").read_text() == "not ours"


def test_check_config_normalizes_values_like_json(tmp_path):
    config = {"data": {"path": tmp_path / "x.npy", "shape": (3, 4)}}
    check_config(tmp_path, config, force=False)
    check_config(tmp_path, config, force=False)  # tuple vs list, Path vs str: same


def test_check_config_unreadable_config_toml(tmp_path):
    (tmp_path / "config.toml").write_text("[1, 2")
    with pytest.raises(UserError, match="unreadable config.toml.*--force"):
        check_config(tmp_path, CONFIG, force=False)


def test_check_config_unreadable_legacy_config_json(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2")
    with pytest.raises(UserError, match="unreadable config.json.*--force"):
        check_config(tmp_path, CONFIG, force=False)


def test_a_legacy_config_json_is_compared_then_replaced_by_config_toml(tmp_path):
    """Run folders made before config.toml was the only copy held config.json: they still resume."""
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    with pytest.raises(UserError, match="teachers.epochs 30 -> 31"):
        check_config(tmp_path, changed(teachers={"epochs": 31}), force=False)
    check_config(tmp_path, CONFIG, force=False)
    assert tomllib.loads((tmp_path / "config.toml").read_text()) == CONFIG
    assert not (tmp_path / "config.json").exists()


def test_a_legacy_folder_with_both_copies_keeps_config_toml_alone(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    from rolemodels.config_toml import to_toml

    (tmp_path / "config.toml").write_text(to_toml(CONFIG))
    check_config(tmp_path, CONFIG, force=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


# ----------------------------------------------------------------------------
# ensure_writable


def test_ensure_writable_creates_nested_folders(tmp_path):
    run_dir = tmp_path / "runs" / "deep" / "x"
    ensure_writable(run_dir)
    assert run_dir.is_dir() and list(run_dir.iterdir()) == []


def test_ensure_writable_under_a_regular_file(tmp_path):
    (tmp_path / "some_file").write_text("")
    run_dir = tmp_path / "some_file" / "sub"
    with pytest.raises(UserError) as info:
        ensure_writable(run_dir)
    assert str(info.value) == f"output folder {run_dir} is not writable: Not a directory"


def test_ensure_writable_when_the_folder_is_a_file(tmp_path):
    (tmp_path / "out").write_text("")
    with pytest.raises(UserError, match="out is not writable: a file with that name exists"):
        ensure_writable(tmp_path / "out")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write to read-only folders")
def test_ensure_writable_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UserError, match="ro is not writable: Permission denied"):
            ensure_writable(folder)
    finally:
        folder.chmod(0o755)
