"""Nearest-neighbour and kernel samplers: they interpolate, vote, chunk, save and reject bad input."""
import numpy as np
import pytest
import torch

from rolemodels.errors import UserError
from rolemodels.method import samplers
from rolemodels.method.samplers import KernelInterpolator, NearestNeighbors, load_sampler


def random_dataset(n=200, dim=5, num_classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randint(num_classes, (n,), generator=g)


# ------------------------------------------------------------------ nearest neighbours

@pytest.mark.parametrize("dim", [3, 64])  # exact distance formula and matrix-multiply formula
def test_one_nn_interpolates_its_training_labels(dim):
    x, y = random_dataset(dim=dim)
    model = NearestNeighbors(k=1).fit(x, y, 4)
    assert torch.equal(model.predict(x), y)
    probs = model.predict_proba(x)
    assert probs.dtype == torch.float32 and probs.shape == (200, 4)
    assert torch.equal(probs, torch.nn.functional.one_hot(y, 4).float())


def test_knn_gives_vote_shares_of_the_k_nearest():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    y = torch.tensor([0, 0, 1, 2, 2])
    model = NearestNeighbors(k=3).fit(x, y, 3)
    probs = model.predict_proba(torch.tensor([[0.4], [10.2]]))
    assert torch.allclose(probs, torch.tensor([[2 / 3, 1 / 3, 0.0], [0.0, 1 / 3, 2 / 3]]))
    assert model.predict(torch.tensor([[0.4], [10.2]])).tolist() == [0, 2]


def test_knn_tie_goes_to_the_nearest_class():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([1, 0])
    model = NearestNeighbors(k=2).fit(x, y, 2)
    # Each query has one neighbour of each class: the nearer one decides.
    assert model.predict(torch.tensor([[0.1], [0.9], [-5.0], [7.0]])).tolist() == [1, 0, 1, 0]
    assert torch.allclose(model.predict_proba(torch.tensor([[0.1]])), torch.tensor([[0.5, 0.5]]))


def test_nearest_first_plurality_counts_before_closeness():
    labels = torch.tensor([[2, 1, 1], [0, 1, 2], [3, 3, 0]])
    assert samplers.nearest_first_plurality(labels, 4).tolist() == [1, 0, 3]


def test_predictions_do_not_depend_on_the_block_size(monkeypatch):
    x, y = random_dataset(n=100)
    queries = torch.randn(37, 5, generator=torch.Generator().manual_seed(1))
    whole = NearestNeighbors(k=5).fit(x, y, 4).predict_proba(queries)
    kernel_whole = KernelInterpolator().fit(x, y, 4).decision_function(queries)
    monkeypatch.setattr(samplers, "DISTANCE_BUDGET", 150)  # one or two queries per block
    assert len(list(samplers.query_blocks(37, 100))) == 37
    assert torch.equal(NearestNeighbors(k=5).fit(x, y, 4).predict_proba(queries), whole)
    assert torch.allclose(KernelInterpolator().fit(x, y, 4).decision_function(queries), kernel_whole)


def test_inputs_of_any_shape_are_flattened():
    x, y = random_dataset(n=50, dim=12)
    images = x.reshape(50, 3, 2, 2)
    model = NearestNeighbors().fit(images, y, 4)
    assert torch.equal(model.predict(images), y)
    assert model.x.shape == (50, 12) and model.x.dtype == torch.float32


# ------------------------------------------------------------------------ kernel machine

def test_kernel_interpolator_reproduces_training_labels():
    x, y = random_dataset(n=300, dim=3, num_classes=5)
    model = KernelInterpolator().fit(x, y, 5)
    assert torch.equal(model.predict(x), y)
    values = model.decision_function(x)
    assert torch.allclose(values, torch.nn.functional.one_hot(y, 5).double(), atol=1e-6)


def test_kernel_probabilities_are_clipped_and_renormalised():
    x, y = random_dataset(n=150, dim=2, num_classes=3)
    model = KernelInterpolator(bandwidth=0.3).fit(x, y, 3)
    queries = torch.randn(400, 2, generator=torch.Generator().manual_seed(5)) * 3
    probs = model.predict_proba(queries)
    assert probs.dtype == torch.float32 and (probs >= 0).all()
    assert torch.allclose(probs.sum(dim=1), torch.ones(400), atol=1e-5)
    assert torch.equal(probs.argmax(dim=1), model.predict(queries))


def test_clip_and_normalise_handles_rows_without_positive_values():
    scores = torch.tensor([[0.5, -0.1, 1.5], [-0.3, -0.2, -0.9]], dtype=torch.float64)
    probs = samplers.clip_and_normalise(scores)
    assert torch.allclose(probs, torch.tensor([[0.25, 0.0, 0.75], [0.0, 1.0, 0.0]]))


def test_default_bandwidth_is_the_median_pairwise_distance():
    x, y = random_dataset(n=60, dim=4)
    model = KernelInterpolator().fit(x, y, 4)
    points = x.double().numpy()
    gaps = np.linalg.norm(points[:, None] - points[None], axis=-1)[np.triu_indices(60, 1)]
    assert model.fitted_bandwidth == pytest.approx(float(np.median(gaps)), rel=1e-6)


def test_repeated_points_fall_back_to_a_tiny_ridge():
    x, y = random_dataset(n=40, dim=2)
    x, y = torch.cat([x, x[:5]]), torch.cat([y, y[:5]])  # exact duplicates, same labels
    model = KernelInterpolator().fit(x, y, 4)
    assert torch.equal(model.predict(x), y)


# ----------------------------------------------------------------------------- files

@pytest.mark.parametrize("make", [lambda: NearestNeighbors(k=3), lambda: KernelInterpolator()])
def test_save_and_load_round_trip(tmp_path, make):
    x, y = random_dataset(n=80)
    model = make().fit(x, y, 4)
    path = tmp_path / "teacher.pt"
    model.save(path)
    queries = torch.randn(20, 5, generator=torch.Generator().manual_seed(3))
    for loaded in (type(model).load(path), load_sampler(path)):
        assert type(loaded) is type(model)
        assert torch.equal(loaded.predict_proba(queries), model.predict_proba(queries))


def test_loading_the_wrong_file_is_a_user_error(tmp_path):
    x, y = random_dataset(n=30)
    NearestNeighbors().fit(x, y, 4).save(tmp_path / "nn.pt")
    with pytest.raises(UserError, match="holds a NearestNeighbors"):
        KernelInterpolator.load(tmp_path / "nn.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot be read"):
        load_sampler(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not written by a rolemodels sampler"):
        load_sampler(tmp_path / "other.pt")
    with pytest.raises(UserError, match="not found"):
        load_sampler(tmp_path / "missing.pt")


# ------------------------------------------------------------------------- bad input

def test_bad_input_raises_user_errors(monkeypatch):
    x, y = random_dataset(n=10)
    with pytest.raises(UserError, match="9 labels, but x has 10"):
        NearestNeighbors().fit(x, y[:9], 4)
    with pytest.raises(UserError, match=r"^y: label 3 at index 0 is outside \[0, 3\) for 3 classes$"):
        NearestNeighbors().fit(x, torch.full((10,), 3), 3)
    with pytest.raises(UserError, match="^y: holds float32 values; expected integer labels$"):
        NearestNeighbors().fit(x, y.float(), 4)
    with pytest.raises(UserError, match="k=11 neighbours"):
        NearestNeighbors(k=11).fit(x, y, 4)
    with pytest.raises(UserError, match="positive integer"):
        NearestNeighbors(k=0)
    with pytest.raises(UserError, match="call fit"):
        NearestNeighbors().predict(x)
    with pytest.raises(UserError, match="3 features each"):
        NearestNeighbors().fit(x, y, 4).predict(torch.zeros(2, 3))
    with pytest.raises(UserError, match="NaN"):
        NearestNeighbors().fit(x * float("nan"), y, 4)
    with pytest.raises(UserError, match="bandwidth"):
        KernelInterpolator(bandwidth=0.0)
    monkeypatch.setattr(samplers, "MAX_KERNEL_POINTS", 5)
    with pytest.raises(UserError, match="at most 5"):
        KernelInterpolator().fit(x, y, 4)
