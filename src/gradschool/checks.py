"""Assertions behind the visible tests in the notebooks.

Every check raises ``AssertionError`` with a one-line message that names what is wrong: the
dtype, the shape, the device, which element, expected vs got, the tolerance, and, where we can
tell, which convention is likely mixed up. Nothing here knows the answer to an exercise: the
expected values are computed by the notebook and passed in.

Statistical checks (``normal_mean_std_test``, ``uniform_bounds_test``, ``bernoulli_rate_test``)
take a false-alarm rate ``alpha`` (default 1e-9): the probability that a *correct* implementation
fails the check is at most ``alpha``. The bound is rigorous (exact Gaussian quantile, Chernoff
and Bernstein tail bounds, union bound over the sub-tests), not a normal approximation, so a
correct solution does not fail by bad luck, whatever the sample size.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import os
import random
import statistics
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "assert_close",
    "assert_equal",
    "normal_mean_std_test",
    "uniform_bounds_test",
    "bernoulli_rate_test",
    "check_device_agnostic",
    "assert_in_place",
    "assert_generator_reproducible",
    "report",
]

# torch.testing.assert_close's default tolerances, by dtype: (rtol, atol).
_DEFAULT_TOLERANCES = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
    torch.complex32: (1e-3, 1e-5),
    torch.complex64: (1.3e-6, 1e-5),
    torch.complex128: (1e-7, 1e-7),
}


# ----------------------------------------------------------------------------------------------
# formatting helpers
# ----------------------------------------------------------------------------------------------


def _type_name(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return "a torch.Tensor"
    if isinstance(x, bool | np.bool_):
        return "a bool"
    if isinstance(x, numbers.Integral):
        return "an int"
    if isinstance(x, numbers.Real):
        return "a float"
    if isinstance(x, np.ndarray):
        return "a numpy.ndarray"
    if x is None:
        return "None"
    return f"a {type(x).__module__}.{type(x).__qualname__}".replace("builtins.", "")


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ("," if t.dim() == 1 else "") + ")"


def _fmt(value: Any, dtype: torch.dtype | None = None) -> str:
    """Shortest readable form of one element (float32 values without float64 noise)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    value = float(value)
    if dtype in (torch.float32, torch.bfloat16, torch.complex64):
        return str(np.float32(value))
    if dtype in (torch.float16, torch.complex32):
        return str(np.float16(value))
    return repr(value)


def _index(flat: int, shape: torch.Size) -> str:
    """Flat index -> '[i, j, k]' (or 'the scalar' for 0-dim)."""
    if len(shape) == 0:
        return "the scalar"
    idx = []
    for size in reversed(shape):
        idx.append(flat % size)
        flat //= size
    return "index [" + ", ".join(str(i) for i in reversed(idx)) + "]"


def _shape_hint(actual: torch.Size, expected: torch.Size) -> str:
    if len(actual) >= 2 and tuple(actual) == tuple(reversed(expected)):
        return " (looks transposed: torch stores a Linear weight as [out, in])"
    if [s for s in actual if s != 1] == [s for s in expected if s != 1]:
        return " (differs only in size-1 dims: keepdim / unsqueeze / squeeze mix-up?)"
    if math.prod(actual) == math.prod(expected):
        return " (same number of elements: a reshape/view or transpose mix-up?)"
    if len(actual) > 0 and len(expected) > 0 and tuple(actual[1:]) == tuple(expected[1:]):
        return " (batch dimension differs: reduced or broadcast over the wrong dim?)"
    return ""


# ----------------------------------------------------------------------------------------------
# assert_close / assert_equal
# ----------------------------------------------------------------------------------------------


def _check_tensor_meta(actual: Any, expected: torch.Tensor, name: str) -> None:
    """Type, dtype, shape and device checks shared by assert_close and assert_equal."""
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(
            f"{name} is {_type_name(actual)}, expected a torch.Tensor "
            f"of shape {_shape(expected)} and dtype {expected.dtype}"
        )
    if actual.dtype != expected.dtype:
        hint = ""
        if actual.is_floating_point() and expected.is_floating_point():
            hint = " (create tensors with dtype=x.dtype, compute in the input's dtype)"
        elif expected.dtype == torch.bool:
            hint = " (a mask should be a comparison result, e.g. x > 0, not a 0/1 tensor)"
        elif not actual.is_floating_point() and expected.is_floating_point():
            hint = " (integer arithmetic where floats were expected: use x.float() or 1.0*...?)"
        raise AssertionError(f"{name} has dtype {actual.dtype}, expected {expected.dtype}{hint}")
    if actual.shape != expected.shape:
        raise AssertionError(
            f"{name} has shape {_shape(actual)}, expected {_shape(expected)}"
            + _shape_hint(actual.shape, expected.shape)
        )
    if actual.device != expected.device:
        raise AssertionError(
            f"{name} is on device {actual.device}, expected {expected.device} "
            "(create tensors with device=x.device, taken from the inputs)"
        )


def _factor_hint(a: torch.Tensor, e: torch.Tensor) -> str:
    """' (all values off by a constant factor 1.41)' when actual = c * expected, else ''."""
    nz = (e != 0) & torch.isfinite(e) & torch.isfinite(a)
    if int(nz.sum()) < 2 or bool(((a != 0) & (e == 0)).any()):
        return ""
    ratio = a[nz] / e[nz]
    lo, hi = float(ratio.min()), float(ratio.max())
    if abs(hi - lo) > 1e-3 * max(abs(lo), abs(hi)) or abs(lo - 1.0) < 1e-6:
        return ""
    c = 0.5 * (lo + hi)
    if abs(c + 1.0) < 1e-3:
        return " (every value has the wrong sign)"
    known = {
        "sqrt(2)": math.sqrt(2.0),
        "1/sqrt(2)": 1 / math.sqrt(2.0),
        "sqrt(3)": math.sqrt(3.0),
        "1/sqrt(3)": 1 / math.sqrt(3.0),
        "2": 2.0,
        "1/2": 0.5,
    }
    for label, value in known.items():
        if abs(c - value) < 1e-3 * value:
            return f" (all values off by a constant factor {c:.4g} = {label})"
    return f" (all values off by a constant factor {c:.4g})"


def assert_close(
    actual: Any,
    expected: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    name: str = "result",
) -> None:
    """Assert that ``actual`` is close to ``expected``, with a message that says what differs.

    Checks in order, each with its own message: the type (Tensor or Python number), the dtype,
    the shape, the device, then the values: ``|actual - expected| <= atol + rtol * |expected|``
    elementwise (as ``torch.isclose``; NaN never equals NaN, infinities must match exactly).

    Args:
        actual: Tensor of any shape, or a Python number (int, float, bool): the student's value.
        expected: Tensor of the same dtype, shape and device, or a Python number.
        rtol: relative tolerance. Default: torch.testing's for the dtype (float32: 1.3e-6,
            float64: 1e-7, float16: 1e-3, bfloat16: 1.6e-2; integers and bools: 0). Python
            numbers count as float64. Giving only one of rtol/atol keeps the default for the other.
        atol: absolute tolerance. Default: torch.testing's (float32: 1e-5, float64: 1e-7, ...).
        name: what to call ``actual`` in the message.

    Returns:
        None. Raises AssertionError naming the first difference found; for values, the number of
        mismatched elements, the worst element's index, got vs expected, and the tolerance.
    """
    if not isinstance(expected, torch.Tensor):
        _assert_close_scalar(actual, expected, rtol=rtol, atol=atol, name=name)
        return
    _check_tensor_meta(actual, expected, name)
    default_rtol, default_atol = _DEFAULT_TOLERANCES.get(expected.dtype, (0.0, 0.0))
    rtol = default_rtol if rtol is None else float(rtol)
    atol = default_atol if atol is None else float(atol)
    if actual.numel() == 0:
        return

    wide = torch.complex128 if expected.is_complex() else torch.float64
    a = actual.detach().to(wide)
    e = expected.detach().to(wide)
    close = torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=False)
    if bool(close.all()):
        return
    mismatch = ~close
    n_bad, n = int(mismatch.sum()), close.numel()
    diff = (a - e).abs()
    allowed = atol + rtol * e.abs()
    # Badness: how many times the allowed difference; NaN and inf count as infinitely bad.
    badness = (diff / allowed.clamp_min(torch.finfo(torch.float64).tiny)).nan_to_num(
        nan=math.inf, posinf=math.inf
    )
    badness = torch.where(mismatch, badness, torch.full_like(badness, -1.0))
    worst = int(badness.flatten().argmax())
    got, exp = a.flatten()[worst].item(), e.flatten()[worst].item()
    where = _index(worst, actual.shape)
    dtype = expected.dtype
    if isinstance(got, complex) or isinstance(exp, complex):
        detail = f"got {got}, expected {exp}"
    elif math.isnan(got):
        detail = f"got nan, expected {_fmt(exp, dtype)}"
    elif math.isinf(got) or math.isinf(exp):
        detail = f"got {_fmt(got, dtype)}, expected {_fmt(exp, dtype)}"
    else:
        d, allow = abs(got - exp), atol + rtol * abs(exp)
        detail = (
            f"got {_fmt(got, dtype)}, expected {_fmt(exp, dtype)} "
            f"(|diff| {d:.3g} > allowed {allow:.3g})"
        )
    n_nan = int((torch.isnan(a) & ~torch.isnan(e)).sum())
    nan_note = f"; {n_nan} NaN where a number was expected" if n_nan else ""
    hint = "" if expected.is_complex() else _factor_hint(a, e)
    raise AssertionError(
        f"{name}: {n_bad} of {n} elements differ ({100.0 * n_bad / n:.3g}%) beyond "
        f"rtol={rtol:g}, atol={atol:g}; worst at {where}: {detail}{nan_note}{hint}"
    )


def _assert_close_scalar(actual, expected, *, rtol, atol, name) -> None:
    if isinstance(expected, bool | np.bool_):
        _assert_equal_python(actual, expected, name)
        return
    if not isinstance(expected, numbers.Number):
        raise TypeError(
            f"assert_close: expected must be a torch.Tensor or a Python number, "
            f"got {_type_name(expected)}"
        )
    if isinstance(actual, torch.Tensor):
        raise AssertionError(
            f"{name} is a torch.Tensor of shape {_shape(actual)}, expected a Python number "
            f"{expected!r} (use .item() to get a number from a one-element tensor)"
        )
    if not isinstance(actual, numbers.Number) or isinstance(actual, bool | np.bool_):
        raise AssertionError(f"{name} is {_type_name(actual)}, expected a number {expected!r}")
    default_rtol, default_atol = _DEFAULT_TOLERANCES[torch.float64]
    rtol = default_rtol if rtol is None else float(rtol)
    atol = default_atol if atol is None else float(atol)
    got, exp = complex(actual), complex(expected)
    if got == exp:
        return
    if math.isnan(abs(got)) or math.isnan(abs(exp)) or math.isinf(abs(got)) or math.isinf(abs(exp)):
        raise AssertionError(f"{name} is {actual!r}, expected {expected!r}")
    d, allow = abs(got - exp), atol + rtol * abs(exp)
    if d > allow:
        hint = ""
        if exp != 0 and (got / exp).imag == 0 and abs((got / exp).real + 1) < 1e-9:
            hint = " (wrong sign)"
        raise AssertionError(
            f"{name} is {actual!r}, expected {expected!r} "
            f"(|diff| {d:.3g} > allowed {allow:.3g} with rtol={rtol:g}, atol={atol:g}){hint}"
        )


def assert_equal(actual: Any, expected: Any, *, name: str = "result") -> None:
    """Assert exact equality: ints, bools, strings, tuples/lists (e.g. shapes), exact tensors.

    Tensors are checked for type, dtype, shape and device (each with its own message), then
    elementwise equality; NaN equals NaN here (positions of NaN must match). Python values must
    have the expected kind: ``True`` is not accepted for ``1``, nor ``64.0`` for ``64``.

    Args:
        actual: the student's value: Tensor, Python int/bool/float/str, or a (nested) sequence
            or mapping of those.
        expected: the reference value, of the same kind.
        name: what to call ``actual`` in the message (elements get ``name[i]``).

    Returns:
        None. Raises AssertionError naming the first difference (for tensors: how many elements
        differ and the first one's index, got vs expected).
    """
    if isinstance(expected, torch.Tensor):
        _check_tensor_meta(actual, expected, name)
        a, e = actual.detach(), expected.detach()
        differ = a != e
        if a.is_floating_point() or a.is_complex():
            differ &= ~(torch.isnan(a) & torch.isnan(e))
        if not bool(differ.any()):
            return
        flat = differ.flatten()
        first = int(flat.nonzero()[0, 0])
        n_bad = int(flat.sum())
        got, exp = a.flatten()[first].item(), e.flatten()[first].item()
        raise AssertionError(
            f"{name}: {n_bad} of {flat.numel()} elements differ; first at "
            f"{_index(first, a.shape)}: got {_fmt(got, a.dtype)}, expected {_fmt(exp, e.dtype)}"
        )
    _assert_equal_python(actual, expected, name)


def _assert_equal_python(actual: Any, expected: Any, name: str) -> None:
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            raise AssertionError(f"{name} is {_type_name(actual)}, expected a mapping")
        missing = [k for k in expected if k not in actual]
        extra = [k for k in actual if k not in expected]
        if missing or extra:
            raise AssertionError(f"{name} has keys missing {missing} and unexpected {extra}")
        for k in expected:
            assert_equal(actual[k], expected[k], name=f"{name}[{k!r}]")
        return
    if isinstance(expected, list | tuple | torch.Size):
        if isinstance(actual, torch.Tensor) or not isinstance(actual, list | tuple | torch.Size):
            raise AssertionError(
                f"{name} is {_type_name(actual)}, expected a sequence {tuple(expected)!r}"
            )
        if len(actual) != len(expected):
            raise AssertionError(
                f"{name} has length {len(actual)}, expected {len(expected)}: "
                f"got {tuple(actual)!r}, expected {tuple(expected)!r}"
            )
        for i, (x, y) in enumerate(zip(actual, expected, strict=True)):
            assert_equal(x, y, name=f"{name}[{i}]")
        return
    if isinstance(actual, torch.Tensor):
        raise AssertionError(
            f"{name} is a torch.Tensor of shape {_shape(actual)}, expected "
            f"{_type_name(expected)} {expected!r} (use .item() or int(...))"
        )
    if isinstance(expected, bool | np.bool_):
        if not isinstance(actual, bool | np.bool_):
            raise AssertionError(f"{name} is {_type_name(actual)} {actual!r}, expected a bool")
    elif isinstance(expected, numbers.Integral):
        if isinstance(actual, bool | np.bool_) or not isinstance(actual, numbers.Integral):
            raise AssertionError(
                f"{name} is {_type_name(actual)} {actual!r}, expected an int {expected!r}"
            )
    elif isinstance(expected, numbers.Real) and not isinstance(actual, numbers.Real):
        raise AssertionError(f"{name} is {_type_name(actual)}, expected a float {expected!r}")
    if actual != expected:
        raise AssertionError(f"{name} is {actual!r}, expected {expected!r}")


# ----------------------------------------------------------------------------------------------
# statistical tests
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# device-agnostic check (meta device)
# ----------------------------------------------------------------------------------------------

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_THIS_DIR = os.path.dirname(__file__) + os.sep
# Functions that legitimately take tensors on different devices (cross-device copies, CPU index
# tensors) or change a tensor's device: the result check catches misuse of these.
_MIXING_ALLOWED = {
    "copy_",
    "to",
    "cpu",
    "cuda",
    "type_as",
    "new_tensor",
    "__getitem__",
    "__setitem__",
    "index_put_",
    "index_put",
    "set_",
    "__set__",
    "__get__",
}
_FACTORY_IGNORED = {"get_rng_state", "get_default_dtype", "Generator"}


def _func_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or repr(func)
    qual = getattr(func, "__qualname__", "") or ""
    if qual.startswith(("TensorBase.", "Tensor.")):
        return f"Tensor.{name}"
    module = getattr(func, "__module__", None) or "torch"
    if module.startswith("torch._C._nn"):
        module = "torch.nn.functional"
    elif module.startswith("torch._C") or module.startswith("torch._VariableFunctions"):
        module = "torch"
    return f"{module}.{name}" if module.startswith("torch") else name


def _iter_tensors(obj: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(path, tensor) for every tensor in obj: tensors, modules' parameters/buffers, containers."""
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, nn.Module):
        prefix = f"{path}." if path else ""
        for n, t in obj.named_parameters():
            yield prefix + n, t
        for n, t in obj.named_buffers():
            yield prefix + n, t
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            yield from _iter_tensors(item, f"{path}[{i}]")
    elif isinstance(obj, Mapping):
        for k, item in obj.items():
            yield from _iter_tensors(item, f"{path}[{k!r}]")


def _flat_tensors(args: Any, kwargs: Any) -> list[torch.Tensor]:
    out = []

    def walk(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            out.append(o)
        elif isinstance(o, list | tuple):
            for i in o:
                walk(i)
        elif isinstance(o, Mapping):
            for i in o.values():
                walk(i)

    walk(args)
    walk(kwargs)
    return out


def _is_library(frame) -> bool:
    return frame.f_code.co_filename.startswith((_TORCH_DIR, _THIS_DIR)) or (
        frame.f_code.co_filename.startswith("<frozen")
    )


def _caller_frames(depth: int = 2):
    """(direct caller if it is user code else None, first user frame up the stack or None)."""
    frame = sys._getframe(depth)
    direct = None if _is_library(frame) else frame
    while frame is not None and _is_library(frame):
        frame = frame.f_back
    return direct, frame


class _DeviceProblem(AssertionError):
    pass


class _DeviceWatch(TorchFunctionMode):
    """Watches every torch call: flags factories without device= and ops mixing devices."""

    def __init__(self) -> None:
        super().__init__()
        self.origin: dict[int, tuple[str, torch.Tensor]] = {}

    @staticmethod
    def _where(direct, user) -> str:
        if direct is not None:
            return f" in {direct.f_code.co_name}, line {direct.f_lineno}"
        if user is not None:
            return f" (inside torch, called from {user.f_code.co_name}, line {user.f_lineno})"
        return ""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        tensors = _flat_tensors(args, kwargs)
        frame, user = _caller_frames(2)
        where = self._where(frame, user)
        if name not in _MIXING_ALLOWED:
            # A 0-dim CPU tensor mixes with any device in torch (it acts as a scalar).
            kinds = {
                t.device.type for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)
            }
            if len(kinds) > 1:
                stray = [t for t in tensors if t.device.type not in ("meta",) and t.dim() > 0]
                stray = stray or tensors
                origins = [self.origin[id(t)][0] for t in stray if id(t) in self.origin]
                made = origins[0] if origins else "a tensor or module created without device=?"
                devices = " and ".join(sorted(kinds))
                raise _DeviceProblem(
                    f"{_func_name(func)}{where} got tensors on different devices "
                    f"({devices}): your code creates a tensor on {stray[0].device} ({made}) "
                    "instead of on the inputs' device; create tensors with device=x.device "
                    "(and dtype=x.dtype), or use torch.zeros_like(x) / x.new_zeros(...)"
                )
        result = func(*args, **kwargs)
        if isinstance(result, torch.Tensor) and name not in _FACTORY_IGNORED:
            tracked = [self.origin[id(t)][0] for t in tensors if id(t) in self.origin]
            if not tensors and frame is not None and "device" not in kwargs and result.dim() > 0:
                raise _DeviceProblem(
                    f"{_func_name(func)}(...){where} is called without device=: "
                    f"your code creates a tensor on {result.device}, which breaks on any "
                    "other device; create tensors with device=x.device (and dtype=x.dtype), "
                    "or use torch.zeros_like(x) / x.new_zeros(...)"
                )
            if not tensors and result.device.type != "meta":
                self.origin[id(result)] = (f"{_func_name(func)}{where}", result)
            elif tracked and result.device.type != "meta":
                self.origin[id(result)] = (tracked[0], result)
        return result


def _to_meta(obj: Any) -> Any:
    if isinstance(obj, nn.Parameter):
        return nn.Parameter(obj.detach().to("meta"), requires_grad=obj.requires_grad)
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("meta").requires_grad_(obj.requires_grad)
    if isinstance(obj, nn.Module):
        return copy.deepcopy(obj).to("meta")
    if isinstance(obj, tuple):
        return tuple(_to_meta(o) for o in obj)
    if isinstance(obj, list):
        return [_to_meta(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _to_meta(v) for k, v in obj.items()}
    return obj


def _fresh_copy(obj: Any) -> Any:
    if isinstance(obj, nn.Parameter):
        return nn.Parameter(obj.detach().clone(), requires_grad=obj.requires_grad)
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone().requires_grad_(obj.requires_grad)
    if isinstance(obj, nn.Module):
        return copy.deepcopy(obj)
    if isinstance(obj, tuple):
        return tuple(_fresh_copy(o) for o in obj)
    if isinstance(obj, list):
        return [_fresh_copy(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _fresh_copy(v) for k, v in obj.items()}
    return obj


_META_UNSUPPORTED = (
    "cannot be called on meta tensors",
    "Cannot copy out of meta tensor",
    "meta device type tensor to numpy",
    "with Meta tensors",
    "register_meta",
    "data-dependent",
)
_DEVICE_MISMATCH = ("is not on the expected device", "same device", "different devices")


def check_device_agnostic(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Assert that ``fn`` creates every tensor on its inputs' device (device-agnostic code).

    How: every tensor argument (and every nn.Module argument, deep-copied) is moved to the
    ``meta`` device, which has shapes and dtypes but no data, and ``fn`` is called under a
    ``torch.overrides.TorchFunctionMode`` that watches each torch call. It fails when fn
      - calls a factory (torch.zeros, torch.randn, torch.tensor, torch.arange, ...) without
        ``device=`` (0-dim results such as ``torch.tensor(2.0)`` are allowed: torch mixes
        them with any device);
      - passes tensors on different devices to one op (torch itself raises "Tensor on device
        cpu is not on the expected device meta!" for some ops, but not all: ``meta @ cpu`` and
        ``F.linear(meta, cpu)`` run silently on meta in torch 2.13, so we check every call);
      - returns a tensor, or leaves a module parameter, that is not on the inputs' device.
    The caller's tensors and modules are not touched.

    Meta tensors have no data, so code that reads values (``.item()``, ``if t.any():``,
    ``.tolist()``, ``.numpy()``, ``torch.nonzero``, ``torch.unique``) cannot run on meta.
    Then fn is called on copies of the real inputs with the same watch (factories without
    device= and mixed devices are still caught), and a warning says so.

    Args:
        fn: the function under test, e.g. a student's initializer.
        *args: its positional arguments: tensors, modules, numbers, generators...
        **kwargs: its keyword arguments.

    Returns:
        None. Raises AssertionError naming the torch call (and the line of the student's code)
        that creates a tensor on the wrong device.
    """
    fn_name = getattr(fn, "__name__", None) or repr(fn)
    if not any(True for _ in _iter_tensors((args, kwargs))):
        raise ValueError("check_device_agnostic needs at least one tensor or module argument")
    meta_args, meta_kwargs = _to_meta(args), _to_meta(kwargs)
    watch = _DeviceWatch()
    try:
        with watch:
            result = fn(*meta_args, **meta_kwargs)
    except _DeviceProblem as e:
        raise AssertionError(f"{fn_name}: {e}") from None
    except (NotImplementedError, RuntimeError, TypeError) as e:
        text = str(e)
        if any(s in text for s in _DEVICE_MISMATCH):
            raise AssertionError(
                f"{fn_name}: torch raised '{text.splitlines()[0]}' with inputs on the meta "
                "device: your code creates a tensor on cpu; create tensors with "
                "device=x.device (and dtype=x.dtype)"
            ) from None
        if not any(s in text for s in _META_UNSUPPORTED):
            raise
        _check_on_real_inputs(fn, fn_name, args, kwargs, reason=text.splitlines()[0])
        return
    for where, obj in (("returned", result), ("left in its arguments", (meta_args, meta_kwargs))):
        for path, t in _iter_tensors(obj):
            if t.device.type != "meta":
                label = "result" if where == "returned" else "argument"
                raise AssertionError(
                    f"{fn_name} {where} a tensor on {t.device} ({label}{path}) although its "
                    "inputs were on the meta device: your code creates a tensor on "
                    f"{t.device}; create tensors with device=x.device (and dtype=x.dtype)"
                )


def _check_on_real_inputs(fn, fn_name, args, kwargs, *, reason: str) -> None:
    args, kwargs = _fresh_copy(args), _fresh_copy(kwargs)
    devices = {t.device for _, t in _iter_tensors((args, kwargs))}
    try:
        with _DeviceWatch():
            result = fn(*args, **kwargs)
    except _DeviceProblem as e:
        raise AssertionError(f"{fn_name}: {e}") from None
    for path, t in _iter_tensors(result):
        if t.device not in devices and not (t.device.type == "cpu" and t.dim() == 0):
            raise AssertionError(
                f"{fn_name} returned a tensor on {t.device} (result{path}) although its inputs "
                f"were on {', '.join(str(d) for d in devices)}; create tensors with "
                "device=x.device"
            )
    warnings.warn(
        f"check_device_agnostic: {fn_name} reads tensor values, which the meta device cannot "
        f"({reason}); checked on the real inputs instead: no factory without device=, "
        "no mixed devices",
        stacklevel=3,
    )


# ----------------------------------------------------------------------------------------------
# in-place and generator conventions
# ----------------------------------------------------------------------------------------------


def _storage_map(obj: torch.Tensor | nn.Module) -> dict[str, tuple[int, int]]:
    if isinstance(obj, torch.Tensor):
        return {"": (id(obj), obj.data_ptr())}
    return {n: (id(t), t.data_ptr()) for n, t in _iter_tensors(obj)}


def assert_in_place(
    fn: Callable[..., Any], tensor_or_module: torch.Tensor | nn.Module, *args: Any, **kwargs: Any
) -> None:
    """Assert that ``fn(tensor_or_module, *args, **kwargs)`` works in place like torch.nn.init.

    Checks that fn returns the very object it was given (``is``), and that the tensor (or each
    parameter and buffer of the module) is the same object with the same storage afterwards:
    no new ``nn.Parameter``, no ``tensor.data = ...`` reassignment.

    Args:
        fn: the in-place function under test, e.g. a student's initializer.
        tensor_or_module: Tensor of any shape, or nn.Module, passed as fn's first argument.
        *args: fn's other positional arguments.
        **kwargs: fn's keyword arguments.

    Returns:
        None. Raises AssertionError saying whether fn returned another object (or None),
        replaced a parameter, or reallocated storage.
    """
    fn_name = getattr(fn, "__name__", None) or repr(fn)
    before = _storage_map(tensor_or_module)
    out = fn(tensor_or_module, *args, **kwargs)
    kind = "tensor" if isinstance(tensor_or_module, torch.Tensor) else "module"
    if out is None:
        raise AssertionError(
            f"{fn_name} returned None; an in-place function (name ending in _) modifies its "
            f"argument and returns it: end with `return {kind}` (like torch.nn.init.normal_)"
        )
    if out is not tensor_or_module:
        raise AssertionError(
            f"{fn_name} returned a new object ({_type_name(out)}) instead of the {kind} it was "
            "given: modify the argument in place (e.g. tensor.normal_(), tensor.copy_(...), "
            f"under torch.no_grad()) and return it"
        )
    after = _storage_map(tensor_or_module)
    if isinstance(tensor_or_module, nn.Module):
        missing = sorted(set(before) - set(after))
        added = sorted(set(after) - set(before))
        if missing or added:
            raise AssertionError(
                f"{fn_name} changed the module's parameters/buffers: removed {missing}, "
                f"added {added}; modify the existing ones in place"
            )
    for n, (obj_id, ptr) in before.items():
        label = f"parameter '{n}'" if n else "the tensor's"
        if after[n][0] != obj_id:
            raise AssertionError(
                f"{fn_name} replaced {label} with a new object (a new nn.Parameter?): modify it "
                "in place instead, e.g. `with torch.no_grad(): p.copy_(...)` or p.normal_()"
            )
        if ptr != 0 and after[n][1] != ptr:
            what = f"{label} storage" if n else "the tensor's storage"
            raise AssertionError(
                f"{fn_name} reallocated {what} (data_ptr changed, e.g. by `.data = ...`): "
                "write into the existing tensor with in-place ops (copy_, fill_, normal_, mul_)"
            )


def _rng_states(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    states = {
        "torch's global generator (torch.manual_seed)": torch.random.get_rng_state(),
        "numpy's global generator (np.random)": (np_state[1].tobytes(), *np_state[2:]),
        "Python's random module": random.getstate(),
    }
    if device.type == "cuda":
        states[f"torch's global {device} generator"] = torch.cuda.get_rng_state(device)
    return states


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def assert_generator_reproducible(
    fn: Callable[..., Any], make_input: Callable[[], Any], *, seed: int = 1234
) -> None:
    """Assert that a random function draws all its randomness from its ``generator`` argument.

    Calls ``fn(make_input(), generator=torch.Generator(device).manual_seed(seed))`` twice and
    requires identical results; once more with ``seed + 1`` and requires a different result;
    and requires that no call touches the global generators (torch's CPU and CUDA ones, numpy's,
    Python's ``random``). The compared result is fn's return value, or its (modified) input
    when fn returns None; modules are compared by parameters and buffers.

    Args:
        fn: random function taking an input and a keyword ``generator: torch.Generator``.
        make_input: callable returning a fresh input (Tensor or nn.Module) for each call; the
            generator is created on the device of its first tensor.
        seed: the seed for the first two calls.

    Returns:
        None. Raises AssertionError naming which property fails.
    """
    fn_name = getattr(fn, "__name__", None) or repr(fn)
    probe = make_input()
    first = next((t for _, t in _iter_tensors(probe)), None)
    device = first.device if first is not None else torch.device("cpu")
    if device.type == "meta":
        device = torch.device("cpu")

    def call(s: int) -> list[torch.Tensor]:
        x = make_input()
        before = _rng_states(device)
        gen = torch.Generator(device=device).manual_seed(s)
        try:
            out = fn(x, generator=gen)
        except TypeError as e:
            if "generator" in str(e):
                raise AssertionError(
                    f"{fn_name} does not accept a keyword argument `generator` ({e}); random "
                    "functions take `generator: torch.Generator | None = None`"
                ) from None
            raise
        after = _rng_states(device)
        for label, state in before.items():
            if not _same(state, after[label]):
                raise AssertionError(
                    f"{fn_name} used {label}: draw every random number from the generator "
                    "argument, e.g. torch.randn(..., generator=generator) or "
                    "tensor.normal_(generator=generator)"
                )
        return [t.detach().clone() for _, t in _iter_tensors(x if out is None else out)]

    def equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return len(a) == len(b) and all(
            x.shape == y.shape and bool(((x == y) | (x.isnan() & y.isnan())).all())
            for x, y in zip(a, b, strict=True)
        )

    r1, r2 = call(seed), call(seed)
    if not r1:
        raise AssertionError(f"{fn_name} returned no tensor (nor modified a tensor input)")
    if not equal(r1, r2):
        raise AssertionError(
            f"{fn_name}: two calls with generators seeded {seed} gave different results: some "
            "randomness does not come from the generator argument (pass generator=generator to "
            "every random call)"
        )
    if equal(r1, call(seed + 1)):
        raise AssertionError(
            f"{fn_name}: generators seeded {seed} and {seed + 1} gave identical results: the "
            "generator argument is not used"
        )


@contextlib.contextmanager
def report(name: str) -> Iterator[None]:
    """Context manager for a visible test cell: prefixes failures with ``name``, prints success.

    Example::

        with report("my_init_"):
            assert_in_place(my_init_, torch.empty(64, 32))
            normal_mean_std_test(my_init_(torch.empty(256, 256)), 0.0, expected_std)

    Args:
        name: what is being tested, e.g. the exercise's function name.

    Returns:
        A context manager; on success it prints ``"<name>: visible checks passed"``; an
        AssertionError inside is re-raised as ``AssertionError("<name>: <message>")``.
    """
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"{name}: {e}") from None
    print(f"{name}: visible checks passed")
