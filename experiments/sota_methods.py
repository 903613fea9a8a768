"""The field's noisy-label methods as rows of the practitioner's scoreboard (experiments/
compare_practice.py): co-teaching, ELR and DivideMix (experiments/baselines/), each a function
Setting -> dict, collected in `SOTA_METHODS` with one line each in `SOTA_LABELS`.

Every row fits the baseline's classifier on the setting's noisy training labels with model "mlp"
(every dataset of the scoreboard is rows of features), random_state = the seed and the class's own
budget (co-teaching 200 epochs, ELR 120, DivideMix 30 epochs or 300,000 examples); with
`s.quick`, QUICK_EPOCHS epochs and min_examples 0. Two configurations of each:
- practitioner (`coteaching`, `elr`, `dividemix`): the module's `PRACTITIONER`, chosen without
  clean labels or knowledge of the noise;
- oracle (`*_oracle`): the module's `oracle_config(ORACLE_NOISE_TYPE[noise], realised rate)`, the
  paper's setting for the nearest published noise type at the true rate: an upper reference that
  no practitioner can run. Where the paper's values for that type are the practitioner's (ELR on
  symmetric noise) the two rows are the same fit, seeded, so the same numbers.
`dividemix_pool`: the practitioner's DivideMix given the setting's unlabelled pool (X_pool). On
settings without a pool it returns None: the row would be `dividemix` again, so the caller leaves
it out (compare_practice's run skips a method that returns None).

Each row's dict: compare_practice.scores (accuracy, balanced_accuracy on the clean test labels),
"seconds" (the fit), "flag_precision", "flag_recall", "flagged" (the baseline's flagged_ against
the truly flipped rows, noisy != clean; precision None where nothing is flagged), "train_fit" (its
predictions' accuracy on the training rows against the noisy labels: near 1 when it memorised
them) and "options" (the classifier's parameters but random_state).
"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import numpy as np

EXPERIMENTS = Path(__file__).resolve().parent
if str(EXPERIMENTS) not in sys.path:  # the baselines package lives beside this file
    sys.path.insert(0, str(EXPERIMENTS))

# The published noise type nearest each of the scoreboard's noises, for the oracle rows. The papers
# tune for two types only: symmetric (a flip to any other class alike) and asymmetric (CIFAR-10's
# class-dependent flips to one similar class). flip25 is binary symmetric noise and symmetric30
# symmetric noise: "symmetric". lookalike28 (look-alike pairs) and random40 (a random matrix whose
# flips weigh some classes more) are class-dependent and uneven: "asymmetric". annotator30 and
# part30 are instance-dependent, for which no paper gives a setting; their flips go to the classes
# an example is confusable with, as asymmetric noise's do: "asymmetric".
ORACLE_NOISE_TYPE = {
    "flip25": "symmetric",
    "symmetric30": "symmetric",
    "random40": "asymmetric",
    "lookalike28": "asymmetric",
    "annotator30": "asymmetric",
    "part30": "asymmetric",
}

# name -> (module under experiments/baselines, classifier): imported when a row runs, so that
# importing this file (compare_practice does) needs neither torch's baselines nor scikit-learn.
BASELINES = {
    "coteaching": ("baselines.coteaching", "CoTeachingClassifier"),
    "elr": ("baselines.elr", "ELRClassifier"),
    "dividemix": ("baselines.dividemix", "DivideMixClassifier"),
}
MODEL = "mlp"


def baseline(name: str):
    """(classifier class, its module) of a baseline: coteaching | elr | dividemix."""
    module = importlib.import_module(BASELINES[name][0])
    return getattr(module, BASELINES[name][1]), module


# ---------------------------------------------------------------------------------------------
# The numbers of one fit


def flag_scores(flagged: np.ndarray, noisy: np.ndarray, clean: np.ndarray) -> dict:
    """The flags bool [n] against the truly flipped rows (noisy != clean, int [n] each): precision
    (None where nothing is flagged), recall (None where nothing is flipped) and the count."""
    flagged = np.asarray(flagged, dtype=bool)
    flipped = np.asarray(noisy) != np.asarray(clean)
    hits = int((flagged & flipped).sum())
    return {"flag_precision": hits / int(flagged.sum()) if flagged.any() else None,
            "flag_recall": hits / int(flipped.sum()) if flipped.any() else None,
            "flagged": int(flagged.sum())}


def evaluate(clf, s, seconds: float, options: dict) -> dict:
    """A fitted baseline's row on Setting s (see the module's docstring for the keys)."""
    from compare_practice import scores  # here, not at the top: compare_practice imports this file

    train_pred = clf.predict(s.split.x_train)
    return {**scores(clf.predict(s.split.x_test), s), "seconds": seconds,
            **flag_scores(clf.flagged_, s.noisy, s.split.y_train),
            "train_fit": float(np.mean(train_pred == s.noisy)), "options": options}


def budget(s) -> dict:
    """The class's own budget (nothing passed), or --quick's few epochs."""
    from compare_practice import QUICK_EPOCHS

    return {"epochs": QUICK_EPOCHS, "min_examples": 0} if s.quick else {}


def fit_row(name: str, config: dict, s, *, pool: bool = False) -> dict:
    """Fit baseline `name` with `config` on s's noisy labels (and its pool where `pool`) and return
    its row; options records the configuration, the model and the budget."""
    cls, _ = baseline(name)
    options = {"model": MODEL, **config, **budget(s)}
    clf = cls(**options, random_state=s.seed)
    extra = {"X_pool": s.split.x_pool} if pool else {}
    started = time.perf_counter()
    clf.fit(s.split.x_train, s.noisy, **extra)
    return evaluate(clf, s, time.perf_counter() - started, options)


def oracle_options(name: str, s) -> dict:
    """The paper's configuration of `name` for s: its oracle_config at the noise type nearest s's
    noise and at the realised rate."""
    _, module = baseline(name)
    return module.oracle_config(ORACLE_NOISE_TYPE[s.noise], s.realised_rate)


def practitioner(name: str):
    def method(s) -> dict:
        return fit_row(name, dict(baseline(name)[1].PRACTITIONER), s)
    method.__name__ = name
    return method


def oracle(name: str):
    def method(s) -> dict:
        return {**fit_row(name, oracle_options(name, s), s), "oracle_noise_type": ORACLE_NOISE_TYPE[s.noise]}
    method.__name__ = f"{name}_oracle"
    return method


coteaching = practitioner("coteaching")
coteaching_oracle = oracle("coteaching")
elr = practitioner("elr")
elr_oracle = oracle("elr")
dividemix = practitioner("dividemix")
dividemix_oracle = oracle("dividemix")


def dividemix_pool(s) -> dict | None:
    """The practitioner's DivideMix with the setting's pool as extra unlabelled rows; None where
    the setting has no pool (the row would be `dividemix`'s: the caller leaves it out)."""
    if s.split.x_pool is None:
        return None
    return fit_row("dividemix", dict(baseline("dividemix")[1].PRACTITIONER), s, pool=True)


SOTA_METHODS = {
    "coteaching": coteaching,
    "coteaching-oracle": coteaching_oracle,
    "elr": elr,
    "elr-oracle": elr_oracle,
    "dividemix": dividemix,
    "dividemix-oracle": dividemix_oracle,
    "dividemix-pool": dividemix_pool,
}
SOTA_LABELS = {
    "coteaching": "co-teaching (Han et al. 2018), 2 mlps, forget rate 0.2 (the official code's default), Adam, "
                  "200 epochs",
    "coteaching-oracle": "co-teaching with the paper's forget rate = the true (realised) noise rate: a reference "
                         "that needs the noise",
    "elr": "ELR (Liu et al. 2020), one mlp, beta 0.7, lambda 3 (the paper's symmetric setting, the README's "
           "default), SGD, 120 epochs",
    "elr-oracle": "ELR with the paper's setting for the nearest noise type (symmetric: beta 0.7, lambda 3; "
                  "asymmetric: 0.9, 1): a reference",
    "dividemix": "DivideMix (Li et al. 2020), 2 mlps, the official code's defaults (lambda_u 25, p_threshold 0.5), "
                 "30 epochs or 300,000 examples",
    "dividemix-oracle": "DivideMix with the paper's setting for the nearest noise type and published rate "
                        "(lambda_u 0 at 20% symmetric and 40% asymmetric): a reference",
    "dividemix-pool": "dividemix given the setting's unlabelled pool beside its unlabelled side (only where there "
                      "is a pool)",
}
assert set(SOTA_METHODS) == set(SOTA_LABELS), "SOTA_LABELS names every method"
