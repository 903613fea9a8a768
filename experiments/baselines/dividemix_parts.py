"""DivideMix's pieces (experiments/baselines/dividemix.py has the method and its sources), each a
function on arrays: the division of a noisy set by a two-component mixture on its losses, label
co-refinement and co-guessing, MixMatch's mixup, and the losses."""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

# ------------------------------------------------------------------------------------ the division


def normalise_losses(losses: torch.Tensor) -> torch.Tensor:
    """Min-max normalised losses float64 [n] in [0, 1]; all zeros when every loss is equal."""
    losses = torch.as_tensor(losses, dtype=torch.float64).reshape(-1)
    span = losses.max() - losses.min()
    if span <= 0:
        return torch.zeros_like(losses)
    return (losses - losses.min()) / span


def mixture_clean_probability(values: torch.Tensor, seed: int) -> np.ndarray:
    """Posterior float64 [n] of the smaller-mean component of a 2-component Gaussian mixture fitted
    to values [n] (already normalised), with the paper's settings. Every example is clean (1.0)
    where the values do not vary: there is nothing to divide."""
    x = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    if len(x) < 2 or np.ptp(x) <= 0:
        return np.ones(len(x))
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 10 iterations is the paper's choice
        gmm.fit(x)
    return gmm.predict_proba(x)[:, int(gmm.means_.argmin())]


def clean_probability(losses: torch.Tensor, seed: int) -> np.ndarray:
    """Each example's clean probability w float64 [n] from its loss float [n]: min-max normalise,
    then the 2-component mixture's posterior of the low-loss component."""
    return mixture_clean_probability(normalise_losses(losses), seed)


def divide(w: np.ndarray, threshold: float) -> np.ndarray:
    """The labelled (clean) side bool [n]: w > threshold; the rest is unlabelled."""
    return np.asarray(w) > threshold


def labelled_side(w: np.ndarray, threshold: float) -> np.ndarray:
    """divide(w, threshold), but never empty: where nothing passes the threshold (a degenerate
    mixture on tiny data) the examples whose w is at least the median are labelled. bool [n]."""
    labelled = divide(w, threshold)
    if not labelled.any():
        labelled = np.asarray(w) >= np.median(w)
    return labelled


# ------------------------------------------------------------------------------------ the targets


def sharpen(p: torch.Tensor, T: float) -> torch.Tensor:
    """p^(1/T) renormalised over the last axis: p float [B, C] -> float [B, C], rows summing to 1."""
    p = p ** (1.0 / T)
    return p / p.sum(dim=-1, keepdim=True)


def co_refine(labels_onehot: torch.Tensor, w: torch.Tensor, p: torch.Tensor, T: float) -> torch.Tensor:
    """Label co-refinement: sharpen(w y + (1 - w) p, T) for the labelled batch; labels_onehot
    float [B, C], w float [B] (the other network's clean probability), p float [B, C] (the trained
    network's mean prediction over the views). float [B, C]."""
    w = w.reshape(-1, 1).to(p.dtype)
    return sharpen(w * labels_onehot + (1 - w) * p, T)


def co_guess(p_a: torch.Tensor, p_b: torch.Tensor, T: float) -> torch.Tensor:
    """Label co-guessing: sharpen((p_a + p_b) / 2, T), each network's mean prediction over the
    views float [B, C]. float [B, C]."""
    return sharpen((p_a + p_b) / 2, T)


def mixmatch_mix(inputs: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor):
    """MixMatch's mixup: each example with the one `perm` pairs it with, weighted
    lambda' = max(lam, 1 - lam) >= 1/2 towards itself, so a mix stays nearer its own input and its
    labelled / unlabelled role holds. inputs float [N, ...], targets float [N, C], perm int64 [N].
    Returns (mixed inputs [N, ...], mixed targets [N, C])."""
    lam = max(lam, 1.0 - lam)
    return lam * inputs + (1 - lam) * inputs[perm], lam * targets + (1 - lam) * targets[perm]


# ------------------------------------------------------------------------------------ the losses


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_x: -mean_b sum_c targets log softmax(logits); logits, targets float [B, C]. A scalar."""
    return -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()


def probability_mse(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_u: mean over the batch and classes of (softmax(logits) - targets)^2 (the code's mean over
    B x C entries). logits, targets float [B, C]. A scalar."""
    return ((torch.softmax(logits, dim=1) - targets) ** 2).mean()


def uniform_prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """L_reg: sum_c pi_c log(pi_c / mean_b p_c) with pi uniform, the KL of the uniform prior from the
    batch's mean prediction; it keeps the network from putting every example in one class.
    logits float [B, C]. A scalar >= 0."""
    mean = torch.softmax(logits, dim=1).mean(dim=0)
    prior = torch.full_like(mean, 1.0 / mean.numel())
    return (prior * torch.log(prior / mean)).sum()


def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The warm-up's confidence penalty for asymmetric noise: mean_b sum_c p log p (the negative
    entropy; adding it pushes predictions away from confidence). logits float [B, C]. A scalar."""
    log_p = F.log_softmax(logits, dim=1)
    return (log_p.exp() * log_p).sum(dim=1).mean()


def unlabelled_weight(lambda_u: float, progress: float, warmup: int, rampup: float) -> float:
    """lambda_u ramped up linearly: lambda_u * clip((progress - warmup) / rampup, 0, 1), progress
    in epochs (epoch + batch / batches); the full weight at once where rampup is 0."""
    if rampup <= 0:
        return float(lambda_u) if progress >= warmup else 0.0
    return float(lambda_u) * float(np.clip((progress - warmup) / rampup, 0.0, 1.0))
