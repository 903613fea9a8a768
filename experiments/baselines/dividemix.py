"""DivideMix (Li, Socher & Hoi, ICLR 2020, "DivideMix: Learning with Noisy Labels as Semi-supervised
Learning"), written from the paper and checked against its official code (LiJunnan1992/DivideMix,
Train_cifar.py and dataloader_cifar.py), as a scikit-learn classifier on rolemodels' networks.

The method. Two networks are warmed up on cross-entropy over the whole noisy set (for asymmetric
noise a confidence penalty, the mean negative entropy of the predictions, is added). Then every
epoch each network's per-example cross-entropy on the whole training set (evaluation mode, no
augmentation) is min-max normalised and a two-component Gaussian mixture (scikit-learn's, max_iter
10, reg_covar 5e-4, tol 1e-2, as the code) gives each example's clean probability w_i: the posterior
of the component with the smaller mean. Co-divide: each network trains on the division made by the
OTHER one, labelled = w_i > p_threshold, the rest unlabelled. One pass over the labelled set
(batches of 64, each with 64 unlabelled examples, the unlabelled set cycling) does MixMatch with:
label co-refinement (labelled: mean prediction of the network being trained over 2 augmentations,
y_bar = w y + (1 - w) p, sharpened at T = 0.5), label co-guessing (unlabelled: mean of both networks'
predictions over 2 augmentations each, sharpened), mixup of the 2 x (64 + 64) augmented examples with
a random permutation of themselves, lambda ~ Beta(4, 4), lambda' = max(lambda, 1 - lambda); loss
L_x (soft cross-entropy on the mixed labelled part) + lambda_u(t) L_u (mean squared error of the
probabilities on the mixed unlabelled part; lambda_u ramped up linearly over 16 epochs after the
warm-up, per batch) + lambda_r L_reg (KL of the uniform prior from the batch's mean prediction,
lambda_r = 1). SGD: lr 0.02, momentum 0.9, weight decay 5e-4; 300 epochs, lr / 10 from epoch 150;
warm-up 10 epochs on CIFAR-10 (30 on CIFAR-100) in batches of 128. Test: both networks together
(the code sums their logits; the paper's text and this class average their probabilities).
The paper's text gives a batch of 128 (the code: 64 labelled + 64 unlabelled a step, 128 in the
warm-up; we follow the code) and "lambda_u chosen from {0, 25, 50, 150} using a small validation
set". Per noise (Appendix B, Table 7, which we could not read itself; its values as the official
repository's issues give them: the authors in #10 (p_threshold 0.6 for 90%), #15 and #26 (lambda_u 0
for asymmetric), users quoting Table 7 in #17 and #50 (lambda_u 0 for 20%), and reproduction scripts
(20%: 0, 50%: 25, 80%: 25, 90%: 50, asym 40%: 0)): CIFAR-10 symmetric 20%: lambda_u 0; 50%: 25;
80%: 25; 90%: 50 with p_threshold 0.6 and the normalised losses averaged over the last 5 epochs (the
code's `r == 0.9` branch); asymmetric 40%: lambda_u 0 with the warm-up's confidence penalty (the
code adds it whenever noise_mode is asym). The code's defaults (lambda_u 25, p_threshold 0.5, no
penalty) are what one runs without knowing the noise. Note the code's symmetric noise draws the
new label from all classes, the true one included (its 50% flips about 45%); ours flip to another.

Two configurations. ORACLE_BY_NOISE / oracle_config(noise, rate): the paper's setting-matched
values for the noise type and the nearest published rate (it needs the noise, so it is an upper
reference, not something a practitioner can run). PRACTITIONER: one fixed configuration chosen
without clean labels, the official code's defaults, which are also this class's defaults.

Adaptations, each named:
- Budget. Our training sets hold 400-10,000 rows, not 50,000. The run lasts `epochs` DivideMix
  epochs, or more until `min_examples` training examples have passed (whole passes over the n
  training rows, as rolemodels.recipe.FitSpec.epochs_for). What the paper gives in epochs of its
  300-epoch run is scaled as a fraction of the total: warm-up 10/300 (at least 1 epoch), the lr
  step at 150/300, the lambda_u ramp-up 16/300. A DivideMix epoch is, as in the code, one pass
  over the labelled part (warm-up epochs: over all n), so later epochs cost fewer steps.
  The defaults, epochs 30 and min_examples 300,000, give a 1,000-row set the paper's 300 epochs,
  and any set up to 10,000 rows a warm-up of about 10,000 examples (80 steps of 128), what 10
  epochs of 1,000 rows are. The warm-up must be long enough in steps: on digits (1,000 rows, 40%
  symmetric noise, mlp) 30 epochs alone left a 1-epoch warm-up of 8 steps, the ramp brought in
  L_u on guesses of a barely trained network, and the test accuracy was 81.7% (lambda_u 0: 91.7%;
  3 warm-up epochs: 93.2%; 6: 94.4%); 100 epochs: 95.1%; 300 epochs: 97.0% (seed 0).
- Networks: the registry's (mlp, cnn1d, cnn2d_wide, ...) in place of PreAct ResNet-18; neither
  the mlp nor the small CNNs have batch norm or dropout, so evaluation and training mode agree.
- Optimiser: SGD as the paper (`optimizer="sgd"`), or AdamW (`"adamw"`) for a network that does not
  train under SGD in the budget: on MNIST-1D the 1-D CNN stayed at chance through 5 warm-up epochs
  of SGD at 0.02 and DivideMix collapsed to 20% (experiments/compare_sota.py names where it is used).
- Augmentation: the recipe's (`augment`: shift for 1-D signals, crop_flip for images) draws the
  2 views. Tables have none: there the 2 views are the same input, so the mean over the views is
  the single prediction (computed once), and both copies still enter the mixup, each with its own
  random partner, so a step mixes as many examples as the paper's. Mixup itself is then the only
  perturbation; we add no input noise, which would need a scale the paper does not give.
- The pool variant (fit(X, y, X_pool)): unlabelled rows without labels join every epoch's
  unlabelled set beside the examples the division left unlabelled. They never enter the mixture
  (they have no label to have a loss on) and do not lengthen an epoch (the labelled part does).
- Degenerate divisions the code would crash on: no labelled example -> the examples whose w is
  at least the median are labelled; no unlabelled example (and no pool) -> MixMatch over the
  labelled views alone, L_u = 0. All losses equal -> every example is clean (w = 1).
- flagged_: after the last epoch both final networks divide the training set once more (as the
  next epoch would); clean_probability_ is the mean of their two w, and flagged_ (bool [n]) marks
  the examples on the unlabelled (noisy) side, clean_probability_ <= p_threshold.
- Seeds: both networks' weights, every shuffle, augmentation and mixup permutation, each mixup
  lambda and the mixtures' random_state come from random_state through explicit generators, so a
  fit is reproducible (the code leaves the mixture unseeded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.utils.validation import validate_data

from rolemodels.practice.student import shaped_inputs

from .dividemix_parts import (  # noqa: F401  (the pieces, importable from here too)
    clean_probability,
    co_guess,
    co_refine,
    divide,
    labelled_side,
    mixmatch_mix,
    mixture_clean_probability,
    negative_entropy,
    normalise_losses,
    probability_mse,
    sharpen,
    soft_cross_entropy,
    uniform_prior_penalty,
    unlabelled_weight,
)
from .networks import OPTIMIZERS, NoisyLabelNetworks, new_optimizer

# The official code's defaults: what one runs not knowing the noise type or rate.
PRACTITIONER = {"lambda_u": 25.0, "p_threshold": 0.5, "confidence_penalty": False, "loss_average_epochs": 1}

# The paper's CIFAR-10 settings per noise (Appendix B, Table 7; README and issues of the official
# repository). 90%: p_threshold 0.6 and the normalised losses averaged over the last 5 epochs.
ORACLE_BY_NOISE = {
    ("symmetric", 0.2): {"lambda_u": 0.0, "p_threshold": 0.5, "confidence_penalty": False, "loss_average_epochs": 1},
    ("symmetric", 0.5): {"lambda_u": 25.0, "p_threshold": 0.5, "confidence_penalty": False, "loss_average_epochs": 1},
    ("symmetric", 0.8): {"lambda_u": 25.0, "p_threshold": 0.5, "confidence_penalty": False, "loss_average_epochs": 1},
    ("symmetric", 0.9): {"lambda_u": 50.0, "p_threshold": 0.6, "confidence_penalty": False, "loss_average_epochs": 5},
    ("asymmetric", 0.4): {"lambda_u": 0.0, "p_threshold": 0.5, "confidence_penalty": True, "loss_average_epochs": 1},
}
# Our noises whose wrong labels each go to one partner class, as CIFAR-10's asymmetric noise does.
NOISE_ALIASES = {"symmetric": "symmetric", "asymmetric": "asymmetric", "pairflip": "asymmetric", "paper": "asymmetric"}

# The paper's schedule for its 300-epoch CIFAR-10 run, as fractions of the run.
PAPER_EPOCHS = 300
WARMUP_FRACTION = 10 / PAPER_EPOCHS
LR_STEP_FRACTION = 150 / PAPER_EPOCHS
RAMPUP_FRACTION = 16 / PAPER_EPOCHS


def oracle_config(noise: str, rate: float) -> dict:
    """The paper's settings for `noise` (symmetric | asymmetric, or our pairflip | paper, which flip
    each class to one partner as asymmetric noise does) at the published rate nearest `rate`
    (ties: the lower rate). A dict of DivideMixClassifier parameters."""
    if noise not in NOISE_ALIASES:
        raise ValueError(f"noise: {noise!r} is not one of {', '.join(NOISE_ALIASES)}")
    if not 0 <= rate <= 1:
        raise ValueError(f"rate: {rate!r} is not in [0, 1]")
    kind = NOISE_ALIASES[noise]
    published = sorted(r for k, r in ORACLE_BY_NOISE if k == kind)
    nearest = min(published, key=lambda r: (abs(r - rate), r))
    return dict(ORACLE_BY_NOISE[(kind, nearest)])


# ------------------------------------------------------------------------------------ the schedule


@dataclass(frozen=True)
class Schedule:
    """A run in DivideMix epochs: `total`, the first `warmup` on cross-entropy, lr / 10 from
    `lr_step`, lambda_u ramped over `rampup` epochs (a float) after the warm-up."""

    total: int
    warmup: int
    lr_step: int
    rampup: float


def schedule_for(n: int, epochs: int, min_examples: int, warmup_fraction: float = WARMUP_FRACTION,
                 lr_step_fraction: float = LR_STEP_FRACTION, rampup_fraction: float = RAMPUP_FRACTION) -> Schedule:
    """The schedule for n training rows: `epochs`, or more until `min_examples` examples have passed
    in whole passes; warm-up (at least 1 epoch), lr step and ramp-up as the paper's fractions."""
    total = max(epochs, -(-min_examples // max(n, 1)))
    warmup = min(total, max(1, round(total * warmup_fraction)))
    return Schedule(total, warmup, round(total * lr_step_fraction), total * rampup_fraction)


# ------------------------------------------------------------------------------------ the classifier


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class DivideMixClassifier(NoisyLabelNetworks):
    """DivideMix (Li et al. 2020) on the registry's networks; see the module docstring.

    model, width, input_shape, augment, random_state, device: NoisyLabelNetworks'. epochs,
    min_examples: the budget (DivideMix epochs; at least min_examples examples in whole passes of
    the training set). batch_size (64: each step takes that many labelled and unlabelled examples;
    the warm-up twice as many), lr, momentum, weight_decay: the paper's SGD. alpha (Beta(alpha,
    alpha) for mixup), T (sharpening), lambda_u, lambda_r, p_threshold, confidence_penalty (the
    warm-up's negative entropy, asymmetric noise), loss_average_epochs (normalised losses averaged
    over this many epochs before the mixture; 5 for the paper's 90% noise). warmup_fraction,
    lr_step_fraction, rampup_fraction: the paper's 10, 150 and 16 epochs of 300.

    fit(X, y, X_pool=None): X_pool, rows shaped like X without labels, joins the unlabelled set.
    After fit: networks_ (2), flagged_ (bool [n], the noisy side of the final division),
    clean_probability_ (float64 [n]), schedule_ (the epochs it ran).
    """

    def __init__(self, model="mlp", *, width=0, input_shape=None, augment="none", random_state=None, device="cpu",
                 epochs=30, min_examples=300_000, batch_size=64, lr=0.02, momentum=0.9, weight_decay=5e-4,
                 alpha=4.0, T=0.5, lambda_u=PRACTITIONER["lambda_u"], lambda_r=1.0,
                 p_threshold=PRACTITIONER["p_threshold"], confidence_penalty=PRACTITIONER["confidence_penalty"],
                 loss_average_epochs=PRACTITIONER["loss_average_epochs"], warmup_fraction=WARMUP_FRACTION,
                 lr_step_fraction=LR_STEP_FRACTION, rampup_fraction=RAMPUP_FRACTION, optimizer="sgd"):
        super().__init__(model, width=width, input_shape=input_shape, augment=augment, random_state=random_state,
                         device=device)
        self.epochs = epochs
        self.min_examples = min_examples
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.alpha = alpha
        self.T = T
        self.lambda_u = lambda_u
        self.lambda_r = lambda_r
        self.p_threshold = p_threshold
        self.confidence_penalty = confidence_penalty
        self.loss_average_epochs = loss_average_epochs
        self.warmup_fraction = warmup_fraction
        self.lr_step_fraction = lr_step_fraction
        self.rampup_fraction = rampup_fraction
        self.optimizer = optimizer

    # ------------------------------------------------------------------------------------ fit

    def fit(self, X, y, X_pool=None):
        """X [n, ...] or flat rows, y [n] noisy labels; X_pool [m, ...] unlabelled rows shaped like
        X (the pool variant) or None (the paper's). Returns self."""
        self._check_params()
        self._pool = X_pool  # read by _train once X has fixed the input shape; never kept after fit
        try:
            return super().fit(X, y)
        finally:
            del self._pool

    def _check_params(self) -> None:
        """ValueError naming the parameter, its value and what is allowed."""
        def need(name, ok, allowed):
            value = getattr(self, name)
            if not ok(value):
                raise ValueError(f"{name}: {value!r} is not allowed; expected {allowed}")

        integer = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)  # noqa: E731
        need("epochs", lambda v: integer(v) and v >= 1, "an integer >= 1")
        need("min_examples", lambda v: integer(v) and v >= 0, "an integer >= 0")
        need("batch_size", lambda v: integer(v) and v >= 1, "an integer >= 1")
        need("loss_average_epochs", lambda v: integer(v) and v >= 1, "an integer >= 1")
        need("lr", lambda v: _is_number(v) and v > 0, "a number > 0")
        need("momentum", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
        need("weight_decay", lambda v: _is_number(v) and v >= 0, "a number >= 0")
        need("alpha", lambda v: _is_number(v) and v > 0, "a number > 0")
        need("T", lambda v: _is_number(v) and v > 0, "a number > 0")
        need("lambda_u", lambda v: _is_number(v) and v >= 0, "a number >= 0")
        need("lambda_r", lambda v: _is_number(v) and v >= 0, "a number >= 0")
        need("p_threshold", lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)")
        need("confidence_penalty", lambda v: isinstance(v, (bool, np.bool_)), "True or False")
        need("warmup_fraction", lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
        need("lr_step_fraction", lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
        need("rampup_fraction", lambda v: _is_number(v) and v >= 0, "a number >= 0")
        need("optimizer", lambda v: v in OPTIMIZERS, " or ".join(OPTIMIZERS))
        if not all(map(math.isfinite, (self.lr, self.alpha, self.T, self.lambda_u, self.lambda_r))):
            raise ValueError("lr, alpha, T, lambda_u, lambda_r: expected finite numbers")

    def _pool_inputs(self) -> torch.Tensor | None:
        """The pool as a tensor [m, *input_shape] (validated like X), or None."""
        if getattr(self, "_pool", None) is None:
            return None
        try:
            pool = validate_data(self, self._pool, reset=False, allow_nd=True, dtype=np.float32)
        except ValueError as err:
            raise ValueError(f"X_pool: {err}") from None
        return shaped_inputs(pool, self.input_shape_, name="X_pool")

    # ------------------------------------------------------------------------------------ training

    def _train(self, inputs: torch.Tensor, labels: torch.Tensor, seed: int) -> list[nn.Module]:
        """inputs float32 [n, ...], labels int64 [n] -> the two trained networks."""
        pool = self._pool_inputs()
        self.schedule_ = plan = schedule_for(len(inputs), self.epochs, self.min_examples, self.warmup_fraction,
                                             self.lr_step_fraction, self.rampup_fraction)
        seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(5)]
        nets = [self.new_network(inputs, seeds[0]), self.new_network(inputs, seeds[1])]
        optimizers = [new_optimizer(self.optimizer, net.parameters(), self.lr, self.momentum, self.weight_decay)
                      for net in nets]
        generator = torch.Generator().manual_seed(seeds[2])  # shuffles, augmentation, mixup pairs
        beta = np.random.default_rng(seeds[3])  # mixup's lambda
        gmm_seed = seeds[4]
        history: list[list[torch.Tensor]] = [[], []]  # each network's normalised losses per epoch
        for epoch in range(plan.total):
            for optimizer in optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = self.lr / 10 if epoch >= plan.lr_step else self.lr
            if epoch < plan.warmup:
                for net, optimizer in zip(nets, optimizers):
                    self._warm_up(net, optimizer, inputs, labels, generator)
                continue
            # both divisions before either network trains, as the code: w[k] from network k's losses
            w = [self._clean_probability(net, inputs, labels, history[k], gmm_seed) for k, net in enumerate(nets)]
            for k in (0, 1):  # co-divide: network k trains on the other network's division
                self._mixmatch_epoch(nets[k], nets[1 - k], optimizers[k], inputs, labels, w[1 - k], pool,
                                     epoch, generator, beta)
        final = [self._clean_probability(net, inputs, labels, history[k], gmm_seed) for k, net in enumerate(nets)]
        self.clean_probability_ = (final[0] + final[1]) / 2
        self.flagged_ = ~divide(self.clean_probability_, self.p_threshold)
        return nets

    def _batches(self, count: int, size: int, generator: torch.Generator):
        """A shuffled pass over range(count) in batches of `size` (the last one smaller), int64."""
        return torch.randperm(count, generator=generator).split(size)

    def _views(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One augmented view of the batch x (the batch itself where there is no augmentation)."""
        augment = self.augmentation()
        return x if augment is None else augment(x, generator)

    def _warm_up(self, net, optimizer, inputs, labels, generator) -> None:
        """One pass of cross-entropy over every example, in batches of 2 x batch_size (the code's
        warm-up loader); plus the confidence penalty for asymmetric noise."""
        net.train()
        for batch in self._batches(len(inputs), 2 * self.batch_size, generator):
            x = self._views(inputs[batch].to(self.device_), generator)
            logits = net(x)
            loss = F.cross_entropy(logits, labels[batch].to(self.device_))
            if self.confidence_penalty:
                loss = loss + negative_entropy(logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def _clean_probability(self, net, inputs, labels, history: list, seed: int) -> np.ndarray:
        """w float64 [n] from net's per-example cross-entropy (evaluation mode, no augmentation),
        normalised and averaged over the last loss_average_epochs epochs, then the mixture."""
        losses = F.cross_entropy(self.logits_of(net, inputs).double(), labels, reduction="none")
        history.append(normalise_losses(losses))
        del history[:-self.loss_average_epochs]  # only the epochs the average needs
        return mixture_clean_probability(torch.stack(history).mean(0), seed)

    def _mean_prediction(self, net, views: list[torch.Tensor]) -> torch.Tensor:
        """net's mean softmax float [B, C] over the views (one forward where they are one tensor)."""
        if len(views) == 2 and views[0] is views[1]:
            views = views[:1]
        return sum(torch.softmax(net(v), dim=1) for v in views) / len(views)

    def _mixmatch_epoch(self, net, other, optimizer, inputs, labels, w, pool, epoch, generator, beta) -> None:
        """One pass over the labelled side of `other`'s division w float64 [n], training net with
        co-refined labelled and co-guessed unlabelled targets, MixMatch's mixup and its losses."""
        device, classes = self.device_, len(self.classes_)
        labelled = labelled_side(w, self.p_threshold)
        lab_idx = torch.from_numpy(np.flatnonzero(labelled))
        unlabelled = inputs[torch.from_numpy(np.flatnonzero(~labelled))]
        if pool is not None:
            unlabelled = torch.cat([unlabelled, pool])
        weights = torch.from_numpy(w).float()
        unlabelled_stream = self._cycle(len(unlabelled), generator)
        batches = self._batches(len(lab_idx), self.batch_size, generator)
        net.train()
        other.eval()  # the co-guessing network is fixed while this one trains (the code's net2.eval())
        for b, batch in enumerate(batches):
            idx = lab_idx[batch]
            x = inputs[idx].to(device)
            x_views = [self._views(x, generator), self._views(x, generator)]
            onehot = F.one_hot(labels[idx], classes).float().to(device)
            u_views = []
            if len(unlabelled):
                u = unlabelled[next(unlabelled_stream)].to(device)
                u_views = [self._views(u, generator), self._views(u, generator)]
            with torch.no_grad():
                targets_x = co_refine(onehot, weights[idx].to(device), self._mean_prediction(net, x_views), self.T)
                targets = [targets_x, targets_x]
                if u_views:
                    targets_u = co_guess(self._mean_prediction(net, u_views), self._mean_prediction(other, u_views),
                                         self.T)
                    targets += [targets_u, targets_u]
            all_inputs = torch.cat(x_views + u_views)
            perm = torch.randperm(len(all_inputs), generator=generator).to(device)
            mixed_inputs, mixed_targets = mixmatch_mix(all_inputs, torch.cat(targets), float(beta.beta(self.alpha,
                                                                                                         self.alpha)),
                                                       perm)
            logits = net(mixed_inputs)
            n_x = 2 * len(idx)
            loss = soft_cross_entropy(logits[:n_x], mixed_targets[:n_x])
            if u_views:
                weight = unlabelled_weight(self.lambda_u, epoch + b / len(batches), self.schedule_.warmup,
                                           self.schedule_.rampup)
                loss = loss + weight * probability_mse(logits[n_x:], mixed_targets[n_x:])
            loss = loss + self.lambda_r * uniform_prior_penalty(logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        other.train()

    def _cycle(self, count: int, generator: torch.Generator):
        """Batches of min(batch_size, count) indices int64 into range(count), reshuffled whenever a
        pass ends (the code restarts its unlabelled loader); nothing when count is 0."""
        size = min(self.batch_size, count)
        while count:
            order = torch.randperm(count, generator=generator)
            for first in range(0, count - size + 1, size):
                yield order[first:first + size]
