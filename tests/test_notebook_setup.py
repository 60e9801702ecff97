"""gradschool.notebook: seeds, fair numerics, device and plot defaults for a notebook."""

import random

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from gradschool import notebook
from gradschool.notebook import (
    fair_numerics,
    pick_device,
    plot_defaults,
    seed_everything,
    setup_notebook,
)


@pytest.fixture(autouse=True)
def restore_global_state():
    """These functions change process-wide settings: put them back after each test."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    with matplotlib.rc_context():
        yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    torch.set_float32_matmul_precision(saved[2])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[3:5]
    torch.use_deterministic_algorithms(saved[5], warn_only=saved[6])


def draws():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_seed_everything_seeds_all_generators():
    seed_everything(7)
    first = draws()
    seed_everything(7)
    assert draws() == first
    seed_everything(8)
    assert all(a != b for a, b in zip(draws(), first, strict=True))


def test_fair_numerics_sets_flags(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    fair_numerics()
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"
    assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    import os

    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # only on CUDA machines


def test_fair_numerics_sets_cublas_workspace_on_cuda(monkeypatch):
    import os

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    fair_numerics()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    fair_numerics()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"  # a user's choice is kept


def test_pick_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")


def test_plot_defaults_changes_rcparams_not_backend():
    backend = matplotlib.get_backend()
    plot_defaults()
    rc = matplotlib.rcParams
    assert tuple(rc["figure.figsize"]) == (6.0, 4.0) and rc["figure.dpi"] == 100
    assert rc["axes.grid"] and rc["figure.constrained_layout.use"]
    assert matplotlib.get_backend() == backend


def test_setup_notebook_prints_one_line_and_returns_device(capsys, monkeypatch):
    monkeypatch.setattr(notebook, "pick_device", lambda: torch.device("cpu"))
    device = setup_notebook(seed=3)
    assert device == torch.device("cpu")
    out = capsys.readouterr().out
    assert out == f"gradschool: seed 3, device cpu, torch {torch.__version__}\n"
    assert torch.are_deterministic_algorithms_enabled()
    first = torch.rand(1).item()
    setup_notebook(seed=3)
    assert torch.rand(1).item() == first
