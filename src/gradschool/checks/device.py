"""``check_device_agnostic``: run a function on the meta device and flag every tensor it creates
without ``device=`` and every operation that mixes devices."""

from __future__ import annotations

import copy
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
# Frames in torch or in gradschool are the library; the rest is the student's code.
_GRADSCHOOL_DIR = os.path.dirname(os.path.dirname(__file__)) + os.sep
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
    "_has_compatible_shallow_copy_type",  # nn.Module.to(device) compares old and new tensors
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
    return frame.f_code.co_filename.startswith((_TORCH_DIR, _GRADSCHOOL_DIR)) or (
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


def _copy_tree(obj: Any, device: str | None) -> Any:
    """``obj`` with every tensor, parameter and module replaced by a copy on ``device`` (None:
    a copy on the same device); containers are rebuilt, anything else is passed through.

    Gradients come along (a function under test may read them: ``grad_norm``,
    ``clip_grad_norm_``), also for modules, whose ``deepcopy`` drops them
    (``Parameter.__deepcopy__`` copies the data only).
    """

    def move(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device) if device else t.detach().clone()

    if isinstance(obj, torch.Tensor):
        twin = move(obj).requires_grad_(obj.requires_grad)
        if isinstance(obj, nn.Parameter):
            twin = nn.Parameter(twin, requires_grad=obj.requires_grad)
        if obj.grad is not None:
            twin.grad = move(obj.grad)
        return twin
    if isinstance(obj, nn.Module):
        twin = copy.deepcopy(obj)
        for ours, theirs in zip(twin.parameters(), obj.parameters(), strict=True):
            if theirs.grad is not None:
                ours.grad = theirs.grad.detach().clone()
        return twin.to(device) if device else twin
    if isinstance(obj, tuple):
        return tuple(_copy_tree(o, device) for o in obj)
    if isinstance(obj, list):
        return [_copy_tree(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _copy_tree(v, device) for k, v in obj.items()}
    return obj


def _to_meta(obj: Any) -> Any:
    return _copy_tree(obj, "meta")


def _fresh_copy(obj: Any) -> Any:
    return _copy_tree(obj, None)


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
