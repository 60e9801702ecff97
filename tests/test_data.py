"""gradschool.data: offline, deterministic, device- and dtype-respecting data."""

import math
import random
import socket

import numpy as np
import pytest
import torch

from gradschool import data
from gradschool.data import (
    Split,
    load_digits,
    load_mnist1d,
    make_moons,
    make_spirals,
    quadratic,
    rosenbrock,
)


def test_digits_split_shapes_dtypes_and_standardization():
    split = load_digits()
    assert isinstance(split, Split)
    X_train, y_train, X_test, y_test = split
    assert X_train.shape == (1347, 64) and X_test.shape == (450, 64)
    assert y_train.shape == (1347,) and y_test.shape == (450,)
    assert X_train.dtype == torch.float32 and y_train.dtype == torch.int64
    varying = X_train.std(dim=0) > 0
    assert torch.allclose(X_train.mean(dim=0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(X_train.std(dim=0, correction=0)[varying], torch.ones(1), atol=1e-4)
    assert set(y_train.tolist()) == set(range(10))
    counts = torch.bincount(y_test, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47  # stratified: 450 / 10 = 45 per class


def test_digits_seed_dtype_and_test_size():
    a, b = load_digits(seed=1, dtype=torch.float64), load_digits(seed=1, dtype=torch.float64)
    assert a.X_train.dtype == torch.float64
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, load_digits(seed=2).y_train)
    assert len(load_digits(test_size=0.5).X_test) in (898, 899)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the data module tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_mnist1d_is_generated_offline_and_keeps_global_rng_state(no_network):
    data._mnist1d_raw.cache_clear()
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    split = load_mnist1d(num_samples=500, seed=3)
    assert np.random.rand() == expected_np and random.random() == expected_py
    assert split.X_train.shape == (400, 40) and split.X_test.shape == (100, 40)
    assert split.y_train.dtype == torch.int64 and split.X_train.dtype == torch.float32
    assert set(split.y_train.tolist()) <= set(range(10))


def test_mnist1d_default_size_seed_and_cache():
    split = load_mnist1d()
    assert split.X_train.shape == (3200, 40) and split.X_test.shape == (800, 40)
    again = load_mnist1d(dtype=torch.float64)
    assert again.X_train.dtype == torch.float64
    assert torch.equal(again.X_train.float(), split.X_train)
    assert data._mnist1d_raw.cache_info().hits >= 1
    pooled = torch.cat([split.X_train, split.X_test])
    assert abs(pooled.mean().item()) < 1e-4 and abs(pooled.std().item() - 1) < 1e-3
    with pytest.raises(ValueError):
        load_mnist1d(num_samples=5)


@pytest.mark.parametrize("make", [make_moons, make_spirals])
def test_toy_sets(make):
    X, y = make(101, generator=torch.Generator().manual_seed(0))
    assert X.shape == (101, 2) and y.shape == (101,)
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [51, 50]
    X2, y2 = make(101, generator=torch.Generator().manual_seed(0))
    assert torch.equal(X, X2) and torch.equal(y, y2)
    X3, _ = make(101, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(X, X3)
    Xm, ym = make(16, device="meta", dtype=torch.float64)
    assert Xm.device.type == "meta" and Xm.dtype == torch.float64 and ym.device.type == "meta"


def test_moons_geometry_without_noise():
    X, y = make_moons(200, noise=0.0, generator=torch.Generator().manual_seed(0))
    upper, lower = X[y == 0].double(), X[y == 1].double()
    assert torch.allclose(upper.norm(dim=1), torch.ones(1, dtype=torch.float64), atol=1e-6)
    centre = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert torch.allclose((lower - centre).norm(dim=1), torch.ones(1, dtype=torch.float64))
    assert (upper[:, 1] >= -1e-6).all() and (lower[:, 1] <= 0.5 + 1e-6).all()


def test_spirals_radius_and_turns():
    X, y = make_spirals(400, turns=1.0, noise=0.0, generator=torch.Generator().manual_seed(0))
    r = X.double().norm(dim=1)
    assert r.max() <= 1 + 1e-6 and r.min() > 0
    # Class 1 is class 0 rotated by pi: same radii.
    assert torch.allclose(r[y == 0].sort().values, r[y == 1].sort().values, atol=1e-6)


def test_quadratic():
    q = quadratic(100.0, dim=3)
    assert q.A.dtype == torch.float64 and q.A.shape == (3, 3)
    assert torch.equal(q.A, torch.diag(torch.tensor([1.0, 50.5, 100.0], dtype=torch.float64)))
    assert torch.equal(q.minimum, torch.zeros(3, dtype=torch.float64))
    assert q.condition_number == 100.0
    x = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64, requires_grad=True)
    f = q(x)
    assert f.shape == () and math.isclose(f.item(), 0.5 * (1 + 50.5 * 4 + 100))
    (grad,) = torch.autograd.grad(f, x)
    assert torch.allclose(grad, q.A @ x.detach())
    batch = torch.randn(5, 3)
    assert q(batch).shape == (5,) and q(batch).dtype == torch.float32
    assert q(torch.zeros(4, 6, 3)).shape == (4, 6)
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 3\)"):
        q(torch.zeros(2))


def test_rosenbrock():
    a = 2.0
    assert rosenbrock(torch.tensor([a, a * a]), a=a).item() == 0.0
    assert rosenbrock(torch.tensor([0.0, 0.0])).item() == 1.0
    assert rosenbrock(torch.tensor([0.0, 1.0]), b=10.0).item() == 11.0
    assert rosenbrock(torch.zeros(7, 3, 2, dtype=torch.float64)).shape == (7, 3)
