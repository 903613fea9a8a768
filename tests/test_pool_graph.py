"""Soft labels spread over the pool's k-nearest-neighbour graph (rolemodels/practice/pool_graph.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rolemodels.practice.pool_graph import graph_homophily, knn_graph, spread_over_graph


def brute_force_graph(x: np.ndarray, k: int) -> np.ndarray:
    """The same graph, densely: each row joined to its k nearest others, then D^-1/2 W D^-1/2."""
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    w = np.zeros_like(d)
    for i, row in enumerate(d):
        w[i, np.argsort(row)[:k]] = 1
    w = np.maximum(w, w.T)
    degree = w.sum(1)
    return w / np.sqrt(np.outer(degree, degree))


def test_the_graph_joins_each_row_to_its_nearest_others_symmetrically_normalised(monkeypatch):
    x = np.random.default_rng(0).normal(size=(37, 5))  # continuous: no ties between distances
    monkeypatch.setattr("rolemodels.practice.pool_graph.ROWS_PER_BLOCK", 8)  # several blocks, the last one short
    graph = knn_graph(torch.from_numpy(x), 4).to_dense().numpy()
    np.testing.assert_allclose(graph, brute_force_graph(x, 4), atol=1e-12)
    assert np.all(np.diag(graph) == 0) and np.array_equal(graph, graph.T)


def test_spreading_pulls_a_wrong_row_back_to_its_neighbours_class_and_keeps_the_clusters_apart():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (20, 3)), rng.normal(50, 1, (20, 3))])  # two far-apart clusters
    prior = np.zeros((40, 2))
    prior[:20] = [0.9, 0.1]
    prior[20:] = [0.2, 0.8]
    prior[3] = [0.3, 0.7]  # one row of the first cluster the teachers got wrong
    spread = spread_over_graph(prior, x, neighbors=5, alpha=0.8)
    assert spread[3].argmax() == 0 and prior[3].argmax() == 1
    assert np.all(spread[:20].argmax(1) == 0) and np.all(spread[20:].argmax(1) == 1)
    # no edge joins the clusters (5 neighbours, 19 others in each): the second is exactly its prior
    np.testing.assert_allclose(spread[20:], prior[20:], atol=1e-12)
    np.testing.assert_allclose(spread.sum(1), 1, atol=1e-12)


def test_alpha_zero_is_the_prior_and_bad_settings_are_refused():
    rng = np.random.default_rng(2)
    prior = rng.dirichlet(np.ones(3), 10)
    x = rng.normal(size=(10, 2, 2))  # any shape of inputs: rows are flattened
    np.testing.assert_array_equal(spread_over_graph(prior, x, alpha=0.0), prior)
    assert not np.allclose(spread_over_graph(prior, x, neighbors=3), prior)
    with pytest.raises(ValueError, match="alpha"):
        spread_over_graph(prior, x, alpha=1.0)
    with pytest.raises(ValueError, match="neighbors"):
        spread_over_graph(prior, x, neighbors=0)


def test_the_graph_weighs_every_column_alike_whatever_its_scale():
    """A column on the scale of 1,000 carries no more weight than the others: the graph of the raw
    rows is the graph of their standardised columns (and so the same whatever each column's scale).
    Columns on one scale are used as they are (pixels: standardising each would blow up rare values)."""
    x = np.random.default_rng(2).normal(size=(60, 4))
    x = (x - x.mean(0)) / x.std(0)  # the raw table's standardised columns: on one scale, used as they are
    raw = x * np.array([1000.0, 1.0, 1e-3, 5.0]) + np.array([5e4, 0.0, 0.0, -3.0])
    prior = np.random.default_rng(3).dirichlet(np.ones(3), size=60)
    np.testing.assert_allclose(spread_over_graph(prior, raw, neighbors=5), spread_over_graph(prior, x, neighbors=5),
                               atol=1e-9)


def test_homophily_is_the_share_of_a_class_rows_neighbours_in_that_class():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (20, 3)), rng.normal(50, 1, (20, 3))])  # two far-apart clusters
    labels = np.repeat([0, 1], 20)
    np.testing.assert_allclose(graph_homophily(np.eye(3)[labels], x, neighbors=5), [1.0, 1.0, np.nan])
    mixed = labels.copy()
    mixed[::2] = 1 - mixed[::2]  # half of each cluster in the other class: about half the neighbours agree
    assert np.all(np.abs(graph_homophily(np.eye(2)[mixed], x, neighbors=5) - 0.5) < 0.2)
