"""The field's baselines as scoreboard rows (experiments/sota_methods.py): labels and the oracle
mapping cover everything, the flag scores on a hand-made case, every row on a quick setting, and
the oracle rows' configurations against the practitioner's."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import compare_practice as practice  # noqa: E402  experiments/compare_practice.py
import sota_methods as sota  # noqa: E402  experiments/sota_methods.py

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def cancer() -> practice.Setting:
    return practice.make_setting("cancer", "flip25", 0, quick=True)  # binary, no pool, 25% flipped


@pytest.fixture(scope="module")
def rows(cancer) -> dict[str, dict | None]:
    """Every method's row on the quick cancer setting, computed once."""
    return {name: method(cancer) for name, method in sota.SOTA_METHODS.items()}


def test_every_method_has_a_label():
    assert set(sota.SOTA_LABELS) == set(sota.SOTA_METHODS)
    assert all(isinstance(label, str) and len(label) > 20 for label in sota.SOTA_LABELS.values())
    assert set(sota.SOTA_METHODS) <= set(practice.METHODS)  # the scoreboard runs every one
    assert all(practice.METHODS[name] is sota.SOTA_METHODS[name] for name in sota.SOTA_METHODS)


def test_the_oracle_mapping_covers_every_noise_and_each_baseline_accepts_it():
    assert set(sota.ORACLE_NOISE_TYPE) == set(practice.NOISES)
    for name in sota.BASELINES:
        module = sota.baseline(name)[1]
        for kind in set(sota.ORACLE_NOISE_TYPE.values()):
            assert isinstance(module.oracle_config(kind, 0.3), dict)


def test_importing_it_loads_no_baseline():
    """compare_practice imports this file: the baselines (torch, scikit-learn) load only when a row runs."""
    code = ("import sys; sys.path.insert(0, 'experiments'); import sota_methods; "
            "assert not [m for m in sys.modules if m.startswith('baselines')]")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_flag_scores_by_hand():
    noisy = np.array([0, 1, 1, 0, 2])
    clean = np.array([0, 0, 1, 1, 2])  # rows 1 and 3 flipped
    got = sota.flag_scores(np.array([True, True, False, False, False]), noisy, clean)
    assert got == {"flag_precision": 0.5, "flag_recall": 0.5, "flagged": 2}  # caught row 1 of rows 1, 3
    got = sota.flag_scores(np.array([False, True, False, True, True]), noisy, clean)
    assert got == {"flag_precision": pytest.approx(2 / 3), "flag_recall": 1.0, "flagged": 3}
    assert sota.flag_scores(np.zeros(5, bool), noisy, clean)["flag_precision"] is None


class FakeClassifier:
    """A fitted classifier with known predictions and flags."""

    def __init__(self, s: practice.Setting, flagged: np.ndarray, train_pred: np.ndarray, test_pred: np.ndarray):
        self.s, self.flagged_, self.train_pred, self.test_pred = s, flagged, train_pred, test_pred

    def predict(self, X):
        return self.train_pred if X is self.s.split.x_train else self.test_pred


def test_evaluate_scores_a_fake_classifier_by_hand():
    split = practice.Split(np.zeros((4, 2)), np.array([0, 0, 1, 1]), None, np.ones((5, 2)),
                           np.array([0, 1, 1, 0, 1]), 2)
    s = practice.Setting("tiny", "flip25", 0, split, np.array([0, 1, 1, 0]), 0.5, quick=True)  # rows 1, 3 flipped
    fake = FakeClassifier(s, flagged=np.array([False, True, True, False]), train_pred=np.array([0, 0, 1, 0]),
                          test_pred=np.array([0, 1, 1, 1, 1]))
    row = sota.evaluate(fake, s, 1.5, {"model": "mlp"})
    assert row["accuracy"] == pytest.approx(0.8) and row["seconds"] == 1.5 and row["options"] == {"model": "mlp"}
    assert row["flag_precision"] == 0.5 and row["flag_recall"] == 0.5 and row["flagged"] == 2
    assert row["train_fit"] == pytest.approx(0.75)  # [0, 0, 1, 0] against the noisy [0, 1, 1, 0]


def test_every_row_on_a_quick_setting(rows, cancer):
    assert rows["dividemix-pool"] is None  # cancer has no pool: the caller leaves the row out
    flipped = int((cancer.noisy != cancer.split.y_train).sum())
    for name, row in rows.items():
        if row is None:
            continue
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["balanced_accuracy"] <= 1.0, name
        assert 0.0 <= row["train_fit"] <= 1.0 and row["seconds"] > 0, name
        assert 0 <= row["flagged"] <= len(cancer.noisy), name
        assert 0.0 <= row["flag_recall"] <= 1.0, name
        # hits = recall * flipped must be a whole number no larger than the flags
        hits = row["flag_recall"] * flipped
        assert hits == pytest.approx(round(hits)) and round(hits) <= row["flagged"], name
        if row["flagged"]:
            assert row["flag_precision"] == pytest.approx(hits / row["flagged"]), name
        assert row["options"]["model"] == "mlp" and row["options"]["epochs"] == practice.QUICK_EPOCHS, name
    assert rows["coteaching"]["accuracy"] > 0.7  # it learns: cancer's clean accuracy is about 0.93


def test_the_pool_row_runs_where_there_is_a_pool():
    s = practice.make_setting("multiclass", "random40", 0, quick=True)
    row = sota.dividemix_pool(s)
    assert row is not None and 0.0 <= row["accuracy"] <= 1.0
    assert row["options"]["lambda_u"] == sota.baseline("dividemix")[1].PRACTITIONER["lambda_u"]


def test_oracle_rows_take_the_papers_values(rows, cancer):
    assert rows["coteaching-oracle"]["options"]["forget_rate"] == pytest.approx(cancer.realised_rate) == 0.25
    assert rows["coteaching"]["options"]["forget_rate"] == 0.2  # the official code's default
    assert rows["dividemix-oracle"]["options"]["lambda_u"] == 0.0  # symmetric 20%, nearest 25%
    assert rows["dividemix"]["options"]["lambda_u"] == 25.0
    # ELR's symmetric setting is its practitioner's: the same fit, the same numbers
    assert rows["elr-oracle"]["options"] == rows["elr"]["options"]
    assert rows["elr-oracle"]["accuracy"] == rows["elr"]["accuracy"]
    asymmetric = practice.make_setting("multiclass", "random40", 0, quick=True)
    assert sota.oracle_options("elr", asymmetric) == {"beta": 0.9, "lam": 1.0}
    assert sota.oracle_options("dividemix", asymmetric)["confidence_penalty"] is True
