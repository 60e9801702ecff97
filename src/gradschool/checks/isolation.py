"""One mistake costs one test: a visible test of one exercise runs with the other exercises'
functions replaced by known-good or spying stand-ins, so that a bug elsewhere cannot fail it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

_MISSING = object()


def _namespace(owner: Any) -> dict:
    """The global namespace ``owner`` (a function or class, usually defined in the notebook)
    looks its names up in."""
    if hasattr(owner, "__globals__"):
        return owner.__globals__
    module = sys.modules.get(getattr(owner, "__module__", "") or "")
    if module is None:
        raise TypeError(f"replaced: cannot find the module of {owner!r}")
    return vars(module)


@contextlib.contextmanager
def replaced(owner: Any, **stand_ins: Any) -> Iterator[None]:
    """Within the block, the global names that ``owner`` uses are bound to ``stand_ins``.

    Example (a visible test of ``Dropout`` that does not depend on the student's ``dropout``)::

        calls = []
        def spy(x, p, training=True, generator=None):
            calls.append((p, training, generator))
            return x
        with replaced(Dropout, dropout=spy):
            Dropout(0.3)(torch.ones(2))
        assert calls == [(0.3, True, None)], "Dropout must call dropout(x, self.p, ...)"

    Args:
        owner: the function or class under test; its module's globals (the notebook's
            namespace for code written in a notebook) are the ones replaced.
        **stand_ins: name -> the object the name stands for inside the block.

    Returns:
        A context manager; on exit every name is bound again to what it was (or unbound).
    """
    namespace = _namespace(owner)
    saved = {name: namespace.get(name, _MISSING) for name in stand_ins}
    namespace.update(stand_ins)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is _MISSING:
                namespace.pop(name, None)
            else:
                namespace[name] = value
