"""How the checks write values, shapes and indices in their messages."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

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
