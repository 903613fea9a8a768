"""A small registry of classifiers. Every model starts with the same input standardisation.

Inputs arrive as the dataset stores them: float features [N, L] (MNIST-1D) or images kept as
uint8, channels-last [N, H, W, C]. Each model standardises with the training set's statistics
(stored as buffers, so a checkpoint carries them) and reshapes for its layers: one
normalisation for teachers, students and labelling, never three.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from rolemodels.errors import UserError


def input_stats(x: torch.Tensor, chunk: int = 65536, per_feature: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the training inputs: per channel for [N, H, W, C] images, per feature (each
    column of the flattened rows) with `per_feature`, else one scalar.

    x: uint8 or float [N, ...] (may be memory-mapped; read in chunks). Returns float32 tensors of
    shape [C] (images), [D] (per feature, D = the product of x.shape[1:]) or [1]. A feature that
    does not vary gets std 1, so it is only centred (as scikit-learn's StandardScaler does).
    """
    per_channel = x.dim() == 4 and not per_feature
    total = count = total_sq = 0.0
    for start in range(0, x.shape[0], chunk):
        part = torch.as_tensor(x[start:start + chunk]).to(torch.float64)
        if per_channel or per_feature:
            part = part.reshape(-1, part.shape[-1]) if per_channel else part.reshape(len(part), -1)
            total = total + part.sum(0)
            total_sq = total_sq + (part * part).sum(0)
            count += part.shape[0]
        else:
            total += part.sum().item()
            total_sq += (part * part).sum().item()
            count += part.numel()
    mean = torch.as_tensor(total / count, dtype=torch.float64)
    var = torch.as_tensor(total_sq / count, dtype=torch.float64) - mean * mean
    if per_feature:  # constant columns: centred, not divided by a rounding error
        constant = var <= 1e-12 * mean.abs().clamp_min(1.0) ** 2
        var = torch.where(constant, torch.ones_like(var), var)
    std = var.clamp_min(1e-12).sqrt()
    return mean.float().reshape(-1), std.float().reshape(-1)


# Columns on one scale (pixels, a signal's samples) share one mean and std: scaling each on its
# own blows up the rare values of near-constant columns (digits' edge pixels: the estimator's
# student lost 2.5-5.1 points on compare.py's digits settings). Columns on scales this many times
# apart (a table's raw columns) each get their own.
SCALES_APART = 10.0


def model_input_stats(name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """input_stats as the registered network `name` standardises. A network of flat rows (mlp)
    standardises each feature on its own when the features' scales (root mean square) are more
    than SCALES_APART times apart (the largest against the median), else with one mean and std."""
    if not (name in MODELS and MODELS[name].per_feature):
        return input_stats(x)
    mean, std = input_stats(x, per_feature=True)
    return (mean, std) if scales_apart(mean, std) else input_stats(x)


def scales_apart(mean: torch.Tensor, std: torch.Tensor) -> bool:
    """Whether features with these means and stds [D] are on scales more than SCALES_APART times
    apart: the largest root mean square against the median one (constant-zero features aside)."""
    rms = (mean.double() ** 2 + std.double() ** 2).sqrt()
    varying = rms[rms > 0]
    return bool(len(varying) and varying.max() > SCALES_APART * varying.median())


class FinalLinear(nn.Linear):
    """The last layer of every network: a Linear whose logits are float32 at inference.

    Under bf16 autocast a plain Linear returns bf16 logits (8 bits of mantissa), so near-ties
    become exact ties and argmax picks the lowest class; labels and the vote's tie-break would be
    decided by rounding. In eval mode this layer runs in float32 outside autocast (one small
    matrix product); in training it is a plain Linear, as autocast makes it (the loss upcasts).
    Its parameters are a Linear's, so state_dict keys are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.float(), self.weight.float(), None if self.bias is None else self.bias.float())


class Standardize(nn.Module):
    """(x - mean) / std with the training set's statistics, then the layout the body expects."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, layout: str):
        super().__init__()
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clone())
        # "signal": [N, L] -> [N, 1, L]; "image": NHWC -> NCHW; "flat": [N, D]; "keep": as given
        # (a user's own network, which expects its inputs as they come)
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "flat":  # rows first: a per-feature mean is [D]
            x = x.flatten(1)
        x = (x.float() - self.mean) / self.std  # broadcasts over the last (channel or feature) axis
        if self.layout == "signal":
            return x.flatten(1).unsqueeze(1)
        if self.layout == "image":
            # NHWC seen as NCHW: the elementwise result above is dense NHWC, so this view already
            # has channels_last strides, no copy needed (and `contiguous(channels_last)` cannot
            # run under vmap, which trains several models as one: training/train_many.py).
            return x.permute(0, 3, 1, 2)
        return x  # flat, or keep


class CNN1d(nn.Module):
    """1-D CNN for signals such as MNIST-1D: four convolutions and a wide head that can memorise."""

    def __init__(self, length: int, num_classes: int, width: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, width, 5, padding=2), nn.ReLU(),
            nn.Conv1d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv1d(width, width, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv1d(width, width, 3, padding=1), nn.ReLU(),
        )
        hidden = 16 * width
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(width * ((length + 1) // 2), hidden), nn.ReLU(), FinalLinear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CNN2d(nn.Module):
    """Small 2-D CNN for 28x28 or 32x32 images: fast on a CPU, wide enough to interpolate."""

    def __init__(self, channels: int, height: int, width_px: int, num_classes: int, width: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1, stride=2), nn.ReLU(),
        )
        flat = 4 * width * ((height + 3) // 4) * ((width_px + 3) // 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 8 * width), nn.ReLU(), FinalLinear(8 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class WideCNN2d(nn.Module):
    """Two stride-2 convolutions and one wide hidden layer, for small images on a CPU.

    Most of its parameters sit in the hidden layer (32 x width units), a single matrix multiply,
    which CPUs run near their peak; so it fits 10,000 noisy Fashion-MNIST labels (>= 99%) in 18
    epochs at about half the FLOPs of `cnn2d` (measured in docs/benchmarks.md).
    """

    def __init__(self, channels: int, height: int, width_px: int, num_classes: int, width: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU(),
        )
        flat = width * ((height + 3) // 4) * ((width_px + 3) // 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 32 * width), nn.ReLU(),
                                  FinalLinear(32 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.stride = stride
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            # The projection is a 1x1 convolution of stride `stride`, applied as a stride-1 one to
            # every stride-th pixel (the same function and the same parameters): torch 2.13's CPU
            # backward of a strided 1x1 convolution on channels_last inputs with 2-7 channels
            # crashes the process on AVX2 processors (seen on an AMD EPYC; tests/test_models.py).
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x[:, :, ::self.stride, ::self.stride]))


class ResNet18(nn.Module):
    """CIFAR ResNet-18 as in the paper's code: 3x3 stride-1 stem, no max-pool, base width 64."""

    def __init__(self, channels: int, num_classes: int, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, inputs = [], width
        for stage, stride in enumerate((1, 2, 2, 2)):
            outputs = width * 2**stage
            layers += [BasicBlock(inputs, outputs, stride), BasicBlock(outputs, outputs, 1)]
            inputs = outputs
        self.layers = nn.Sequential(*layers)
        self.fc = FinalLinear(inputs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The global average as a mean: its backward is deterministic on CUDA, where
        # adaptive_avg_pool2d's uses atomics (same numbers as adaptive_avg_pool2d(out, 1) on CPUs).
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


class MLP(nn.Module):
    """Three-layer perceptron for inputs of any shape (flattened)."""

    def __init__(self, features: int, num_classes: int, width: int):
        super().__init__()
        hidden = 16 * width
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 FinalLinear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _image_dims(shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    if len(shape) == 3:
        height, width_px, channels = shape
        return height, width_px, channels
    raise UserError(f"model {name} needs images [N, H, W, C]; the data has examples of shape {list(shape)}")


def _signal_length(shape: tuple[int, ...], name: str) -> int:
    if len(shape) == 1:
        return shape[0]
    raise UserError(f"model {name} needs 1-D signals [N, L]; the data has examples of shape {list(shape)} (try model=mlp)")


Builder = Callable[[tuple[int, ...], int, int], tuple[nn.Module, str]]


@dataclass(frozen=True)
class ModelSpec:
    """One registered network: how to build its body, its default width and a usual input shape."""

    build: Builder  # (input_shape, num_classes, width) -> (body, Standardize layout)
    default_width: int
    usual_shape: tuple[int, ...]  # one example's shape, e.g. (40,) or (32, 32, 3); what `rolemodels models` lists
    description: str
    # The usual augmentation of its inputs, what `augment = "auto"` trains it with: circular shifts
    # of 1-D signals, padded crops and flips of images, none for flat feature vectors (the order of
    # a table's columns means nothing, so there is no shift or flip to make)
    augment: str
    # Standardised per feature where its features' scales differ (model_input_stats): a table's raw
    # columns come on their own scales (one near 5e4 would shrink the others to 1e-5 of their range)
    per_feature: bool = False


MODELS: dict[str, ModelSpec] = {
    "cnn1d": ModelSpec(lambda s, c, w: (CNN1d(_signal_length(s, "cnn1d"), c, w), "signal"), 32, (40,),
                       "1-D CNN for signals [L] (MNIST-1D)", "shift"),
    "cnn2d": ModelSpec(lambda s, c, w: (CNN2d(_image_dims(s, "cnn2d")[2], *_image_dims(s, "cnn2d")[:2], c, w),
                                        "image"), 32, (32, 32, 3),
                       "small 2-D CNN for images [H, W, C] (Fashion-MNIST, quick CIFAR runs)", "crop_flip"),
    "cnn2d_wide": ModelSpec(lambda s, c, w: (WideCNN2d(_image_dims(s, "cnn2d_wide")[2],
                                                       *_image_dims(s, "cnn2d_wide")[:2], c, w), "image"),
                            32, (28, 28, 1),
                            "2-D CNN, two strided convolutions and a wide hidden layer: interpolates quickly on a CPU",
                            "crop_flip"),
    "resnet18": ModelSpec(lambda s, c, w: (ResNet18(_image_dims(s, "resnet18")[2], c, w), "image"), 64, (32, 32, 3),
                          "CIFAR ResNet-18 (3x3 stem, no max-pool), the paper's model", "crop_flip"),
    "mlp": ModelSpec(lambda s, c, w: (MLP(math.prod(s), c, w), "flat"), 32, (40,),
                     "3-layer MLP for inputs of any shape", "none", per_feature=True),
}


# Non-neural samplers (rolemodels.method.samplers) can be teachers, not students.
SAMPLERS = {"knn": "k-nearest neighbours (k=1: a sampler)", "kernel": "minimum-norm Laplace-kernel interpolation"}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, width: int = 0,
                mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> nn.Sequential:
    """Standardize + body. width 0 takes the model's default width. mean/std default to 0/1."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    spec = MODELS[name]
    body, layout = spec.build(tuple(input_shape), num_classes, width or spec.default_width)
    mean = torch.zeros(1) if mean is None else mean
    std = torch.ones(1) if std is None else std
    return nn.Sequential(Standardize(mean, std, layout), body)


def has_batch_norm(name: str) -> bool:
    """Whether the registered network `name` has BatchNorm layers (SyncBatchNorm under DDP on GPUs)."""
    spec = MODELS[name]
    body, _ = spec.build(spec.usual_shape, 2, 1)
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in body.modules())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
