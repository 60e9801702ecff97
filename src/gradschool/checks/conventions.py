"""The conventions of the course's in-place and random functions: ``assert_in_place`` (same
tensors, modified, returned) and ``assert_generator_reproducible`` (draws only from the
generator)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from gradschool.checks._format import _type_name
from gradschool.checks.device import _iter_tensors


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
