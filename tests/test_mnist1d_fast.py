"""The fast MNIST-1D generator against the mnist1d package it reproduces.

Three levels: (1) fed the package's own random numbers, `transform_batch` gives the
package's samples exactly; (2) `generate_package` is make_dataset; (3) `generate_fast`
matches `generate_package` in distribution, and a generator with one setting changed does not.
"""
from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from rolemodels.data import mnist1d_fast as mf
from rolemodels.errors import UserError

mnist1d_data = pytest.importorskip("mnist1d.data")
mnist1d_transform = pytest.importorskip("mnist1d.transform")

DEFAULT = mf.Mnist1dArgs()


# ---------------------------------------------------------------- exact agreement

def test_templates_match_package():
    np.testing.assert_array_equal(mf.templates(), mnist1d_data.get_templates()["x"])


def test_args_defaults_match_package():
    package = mnist1d_data.get_dataset_args(as_dict=True)
    for key, value in vars(DEFAULT).items():
        expected = tuple(package[key]) if key == "padding" else package[key]
        assert value == expected, key


def test_package_translate_by_zero_is_identity(monkeypatch):
    # np.concatenate([x[-0:], x[:-0]]) is x plus an empty array: same length, unchanged.
    monkeypatch.setattr(np.random, "choice", lambda n: 0)
    x = np.arange(72.0)
    np.testing.assert_array_equal(mnist1d_transform.translate(x, 48), x)


def _package_draws(rs: np.random.RandomState, n: int) -> mf.Draws:
    """The random numbers transform() consumes, in its order, from a legacy RandomState."""
    fields: dict[str, list] = {k: [] for k in ("pad_u", "scale_u", "shift", "corr_z", "iid_z", "shear_u")}
    for _ in range(n):
        fields["pad_u"].append(rs.rand())
        fields["scale_u"].append(rs.rand())
        fields["shift"].append(rs.choice(DEFAULT.max_translation))
        fields["corr_z"].append(rs.randn(DEFAULT.dilated_len))
        fields["iid_z"].append(rs.randn(DEFAULT.dilated_len))
        fields["shear_u"].append(rs.rand())
    return mf.Draws(**{k: np.asarray(v) for k, v in fields.items()})


def test_transform_batch_replays_package_samples():
    n = 400
    rs = np.random.RandomState(11)
    labels = rs.randint(0, 10, n)
    state = rs.get_state()
    draws = _package_draws(rs, n)
    assert (draws.shift == 0).any() and (draws.shift == DEFAULT.max_translation - 1).any()
    ours = mf.transform_batch(labels, draws, DEFAULT)

    package_args = mnist1d_data.get_dataset_args()
    templates = mnist1d_data.get_templates()
    saved = np.random.get_state()
    np.random.set_state(state)
    try:
        reference = np.stack([mnist1d_transform.transform(templates["x"][c], templates["t"], package_args)[0]
                              for c in labels])
    finally:
        np.random.set_state(saved)
    assert ours.shape == reference.shape == (n, 40)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


def test_interp_rows_is_np_interp():
    x = np.random.default_rng(0).standard_normal((5, 72))
    t, xp = np.linspace(0, 1, 40), np.linspace(0, 1, 72)
    expected = np.stack([np.interp(t, xp, row) for row in x])
    np.testing.assert_allclose(mf._interp_rows(x, 40), expected, rtol=0, atol=1e-15)


def test_generate_package_is_make_dataset():
    np_state, py_state = np.random.get_state(), random.getstate()
    x, y = mf.generate_package(200, seed=3)
    assert_states_equal(np_state, np.random.get_state())
    assert random.getstate() == py_state

    args = mnist1d_data.get_dataset_args()
    args.num_samples, args.seed = 200, 3
    saved = np.random.get_state(), random.getstate()
    try:
        dataset = mnist1d_data.make_dataset(args)
    finally:
        np.random.set_state(saved[0])
        random.setstate(saved[1])
    np.testing.assert_array_equal(y, np.concatenate([dataset["y"], dataset["y_test"]]))
    np.testing.assert_allclose(mf.standardize(x), np.concatenate([dataset["x"], dataset["x_test"]]),
                               rtol=0, atol=1e-5)


def assert_states_equal(a, b):
    assert a[0] == b[0] and a[2:] == b[2:]
    np.testing.assert_array_equal(a[1], b[1])


# ---------------------------------------------------------------- layout and determinism

@pytest.mark.parametrize("n", [0, 1, 7, 10, 23, mf.CHUNK + 5])
def test_generate_fast_layout(n):
    x, y = mf.generate_fast(n, seed=1)
    assert x.shape == (n, 40) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y, minlength=10), mf.class_counts(n))
    assert np.isfinite(x).all()


def test_generate_package_layout_matches_fast():
    x, y = mf.generate_package(23, seed=1)
    assert x.shape == (23, 40) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y, minlength=10), mf.class_counts(23))


@given(st.integers(0, 10**7))
@settings(max_examples=50, deadline=None)
def test_class_counts_balanced(n):
    counts = mf.class_counts(n)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert (np.diff(counts) <= 0).all()  # the remainder goes to the first classes


def test_generate_fast_deterministic_and_shuffled():
    np_state = np.random.get_state()
    x1, y1 = mf.generate_fast(1000, seed=5)
    x2, y2 = mf.generate_fast(1000, seed=5)
    x3, y3 = mf.generate_fast(1000, seed=6)
    assert_states_equal(np_state, np.random.get_state())
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3) and not np.array_equal(y1, y3)
    assert (np.diff(y1) < 0).any()  # shuffled, not in class order


def test_bad_inputs_are_named():
    with pytest.raises(UserError, match="sample count"):
        mf.generate_fast(-1, seed=0)
    with pytest.raises(UserError, match="sample count"):
        mf.generate_fast(2.5, seed=0)
    with pytest.raises(UserError, match="padding"):
        mf.Mnist1dArgs(padding=(60, 36))
    with pytest.raises(UserError, match="max_translation"):
        mf.Mnist1dArgs(max_translation=0)


# ---------------------------------------------------------------- distribution
# Tolerances measured on 16 pairs of 5,000-sample sets (fast vs package and package vs
# package, different seeds): max |z| of class means <= 4.0, rms <= 1.12; of class stds
# max |z| <= 4.5, rms <= 1.22; KS statistic <= 0.037; nearest-class-mean gap <= 0.025.

N_COMPARE = 5000


def _features(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"mean": x.mean(1), "std": x.std(1), "max": x.max(1), "min": x.min(1),
            "argmax": x.argmax(1).astype(float), "total_variation": np.abs(np.diff(x, axis=1)).sum(1),
            "end_minus_start": x[:, -1] - x[:, 0]}


def _nearest_class_mean_accuracy(x_fit, y_fit, x, y) -> float:
    means = np.stack([x_fit[y_fit == c].mean(0) for c in range(10)])
    distances = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    return float((distances.argmin(1) == y).mean())


def distribution_mismatches(a, b) -> list[str]:
    """Ways in which (x_a, y_a) and (x_b, y_b), each z-scored on its own, differ; [] if none."""
    (xa, ya), (xb, yb) = a, b
    xa, xb = mf.standardize(xa), mf.standardize(xb)
    problems = []

    z_mean, z_std = [], []
    for c in range(10):
        pa, pb = xa[ya == c], xb[yb == c]
        sa, sb = pa.std(0, ddof=1), pb.std(0, ddof=1)
        z_mean.append((pa.mean(0) - pb.mean(0)) / np.sqrt(sa**2 / len(pa) + sb**2 / len(pb)))
        z_std.append(np.log(sa / sb) / np.sqrt(1 / (2 * len(pa)) + 1 / (2 * len(pb))))
    for name, z, max_limit, rms_limit in [("mean", np.array(z_mean), 5.0, 1.3),
                                          ("std", np.array(z_std), 5.5, 1.45)]:
        worst, rms = np.abs(z).max(), np.sqrt((z**2).mean())
        if worst > max_limit or rms > rms_limit:
            problems.append(f"per-class per-position {name}: max |z| {worst:.2f} (limit {max_limit}), "
                            f"rms z {rms:.2f} (limit {rms_limit})")

    fa, fb = _features(xa), _features(xb)
    for name in fa:
        statistic = ks_2samp(fa[name], fb[name]).statistic
        if statistic > 0.05:
            problems.append(f"feature {name}: KS statistic {statistic:.3f} > 0.05")

    half_a, half_b = len(ya) // 2, len(yb) // 2
    for (x1, y1, h1), (x2, y2, h2) in [((xa, ya, half_a), (xb, yb, half_b)), ((xb, yb, half_b), (xa, ya, half_a))]:
        cross = _nearest_class_mean_accuracy(x1[:h1], y1[:h1], x2[h2:], y2[h2:])
        own = _nearest_class_mean_accuracy(x2[:h2], y2[:h2], x2[h2:], y2[h2:])
        if abs(cross - own) > 0.04:
            problems.append(f"nearest-class-mean accuracy: {cross:.3f} with the other set's means, "
                            f"{own:.3f} with its own")
    return problems


@pytest.fixture(scope="module")
def package_set():
    return mf.generate_package(N_COMPARE, seed=100)


def test_fast_matches_package_distribution(package_set):
    assert distribution_mismatches(mf.generate_fast(N_COMPARE, seed=0), package_set) == []


@pytest.mark.parametrize("change", [dict(shear_scale=0.0), dict(padding=(36, 50)),
                                    dict(max_translation=36), dict(corr_noise_scale=0.2)],
                         ids=["no-shear", "padding-36-50", "translation-36", "corr-noise-0.2"])
def test_wrong_generator_is_detected(package_set, change):
    wrong = mf.generate_fast(N_COMPARE, seed=0, args=replace(DEFAULT, **change))
    assert distribution_mismatches(wrong, package_set) != []
