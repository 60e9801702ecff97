"""Delegation: does the code of an exercise reach torch's implementation of what it implements?

An exercise that torch already implements (Adam, batch norm, ``clip_grad_norm_``,
``xavier_uniform_``...) declares what its code must not reach, a list of *forbidden* entries:

- a dotted path, ``"torch.nn.functional.batch_norm"``, ``"torch.optim.Adam"``,
  ``"torch.Tensor.backward"``, ``"torch.nn.init"`` (a module: everything in it): the object it
  names, however it is reached (``torch.nn.modules.batchnorm.BatchNorm1d`` is ``nn.BatchNorm1d``);
- a bare name, ``"native_batch_norm"``: that name as an attribute, an import or a looked-up
  string, for the spellings no path covers (``torch.ops.aten.native_batch_norm``).

**What is read: the exercise's code, and only that.** It starts from the graded names (what the
exercise's solution cells define) and follows what they use across the student's cells: helper
functions, classes, module-level names, and every top-level statement that rebinds or patches one
of them (``xavier_uniform_ = torch.nn.init.xavier_uniform_`` or ``Adam.step = ...`` in a later
cell, a star import, ``exec``). A cell that only calls the student's functions or torch's, such as
a scratch comparison of the two, is not the exercise.

**What counts, in that code:** an attribute chain, import or ``getattr`` that resolves to a
forbidden object (``F.batch_norm``, ``from torch.nn import init``, ``getattr(F, "batch_norm")``);
a ``torch.Tensor`` method of the list called on anything (``out.backward()``); a bare name of the
list as an attribute, import or looked-up string; and the routes around a reading of the source
(``exec``, ``eval``, ``getattr`` with a computed name, ``operator.attrgetter``,
``__subclasses__``, ``importlib``, ``__dict__``, frames, ...). A local variable or parameter named
``grad``, ``func`` or ``init``, a loop over ``model.modules()`` or ``import sys`` is not delegation.

This reading is the grader's first line; its second watches what the code calls while it runs
(:mod:`gradschool.instructor.probe`), from the same list. ``gradschool check`` runs this reading on
the student's own notebook (the lists travel in the released notebook's metadata,
:data:`METADATA_KEY`), so that nobody learns of it from their grade.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import symtable
import types
from collections.abc import Iterable
from dataclasses import dataclass, field

#: Where a released notebook keeps what each test's delegation reading needs:
#: ``nb.metadata[METADATA_KEY]`` is ``{test grade_id: {"forbid": [entry, ...], "stand_ins":
#: [name, ...]}}`` (stand-ins: other exercises' names the test replaces, so not read with it).
METADATA_KEY = "gradschool_delegation"

#: Calls that reach names without spelling them.
DYNAMIC_CALLS = {"exec", "eval", "compile", "__import__", "globals", "vars", "breakpoint"}
#: Attributes that reach objects without naming them (dictionaries, frames, closures, classes).
DYNAMIC_ATTRIBUTES = {
    "__dict__", "__globals__", "__subclasses__", "__closure__", "__code__", "__wrapped__",
    "__getattribute__", "__builtins__", "__bases__", "__mro__", "_getframe", "f_back",
    "f_globals", "f_locals", "f_builtins", "tb_frame", "gi_frame", "cr_frame", "attrgetter",
    "methodcaller", "getmembers", "getattr_static", "currentframe", "get_objects",
    "get_referrers",
}
#: Modules that exist to reach names dynamically.
DYNAMIC_MODULES = {"importlib", "gc", "ctypes", "builtins", "inspect"}
#: Calls whose second argument is an attribute name.
NAME_LOOKUPS = {"getattr", "setattr", "delattr"}
#: Calls that may rebind any global: a statement holding one is read with every exercise.
REBINDING_CALLS = {"exec", "eval", "compile", "__import__"}
#: Methods that write into a namespace dictionary (``globals().update(...)``).
WRITING_METHODS = {"update", "__setitem__", "setdefault", "pop", "popitem", "clear"}


@dataclass(frozen=True)
class Finding:
    """Where an exercise's code reaches what it must implement."""

    what: str
    """What it reaches: ``"torch.nn.functional.batch_norm"``, or a route such as ``"exec"``."""
    dynamic: bool
    """True for a route around the reading (exec, getattr with a computed name, ...)."""
    cell: int
    """Index of the cell in the notebook."""
    line: int
    """Line in that cell, from 1."""
    text: str
    """That line, stripped."""
    cell_start: str
    """The first line of that cell, to find it."""

    def message(self) -> str:
        """One line for the student: what, where, and why it costs the test."""
        where = (f"`{_short(self.text, 70)}`, line {self.line} of the cell "
                 f"`{_short(self.cell_start, 40)}`")
        if self.dynamic:
            return (f"uses {self.what} ({where}): not allowed in the code of an exercise torch "
                    "already implements, since it could reach torch's implementation unseen; "
                    "write the names out")
        return (f"uses {self.what} ({where}): this exercise is to implement it yourself, not to "
                "call or subclass torch's")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def graded_names(source: str) -> list[str]:
    """The functions and classes a solution cell defines at its top level, in order."""
    tree = _parse(source)
    return [] if tree is None else [
        node.name for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]


#: Cell magics whose body is Python that ends up in the notebook's namespace (``%%writefile
#: x.py`` too: the file is then imported).
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "writefile", "debug"}
#: Line magics whose argument is Python run in the notebook's namespace (``%time x = f(y)``),
#: with their options (``%timeit -n 10 -r 3 f(x)``).
PYTHON_LINE_MAGIC = re.compile(r"^(\s*)%(?:time|timeit|prun|debug)\s+(?:-\w+(?:\s+\d+)?\s+)*")


def python_source(source: str) -> str:
    """The Python a cell runs, as IPython runs it: magics transformed, and the body of a cell
    magic that runs Python (``%%time``) in place of the magic's line (line numbers kept)."""
    from IPython.core.inputtransformer2 import TransformerManager

    stripped = source.lstrip("\n")
    if stripped.startswith("%%"):
        first, _, body = stripped.partition("\n")
        if first[2:].split(" ")[0] not in PYTHON_CELL_MAGICS:
            return ""
        source = "\n" * (len(source) - len(stripped) + 1) + body
        return python_source(source)
    source = "\n".join(PYTHON_LINE_MAGIC.sub(r"\1", line) for line in source.split("\n"))
    return TransformerManager().transform_cell(source)


def _parse(source: str) -> ast.Module | None:
    """``source`` parsed as IPython would run it (see :func:`python_source`), or None."""
    try:
        return ast.parse(python_source(source))
    except (SyntaxError, ValueError):
        return None


@dataclass
class _Unit:
    """One top-level statement of a student's cell and what it does to module-level names."""

    cell: int
    node: ast.stmt
    binds: set[str] = field(default_factory=set)
    patches: set[str] = field(default_factory=set)
    uses: set[str] = field(default_factory=set)
    always: bool = False  # a star import or exec-like call: it may rebind anything


def _scope_names(segment: str) -> tuple[set[str], set[str]] | None:
    """(module-level names the code binds, global names it reads), from Python's symbol tables;
    None when the segment cannot be analysed alone."""
    try:
        top = symtable.symtable(segment, "<cell>", "exec")
    except (SyntaxError, ValueError):
        return None
    binds = {s.get_name() for s in top.get_symbols()
             if s.is_assigned() or s.is_imported() or s.is_namespace()}
    uses = {s.get_name() for s in top.get_symbols() if s.is_referenced()}
    stack = list(top.get_children())
    while stack:
        table = stack.pop()
        stack += table.get_children()
        for s in table.get_symbols():
            if s.is_global() and s.is_referenced():
                uses.add(s.get_name())
            if s.is_declared_global() and s.is_assigned():
                binds.add(s.get_name())
    return binds, uses


def _root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_namespace(node: ast.AST) -> bool:
    """``globals()`` or ``vars(...)``: the dictionary of a namespace."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("globals", "vars"))


def _writes_namespace(node: ast.AST) -> bool:
    """``globals()[k] = v``, ``globals().update(...)``, ``setattr(x, computed, v)``, ..."""
    if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
        targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        return any(isinstance(t, ast.Subscript) and _is_namespace(t.value) for t in targets)
    if isinstance(node, ast.Call):
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr in WRITING_METHODS
                and _is_namespace(func.value)):
            return True
        if isinstance(func, ast.Name):
            if func.id in REBINDING_CALLS:
                return True
            if func.id in ("setattr", "delattr"):
                return not (len(node.args) > 1 and isinstance(node.args[1], ast.Constant))
    return False


def _unit(cell: int, node: ast.stmt, lines: list[str]) -> _Unit:
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    segment = "\n".join(lines[first - 1: node.end_lineno])
    unit = _Unit(cell, node)
    names = _scope_names(segment)
    if names is None:  # e.g. a top-level await: take every name it mentions
        mentioned = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        names = mentioned, mentioned
    unit.binds, unit.uses = names
    for sub in ast.walk(node):
        if (isinstance(sub, ast.ImportFrom) and any(a.name == "*" for a in sub.names)
                or _writes_namespace(sub)):
            unit.always = True
        targets = []
        if isinstance(sub, ast.Assign | ast.Delete):
            targets = sub.targets
        elif isinstance(sub, ast.AugAssign | ast.AnnAssign):
            targets = [sub.target]
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Attribute | ast.Subscript):
                    root = _root(part)
                    if root in unit.uses:  # a global it patches, not a local object
                        unit.patches.add(root)
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)
                and sub.func.id in ("setattr", "delattr") and sub.args):
            root = _root(sub.args[0])
            if root in unit.uses:
                unit.patches.add(root)
    return unit


class StudentCode:
    """The code cells a student wrote (or may have changed) in one notebook, parsed once.

    Args:
        cells: (index in the notebook, source) of each cell the student wrote or could edit.
        context: sources of the notebook's locked cells: read only for their imports, so that
            ``F.batch_norm`` resolves through the setup cell's ``import torch.nn.functional as F``.
    """

    def __init__(self, cells: Iterable[tuple[int, str]], context: Iterable[str] = ()):
        self.units: list[_Unit] = []
        self.cells: dict[int, list[str]] = {}
        for index, source in cells:
            tree = _parse(source)
            if tree is None:
                continue
            lines = python_source(source).splitlines()
            self.cells[index] = lines
            self.units += [_unit(index, node, lines) for node in tree.body]
        self.context_aliases: dict[str, str] = {}
        for source in context:
            tree = _parse(source)
            if tree is not None:
                _collect_aliases(tree.body, self.context_aliases)

    def exercise(self, graded: Iterable[str], replaced: Iterable[str] = ()) -> list[_Unit]:
        """The units that make up the code of an exercise defining ``graded`` (see module doc);
        names in ``replaced`` (other exercises', which the test puts stand-ins in place of) are
        not followed: they are not this exercise's code."""
        included = [u for u in self.units if u.always]
        seen: set[str] = set(replaced) - set(graded)
        todo = list(graded)
        for unit in included:
            todo += unit.uses
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for unit in self.units:
                if unit not in included and (name in unit.binds or name in unit.patches):
                    included.append(unit)
                    todo += unit.uses
        return sorted(included, key=lambda u: (u.cell, u.node.lineno))

    def delegation(self, graded: Iterable[str], forbidden: Iterable[str],
                   replaced: Iterable[str] = ()) -> Finding | None:
        """The first place where the exercise defining ``graded`` reaches a ``forbidden`` entry
        or a dynamic route (only when something is forbidden), or None; ``replaced`` as for
        :meth:`exercise`."""
        rules = Rules.of(tuple(sorted(set(forbidden))))
        if not rules.entries:
            return None
        units = self.exercise(graded, replaced)
        aliases = dict(self.context_aliases)
        for unit in units:
            _collect_aliases([unit.node], aliases, nested=True)
        used = set().union(*(u.uses for u in units))
        for unit in units:
            for node in ast.walk(unit.node):
                found = rules.check(node, aliases, used)
                if found:
                    what, dynamic = found
                    lines = self.cells[unit.cell]
                    line = getattr(node, "lineno", unit.node.lineno)
                    start = next((ln for ln in lines if ln.strip()), "")
                    return Finding(what, dynamic, unit.cell, line, lines[line - 1].strip(), start)
        return None


def _collect_aliases(body, aliases: dict[str, str], nested: bool = False) -> None:
    """Add to ``aliases`` what each import (and, with ``nested``, each plain ``a = b.c``) in
    ``body`` binds: local name -> dotted path."""
    nodes = [n for stmt in body for n in (ast.walk(stmt) if nested else [stmt])]
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    aliases[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    if nested:
        for node in nodes:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)):
                path = _qualify(node.value, aliases)
                if path:
                    aliases[node.targets[0].id] = path


def _qualify(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The dotted path an expression names (``F.batch_norm`` -> ``torch.nn.functional.
    batch_norm``, ``getattr(torch, "nn")`` -> ``torch.nn``), or None."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _qualify(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "getattr" and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
        base = _qualify(node.args[0], aliases)
        return f"{base}.{node.args[1].value}" if base else None
    return None


@functools.cache
def _resolve(path: str):
    """The object at a dotted path (importing its modules), or None."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # noqa: BLE001 - not a module (or not importable): try shorter
            continue
        for name in parts[cut:]:
            try:
                obj = getattr(obj, name)
            except Exception:  # noqa: BLE001 - no such attribute
                return None
        return obj
    return None


@dataclass(frozen=True)
class Rules:
    """A forbidden list, prepared for matching (see the module doc)."""

    entries: tuple[str, ...]
    paths: tuple[str, ...]
    bare: frozenset[str]
    tensor_methods: frozenset[str]
    last_names: frozenset[str]
    roots: frozenset[str]
    objects: dict[int, str]
    modules: tuple[str, ...]

    @classmethod
    @functools.cache
    def of(cls, entries: tuple[str, ...]) -> Rules:
        paths = tuple(e for e in entries if "." in e)
        objects, modules = {}, []
        for path in paths:
            obj = _resolve(path)
            if obj is not None:
                objects.setdefault(id(obj), path)
            if isinstance(obj, types.ModuleType):
                modules.append(obj.__name__)
        return cls(
            entries=entries, paths=paths,
            bare=frozenset(e for e in entries if "." not in e),
            tensor_methods=frozenset(p.rsplit(".", 1)[1] for p in paths
                                     if p.startswith("torch.Tensor.")),
            last_names=frozenset(e.rsplit(".", 1)[-1] for e in entries),
            roots=frozenset(p.split(".")[0] for p in paths),
            objects=objects, modules=tuple(modules),
        )

    def forbidden_path(self, path: str) -> str | None:
        """The entry a fully qualified ``path`` reaches, or None."""
        for entry in self.paths:
            if path == entry or path.startswith(entry + "."):
                return entry
        parts = path.split(".")
        hit = next((p for p in parts if p in self.bare), None)
        if hit:
            return hit
        if parts[0] in self.roots:
            for cut in range(len(parts), 1, -1):
                obj = _resolve(".".join(parts[:cut]))
                if obj is None:
                    continue
                if id(obj) in self.objects:
                    return self.objects[id(obj)]
                home = getattr(obj, "__module__", None)  # defined in a forbidden module
                if isinstance(home, str):
                    for module in self.modules:
                        if home == module or home.startswith(module + "."):
                            return f"{module}.{getattr(obj, '__qualname__', parts[cut - 1])}"
        return None

    def check(self, node: ast.AST, aliases: dict[str, str],
              used: set[str]) -> tuple[str, bool] | None:
        """(what, dynamic) when ``node`` reaches a forbidden entry or a dynamic route; ``used``:
        the global names the exercise's code reads (what a star import could feed it)."""
        if isinstance(node, ast.Attribute):
            path = _qualify(node, aliases)
            if path:
                if path in ("sys.modules",) or path.split(".")[0] in DYNAMIC_MODULES:
                    return path, True
                hit = self.forbidden_path(path)
                if hit:
                    return hit, False
            if node.attr in DYNAMIC_ATTRIBUTES:
                return node.attr, True
            if not path and (node.attr in self.bare or node.attr in self.tensor_methods):
                return (f"torch.Tensor.{node.attr}" if node.attr in self.tensor_methods
                        else node.attr), False
        elif isinstance(node, ast.Import | ast.ImportFrom):
            module = getattr(node, "module", None) or ""
            for alias in node.names:
                path = f"{module}.{alias.name}" if module else alias.name
                if path.split(".")[0] in DYNAMIC_MODULES:
                    return path.split(".")[0], True
                if alias.name == "*":  # forbidden if it binds a forbidden name the code reads
                    hit = self.forbidden_path(module) or next(
                        (p for p in self.paths if p.rsplit(".", 1)[0] == module
                         and p.rsplit(".", 1)[1] in used), None)
                else:
                    hit = self.forbidden_path(path)
                if hit:
                    return hit, False
        elif isinstance(node, ast.Name):
            if node.id in DYNAMIC_CALLS | DYNAMIC_MODULES | {"__builtins__"}:
                return node.id, True
        elif isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name in NAME_LOOKUPS:
                if len(node.args) < 2 or not (isinstance(node.args[1], ast.Constant)
                                              and isinstance(node.args[1].value, str)):
                    return f"{name} with a computed name", True
                if node.args[1].value in self.last_names:
                    base = _qualify(node.args[0], aliases)
                    return (self.forbidden_path(f"{base}.{node.args[1].value}")
                            if base else node.args[1].value) or node.args[1].value, False
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if "." in text and text.split(".")[0] in self.roots:
                hit = self.forbidden_path(text)
                if hit:
                    return hit, False
        return None


def notebook_delegation(nb, test_id: str, forbidden: Iterable[str],
                        trusted: set[str] | None = None,
                        graded: Iterable[str] | None = None,
                        replaced: Iterable[str] = ()) -> Finding | None:
    """The delegation verdict of test ``test_id`` in notebook ``nb`` (``replaced``: the names
    the test puts stand-ins in place of).

    The student's code is every code cell whose source is not one of ``trusted`` (the locked
    cells' sources as released; default: the cells ``nb`` itself marks locked). The graded names
    are ``graded``, or what ``nb``'s solution cells of the exercise define (``<name>-solution``
    for the test ``<name>-tests``).
    """
    from gradschool.cells import grade_id, is_locked, is_solution_cell

    code = [c for c in nb.cells if c.cell_type == "code"]
    if trusted is None:
        trusted = {c.source for c in code if is_locked(c)}
    exercise = test_id.removesuffix("-tests") + "-"
    if graded is None:
        graded = [n for c in code if is_solution_cell(c) and (grade_id(c) or "").startswith(
            exercise) for n in graded_names(c.source)]
    student = StudentCode(((i, c.source) for i, c in enumerate(nb.cells)
                           if c.cell_type == "code" and c.source not in trusted),
                          context=trusted)
    return student.delegation(graded, forbidden, replaced)


def declared_findings(nb) -> dict[str, Finding]:
    """test grade_id -> where its exercise reaches what it forbids, for the tests of ``nb`` (a
    released notebook, or a student's copy of one) that do, as its metadata declares them."""
    found = {}
    for test_id, declared in nb.metadata.get(METADATA_KEY, {}).items():
        finding = notebook_delegation(nb, test_id, declared.get("forbid", []),
                                      replaced=declared.get("stand_ins", []))
        if finding:
            found[test_id] = finding
    return found


__all__ = ["METADATA_KEY", "Finding", "StudentCode", "declared_findings", "graded_names",
           "notebook_delegation"]
