"""Set-up for a course notebook: seeds, fair numerics, the device and plot defaults.

The locked setup cell of every notebook runs::

    from gradschool.notebook import setup_notebook
    DEVICE = setup_notebook(seed=0)

It works unchanged locally and in Colab: no matplotlib backend or display is forced.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "fair_numerics", "pick_device", "plot_defaults", "setup_notebook"]


def seed_everything(seed: int) -> None:
    """Seed every global random number generator a notebook may use.

    Args:
        seed: non-negative int; seeds Python's ``random``, numpy's global generator and torch's
            CPU and (all) CUDA generators (``torch.manual_seed`` seeds CUDA lazily).

    Returns:
        None.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fair_numerics() -> None:
    """Make float32 mean float32 and results reproducible, so checks compare like with like.

    Turns TF32 off for matmul and cuDNN (on Ampere+ GPUs TF32 silently rounds float32 matmuls
    to 10 mantissa bits, which breaks tolerances), fixes cuDNN to deterministic algorithms,
    and asks torch for deterministic algorithms (``warn_only=True``: an op without a
    deterministic version warns instead of failing). On CUDA machines it also sets
    ``CUBLAS_WORKSPACE_CONFIG=":4096:8"`` (if unset), which deterministic cuBLAS needs; it must
    happen before any CUDA work, so call this first.

    Returns:
        None.
    """
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device() -> torch.device:
    """The device the notebook runs on.

    Returns:
        ``torch.device("cuda")`` when a CUDA GPU is available, else ``torch.device("cpu")``.
    """
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def plot_defaults() -> None:
    """Matplotlib defaults for the course: 6x4 inch figures at 100 dpi, grid, constrained layout.

    Only ``matplotlib.rcParams`` is changed; the backend is left alone (Colab, JupyterLab and
    the test suite each pick their own).

    Returns:
        None.
    """
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.figsize": (6.0, 4.0),
            "figure.dpi": 100,
            "figure.constrained_layout.use": True,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
        }
    )


def setup_notebook(seed: int = 0) -> torch.device:
    """Everything a notebook's setup cell needs, in the right order.

    Calls ``fair_numerics()`` (first: it must precede any CUDA work), ``seed_everything(seed)``
    and ``plot_defaults()``, picks the device, and prints one line such as
    ``gradschool: seed 0, device cpu, torch 2.13.0``.

    Args:
        seed: the seed for every global random number generator.

    Returns:
        The ``torch.device`` to run on (``DEVICE`` in the notebooks): cuda if available, else cpu.
    """
    fair_numerics()
    seed_everything(seed)
    plot_defaults()
    device = pick_device()
    where = str(device)
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    print(f"gradschool: seed {seed}, device {where}, torch {torch.__version__}")
    return device
