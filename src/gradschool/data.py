"""Offline data for the course: digits, MNIST-1D, 2-D toy sets and test objectives.

Nothing here downloads anything: digits ship with scikit-learn, MNIST-1D is generated locally
with the ``mnist1d`` package, the rest is synthesized with torch.

Conventions: features ``X`` are ``(N, D)`` in the requested dtype, labels ``y`` are ``(N,)``
int64 class indices (what ``nn.CrossEntropyLoss`` expects). Random data takes an optional
``torch.Generator``; it is drawn on the generator's device (CPU by default) and then moved to
``device``, so a seed gives the same data on every device.
"""

from __future__ import annotations

import functools
import math
import random
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Split",
    "load_digits",
    "load_mnist1d",
    "make_moons",
    "make_spirals",
    "Quadratic",
    "quadratic",
    "rosenbrock",
]


class Split(NamedTuple):
    """A train/test split; unpacks as ``X_train, y_train, X_test, y_test = split``.

    Attributes:
        X_train: Tensor (N_train, D) of features.
        y_train: Tensor (N_train,) int64 class labels.
        X_test: Tensor (N_test, D) of features.
        y_test: Tensor (N_test,) int64 class labels.
    """

    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor


def _to_split(x_train, y_train, x_test, y_test, device, dtype) -> Split:
    def feats(a: np.ndarray) -> Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    def labels(a: np.ndarray) -> Tensor:
        return torch.as_tensor(a, dtype=torch.int64, device=device)

    return Split(feats(x_train), labels(y_train), feats(x_test), labels(y_test))


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def load_digits(
    *,
    test_size: float = 0.25,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Split:
    """The 8x8 handwritten digits (1797 images, 10 classes), bundled with scikit-learn.

    The split is stratified by class. Each of the 64 pixel features is standardized with the
    mean and std of the *training* set (features constant on the training set, such as
    always-blank corner pixels, are only centred).

    Args:
        test_size: fraction of the samples in the test set, in (0, 1).
        seed: seed of the train/test split.
        device: where to put the tensors (default: torch's default device, normally cpu).
        dtype: floating dtype of the features.

    Returns:
        Split with X_train (N_train, 64), y_train (N_train,) int64, X_test (N_test, 64),
        y_test (N_test,) int64; with test_size=0.25, N_train = 1347 and N_test = 450.
    """
    from sklearn.model_selection import train_test_split

    x, y = _digits_raw()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    return _to_split((x_train - mean) / std, y_train, (x_test - mean) / std, y_test, device, dtype)


@functools.lru_cache(maxsize=8)
def _mnist1d_raw(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    # mnist1d.data.make_dataset seeds (and so clobbers) the global numpy and Python generators:
    # save and restore them so loading data does not change a notebook's random stream.
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        args = get_dataset_args()
        args.num_samples = num_samples
        args.seed = seed
        data = make_dataset(args)  # generates locally; get_dataset() would try to download
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: data[k] for k in ("x", "y", "x_test", "y_test")}


def load_mnist1d(
    *,
    num_samples: int = 4000,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Split:
    """MNIST-1D (Greydanus & Kwon 2020, arXiv:2011.14439), generated locally, never downloaded.

    Uses ``mnist1d.data.make_dataset`` with the package's default arguments
    (``get_dataset_args()``) except ``num_samples`` and ``seed``: 1-D signals of length 40,
    10 classes, balanced, split 80/20 into train/test, and standardized by the package (one
    global mean and std over the whole data set, which keeps the signals' shape). Generation
    takes about a second for 4000 samples; the result is cached in memory, and the global
    numpy / ``random`` states are left as they were.

    Args:
        num_samples: total number of samples; the package makes ``num_samples // 10`` per class.
        seed: seed of the generator (the package's own ``seed`` argument).
        device: where to put the tensors (default: torch's default device, normally cpu).
        dtype: floating dtype of the features.

    Returns:
        Split with X_train (N_train, 40), y_train (N_train,) int64, X_test (N_test, 40),
        y_test (N_test,) int64; N_train = 0.8 N (3200 and 800 for the default 4000).
    """
    if num_samples < 10:
        raise ValueError(f"num_samples must be >= 10 (one per class), got {num_samples}")
    d = _mnist1d_raw(int(num_samples), int(seed))
    return _to_split(d["x"], d["y"], d["x_test"], d["y_test"], device, dtype)


def _noise_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def make_moons(
    n: int = 512,
    noise: float = 0.1,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Two interleaving half circles (like sklearn's make_moons), in torch.

    Class 0 lies on the upper half circle of radius 1 around (0, 0), class 1 on the lower
    half circle around (1, 0.5); points are evenly spaced along each arc, Gaussian noise of
    std ``noise`` is added, and the order is shuffled.

    Args:
        n: number of points; class 0 gets n // 2 + n % 2, class 1 gets n // 2.
        noise: std of the Gaussian noise added to each coordinate.
        generator: optional torch.Generator for the noise and the shuffle (global RNG if None).
        device: where to put the result (default: torch's default device).
        dtype: floating dtype of X.

    Returns:
        A tuple of:
        - X: Tensor (n, 2) of points.
        - y: Tensor (n,) int64 labels in {0, 1}.
    """
    work = _noise_device(generator)
    n0, n1 = n - n // 2, n // 2
    t0 = torch.linspace(0, math.pi, n0, device=work, dtype=torch.float64)
    t1 = torch.linspace(0, math.pi, n1, device=work, dtype=torch.float64)
    upper = torch.stack([torch.cos(t0), torch.sin(t0)], dim=1)
    lower = torch.stack([1 - torch.cos(t1), 0.5 - torch.sin(t1)], dim=1)
    return _finish(upper, lower, noise, generator, device, dtype)


def make_spirals(
    n: int = 512,
    turns: float = 1.5,
    noise: float = 0.1,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Two interleaved Archimedean spirals, one per class, in torch.

    Point i of a class sits at radius r in (0, 1] and angle 2 pi turns r (+ pi for class 1);
    Gaussian noise of std ``noise`` is added and the order is shuffled.

    Args:
        n: number of points; class 0 gets n // 2 + n % 2, class 1 gets n // 2.
        turns: number of turns of each spiral (more turns: a harder problem).
        noise: std of the Gaussian noise added to each coordinate (the spirals have radius 1).
        generator: optional torch.Generator for the noise and the shuffle (global RNG if None).
        device: where to put the result (default: torch's default device).
        dtype: floating dtype of X.

    Returns:
        A tuple of:
        - X: Tensor (n, 2) of points.
        - y: Tensor (n,) int64 labels in {0, 1}.
    """
    work = _noise_device(generator)
    arms = []
    for k, m in enumerate((n - n // 2, n // 2)):
        r = torch.linspace(0, 1, m + 1, device=work, dtype=torch.float64)[1:]
        angle = 2 * math.pi * turns * r + math.pi * k
        arms.append(torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1))
    return _finish(arms[0], arms[1], noise, generator, device, dtype)


def _finish(a: Tensor, b: Tensor, noise, generator, device, dtype) -> tuple[Tensor, Tensor]:
    """Stack two classes, add noise, shuffle (on the generator's device), move to device."""
    x = torch.cat([a, b])
    y = torch.cat(
        [
            torch.zeros(len(a), dtype=torch.int64, device=x.device),
            torch.ones(len(b), dtype=torch.int64, device=x.device),
        ]
    )
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    perm = torch.randperm(len(x), generator=generator, device=x.device)
    return x[perm].to(device=device, dtype=dtype), y[perm].to(device=device)


class Quadratic:
    """The objective f(x) = 1/2 x^T A x with A = diag(eigenvalues): minimum 0 at x = 0.

    Attributes:
        A: Tensor (dim, dim), the diagonal Hessian.
        eigenvalues: Tensor (dim,), from 1 to the condition number, evenly spaced.
        minimum: Tensor (dim,) of zeros, the minimizer.
        condition_number: float, largest / smallest eigenvalue.
        dim: int.
    """

    def __init__(self, eigenvalues: Tensor) -> None:
        self.eigenvalues = eigenvalues
        self.A = torch.diag(eigenvalues)
        self.minimum = torch.zeros_like(eigenvalues)
        self.dim = eigenvalues.numel()
        self.condition_number = float(eigenvalues.max() / eigenvalues.min())

    def __call__(self, x: Tensor) -> Tensor:
        """Evaluate f on one point or a batch.

        Args:
            x: Tensor (..., dim): a point (dim,), a batch (batch, dim), or a grid (H, W, dim);
                any device and floating dtype (the eigenvalues are moved to x's).

        Returns:
            Tensor (...): 1/2 sum_i eigenvalue_i x_i^2, differentiable with autograd.
        """
        if x.shape[-1] != self.dim:
            raise ValueError(f"x has shape {tuple(x.shape)}, expected (..., {self.dim})")
        lam = self.eigenvalues.to(device=x.device, dtype=x.dtype)
        return 0.5 * (lam * x * x).sum(dim=-1)

    def __repr__(self) -> str:
        return f"Quadratic(dim={self.dim}, condition_number={self.condition_number:g})"


def quadratic(
    condition_number: float = 10.0,
    dim: int = 2,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Quadratic:
    """An ill-conditioned quadratic f(x) = 1/2 x^T A x, A = diag(linspace(1, kappa, dim)).

    Args:
        condition_number: kappa >= 1, the ratio of the largest to the smallest eigenvalue
            (with dim = 1 the single eigenvalue is 1).
        dim: dimension of x.
        device: device of A, eigenvalues and minimum (default: torch's default device).
        dtype: dtype of A, eigenvalues and minimum.

    Returns:
        A ``Quadratic``: callable on x (..., dim) -> (...), with ``.A`` (dim, dim),
        ``.eigenvalues`` (dim,), ``.minimum`` (dim,) zeros and ``.condition_number``.
    """
    if condition_number < 1:
        raise ValueError(f"condition_number must be >= 1, got {condition_number}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return Quadratic(torch.linspace(1.0, condition_number, dim, device=device, dtype=dtype))


def rosenbrock(x: Tensor, a: float = 1.0, b: float = 100.0) -> Tensor:
    """Rosenbrock's banana function f(x, y) = (a - x)^2 + b (y - x^2)^2.

    Its minimum 0 lies at (a, a^2) at the bottom of a long, curved, flat valley.

    Args:
        x: Tensor (..., 2) of points (x, y); any device and floating dtype.
        a: the valley's x at the minimum.
        b: steepness of the valley's walls.

    Returns:
        Tensor (...) of values, differentiable with autograd.
    """
    if x.shape[-1] != 2:
        raise ValueError(f"x has shape {tuple(x.shape)}, expected (..., 2)")
    u, v = x[..., 0], x[..., 1]
    return (a - u) ** 2 + b * (v - u * u) ** 2
