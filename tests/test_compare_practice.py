"""The practitioner's scoreboard (experiments/compare_practice.py): its quick mode end to end on two
settings, resuming, the markdown table, and every setting's noise against the rate it asks for."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cleanlab")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import compare_practice as practice  # noqa: E402  experiments/compare_practice.py

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """scikit-learn's and BLAS's threads too (as the script limits them): on a shared CPU, the
    annotator's logistic regressions took 14 s on every core and 0.7 s on one."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield

QUICK_ONLY = ["cancer/flip25", "multiclass/random40"]  # binary without a pool; multiclass with one
FASHION = Path(practice.FASHION_ROOT).is_dir()
needs_fashion = pytest.mark.skipif(not FASHION, reason=f"Fashion-MNIST is not under {practice.FASHION_ROOT}")


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    """The quick mode on two settings, run once into a temporary file."""
    out = tmp_path_factory.mktemp("compare_practice") / "results.json"
    practice.main(["--quick", "--out", str(out), "--threads", "1", "--only", *QUICK_ONLY])
    return out


def asked_rate(noise: str) -> float:
    return int(re.search(r"\d+$", noise).group()) / 100


def test_quick_mode_writes_every_method_of_each_setting_with_sane_numbers(quick):
    results = json.loads(quick.read_text())
    assert results["quick"] is True and results["threads"] == 1 and results["processor"] in results["machine"]
    assert {"command", "date", "sizes", "methods"} <= set(results)
    rows = results["rows"]
    without_pool = set(practice.METHODS) - {"dividemix-pool"}  # DivideMix given a pool: no row where there is none
    assert len(rows) == len(practice.METHODS) + len(without_pool)
    for setting in QUICK_ONLY:
        data, noise = setting.split("/")
        found = [r for r in rows if (r["data"], r["noise"], r["seed"]) == (data, noise, 0)]
        assert {r["method"] for r in found} == (set(practice.METHODS) if data == "multiclass" else without_pool), setting
        assert len({r["labels_sha256"] for r in found}) == 1  # every method saw the same noisy labels
        for r in found:
            assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["balanced_accuracy"] <= 1.0 and r["seconds"] >= 0
            assert abs(r["noise_rate"] - r["expected_rate"]) < 0.08, r
            assert abs(r["expected_rate"] - asked_rate(noise)) < 0.08, r  # random40: a mean over classes
    for r in (r for r in rows if r["method"] == "ours"):
        assert r["teacher_accuracy"] and all(0.0 <= a <= 1.0 for a in r["teacher_accuracy"])
        assert isinstance(r["warnings"], list) and r["combine"] in ("soft", "vote", "random")
        assert r["pool"].startswith("given") == (r["data"] == "multiclass")  # the others have no pool: cross-fitted
    clean = {(r["data"], r["method"]): r["accuracy"] for r in rows}
    assert clean[("cancer", "clean-logreg")] > 0.85  # the references learn: the data are what they should be


def test_a_rerun_computes_only_the_missing_rows(quick, tmp_path):
    out = tmp_path / "results.json"
    out.write_text(quick.read_text())
    before = practice.load_rows(out)
    practice.main(["--quick", "--out", str(out), "--only", *QUICK_ONLY])
    assert practice.load_rows(out) == before  # nothing recomputed
    results = json.loads(out.read_text())
    results["rows"] = [r for r in results["rows"] if (r["data"], r["method"]) != ("cancer", "logreg")]
    out.write_text(json.dumps(results))
    practice.main(["--quick", "--out", str(out), "--only", "cancer/flip25"])
    after = practice.load_rows(out)
    assert set(after) == set(before)
    key = ("cancer", "flip25", 0, "logreg")
    assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}
    assert after[key]["accuracy"] == before[key]["accuracy"]  # the same seeds, the same number


def test_markdown_prints_one_row_per_setting(quick, capsys):
    practice.main(["--quick", "--out", str(quick), "--markdown"])
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("| setting | noise |"))
    sota = next(line for line in text.splitlines() if line.startswith("| setting | ours | coteaching"))
    assert all(f" {name} " in header or f" {name} " in sota for name in practice.METHODS)
    for setting in QUICK_ONLY:
        assert sum(line.startswith(f"| {setting} |") for line in text.splitlines()) == 4  # the four tables: accuracy, teachers, cost, the field's methods
        row = next(line for line in text.splitlines()[text.splitlines().index(sota):]
                   if line.startswith(f"| {setting} |"))
        assert re.search(r"\| \d+ of \d+ \|$", row)  # ours' rank among the methods that count


def test_unknown_setting_is_refused():
    with pytest.raises(SystemExit):
        practice.main(["--quick", "--only", "cancer/nonsense"])


# ---------------------------------------------------------------------------------------------
# The settings' noise, at the quick sizes


@pytest.mark.parametrize("data, noise", [pytest.param(d, n, marks=needs_fashion if d == "fashion-rows" else ())
                                         for d, n in practice.SETTINGS])
def test_every_setting_draws_its_noise_at_the_rate_it_asks(data, noise):
    s = practice.make_setting(data, noise, 0, quick=True)
    assert s.noisy.shape == s.split.y_train.shape and s.noisy.dtype == np.int64
    assert abs(s.realised_rate - s.expected_rate) < 0.1
    assert noise == "lookalike28" or abs(s.expected_rate - asked_rate(noise)) < 0.08
    again = practice.make_setting(data, noise, 0, quick=True)
    assert np.array_equal(again.noisy, s.noisy)  # seeded
    assert not np.array_equal(practice.make_setting(data, noise, 1, quick=True).noisy[:50], s.noisy[:50])


@needs_fashion
def test_lookalike_noise_flips_28_percent_of_the_paired_classes_and_nothing_else():
    s = practice.make_setting("fashion-rows", "lookalike28", 0, quick=True)
    partner = {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 5}
    for c in range(10):
        members = s.split.y_train == c
        flipped = s.noisy[members] != c
        if c in partner:
            assert flipped.sum() == round(0.28 * members.sum()) and set(s.noisy[members]) <= {c, partner[c]}
        else:
            assert not flipped.any()


def test_settings_cover_what_the_scoreboard_promises():
    assert 12 <= len(practice.SETTINGS) <= 16 and len(set(practice.SETTINGS)) == len(practice.SETTINGS)
    assert {n for _, n in practice.SETTINGS} == set(practice.NOISES)
    assert {d for d, _ in practice.SETTINGS} == set(practice.DATA)
    T = practice.lookalike_matrix()
    assert np.allclose(T.sum(1), 1) and np.allclose(T, T.T) and T[6, 0] == pytest.approx(0.28)


def test_the_page_holds_exactly_what_the_results_print():
    """docs/compare.md's practitioner tables are regenerated from docs/data/compare_practice.json."""
    results = json.loads(practice.RESULTS.read_text())
    assert practice.markdown(results) in (ROOT / "docs" / "compare.md").read_text()
