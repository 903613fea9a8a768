"""Co-teaching (Han et al., NeurIPS 2018, "Co-teaching: Robust training of deep neural networks with
extremely noisy labels"), written from the paper's Algorithm 1 and its official code
(github.com/bhanML/Co-teaching, main.py and loss.py).

Two networks f and g of the same architecture and different initial weights see the same
mini-batches. In each batch, each network ranks the examples by its own cross-entropy and keeps
the R(T) share with the smallest loss; f is then updated on g's kept examples and g on f's (the
exchange: an error one network makes in its selection is not fed back to itself).
R(T) = 1 - tau * min(T / T_k, 1), T the epochs finished so far, so the first epoch keeps every
example and the forget rate tau is reached after T_k epochs.

The paper's settings (Section 4, "Network structure and optimizer", "Experimental setup"):
tau = the noise rate epsilon, T_k = 10, Adam with lr 0.001 ("momentum" beta1 = 0.9), batch 128,
200 epochs. The official code (main.py) adds what the paper's text leaves out: from epoch 80 of 200
the learning rate falls linearly, lr * (200 - e) / (200 - 80) in epoch e, and Adam's beta1 is 0.1
(a step from 0.9, not a ramp; beta2 stays 0.999).

Adaptations here, for training sets of 400-10,000 rows and the registry's networks:
- networks: the registry's (`model`: mlp, cnn1d, cnn2d_wide, ...), not the paper's 9-layer CNN with
  dropout; both from `new_network`, with the seeds `seed` and `seed + 1`.
- budget: `epochs` (default the paper's 200) or more passes until `min_examples` examples have been
  seen (FitSpec.epochs_for); T_k and the decay start are the paper's fractions of its 200-epoch
  run, T_k = round(epochs * 10 / 200) (at least 1) and decay start = round(epochs * 80 / 200).
- batches: every example in every epoch, the last batch smaller (the official loader drops the
  last partial batch), so that `flagged_` covers every row.
- loss: the mean cross-entropy over the kept examples (the official loss.py divides that mean once
  more by the number kept, a constant factor that Adam's normalisation all but cancels).
- prediction: the mean probability of both networks (the base class's), not network 1's alone:
  the two are trained symmetrically and neither is "the" model, and the ELR paper (Liu et al.
  2020, Appendix G.3) names averaging the two networks at inference as customary for methods that
  train two (DivideMix does). The official code reports each network's accuracy separately.
- `flagged_`: the training examples that BOTH networks rejected (large loss) in the last epoch. At
  forget rate tau each network rejects about tau of every batch; the rows both reject are those
  whose label two differently initialised networks find unlikely, which favours precision over
  recall (the rows either network rejected are in `rejected_`, bool [n, 2], for the other choice).

Configurations the benchmark reads: `oracle_config(noise, rate)` (the paper's tau = the true
noise rate, for any noise) and `PRACTITIONER` (a fixed tau = 0.2, chosen without
clean labels: the official code's default noise rate, which it uses as the forget rate when none
is given).
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.networks import NoisyLabelNetworks
from rolemodels.recipe import FitSpec

PAPER_EPOCHS = 200
PAPER_RAMP_EPOCHS = 10  # T_k
PAPER_DECAY_START = 80  # official main.py: epoch_decay_start for MNIST and CIFAR-10
ADAM_BETA1 = 0.9
ADAM_BETA1_DECAYED = 0.1  # official main.py: mom2, from the decay start on
ADAM_BETA2 = 0.999

# What a practitioner sets without clean labels: the official code's default rate (--noise_rate
# 0.2, the forget rate when --forget_rate is not given). Under heavier noise it forgets too few.
PRACTITIONER = {"forget_rate": 0.2}


def oracle_config(noise: str, rate: float) -> dict:
    """The paper's setting for this noise: tau = the true noise rate epsilon, whatever the noise
    (the paper sets it so for symmetric and pair noise alike, Section 4); `noise` is taken for the
    signature the baselines share. A dict of CoTeachingClassifier parameters."""
    check_fraction("rate", rate, "[0, 1): the noise rate, which co-teaching forgets")
    return {"forget_rate": float(rate)}


# ------------------------------------------------------------------------------------------ parts


def forget_rate_at(epoch: int, forget_rate: float, ramp_epochs: int) -> float:
    """The share of each batch a network drops in `epoch` (0-based: the epochs finished before
    it): tau * min(epoch / T_k, 1), i.e. 1 - R(T) of the paper, 0 in the first epoch."""
    return forget_rate * min(epoch / ramp_epochs, 1.0)


def keep_count(batch: int, forget: float) -> int:
    """How many of a batch of `batch` examples a network keeps: int((1 - forget) * batch) as the
    official loss.py counts, but at least 1 so that a small last batch still gives a gradient."""
    return max(1, int((1.0 - forget) * batch))


def small_loss_selection(losses: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices int64 [keep] of the `keep` smallest of losses float [B], smallest first; ties go to
    the earlier row (a stable sort), so the selection does not depend on the kernel."""
    return torch.argsort(losses, stable=True)[:keep]


def exchange_losses(logits_a: torch.Tensor, logits_b: torch.Tensor, labels: torch.Tensor, keep: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Co-teaching's exchange on one batch: logits_a, logits_b float [B, C] of networks A and B,
    labels int64 [B]. Each network picks its `keep` small-loss rows; A's loss is its mean
    cross-entropy on B's picks and B's on A's.

    Returns (loss_a, loss_b, chosen_a, chosen_b): two scalars and the picks int64 [keep]."""
    with torch.no_grad():  # the ranking is a choice of rows, not part of the objective
        chosen_a = small_loss_selection(F.cross_entropy(logits_a.float(), labels, reduction="none"), keep)
        chosen_b = small_loss_selection(F.cross_entropy(logits_b.float(), labels, reduction="none"), keep)
    loss_a = F.cross_entropy(logits_a[chosen_b].float(), labels[chosen_b])
    loss_b = F.cross_entropy(logits_b[chosen_a].float(), labels[chosen_a])
    return loss_a, loss_b, chosen_a, chosen_b


def coteaching_step(net_a: nn.Module, net_b: nn.Module, opt_a: torch.optim.Optimizer, opt_b: torch.optim.Optimizer,
                    inputs: torch.Tensor, labels: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One update of both networks on a batch (inputs [B, ...], labels int64 [B]): A steps on B's
    small-loss rows and B on A's. Returns (chosen_a, chosen_b), the rows each network kept."""
    loss_a, loss_b, chosen_a, chosen_b = exchange_losses(net_a(inputs), net_b(inputs), labels, keep)
    opt_a.zero_grad(set_to_none=True)
    loss_a.backward()
    opt_a.step()
    opt_b.zero_grad(set_to_none=True)
    loss_b.backward()
    opt_b.step()
    return chosen_a, chosen_b


def adam_plan(epoch: int, epochs: int, lr: float, decay_start: int) -> tuple[float, float]:
    """(learning rate, Adam's beta1) in `epoch` (0-based) of `epochs`, as the official main.py
    plans them: lr and 0.9 before `decay_start`; from it on lr * (epochs - epoch) / (epochs -
    decay_start), falling linearly towards 0, and beta1 = 0.1."""
    if epoch < decay_start:
        return lr, ADAM_BETA1
    return lr * (epochs - epoch) / (epochs - decay_start), ADAM_BETA1_DECAYED


def ramp_epochs_for(epochs: int) -> int:
    """T_k for a run of `epochs`: the paper's 10 of 200 epochs, at least 1."""
    return max(1, round(epochs * PAPER_RAMP_EPOCHS / PAPER_EPOCHS))


def decay_start_for(epochs: int) -> int:
    """The epoch the learning rate starts to fall in a run of `epochs`: the official 80 of 200."""
    return round(epochs * PAPER_DECAY_START / PAPER_EPOCHS)


def set_adam(opt: torch.optim.Optimizer, lr: float, beta1: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
        group["betas"] = (beta1, ADAM_BETA2)


# ------------------------------------------------------------------------------------------ classifier


class CoTeachingClassifier(NoisyLabelNetworks):
    """Co-teaching as a scikit-learn classifier (see the module's docstring for the method, the
    paper's settings and what is adapted).

    forget_rate: tau in [0, 1), the share of each batch each network drops once the ramp is done
    (the paper: the noise rate; `oracle_config`, `PRACTITIONER`). epochs, min_examples: passes,
    or more until min_examples examples have been seen. lr: Adam's initial learning rate.
    batch_size: 128 in the paper. The base's model, width, input_shape, augment, random_state,
    device as in NoisyLabelNetworks.

    After fit: networks_ (the two networks), flagged_ bool [n] (rejected by both networks in the
    last epoch), rejected_ bool [n, 2] (by network 1, by network 2), epochs_ (passes trained).
    """

    def __init__(self, model="mlp", *, forget_rate=PRACTITIONER["forget_rate"], epochs=PAPER_EPOCHS,
                 min_examples=0, lr=0.001, batch_size=128, width=0, input_shape=None, augment="none",
                 random_state=None, device="cpu"):
        super().__init__(model, width=width, input_shape=input_shape, augment=augment,
                         random_state=random_state, device=device)
        self.forget_rate = forget_rate
        self.epochs = epochs
        self.min_examples = min_examples
        self.lr = lr
        self.batch_size = batch_size

    def _check_params(self) -> None:
        check_fraction("forget_rate", self.forget_rate, "[0, 1): the share of each batch a network drops")
        check_count("epochs", self.epochs, 1)
        check_count("min_examples", self.min_examples, 0)
        check_count("batch_size", self.batch_size, 1)
        check_positive("lr", self.lr)

    def _train(self, inputs: torch.Tensor, labels: torch.Tensor, seed: int) -> list[nn.Module]:
        """inputs [n, ...] float32, labels int64 [n] (encoded classes); returns the two networks."""
        self._check_params()
        n = len(labels)
        epochs = FitSpec(epochs=self.epochs, min_examples=self.min_examples).epochs_for(n)
        ramp, decay_start = ramp_epochs_for(epochs), decay_start_for(epochs)
        nets = [self.new_network(inputs, seed), self.new_network(inputs, seed + 1)]
        opts = [torch.optim.Adam(net.parameters(), lr=self.lr, betas=(ADAM_BETA1, ADAM_BETA2)) for net in nets]
        shuffle = torch.Generator().manual_seed(seed + 2)
        augment, augment_gen = self.augmentation(), torch.Generator(device=self.device_).manual_seed(seed + 3)
        x, y = inputs.to(self.device_), labels.to(self.device_)
        rejected = torch.zeros(n, 2, dtype=torch.bool)
        for epoch in range(epochs):
            lr, beta1 = adam_plan(epoch, epochs, self.lr, decay_start)
            for opt in opts:
                set_adam(opt, lr, beta1)
            forget = forget_rate_at(epoch, self.forget_rate, ramp)
            rejected[:] = True  # rewritten every epoch: what stays is the last epoch's verdict
            for idx in torch.randperm(n, generator=shuffle).split(self.batch_size):
                on_device = idx.to(self.device_)
                xb = x[on_device] if augment is None else augment(x[on_device], augment_gen)
                chosen_a, chosen_b = coteaching_step(*nets, *opts, xb, y[on_device], keep_count(len(idx), forget))
                rejected[idx[chosen_a.cpu()], 0] = False
                rejected[idx[chosen_b.cpu()], 1] = False
            check_finite_nets(nets, epoch)
        self.epochs_ = epochs
        self.rejected_ = rejected.numpy()
        self.flagged_ = self.rejected_.all(1)
        return [net.eval() for net in nets]


# ------------------------------------------------------------------------------------------ checks
# (shared with baselines.elr)


def check_fraction(name: str, value, allowed: str, closed_top: bool = False) -> None:
    """value must be a real number in [0, 1) ([0, 1] with closed_top)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value and (
        value <= 1 if closed_top else value < 1)
    if not ok:
        raise ValueError(f"{name}: {value!r} is not in {allowed}")


def check_count(name: str, value, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name}: {value!r} is not an integer >= {least}")


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: {value!r} is not a finite number > 0")


def check_nonnegative(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: {value!r} is not a finite number >= 0")


def check_finite_nets(nets: list[nn.Module], epoch: int) -> None:
    """A diverged network is no result: stop and say where."""
    for i, net in enumerate(nets):
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise ValueError(f"network {i + 1}'s weights became non-finite in epoch {epoch + 1}; "
                             f"lower lr or check the inputs for extreme values")
