"""The field's noisy-label methods as rows of experiments/compare.py: co-teaching, ELR and DivideMix
(experiments/baselines/) on a setting's `Case`, each on the setting's teacher network (its
architecture, width and augmentation), the class's own budget (co-teaching 200 epochs, ELR 120,
DivideMix 30 epochs or 300,000 examples) and the case's saved noisy labels.

Two configurations of each, as on the practitioner's scoreboard (experiments/sota_methods.py):
- practitioner (`coteaching`, `elr`, `dividemix`): the module's PRACTITIONER values, chosen
  without clean labels or knowledge of the noise;
- oracle (`*_oracle`): the module's oracle_config(noise preset, realised rate), the paper's values
  for the setting's noise type at its true rate (the pipeline's `paper` and `pairflip` noises flip
  each class to one partner, as the papers' asymmetric noise does): an upper reference.
`dividemix_pool`: the practitioner's DivideMix given the setting's unlabelled pool.

In the quick mode the networks are the pipeline's quick width and every method trains
QUICK_EPOCHS epochs: a check of the code, not a result.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
from compare_methods import Case, Method, as_numpy_inputs, flag_scores, scored
from sota_methods import baseline

QUICK_EPOCHS = 2
NETWORKS = {"coteaching": 2, "elr": 1, "dividemix": 2}  # networks one fit trains (the rows' "fits")


def noise_type(case: Case) -> str:
    """The setting's noise preset (paper | symmetric | pairflip), which the oracles read."""
    return case.cfg.noise.preset


# Where our network forces it (docs/compare.md, "The field's methods"): the CNNs have no batch norm,
# and under the papers' SGD at 0.02 the 1-D CNN stayed at chance through 5 warm-up epochs on
# MNIST-1D, so DivideMix collapsed to 20% and ELR reached 87.5%. There ELR and DivideMix take the
# setting's own optimiser and rate (AdamW at the teachers' lr: ELR 97.6%, its cross-entropy 83.3%),
# and DivideMix the warm-up its paper gives CIFAR-100, 30 of 300 epochs (10 of 300 left 2 epochs,
# too few for the CNN to learn before the division: 20% again). Co-teaching's Adam trains it as is.
CNN_WARMUP_FRACTION = 30 / 300


def network_adaptation(name: str, case: Case) -> dict:
    """The parameters baseline `name` changes on this case's network ({} on the mlp)."""
    arch, spec = case.teacher_recipe
    if arch.model == "mlp" or name == "coteaching":
        return {}
    adapted = {"optimizer": spec.optimizer, "lr": spec.lr}
    return {**adapted, "warmup_fraction": CNN_WARMUP_FRACTION} if name == "dividemix" else adapted


def options_of(case: Case, name: str, config: dict) -> dict:
    """Baseline `name`'s parameters on this case: the teachers' network, width and augmentation,
    the network's adaptation, `config`, and the quick mode's budget."""
    arch, spec = case.teacher_recipe
    budget = {"epochs": QUICK_EPOCHS, "min_examples": 0} if case.quick else {}
    return {"model": arch.model, "width": arch.width, "input_shape": case.data.input_shape, "augment": spec.augment,
            "device": str(case.device), **network_adaptation(name, case), **config, **budget}


def fit_row(case: Case, name: str, config: dict, *, pool: bool = False) -> dict:
    """Baseline `name` with `config` fitted on the case's noisy labels (and its pool where `pool`),
    scored as every row of compare.py is, with its flags and its fit of the noisy labels."""
    cls, _ = baseline(name)
    options = options_of(case, name, config)
    x = as_numpy_inputs(case.data.x_train)
    started = time.perf_counter()
    clf = cls(**options, random_state=case.seed)
    clf.fit(x, case.noisy, **({"X_pool": as_numpy_inputs(case.data.x_pool)} if pool else {}))
    seconds = time.perf_counter() - started
    pred = clf.predict(as_numpy_inputs(case.data.x_test))
    row = scored(case, pred, fits=NETWORKS[name], seconds=seconds, labels=case.noisy,
                 flags=flag_scores(np.asarray(clf.flagged_, dtype=bool), case.flipped))
    options["input_shape"] = list(options["input_shape"])  # JSON
    return {**row, "train_fit": float(np.mean(clf.predict(x) == case.noisy)), "options": options}


def practitioner(name: str) -> Callable[[Case], dict[str, dict]]:
    def rows(case: Case) -> dict[str, dict]:
        return {name: fit_row(case, name, dict(baseline(name)[1].PRACTITIONER))}
    rows.__name__ = name
    return rows


def oracle(name: str) -> Callable[[Case], dict[str, dict]]:
    def rows(case: Case) -> dict[str, dict]:
        rate = float(case.flipped.mean())
        config = baseline(name)[1].oracle_config(noise_type(case), rate)
        return {f"{name}_oracle": {**fit_row(case, name, config), "oracle_noise_type": noise_type(case)}}
    rows.__name__ = f"{name}_oracle"
    return rows


def dividemix_pool(case: Case) -> dict[str, dict]:
    return {"dividemix_pool": fit_row(case, "dividemix", dict(baseline("dividemix")[1].PRACTITIONER), pool=True)}


SOTA_METHODS = {
    "coteaching": Method("co-teaching (Han et al. 2018), forget rate 0.2", "field"),
    "coteaching_oracle": Method("co-teaching, forget rate = the true noise rate (oracle)", "field-oracle"),
    "elr": Method("ELR (Liu et al. 2020), beta 0.7, lambda 3", "field"),
    "elr_oracle": Method("ELR, the paper's values for the noise type (oracle)", "field-oracle"),
    "dividemix": Method("DivideMix (Li et al. 2020), the code's defaults", "field"),
    "dividemix_oracle": Method("DivideMix, the paper's values for the noise (oracle)", "field-oracle"),
    "dividemix_pool": Method("DivideMix, the code's defaults, with the pool", "field"),
}

SOTA_FUNCTIONS = {"coteaching": practitioner("coteaching"), "coteaching_oracle": oracle("coteaching"),
                  "elr": practitioner("elr"), "elr_oracle": oracle("elr"), "dividemix": practitioner("dividemix"),
                  "dividemix_oracle": oracle("dividemix"), "dividemix_pool": dividemix_pool}
assert set(SOTA_FUNCTIONS) == set(SOTA_METHODS)
