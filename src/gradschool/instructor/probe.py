"""What runs in the submission's kernel for one probe of a hidden check, and what it watches.

:meth:`GradingKernel.probe <gradschool.instructor.kernel.GradingKernel.probe>` sends
:func:`probe_cell` to the kernel. The cell runs :func:`_runner` (its source, compiled under a
random file name of the grader's, so the grader's frames are told apart from the student's):

1. it resets the global torch settings a student may have left (``torch.set_default_device``,
   the default dtype, grad mode, TF32), so that a test behaves the same on every grader;
2. it puts the test's *stand-ins* in place: known-good versions of the other exercises' functions
   (``{"dropout": "def dropout(...): ..."}``), so that a test depends on its own exercise only; the
   student's names come back afterwards;
3. with a :class:`Guard`, it checks that each graded name is the student's own code (not torch's
   function under another name, not a subclass of a forbidden class), and wraps every forbidden
   entry that names a callable (``torch.nn.functional.batch_norm``, ``torch.optim.Adam``: its
   ``__init__``, ``step`` and ``forward``; ``torch.Tensor.backward``) in a *tripwire* that notes
   a call made from the student's code (the first frame outside torch, the standard library and
   installed packages is the student's, not the grader's), for the probe's duration;
4. it runs the probe's code on the inputs and saves ``{"result", "devices", "tripped",
   "foreign"}``, ``devices`` the device type of each tensor of the result, in the order
   :func:`tensors_in` walks it.

The grader reads that back as plain data, on the CPU (``kernel.read_result``), turns a tripwire
or a foreign graded name into a failed test (:class:`Delegated`), and marks each tensor with the
device it came from: :func:`device_of` tells a hidden check where the student's code put it.
The static reading of the source (:mod:`gradschool.delegation`) is the first line; this is the
second, for routes the source hides.
"""

from __future__ import annotations

import inspect
import secrets
from dataclasses import dataclass, field

#: Run before each test cell and inside each probe: the global settings a test must not inherit.
RESET = """\
import torch as __gradschool_torch
if hasattr(__gradschool_torch, "set_default_device"):
    __gradschool_torch.set_default_device(None)
__gradschool_torch.set_default_dtype(__gradschool_torch.float32)
__gradschool_torch.set_grad_enabled(True)
__gradschool_torch.backends.cuda.matmul.allow_tf32 = False
__gradschool_torch.backends.cudnn.allow_tf32 = False
__gradschool_torch.set_float32_matmul_precision("highest")
del __gradschool_torch
"""


@dataclass(frozen=True)
class Guard:
    """What the probes of one test watch, and what they replace.

    graded: the names the exercise defines (its solution cells' functions and classes).
    forbidden: the exercise's forbidden entries (:mod:`gradschool.delegation`); the dotted ones
        that name a callable or a class become tripwires.
    stand_ins: name -> source defining that name: known-good versions of other exercises'
        functions, in place while the probe runs.
    """

    graded: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    stand_ins: dict[str, str] = field(default_factory=dict)


class Delegated(AssertionError):
    """The probe saw the exercise reach torch's implementation; the message says how."""


def tensors_in(obj):
    """The tensors of a probe result, in a fixed order (dict values in order, lists, tuples)."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from tensors_in(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from tensors_in(value)


def device_of(tensor) -> str:
    """The device type (``"cpu"``, ``"cuda"``) a tensor of a probe's result had in the kernel
    (results come back on the grader's CPU)."""
    return getattr(tensor, "gradschool_device", tensor.device.type)


def _runner(user, code, source, target, token, graded, forbidden, stand_ins, reset, walk):
    """Runs in the kernel (see the module doc). ``user``: the notebook's namespace."""
    import functools
    import linecache
    import os
    import sys
    import sysconfig
    import types

    import torch

    exec(reset, {})
    scope = {}
    exec(walk, scope)
    tensors_in = scope["tensors_in"]
    missing = object()
    skipped = tuple({os.path.dirname(torch.__file__) + os.sep, sys.prefix + os.sep,
                     sys.base_prefix + os.sep, os.path.dirname(os.__file__) + os.sep,
                     os.path.dirname(__import__("gradschool").__file__) + os.sep,
                     *(sysconfig.get_paths()[k] + os.sep for k in ("purelib", "platlib"))})

    def student_frame(frame):
        while frame is not None:
            name = frame.f_code.co_filename
            if name == token:
                return None
            if not (name.startswith(skipped) or name.startswith("<frozen")):
                return frame
            frame = frame.f_back
        return None

    def resolve(path):
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = __import__(".".join(parts[:cut]), fromlist=["_"])
            except Exception:  # noqa: BLE001 - not a module
                continue
            try:
                for name in parts[cut:]:
                    obj = getattr(obj, name)
            except AttributeError:
                return None
            return obj
        return None

    banned = {}  # id -> entry, of each forbidden object (a module's: what it defines)
    for entry in forbidden:
        obj = resolve(entry) if "." in entry else None
        if isinstance(obj, types.ModuleType):
            for name, value in vars(obj).items():
                if getattr(value, "__module__", None) == obj.__name__:
                    banned.setdefault(id(value), f"{entry}.{name}")
        elif obj is not None:
            banned.setdefault(id(obj), entry)

    def own(obj, depth=0):
        if depth > 5:
            return False
        if isinstance(obj, functools.partial):
            return own(obj.func, depth + 1)
        inner = getattr(obj, "__wrapped__", None) or getattr(obj, "__func__", None)
        if inner is not None and inner is not obj:
            return own(inner, depth + 1)
        if isinstance(obj, type):
            return obj.__module__ == "__main__"
        code_object = getattr(obj, "__code__", None)
        if code_object is not None:
            return not code_object.co_filename.startswith(skipped)
        return type(obj).__module__ == "__main__"

    foreign = []
    for name in graded:
        obj = user.get(name, missing)
        if obj is missing:
            continue
        if not own(obj):
            what = f"{getattr(obj, '__module__', '') or ''}.{getattr(obj, '__qualname__', '')}"
            foreign.append(f"{name} is not your own code but {what.strip('.') or type(obj)}")
        elif isinstance(obj, type):
            base = next((banned[id(c)] for c in obj.__mro__[1:] if id(c) in banned), None)
            if base:
                foreign.append(f"{name} subclasses {base}")

    tripped, restore = [], []

    def wrap(owner, attribute, label):
        try:
            current = getattr(owner, attribute)
        except AttributeError:
            return
        if getattr(current, "__gradschool_tripwire__", False):
            return

        def tripwire(*args, **kwargs):
            frame = student_frame(sys._getframe(1))
            if frame is not None:
                line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
                tripped.append(f"{label} (called by `{line[:80]}`)")
            return current(*args, **kwargs)

        tripwire.__gradschool_tripwire__ = True
        original = vars(owner).get(attribute, missing) if isinstance(owner, type) else current
        try:
            setattr(owner, attribute, tripwire)
        except (AttributeError, TypeError):  # a built-in type: nothing to wrap
            return
        restore.append((owner, attribute, original))

    saved = {}
    try:
        for name, definition in stand_ins.items():
            namespace = dict(user)
            exec(compile(definition, token, "exec"), namespace)
            saved[name] = user.get(name, missing)
            user[name] = namespace[name]
        def watch(obj, owner, attribute, label):
            if isinstance(obj, type):
                for method in ("__init__", "forward", "step"):
                    if hasattr(obj, method):
                        wrap(obj, method, f"{label}.{method}")
            elif callable(obj):
                wrap(owner, attribute, label)

        for entry in forbidden:
            obj = resolve(entry) if "." in entry else None
            if obj is None:
                continue
            owner_path, attribute = entry.rsplit(".", 1)
            if isinstance(obj, types.ModuleType):  # everything the module defines
                for name, value in list(vars(obj).items()):
                    if getattr(value, "__module__", None) == obj.__name__:
                        watch(value, obj, name, f"{entry}.{name}")
                continue
            watch(obj, resolve(owner_path), attribute, entry)
            for name, module in list(sys.modules.items()):  # re-exports below the owner
                if name.startswith(owner_path + ".") and vars(module).get(attribute) is obj:
                    watch(obj, module, attribute, entry)
        namespace = dict(user)
        namespace.update(torch.load(source, weights_only=True))
        try:
            exec(compile(code, token, "exec"), namespace)
            if "result" not in namespace:
                raise NameError("the probe did not assign `result`")
            result = namespace["result"]
        except Exception:
            if not tripped:  # a delegation that crashed half-way is still a delegation
                raise
            result = None
    finally:
        for owner, attribute, original in reversed(restore):
            if original is missing:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)
        for name, value in saved.items():
            if value is missing:
                user.pop(name, None)
            else:
                user[name] = value
    torch.save({"result": result, "devices": [t.device.type for t in tensors_in(result)],
                "tripped": list(dict.fromkeys(tripped))[:3], "foreign": foreign}, target)


RUNNER = inspect.getsource(_runner)
WALK = inspect.getsource(tensors_in)


def probe_cell(code: str, source: str, target: str, guard: Guard | None = None) -> str:
    """The source of the cell that runs probe ``code`` in the kernel, reading its inputs from the
    file ``source`` and writing its answer to ``target`` (paths as the kernel sees them)."""
    guard = guard or Guard()
    token = f"<grader-{secrets.token_hex(8)}>"
    call = (f"{RUNNER}\n_runner(user, {code!r}, {source!r}, {target!r}, {token!r}, "
            f"{guard.graded!r}, {guard.forbidden!r}, {guard.stand_ins!r}, {RESET!r}, "
            f"{WALK!r})\n")
    return (f"exec(compile({call!r}, {token!r}, 'exec'), {{'user': globals(), "
            f"'__builtins__': __builtins__}})\n")


def answer(saved: dict):
    """The probe's result from what :func:`_runner` saved; raises :class:`Delegated` when a
    tripwire fired or a graded name is not the student's own code."""
    if saved.get("foreign"):
        raise Delegated(f"{saved['foreign'][0]}: this exercise is to implement it yourself")
    if saved.get("tripped"):
        raise Delegated(f"calls {saved['tripped'][0]} while the grader runs it: this exercise "
                        "is to implement it yourself, not to call torch's")
    result = saved["result"]
    for tensor, device in zip(tensors_in(result), saved.get("devices", []), strict=False):
        tensor.gradschool_device = device
    return result
