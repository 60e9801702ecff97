"""Where a grade's time goes: named steps, timed only while a profile is recording.

The grading code marks its steps::

    with step("kernel start"):
        ...

Outside :func:`recording` a step costs one test of a global (nothing is timed or stored).
Inside, each step's wall time and this process's CPU time are added up by name, and steps nest:
a step's figures are its own time, without the steps inside it (a hidden check's probes count
as "probes", not as "hidden checks (grader)"). While recording, every nbconvert preprocessor that
nbgrader runs (``ClearOutput``, ``OverwriteCells``, ``SaveAutoGrades``, ...) is a step too, named
``<enclosing step>: <class name>`` (``nbgrader autograde: SaveAutoGrades``), so nbgrader's own
pipeline is broken down without touching it::

    with recording() as profile:
        grade_notebook(course, path)
    print(profile.table())

The kernel is another process: its CPU time is not in the CPU column (the grader waits while it
runs a cell); the wall column is what the grade took. Recording is for one thread (the one that
started it); steps on other threads are ignored.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Profile:
    """Seconds per step: ``wall[name]`` and ``cpu[name]`` (this process), own time only;
    ``calls[name]`` how often it ran; ``total`` and ``total_cpu`` the wall time and this
    process's CPU time of the whole recording."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    total: float = 0.0
    total_cpu: float = 0.0
    _stack: list[list] = field(default_factory=list, repr=False)
    _thread: int = field(default_factory=threading.get_ident, repr=False)

    def _enter(self, name: str) -> None:
        self._stack.append([name, time.perf_counter(), time.process_time(), 0.0, 0.0])

    def _exit(self) -> None:
        name, wall0, cpu0, inner_wall, inner_cpu = self._stack.pop()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        self.wall[name] = self.wall.get(name, 0.0) + wall - inner_wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu - inner_cpu
        self.calls[name] = self.calls.get(name, 0) + 1
        if self._stack:
            self._stack[-1][3] += wall
            self._stack[-1][4] += cpu

    def table(self, title: str = "step") -> str:
        """The steps, slowest first: wall seconds, share of the total, CPU seconds of this
        process, calls; the rest of the total as "other (not in a step)"."""
        rows = sorted(self.wall.items(), key=lambda item: -item[1])
        width = max([len(name) for name, _ in rows] + [len(title), 24])
        lines = [f"{title:<{width}}  {'wall s':>7}  {'share':>6}  {'CPU s':>6}  calls"]
        for name, wall in rows:
            lines.append(f"{name:<{width}}  {wall:7.2f}  {_share(wall, self.total)}  "
                         f"{self.cpu[name]:6.2f}  {self.calls[name]:5d}")
        other = self.total - sum(self.wall.values())
        lines.append(f"{'other (not in a step)':<{width}}  {other:7.2f}  "
                     f"{_share(other, self.total)}  {self.total_cpu - sum(self.cpu.values()):6.2f}")
        lines.append(f"{'total':<{width}}  {self.total:7.2f}  100.0%  {self.total_cpu:6.2f}")
        return "\n".join(lines)


def _share(part: float, total: float) -> str:
    return f"{100 * part / total:5.1f}%" if total else "     -"


_recording: Profile | None = None


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Time the block as step ``name`` when a profile is recording (see the module doc)."""
    profile = _recording
    if profile is None or threading.get_ident() != profile._thread:
        yield
        return
    profile._enter(name)
    try:
        yield
    finally:
        profile._exit()


@contextlib.contextmanager
def recording() -> Iterator[Profile]:
    """Record the steps run inside the block into the :class:`Profile` it yields."""
    from nbconvert.preprocessors import Preprocessor

    global _recording
    if _recording is not None:
        raise RuntimeError("a profile is already recording")
    profile = _recording = Profile()
    original = Preprocessor.__call__

    def timed(self, nb, resources):
        outer = f"{profile._stack[-1][0]}: " if profile._stack else ""
        with step(outer + type(self).__name__):
            return original(self, nb, resources)

    Preprocessor.__call__ = timed
    start, start_cpu = time.perf_counter(), time.process_time()
    try:
        yield profile
    finally:
        profile.total = time.perf_counter() - start
        profile.total_cpu = time.process_time() - start_cpu
        Preprocessor.__call__ = original
        _recording = None
