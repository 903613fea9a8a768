"""The model registry: every model takes its data's layout, refuses the wrong one, and can memorise."""
from __future__ import annotations

import pytest
import torch

from rolemodels.errors import UserError
from rolemodels.models import MODELS, build_model, count_parameters, input_stats, model_input_stats
from rolemodels.runtime.device import predict_logits
from rolemodels.training.train import FitSpec, fit, fixed_targets

SHAPES = {"cnn1d": (40,), "cnn2d": (28, 28, 1), "cnn2d_wide": (28, 28, 1), "resnet18": (32, 32, 3), "mlp": (7, 3)}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_every_registered_model_has_a_shape_here():
    assert set(SHAPES) == set(MODELS)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_model_maps_its_inputs_to_class_logits(name):
    shape = SHAPES[name]
    torch.manual_seed(0)
    model = build_model(name, shape, 7, width=4 if name == "resnet18" else 0).eval()
    x = torch.randint(0, 256, (3, *shape), dtype=torch.uint8) if len(shape) == 3 else torch.randn(3, *shape)
    out = model(x)
    assert out.shape == (3, 7) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # the output depends on the input


@pytest.mark.parametrize("name", ["cnn2d", "cnn2d_wide", "resnet18"])
def test_image_models_refuse_signals(name):
    with pytest.raises(UserError, match="needs images"):
        build_model(name, (40,), 10)


def test_wide_cnn_is_mostly_its_hidden_layer():
    model = build_model("cnn2d_wide", (28, 28, 1), 10)  # width 32: 32 and 32 channels, 1,024 hidden units
    hidden = model[1].head[1]
    assert hidden.out_features == 1024 and hidden.in_features == 32 * 7 * 7
    assert hidden.weight.numel() > 0.9 * count_parameters(model)


def test_wide_cnn_memorises_random_labels():
    """A teacher must interpolate noisy labels: the wide CNN fits labels that carry no signal."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (256, 28, 28, 1), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (256,), generator=gen)
    torch.manual_seed(0)
    model = build_model("cnn2d_wide", (28, 28, 1), 10, width=8, mean=torch.tensor([127.5]), std=torch.tensor([74.0]))
    fit(model, x, fixed_targets(y), FitSpec(epochs=40, batch_size=32, lr=3e-3), seed=0, device=torch.device("cpu"),
        precision="fp32")
    fitted = (predict_logits(model, x, torch.device("cpu"), "fp32").argmax(1) == y).float().mean()
    assert fitted == 1.0


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_model_builds_on_its_usual_shape(name):
    """`rolemodels models` lists each model at its registered usual shape: it must build there."""
    model = build_model(name, MODELS[name].usual_shape, 10)
    assert count_parameters(model) > 0


def test_downsampling_shortcut_is_a_strided_1x1_convolution():
    from rolemodels.models import BasicBlock

    torch.manual_seed(0)
    block = BasicBlock(4, 8, stride=2).eval()
    x = torch.randn(3, 4, 9, 9).contiguous(memory_format=torch.channels_last)
    conv, bn = block.shortcut
    expected = bn(torch.nn.functional.conv2d(x, conv.weight, stride=2))
    assert torch.allclose(block.shortcut(x[:, :, ::2, ::2]), expected, atol=1e-6)


@pytest.mark.parametrize("width", [2, 3, 4, 7])
def test_narrow_resnet18_trains_on_channels_last_images(width):
    """Its projections have 2-7 input channels, where a strided 1x1 convolution's backward
    crashed torch 2.13 on AVX2 processors; a crash here ends the whole test run."""
    torch.manual_seed(0)
    model = build_model("resnet18", (16, 16, 3), 10, width, torch.zeros(3), torch.ones(3))
    x = torch.randn(4, 16, 16, 3)
    model(x).logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_per_feature_statistics_scale_each_column_and_only_centre_a_constant_one():
    x = torch.tensor([[1.0, 5e4, 7.0], [3.0, 5.2e4, 7.0], [5.0, 5.4e4, 7.0]])
    mean, std = input_stats(x, per_feature=True)
    torch.testing.assert_close(mean, torch.tensor([3.0, 5.2e4, 7.0]))
    torch.testing.assert_close(std, torch.tensor([(8 / 3) ** 0.5, 2000 * (2 / 3) ** 0.5, 1.0]))
    assert input_stats(x)[0].shape == (1,)  # the default: one mean for everything
    assert input_stats(torch.zeros(4, 2, 2, 3))[0].shape == (3,)  # images: per channel


def test_only_the_mlp_standardises_per_feature_and_only_columns_on_different_scales():
    x = torch.randn(10, 7, 3) * (10 ** torch.linspace(-2, 3, 21)).reshape(7, 3)  # scales 0.01 to 1,000
    assert model_input_stats("mlp", x)[0].shape == (21,)  # each flattened feature of an example
    assert model_input_stats("cnn1d", torch.randn(10, 40) * torch.linspace(1, 1e4, 40))[0].shape == (1,)
    # pixels: one scale, some columns nearly constant; one mean and std keeps their rare values small
    pixels = torch.randint(0, 17, (50, 64)).float()
    pixels[:, :8] = 0.0
    pixels[0, :8] = 3.0
    assert model_input_stats("mlp", pixels)[0].shape == (1,)
    model = build_model("mlp", (7, 3), 4, 8, *model_input_stats("mlp", x))
    standardised = model[0](x)
    torch.testing.assert_close(standardised.mean(0), torch.zeros(21), atol=1e-5, rtol=0)
    torch.testing.assert_close(standardised.std(0, unbiased=False), torch.ones(21), atol=1e-4, rtol=0)
