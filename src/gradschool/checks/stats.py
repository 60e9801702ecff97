"""Statistical tests of random draws with a guaranteed false-alarm rate ``alpha``.

The bounds are rigorous (exact Gaussian quantile, Chernoff and Bernstein tail bounds, a union
bound over the sub-tests), not normal approximations: a correct implementation fails with
probability at most ``alpha``, whatever the sample size."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

import torch

from gradschool.checks._format import _index, _type_name


def _samples64(samples: Any, name: str) -> torch.Tensor:
    """Validate a tensor of samples and return it flattened, detached, in float64."""
    if not isinstance(samples, torch.Tensor):
        raise AssertionError(f"{name} is {_type_name(samples)}, expected a torch.Tensor")
    if samples.numel() < 2:
        raise AssertionError(f"{name} has {samples.numel()} elements; a test needs at least 2")
    x = samples.detach().flatten()
    x = x.to(torch.float64) if x.dtype != torch.bool else x.to(torch.float64)
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0, 0])
        raise AssertionError(
            f"{name} contains {int((~finite).sum())} non-finite values (first at "
            f"{_index(first, samples.shape)}: {x[first].item()})"
        )
    return x


def _solve_increasing(f: Callable[[float], float], target: float, lo: float, hi: float) -> float:
    """x in [lo, hi] with f(x) = target for an increasing f, by bisection (80 steps)."""
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _chi2_ratio_bounds(k: int, log_inv: float) -> tuple[float, float]:
    """Chernoff acceptance interval for r = chi2_k / k: (k/2)(r - 1 - ln r) <= log_inv."""

    def excess(r: float) -> float:
        return 0.5 * k * (r - 1.0 - math.log(r))

    hi = _solve_increasing(excess, log_inv, 1.0, 1.0 + 4.0 * log_inv + 10.0)
    lo = 1.0 - _solve_increasing(lambda s: excess(1.0 - s), log_inv, 0.0, 1.0 - 1e-300)
    return lo, hi


def _bernstein_halfwidth(n: int, var: float, bound: float, log_inv: float) -> float:
    """t with n t^2 / (2 var + 2 bound t / 3) = log_inv (Bernstein's inequality, one tail)."""
    b = 2.0 * bound * log_inv / 3.0
    return (b + math.sqrt(b * b + 8.0 * n * var * log_inv)) / (2.0 * n)


def normal_mean_std_test(
    samples: torch.Tensor,
    mean: float,
    std: float,
    *,
    alpha: float = 1e-9,
    name: str = "samples",
) -> None:
    """Test that i.i.d. ``samples`` come from N(mean, std^2); a correct sampler fails w.p. <= alpha.

    Two tests, each at false-alarm rate alpha/2 (union bound: alpha in all):
      - mean: the sample mean is exactly N(mean, std^2/n) under the hypothesis; reject when
        |sample mean - mean| > z * std / sqrt(n), z the two-sided alpha/2 Gaussian quantile.
      - std: (n-1) s^2 / std^2 is exactly chi-square with n-1 degrees of freedom, s^2 the
        unbiased sample variance; reject by the two-sided Chernoff bound
        P(chi2_k / k outside [lo, hi]) <= alpha/2 (rigorous, no normal approximation).
    Power: with n = 10^4 and alpha = 1e-9 the accepted std is [0.953, 1.047] x std, so a std
    off by 5% fails (n = 10^5: [0.985, 1.015]).

    Args:
        samples: Tensor of any shape and floating dtype, any device; all elements are samples.
        mean: expected mean.
        std: expected standard deviation (not the variance), >= 0. With std == 0 every sample
            must equal ``mean`` exactly.
        alpha: false-alarm rate: the probability that correct samples fail this test is <= alpha.
        name: what to call the samples in the message.

    Returns:
        None. Raises AssertionError stating the observed mean/std, the accepted ranges, n and
        alpha, and a hint when the observed std matches a common mix-up (std**2, sqrt(std), ...).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    x = _samples64(samples, name)
    n = x.numel()
    m = x.mean().item()
    s = x.std(correction=1).item()
    if std == 0:
        if bool((x != mean).any()):
            raise AssertionError(
                f"{name}: expected every sample to equal {mean} (std 0), observed mean {m:.6g}, "
                f"std {s:.6g}"
            )
        return
    problems = []
    z = -statistics.NormalDist().inv_cdf(alpha / 4.0)  # two-sided, alpha/2 for the mean test
    half = z * std / math.sqrt(n)
    if abs(m - mean) > half:
        problems.append(
            f"mean {m:.6g} is outside [{mean - half:.6g}, {mean + half:.6g}] "
            f"(expected mean {mean:g})"
        )
    lo, hi = _chi2_ratio_bounds(n - 1, math.log(4.0 / alpha))  # two tails of alpha/4 each
    ratio = (s / std) ** 2
    if not lo <= ratio <= hi:
        hint = ""
        candidates = {
            "std**2 (variance used as std?)": std**2,
            "sqrt(std) (std used as variance?)": math.sqrt(std),
            "std * sqrt(2)": std * math.sqrt(2.0),
            "std / sqrt(2)": std / math.sqrt(2.0),
            "std * sqrt(3)": std * math.sqrt(3.0),
            "std / sqrt(3)": std / math.sqrt(3.0),
        }
        for label, other in candidates.items():
            if abs(other - std) > 1e-12 * std and lo <= (s / other) ** 2 <= hi:
                hint = f"; it matches {label}"
                break
        problems.append(
            f"std {s:.6g} is outside [{std * math.sqrt(lo):.6g}, {std * math.sqrt(hi):.6g}] "
            f"(expected std {std:g}{hint})"
        )
    if problems:
        raise AssertionError(
            f"{name}: not consistent with N({mean:g}, {std:g}^2): "
            + "; ".join(problems)
            + f" [n={n}, false-alarm rate alpha={alpha:g}]"
        )


def uniform_bounds_test(
    samples: torch.Tensor,
    low: float,
    high: float,
    *,
    alpha: float = 1e-9,
    name: str = "samples",
) -> None:
    """Test that i.i.d. ``samples`` come from U(low, high); a correct sampler fails w.p. <= alpha.

    Three tests:
      - bounds: every sample lies in [low, high] (exact, no false alarms);
      - mean: Bernstein's inequality for bounded variables, false-alarm rate <= alpha/2;
      - spread: mean of (x - (low+high)/2)^2 against (high-low)^2/12, Bernstein again with
        false-alarm rate <= alpha/2 (uses the expected centre, so a wrong mean shows up here too).
    Power: with n = 10^4 and alpha = 1e-9, samples of U(-b, b) pass a test for U(-a, a) only
    if b/a is in [0.969, 1.030] (and b > a soon puts samples outside the bounds).

    Args:
        samples: Tensor of any shape and floating dtype, any device.
        low: lower end of the interval.
        high: upper end, > low.
        alpha: false-alarm rate: the probability that correct samples fail this test is <= alpha.
        name: what to call the samples in the message.

    Returns:
        None. Raises AssertionError stating what failed, observed vs accepted values, n and alpha.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not high > low:
        raise ValueError(f"need high > low, got low={low}, high={high}")
    x = _samples64(samples, name)
    n = x.numel()
    outside = (x < low) | (x > high)
    if bool(outside.any()):
        first = int(outside.nonzero()[0, 0])
        raise AssertionError(
            f"{name}: {int(outside.sum())} of {n} samples lie outside [{low:g}, {high:g}] "
            f"(observed min {x.min().item():.6g}, max {x.max().item():.6g}; first at "
            f"{_index(first, samples.shape)}: {x[first].item():.6g})"
        )
    centre, half_width = 0.5 * (low + high), 0.5 * (high - low)
    log_inv = math.log(4.0 / alpha)  # each test two-sided at alpha/2: tails of alpha/4
    problems = []
    m = x.mean().item()
    t_mean = _bernstein_halfwidth(n, half_width**2 / 3.0, half_width, log_inv)
    if abs(m - centre) > t_mean:
        problems.append(
            f"mean {m:.6g} is outside [{centre - t_mean:.6g}, {centre + t_mean:.6g}] "
            f"(expected {centre:g})"
        )
    v = ((x - centre) ** 2).mean().item()
    v_exp = half_width**2 / 3.0
    t_var = _bernstein_halfwidth(n, 4.0 * half_width**4 / 45.0, 2.0 * half_width**2 / 3.0, log_inv)
    if abs(v - v_exp) > t_var:
        implied = math.sqrt(3.0 * v)
        problems.append(
            f"spread: mean squared distance from {centre:g} is {v:.6g}, outside "
            f"[{v_exp - t_var:.6g}, {v_exp + t_var:.6g}] (expected (high-low)^2/12 = {v_exp:.6g}; "
            f"the samples look like U({centre - implied:.4g}, {centre + implied:.4g}))"
        )
    if problems:
        raise AssertionError(
            f"{name}: not consistent with U({low:g}, {high:g}): "
            + "; ".join(problems)
            + f" [n={n}, false-alarm rate alpha={alpha:g}]"
        )


def _kl_bernoulli(q: float, p: float) -> float:
    """KL(Bernoulli(q) || Bernoulli(p)) in nats, 0 < p < 1, 0 <= q <= 1."""
    out = 0.0
    if q > 0:
        out += q * math.log(q / p)
    if q < 1:
        out += (1 - q) * math.log((1 - q) / (1 - p))
    return out


def bernoulli_rate_test(
    mask: torch.Tensor,
    p: float,
    *,
    alpha: float = 1e-9,
    name: str = "mask",
) -> None:
    """Test that a 0/1 ``mask`` has i.i.d. entries equal to 1 with probability ``p``.

    Two-sided Chernoff bound for the binomial: with k ones among n entries and q = k/n,
    P(q >= p + d) <= exp(-n KL(p + d || p)) and likewise below; the test rejects when
    n KL(q || p) > log(2 / alpha), so a correct mask fails with probability <= alpha (rigorous
    for every n). With n = 10^4, p = 0.5 and alpha = 1e-9 it detects a rate off by 0.033.

    Careful with dropout: torch's ``p`` is the *drop* probability, so a keep-mask has ones
    with probability ``1 - p``; pass the rate of ones you expect.

    Args:
        mask: Tensor of any shape, bool or numeric with values in {0, 1}, any device.
        p: expected probability of a 1, in [0, 1]. With p in {0, 1} every entry must equal p.
        alpha: false-alarm rate: the probability that a correct mask fails this test is <= alpha.
        name: what to call the mask in the message.

    Returns:
        None. Raises AssertionError for values other than 0/1 (e.g. an already scaled mask), or
        stating the observed fraction of ones, the accepted range, n and alpha, with a hint when
        the fraction matches 1 - p.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    x = _samples64(mask, name)
    not01 = (x != 0) & (x != 1)
    if bool(not01.any()):
        first = int(not01.nonzero()[0, 0])
        raise AssertionError(
            f"{name} must contain only 0 and 1, but {int(not01.sum())} entries do not (first "
            f"at {_index(first, mask.shape)}: {x[first].item():.6g}); pass the 0/1 mask, "
            "not the mask already scaled by 1/(1-p)"
        )
    n = x.numel()
    k = int(x.sum().item())
    q = k / n
    if p in (0.0, 1.0):
        if q != p:
            raise AssertionError(
                f"{name}: expected every entry to be {int(p)} (p={p:g}), got {k} ones of {n}"
            )
        return
    log_inv = math.log(2.0 / alpha)
    if n * _kl_bernoulli(q, p) <= log_inv:
        return
    lo = p - _solve_increasing(lambda d: n * _kl_bernoulli(p - d, p), log_inv, 0.0, p)
    hi = p + _solve_increasing(lambda d: n * _kl_bernoulli(p + d, p), log_inv, 0.0, 1.0 - p)
    hint = ""
    if 0.0 < 1.0 - p < 1.0 and n * _kl_bernoulli(q, 1.0 - p) <= log_inv:
        hint = (
            f"; it matches 1 - p = {1 - p:g}: keep vs drop probability mixed up? "
            "(torch's dropout p is the probability to drop)"
        )
    raise AssertionError(
        f"{name}: fraction of ones {q:.6g} ({k} of {n}) is outside [{lo:.6g}, {hi:.6g}] "
        f"(expected p={p:g}){hint} [false-alarm rate alpha={alpha:g}]"
    )
