"""``assert_close`` and ``assert_equal``: exact or toleranced comparison with a message that says
what differs (dtype, shape, device, which element, expected vs got) and, where it can tell, why."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from gradschool.checks._format import (
    _DEFAULT_TOLERANCES,
    _fmt,
    _index,
    _shape,
    _shape_hint,
    _type_name,
)


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
    """'all values off by a constant factor 1.41' when actual = c * expected, else ''."""
    nz = (e != 0) & torch.isfinite(e) & torch.isfinite(a)
    if int(nz.sum()) < 2 or bool(((a != 0) & (e == 0)).any()):
        return ""
    ratio = a[nz] / e[nz]
    lo, hi = float(ratio.min()), float(ratio.max())
    c = 0.5 * (lo + hi)
    if abs(hi - lo) > 1e-3 * max(abs(lo), abs(hi)) or abs(c - 1.0) < 1e-3:  # not a factor
        return ""
    if abs(c + 1.0) < 1e-3:
        return "every value has the wrong sign"
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
            return f"all values off by a constant factor {c:.4g} = {label}"
    return f"all values off by a constant factor {c:.4g}"


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
        None. Raises AssertionError naming the first difference found; for values, the likely
        cause first when there is one (NaNs, a constant factor, the wrong sign), then the number
        of mismatched elements, the worst element's index, got vs expected, and the tolerance.
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
    hints = [f"{n_nan} NaN where a number was expected" if n_nan else "",
             "" if expected.is_complex() else _factor_hint(a, e)]
    cause = "".join(f"{h}; " for h in hints if h)  # first: the long detail may be cut off
    raise AssertionError(
        f"{name}: {cause}{n_bad} of {n} elements differ ({100.0 * n_bad / n:.3g}%) beyond "
        f"rtol={rtol:g}, atol={atol:g}; worst at {where}: {detail}"
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
