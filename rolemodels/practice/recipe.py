"""The practitioner's recipe, in one copy: what `RoleModelClassifier` and `rolemodels distill`
train by default, so that the command line gets what the scoreboard (docs/compare.md) measured.

robust (the default): teachers on generalised cross-entropy, learners that do not fit the labels
they find wrong, and a student on their mean probabilities. paper: the paper's teachers, samplers
trained to interpolate their noisy labels, and their plurality vote.
"""
from __future__ import annotations

from rolemodels.models import MODELS
from rolemodels.recipe import ROBUST_GCE_Q, pool_examples

# The robust teachers' first 10% of steps are on cross-entropy: on gce from the start, one mlp in
# three (Fashion-MNIST rows, look-alike noise: all of them) learnt some classes and stayed stuck on
# the rest, fitting 69-76% of its labels and scoring under one plain mlp (71-74% against 74-76%).
# Warmed up: 78-79% (docs/practitioners.md, "Stuck teachers").
ROBUST_GCE_WARMUP = 0.1

# The recipes of teachers made from a network's name. robust: generalised cross-entropy for 30
# epochs (at least 10,000 examples), learners that do not fit the labels they find wrong (longer
# lets them fit more of the noise: digits, docs/practitioners.md), with the network's usual
# augmentation, as `rolemodels run` trains it (shifts for cnn1d: one GCE model on MNIST-1D scored
# 93.3% with them, 86.7% without); its student is augmented alike; its q is ROBUST_GCE_Q (0.8, not
# Zhang & Sabuncu's 0.7: rolemodels/recipe.py), after ROBUST_GCE_WARMUP of the steps on
# cross-entropy. paper: the paper's teachers, trained to
# interpolate their noisy labels (at least 60,000 examples), nothing augmented.
RECIPES = {"robust": {"loss": "gce", "gce_q": ROBUST_GCE_Q, "gce_warmup": ROBUST_GCE_WARMUP, "epochs": 30,
                      "min_examples": 10_000, "augment": "auto"},
           "paper": {"loss": "cross_entropy", "epochs": 30, "min_examples": 60_000}}
# The robust recipe of the networks whose presets measured better than the generic one: their
# presets' teacher recipes (configs/mnist1d.toml, configs/fashion-mnist.toml; tests/test_estimator.py
# checks they agree). cnn1d: 80 epochs at batch 256 (MNIST-1D, seed 0: 94.9% against 94.3%).
# cnn2d_wide: no crops or flips, which cost one GCE model 3.6 points on 1,000 Fashion-MNIST images
# (78.2% against 74.6%), and 18 epochs but at least 30,000 examples (30 passes of 1,000 images).
# Both were measured without a warm-up, as their presets train (their teachers were not stuck).
ROBUST_BY_NETWORK = {"cnn1d": {"epochs": 80, "batch_size": 256, "lr": 6e-3, "gce_warmup": 0.0},
                     "cnn2d_wide": {"epochs": 18, "min_examples": 30_000, "augment": "none", "gce_warmup": 0.0}}
# A budget in examples is bounded in steps too: on a tiny training set `min_examples` alone would
# mean thousands of passes (3 rows: 3,334 passes of one step each for every teacher).
TEACHER_MAX_PASSES = 200

# The student sees at least 4 passes, beside recipe.pool_examples' 200,000 examples and at most 64
# passes: 1 pass of MNIST-1D's 200,000-example pool left the student of robust teachers 1.1 points
# under their own soft vote (95.4% against 96.5%); 4 passes: 96.8%.
STUDENT_MIN_PASSES = 4
STUDENT_BATCH = 256

# pool_graph="auto": an mlp student's soft labels spread over the pool's 10-nearest-neighbour graph
# when the pool has at most this many rows. Digits' 797 rows: +1.8 to +4.4 points on every noise.
# Not for image or sequence networks: on 2,000 Fashion-MNIST images the raw pixels' neighbours
# cost the cnn2d_wide student points (docs/practitioners.md). A large pool lets the student
# average the teachers' mistakes away itself.
POOL_GRAPH_NEIGHBORS = 10
POOL_GRAPH_ROWS = 5_000
POOL_GRAPH_MAX_ROWS = 50_000  # an explicit k: the graph costs N^2 distances, 2.5e9 at this size
# auto spreads only where, for every class, most graph neighbours of its rows share its class
# (pool_graph.graph_homophily): 400 tabular rows with a 5% minority class had 21-26%, and the
# spread turned every minority row into the majority class, though the teachers had them right.
POOL_GRAPH_MIN_HOMOPHILY = 0.5


# Teachers: 10 with a pool (the paper's K); without one, each of the cross-fitting folds trains 2.
# Without a pool the 5 folds train 5 x K teachers. On the six binary-table settings of
# experiments/compare_practice.py (3 seeds each) 3 a fold scored as 10 did (from -0.2 to +0.5
# points, mean +0.1) in a third of the time; with warmed-up teachers, on those six and digits'
# three, 2 a fold scored as 3 did (from -0.8 to +0.6 points, mean 0.0, each inside a standard
# deviation) and 1 a fold lost up to 2.3 (digits, a random 40% matrix: 70.8 against 73.1).
# With a pool, the robust recipe's generic networks (mlp, ...: not in ROBUST_BY_NETWORK) train 3:
# warmed up, 3 scored as 10 on the four settings of compare_practice.py with a pool (3 seeds each:
# -0.3 to -0.1 points, each within a standard deviation; 5: -0.2 to +0.1) at under half the time.
# The networks with presets keep the paper's 10, as compare.py measured them.
TEACHERS = 10
GENERIC_TEACHERS = 3
CROSS_FIT_TEACHERS = 2


def teacher_count(n_teachers, pool: bool, network=None, recipe: str = "robust") -> int:
    """n_teachers made concrete: an integer as given; "auto": CROSS_FIT_TEACHERS for each fold
    without a pool; with one, GENERIC_TEACHERS for the robust recipe's generic networks (`network`
    a name in the registry, models.MODELS, but not in ROBUST_BY_NETWORK), else TEACHERS."""
    if n_teachers != "auto":
        return int(n_teachers)
    if not pool:
        return CROSS_FIT_TEACHERS
    generic = recipe == "robust" and network in MODELS and network not in ROBUST_BY_NETWORK
    return GENERIC_TEACHERS if generic else TEACHERS


def teacher_recipe(recipe: str, network) -> dict:
    """The NetworkClassifier settings of `recipe`'s teachers for `network` (a registry name or a
    factory): RECIPES[recipe], with the robust recipe's settings for that network where it has some."""
    settings = dict(RECIPES[recipe])
    if recipe == "robust" and isinstance(network, str):
        settings.update(ROBUST_BY_NETWORK.get(network, {}))
    elif recipe == "robust":  # your own factory: GCE from the first step, as before the warm-up
        # (measured on the registry's mlp only; a 16-unit factory network on clean, easy labels
        # fitted 86-91% of them with it on 3 seeds of 6, 98-99% without)
        settings["gce_warmup"] = 0.0
    return settings


def bounded_examples(min_examples: int, n: int, max_passes: int = TEACHER_MAX_PASSES) -> int:
    """`min_examples` for a training set of n rows, at most `max_passes` passes of it."""
    return min(min_examples, max_passes * max(n, 1))


def student_examples(n_pool: int) -> int:
    """The default student's budget on a pool of n_pool examples: at least 200,000 examples and 4
    passes, but at most 64 passes (so a small pool costs less)."""
    return pool_examples(n_pool, STUDENT_MIN_PASSES)


def graph_neighbors_auto(combine: str, student_network: str | None, n_pool: int) -> int:
    """pool_graph="auto": the neighbours of the pool graph that soft labels spread over (0: none)."""
    small = n_pool <= POOL_GRAPH_ROWS
    return POOL_GRAPH_NEIGHBORS if combine == "soft" and student_network == "mlp" and small else 0
