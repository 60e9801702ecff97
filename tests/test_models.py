"""gradschool.models: the MLP builder's block structure and linear_layers."""

import pytest
import torch
from torch import nn

from gradschool.models import linear_layers, mlp


def test_mlp_default_structure():
    model = mlp([64, 32, 10])
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]
    assert model[0].weight.shape == (32, 64) and model[2].weight.shape == (10, 32)
    assert model(torch.randn(5, 64)).shape == (5, 10)


def test_mlp_full_block_order():
    model = mlp([8, 16, 16, 4], activation=nn.Tanh, norm=nn.LayerNorm, dropout=0.25)
    kinds = [type(m) for m in model]
    block = [nn.Linear, nn.LayerNorm, nn.Tanh, nn.Dropout]
    assert kinds == block + block + [nn.Linear]
    assert model[1].normalized_shape == (16,) and model[3].p == 0.25
    assert not any(isinstance(m, nn.Dropout) for m in mlp([8, 4, 2]))


def test_mlp_bias_and_init_hook():
    calls = []
    model = mlp([3, 5, 2], bias=False, init=calls.append)
    assert calls == [model]
    assert all(layer.bias is None for layer in linear_layers(model))


def test_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError):
        mlp([10])
    with pytest.raises(ValueError):
        mlp([2, 2], dropout=1.0)


def test_linear_layers_in_order_and_identity():
    model = mlp([4, 6, 7, 3])
    layers = linear_layers(model)
    assert [layer.out_features for layer in layers] == [6, 7, 3]
    assert layers[1] is model[2]
    nested = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Linear(2, 1)))
    assert [layer.out_features for layer in linear_layers(nested)] == [2, 1]
