"""The course's plots: learning curves, per-layer histograms, heatmaps, 2-D optimizer paths.

Each function draws with matplotlib and returns what it drew on (an Axes, or a Figure for
several panels); those taking ``ax=`` draw into an existing Axes, else make a new figure.
Tensors may live on any device and require grad: they are detached and copied to the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from torch import Tensor

from gradschool.training import History

__all__ = ["learning_curves", "layer_histograms", "heatmap", "trajectories_2d"]

_LABELS = {
    "loss": "training loss (per batch)",
    "train_accuracy": "train accuracy",
    "test_accuracy": "test accuracy",
    "test_loss": "test loss",
    "grad_norm": "weight gradient L2 norm",
    "accuracy": "accuracy",
}
_PER_STEP = {"loss", "grad_norm"}
_STYLES = ["-", "--", "-.", ":"]


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _smooth(values: Sequence[float], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing moving average: (x index of each window's last element, mean) pairs."""
    v = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(v) < window:
        return np.arange(len(v)), v
    kernel = np.ones(window) / window
    return np.arange(window - 1, len(v)), np.convolve(v, kernel, mode="valid")


def learning_curves(
    histories: Mapping[str, History] | History,
    *,
    key: str = "loss",
    smooth: int = 1,
    ax: Axes | None = None,
    logy: bool = False,
) -> Axes:
    """Plot one recorded quantity of several training runs against steps or epochs.

    Args:
        histories: {run label: History} (insertion order is legend order), or one History.
        key: a History field: "loss" or "grad_norm" (per step: x is the optimizer step),
            "train_accuracy", "test_accuracy" or "test_loss" (per epoch: x is the epoch, from
            1); or "accuracy" for train (solid) and test (dashed) accuracy together. For
            "grad_norm" there is one line per Linear layer (labelled by its name in the model).
        smooth: window of a trailing moving average (1: raw values).
        ax: Axes to draw into (default: a new figure).
        logy: logarithmic y axis.

    Returns:
        The matplotlib Axes drawn on.
    """
    if isinstance(histories, History):
        histories = {"": histories}
    valid = {*_LABELS}
    if key not in valid:
        raise ValueError(f"key must be one of {sorted(valid)}, got {key!r}")
    if ax is None:
        _, ax = plt.subplots()
    per_step = key in _PER_STEP
    for i, (label, h) in enumerate(histories.items()):
        color = f"C{i % 10}"
        prefix = f"{label}: " if label else ""
        if key == "grad_norm":
            names = list(h.grad_norm[0]) if h.grad_norm else []
            for j, layer in enumerate(names):
                xs, ys = _smooth([g[layer] for g in h.grad_norm], smooth)
                if len(histories) == 1:
                    style = {"color": f"C{j % 10}"}
                else:
                    style = {"color": color, "linestyle": _STYLES[j % len(_STYLES)]}
                ax.plot(xs + 1, ys, label=f"{prefix}layer {layer}", **style)
            continue
        series = [("train", "train_accuracy"), ("test", "test_accuracy")]
        series = series if key == "accuracy" else [("", key)]
        for j, (part, field) in enumerate(series):
            xs, ys = _smooth(getattr(h, field), smooth)
            name = " ".join(s for s in (label, part) if s)
            ax.plot(
                xs + 1,
                ys,
                color=color,
                linestyle=_STYLES[j],
                label=name or None,
                marker=None if per_step or len(ys) > 30 else "o",
                markersize=3,
            )
    ax.set_xlabel("optimizer step" if per_step else "epoch")
    ylabel = _LABELS[key]
    if smooth > 1:
        ylabel += f", moving average over {smooth}"
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize="small")
    return ax


def layer_histograms(
    tensors: Mapping[str, Tensor],
    *,
    bins: int = 50,
    title: str | None = None,
) -> Figure:
    """One histogram per layer, on a shared x axis, e.g. activations or gradients by depth.

    Each panel's title gives the layer, its tensor's mean and std; NaN and inf are left out
    of the histogram and counted in the title.

    Args:
        tensors: {layer label: Tensor of any shape}, in the order to show (e.g. input to output).
        bins: number of histogram bins, shared by all panels.
        title: optional figure title.

    Returns:
        The matplotlib Figure (panels in rows of at most 5).
    """
    if not tensors:
        raise ValueError("tensors is empty: pass {layer name: tensor}")
    values = {name: _numpy(t).ravel() for name, t in tensors.items()}
    finite = {name: v[np.isfinite(v)] for name, v in values.items()}
    pooled = np.concatenate([v for v in finite.values()] + [np.zeros(0)])
    lo, hi = (float(pooled.min()), float(pooled.max())) if pooled.size else (-1.0, 1.0)
    if hi - lo < 1e-12 * max(1.0, abs(lo)):
        lo, hi = lo - 1.0, hi + 1.0
    n = len(values)
    ncols = min(n, 5)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(2.4 * ncols + 0.6, 2.2 * nrows + (0.4 if title else 0.0)),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    for k, (name, v) in enumerate(finite.items()):
        ax = axes[k // ncols][k % ncols]
        ax.hist(v, bins=bins, range=(lo, hi), color=f"C{k % 10}", alpha=0.85)
        bad = values[name].size - v.size
        panel = name + (f" ({bad} non-finite)" if bad else "")
        if v.size:
            panel += f"\nmean {v.mean():.2g}, std {v.std():.2g}"
        ax.set_title(panel, fontsize="medium")
        ax.tick_params(labelsize="small")
        if k % ncols == 0:
            ax.set_ylabel("count")
        if k // ncols == nrows - 1 or k + ncols >= n:
            ax.set_xlabel("value")
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def heatmap(
    matrix: Tensor | np.ndarray,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
) -> Axes:
    """Show a matrix as an image: row i is drawn top to bottom, column j left to right.

    Args:
        matrix: Tensor or ndarray (rows, cols), or (n,) shown as one row. For a Linear weight
            (torch's [out, in]) rows are output units and columns input units.
        ax: Axes to draw into (default: a new figure).
        title: optional Axes title.
        vmin: value mapped to the bottom of the colormap (default: the minimum).
        vmax: value mapped to the top of the colormap (default: the maximum).
        cmap: matplotlib colormap name (a diverging one such as "RdBu_r" with vmin = -vmax
            shows signs).
        colorbar: whether to add a colorbar.

    Returns:
        The matplotlib Axes drawn on.
    """
    m = _numpy(matrix)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2:
        raise ValueError(f"heatmap needs a 1-D or 2-D matrix, got shape {m.shape}")
    if ax is None:
        _, ax = plt.subplots()
    image = ax.imshow(m, aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xlabel(f"column (of {m.shape[1]})")
    ax.set_ylabel(f"row (of {m.shape[0]})")
    ax.grid(False)
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    return ax


def _as_path(path: Any) -> np.ndarray:
    if isinstance(path, Tensor):
        p = _numpy(path)
    elif isinstance(path, np.ndarray):
        p = path.astype(np.float64)
    else:
        p = np.stack([_numpy(point) for point in path])
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"each path must have shape (T, 2), got {p.shape}")
    return p


def trajectories_2d(
    objective: Callable[[Tensor], Tensor],
    paths: Mapping[str, Tensor],
    *,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    levels: int = 30,
    ax: Axes | None = None,
    logscale: bool = False,
) -> Axes:
    """Contour lines of a 2-D objective with optimizer paths drawn on top.

    The objective is evaluated without gradients on a 200 x 200 grid, as one CPU float64
    batch of shape (40000, 2). Each path is drawn from a circle (start) to a cross (end); its
    legend entry, below the plot, gives the objective at the end. Axis limits stay at
    xlim/ylim, so a diverging path simply leaves the picture. An objective with a 2-element
    ``.minimum`` attribute (like ``gradschool.data.quadratic``) gets a star there.

    Args:
        objective: callable mapping points (N, 2) to values (N,), e.g. ``rosenbrock``.
        paths: {label: Tensor (T, 2)} of iterates x_0, ..., x_{T-1} (or a list of (2,) tensors).
        xlim: (left, right) of the plotted region.
        ylim: (bottom, top) of the plotted region.
        levels: number of contour levels.
        ax: Axes to draw into (default: a new figure).
        logscale: geometrically spaced levels between the smallest positive and the largest
            value (for objectives spanning orders of magnitude, like Rosenbrock).

    Returns:
        The matplotlib Axes drawn on.
    """
    if ax is None:
        _, ax = plt.subplots()
    gx = torch.linspace(xlim[0], xlim[1], 200, dtype=torch.float64, device="cpu")
    gy = torch.linspace(ylim[0], ylim[1], 200, dtype=torch.float64, device="cpu")
    mesh_y, mesh_x = torch.meshgrid(gy, gx, indexing="ij")
    grid = torch.stack([mesh_x, mesh_y], dim=-1)
    with torch.no_grad():
        z = _numpy(objective(grid.reshape(-1, 2))).reshape(grid.shape[:2])
    # viridis without its pale yellow end, so that every level line shows on white.
    cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0.0, 0.8, 256)))
    contour_kw: dict[str, Any] = {"cmap": cmap, "linewidths": 0.8, "alpha": 0.7}
    finite = z[np.isfinite(z)]
    if logscale:
        positive = finite[finite > 0]
        if positive.size == 0:
            raise ValueError("logscale needs positive objective values in the plotted region")
        lo, hi = positive.min(), positive.max()
        contour_kw["levels"] = np.geomspace(lo, hi if hi > lo else lo * 10, levels)
        contour_kw["norm"] = LogNorm(vmin=lo, vmax=max(hi, lo * 10))
    else:
        contour_kw["levels"] = levels
    ax.contour(gx.numpy(), gy.numpy(), z, **contour_kw)
    minimum = getattr(objective, "minimum", None)
    if isinstance(minimum, Tensor) and minimum.numel() == 2:
        m = _numpy(minimum)
        ax.plot(m[0], m[1], "k*", markersize=12, label="minimum", zorder=4)
    for i, (label, path) in enumerate(paths.items()):
        p = _as_path(path)
        color = f"C{i % 10}"
        with torch.no_grad():
            end = objective(torch.as_tensor(p[-1:], dtype=torch.float64, device="cpu"))
        final = float(_numpy(end).ravel()[0])
        ax.plot(
            p[:, 0],
            p[:, 1],
            "-",
            color=color,
            linewidth=1.5,
            marker=".",
            markersize=4,
            label=f"{label} (f = {final:.3g} after {len(p) - 1} steps)",
            zorder=3,
        )
        ax.plot(p[0, 0], p[0, 1], "o", color=color, markersize=7, zorder=5, mfc="white")
        ax.plot(p[-1, 0], p[-1, 1], "X", color=color, markersize=8, zorder=5)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if ax.get_legend_handles_labels()[1]:  # below the plot: paths may go anywhere inside
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    return ax
