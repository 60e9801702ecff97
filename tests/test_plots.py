"""gradschool.plots: each plot draws what it says, labelled, and returns its Axes/Figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradschool.data import quadratic, rosenbrock
from gradschool.plots import heatmap, layer_histograms, learning_curves, trajectories_2d
from gradschool.training import History


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def history(scale=1.0, steps=40, epochs=4):
    return History(
        loss=[scale / (1 + i) for i in range(steps)],
        train_accuracy=[0.5 + 0.1 * e for e in range(epochs)],
        test_accuracy=[0.45 + 0.1 * e for e in range(epochs)],
        test_loss=[1.0 / (1 + e) for e in range(epochs)],
        grad_norm=[{"0": 1.0 / (1 + i), "2": 0.5} for i in range(steps)],
        epoch_steps=[10, 20, 30, 40],
    )


def test_learning_curves_loss():
    ax = learning_curves({"sgd": history(), "adam": history(2.0)}, logy=True)
    assert isinstance(ax, Axes)
    assert [line.get_label() for line in ax.get_lines()] == ["sgd", "adam"]
    assert ax.get_xlabel() == "optimizer step" and "loss" in ax.get_ylabel()
    assert ax.get_yscale() == "log" and ax.get_legend() is not None
    assert ax.get_lines()[0].get_xdata()[0] == 1


def test_learning_curves_epoch_keys_smoothing_and_grad_norm():
    ax = learning_curves({"run": history()}, key="accuracy")
    assert [line.get_label() for line in ax.get_lines()] == ["run train", "run test"]
    assert ax.get_xlabel() == "epoch"
    assert list(ax.get_lines()[0].get_xdata()) == [1, 2, 3, 4]
    ax = learning_curves(history(), key="loss", smooth=10)
    assert len(ax.get_lines()[0].get_xdata()) == 31 and "moving average" in ax.get_ylabel()
    ax = learning_curves({"a": history(), "b": history()}, key="grad_norm")
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["a: layer 0", "a: layer 2", "b: layer 0", "b: layer 2"]
    with pytest.raises(ValueError, match="key must be one of"):
        learning_curves(history(), key="acc")


def test_learning_curves_draws_into_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    assert learning_curves(history(), ax=right, key="test_loss") is right
    assert len(left.get_lines()) == 0 and len(right.get_lines()) == 1


def test_layer_histograms():
    g = torch.Generator().manual_seed(0)
    acts = {f"layer {i}": torch.randn(100, 20, generator=g) * 0.5**i for i in range(7)}
    acts["layer 6"][0, 0] = float("nan")
    fig = layer_histograms(acts, bins=30, title="activations")
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 7 and len(fig.axes) == 10  # 2 rows of 5, 3 hidden
    assert visible[0].get_title().startswith("layer 0\nmean ")
    assert visible[6].get_title().startswith("layer 6 (1 non-finite)\nmean ")
    assert fig.get_suptitle() == "activations"
    assert len(visible[0].patches) == 30
    with pytest.raises(ValueError):
        layer_histograms({})


def test_heatmap():
    ax = heatmap(torch.randn(5, 3), title="W", cmap="RdBu_r", vmin=-2, vmax=2)
    assert isinstance(ax, Axes) and ax.get_title() == "W"
    image = ax.get_images()[0]
    assert image.get_array().shape == (5, 3) and image.get_clim() == (-2, 2)
    assert len(ax.figure.axes) == 2  # the colorbar
    assert heatmap(np.arange(4.0), colorbar=False).get_images()[0].get_array().shape == (1, 4)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        heatmap(torch.zeros(2, 2, 2))


def test_trajectories_2d():
    q = quadratic(10.0)
    path = torch.tensor([[2.0, 1.0], [1.0, 0.2], [0.3, 0.1]], requires_grad=True)
    diverging = [torch.tensor([1.0, 1.0]), torch.tensor([-5.0, 9.0])]
    ax = trajectories_2d(q, {"gd": path, "big lr": diverging}, xlim=(-3, 3), ylim=(-2, 2))
    assert isinstance(ax, Axes)
    assert ax.get_xlim() == (-3, 3) and ax.get_ylim() == (-2, 2)
    labels = ax.get_legend_handles_labels()[1]
    assert labels[0] == "minimum"
    assert labels[1].startswith("gd (f = ") and labels[1].endswith("after 2 steps)")
    assert labels[2].startswith("big lr")
    ax = trajectories_2d(rosenbrock, {"a": path}, xlim=(-2, 2), ylim=(-1, 3), logscale=True)
    assert ax.get_legend_handles_labels()[1] == ["a (f = 0.5 after 2 steps)"]
