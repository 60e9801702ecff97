"""An MLP builder for the experiments, and access to its Linear layers.

Layer conventions are torch's: ``nn.Linear(in, out)`` stores ``weight`` as ``[out, in]`` and
computes ``x @ weight.T + bias`` on inputs ``(N, in)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

__all__ = ["mlp", "linear_layers"]


def mlp(
    widths: Sequence[int],
    *,
    activation: Callable[[], nn.Module] = nn.ReLU,
    bias: bool = True,
    init: Callable[[nn.Module], Any] | None = None,
    norm: Callable[[int], nn.Module] | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """A multilayer perceptron as a flat ``nn.Sequential``.

    Each hidden block is ``Linear -> norm(width) (if given) -> activation() -> Dropout(p)
    (if p > 0)``; the last Linear has nothing after it (it outputs logits). So
    ``mlp([64, 32, 10])`` is ``Sequential(Linear(64, 32), ReLU(), Linear(32, 10))`` and
    ``model[0]`` is the first Linear. Parameters start with torch's default initialization
    unless ``init`` is given.

    Args:
        widths: [in, h1, ..., out], at least two ints: input width, hidden widths, output width.
        activation: zero-argument factory of the activation module, e.g. nn.ReLU or nn.Tanh.
        bias: whether the Linear layers have a bias.
        init: optional function called as ``init(model)`` on the finished model, e.g. the
            notebook's own initializer; its return value is ignored.
        norm: optional factory called as ``norm(width)`` for each hidden block, e.g.
            nn.BatchNorm1d or nn.LayerNorm.
        dropout: drop probability p of the Dropout after each hidden activation (torch's
            convention: p is the probability to *drop*); 0 means no Dropout module.

    Returns:
        nn.Sequential mapping (N, widths[0]) -> (N, widths[-1]).
    """
    widths = [int(w) for w in widths]
    if len(widths) < 2:
        raise ValueError(f"widths needs at least [in, out], got {widths}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(w_in, w_out, bias=bias))
        if i == len(widths) - 2:
            break
        if norm is not None:
            layers.append(norm(w_out))
        layers.append(activation())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    model = nn.Sequential(*layers)
    if init is not None:
        init(model)
    return model


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` modules of a model, in the order ``model.modules()`` visits them.

    Args:
        model: any nn.Module (for ``mlp`` the order is input to output).

    Returns:
        list of nn.Linear (the modules themselves, not copies).
    """
    return [m for m in model.modules() if isinstance(m, nn.Linear)]
