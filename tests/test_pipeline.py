"""End to end: the tiny preset through the CLI, its results.json contract, resume and bad config."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rolemodels.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.toml")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["run", "--config", TINY, "--out", str(out), "--quiet", f"data.cache_dir={cache_dir}"]) == 0
    return out


def test_run_writes_every_output(tiny_run: Path):
    for name in ("config.toml", "results.json", "report.md", "metrics.jsonl", "figures/confusion.png",
                 "figures/teachers.png"):
        assert (tiny_run / name).stat().st_size > 0, name
    assert (tiny_run / "figures/confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tiny_run / "report.md").read_text()
    assert "| one teacher" in report and "81.3" in report


def test_results_contract(tiny_run: Path):
    results = json.loads((tiny_run / "results.json").read_text())
    for row in ("teacher", "teacher_train_fit", "ensemble", "ensemble_mean_prob", "ensemble_distill",
                "random_distill", "clean_train", "clean_pool"):
        entry = results["table"][row]
        assert set(entry) >= {"mean", "std", "values"}
        assert 0.0 <= entry["mean"] <= 1.0
    assert len(results["table"]["teacher"]["values"]) == 3  # 3 teachers x 1 seed
    assert results["sweep"]["teachers"] == [1, 3]
    for name in ("ensemble", "ensemble_distill", "random_distill"):
        assert len(results["sweep"][name]) == 2
    # The sweep's last point is the Table 1 row (same teachers, same students).
    assert results["sweep"]["ensemble"][-1] == pytest.approx(results["table"]["ensemble"]["mean"])
    for name in ("teacher", "ensemble", "random_distill", "ensemble_distill"):
        assert 0.0 <= results["sampler"][f"{name}_noise_replication"] <= 1.0
    assert results["noise"]["rate"] == pytest.approx(0.2, abs=0.002)
    realized = results["noise"]["realized_matrix"]
    assert realized[0][5] == pytest.approx(0.2, abs=0.01) and realized[0][0] == pytest.approx(0.8, abs=0.01)
    assert set(results["seconds"]) >= {"total", "teachers", "labelling", "students"}
    # Where the numbers were made: on CPUs with AMX precision=auto trains in bf16, elsewhere in float32.
    from rolemodels.runtime.device import cpu_bf16_support

    env = results["environment"]
    assert env["training_dtype"] == ("bfloat16" if cpu_bf16_support() == "amx" else "float32")
    assert isinstance(env["processor"], str)


def test_paper_effect_on_tiny(tiny_run: Path):
    """The ordering the paper reports, on the tiny preset.

    Measured over seeds 0-4 (3 teachers each): teachers fit 1.000 of their noisy labels and
    replicate 18-22% of the noise (mean teacher 0.709); the ensemble beats its seed's mean teacher
    by 0.029 to 0.042, students beat it by 0.061 to 0.079 and the ensemble by 0.025 to 0.045, with
    replication 0.15-0.17 against the teachers' 0.20; sampler distance 0.13 for a teacher against
    0.16-0.18 for the clean-label model.
    """
    results = json.loads((tiny_run / "results.json").read_text())
    table, sampler = results["table"], results["sampler"]
    assert min(table["teacher_train_fit"]["values"]) >= 0.99  # teachers interpolate their noisy labels
    assert sampler["teacher_noise_replication"] >= 0.15  # ... and so replicate the noise on new inputs
    assert table["ensemble"]["mean"] > table["teacher"]["mean"] + 0.005
    for student in ("ensemble_distill", "random_distill"):
        assert table[student]["mean"] >= table["teacher"]["mean"] + 0.03
        assert table[student]["mean"] >= table["ensemble"]["mean"]
        assert sampler[f"{student}_noise_replication"] < sampler["teacher_noise_replication"]
    distance = sampler["sampler_distance"]
    assert distance["teacher"]["mean"] < distance["clean_train"]["mean"]  # teachers sample, the clean model learns


def test_rerun_reuses_everything(tiny_run: Path, cache_dir: str, capsys):
    before = {p: p.stat().st_mtime_ns for p in tiny_run.rglob("*.pt")}
    assert main(["run", "--config", TINY, "--out", str(tiny_run), "--quiet", f"data.cache_dir={cache_dir}"]) == 0
    after = {p: p.stat().st_mtime_ns for p in tiny_run.rglob("*.pt")}
    assert before == after  # no teacher or student was trained again


def test_changed_config_is_refused(tiny_run: Path, cache_dir: str, capsys):
    code = main(["run", "--config", TINY, "--out", str(tiny_run), "--quiet", f"data.cache_dir={cache_dir}",
                 "teachers.epochs=3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "teachers.epochs" in err and "--force" in err and "Traceback" not in err


@pytest.mark.parametrize("override, expected", [
    ("teachers.count=0", "teachers.count: must be at least 1"),
    ("noise.rate=1.0", "noise.rate: must be in [0, 1)"),
    ("teachers.gce_q=0", "teachers.gce_q: must be in (0, 1]"),
    ("teachers.bogus=1", "unknown config key 'teachers.bogus'"),
    ("teachers.epochs=ten", "teachers.epochs: expected int"),
    ("data.n_pool=10", "smaller than one student batch"),
    ("teachers.model=vgg", "unknown model 'vgg'"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path, cache_dir, capsys, override, expected):
    out = tmp_path / "run"
    code = main(["run", "--config", TINY, "--out", str(out), "--quiet", f"data.cache_dir={cache_dir}", override])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("sampler", ["knn", "kernel"])
def test_non_neural_teachers_go_through_the_pipeline(tmp_path, cache_dir, sampler):
    out = tmp_path / sampler
    code = main(["run", "--config", TINY, "--out", str(out), "--quiet", f"data.cache_dir={cache_dir}",
                 f"teachers.model={sampler}", "teachers.data=disjoint", "sweep.students=false", "data.n_pool=4000",
                 "students.epochs=2"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    # An interpolating sampler reproduces every training label it saw.
    assert results["table"]["teacher_train_fit"]["mean"] == 1.0
    assert results["config"]["teachers"]["model"] == sampler
    # sweep.students=false: Figure 2's ensemble for every K, students only for all 3 teachers.
    assert results["sweep"]["teachers"] == [1, 3]
    assert results["sweep"]["ensemble_distill"][0] is None and results["sweep"]["ensemble_distill"][1] is not None
    assert all(v is not None for v in results["sweep"]["ensemble"])
    assert results["table"]["ensemble_distill"]["mean"] > 0.3  # a network student learnt from the samplers
    assert not list((out / "seed0").rglob("teacher*.pt"))  # samplers are refitted, not stored


def test_soft_ensemble_labels_train_the_student(tmp_path, cache_dir):
    """students.ensemble=vote_shares: the student learns the teachers' vote fractions (float [N, C])."""
    out = tmp_path / "soft"
    code = main(["run", "--config", TINY, "--out", str(out), "--quiet", f"data.cache_dir={cache_dir}",
                 "teachers.model=knn", "teachers.data=disjoint", "sweep.students=false", "data.n_pool=4000",
                 "students.epochs=2", "students.ensemble=vote_shares"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["students"]["ensemble"] == "vote_shares"
    assert results["table"]["ensemble_distill"]["mean"] > 0.3
