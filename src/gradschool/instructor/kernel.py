"""The kernel a submission runs in, with the grader in control of it.

:class:`GradingKernel` runs a notebook's code cells one at a time in a fresh IPython kernel
(through nbclient) and never lets the submission stop the grader:

- every cell and every probe has a time limit; on timeout the kernel is interrupted, and a kernel
  that ignores the interrupt (or dies: ``os._exit``, a segfault, the memory limit) is killed,
  restarted, and brought back to where it was by re-running the cells that had completed, minus
  the culprit. After ``max_restarts`` restarts, whatever is left is reported as ``kernel_died``;
- the kernel process runs under ``RLIMIT_DATA`` (heap and private mappings, so CUDA's large address
  space reservations still work): an allocation beyond it fails inside the kernel;
- ``exit()`` and ``quit()`` raise ``SystemExit`` like in plain Python: an error in that cell;
- each cell keeps at most ``output_limit`` characters of output: the rest is cut, not stored.

:meth:`GradingKernel.probe` is how hidden checks talk to the submission: it runs a piece of grader
code in the kernel on inputs made by the grader and returns the ``result`` it computed. Data goes
both ways through files written with ``torch.save`` and read back with ``torch.load(...,
weights_only=True, map_location="cpu")``: only tensors and plain Python values come back, on the
grader's CPU (the grader never opens a CUDA context of its own), never objects with methods of the
submission's choosing, and every comparison happens in the grader's own process. While a test's
checks run, :attr:`GradingKernel.guard` says what its probes watch and replace
(:mod:`gradschool.instructor.probe`).

Devices: :attr:`GradingKernel.devices` is ``["cpu"]``, plus ``"cuda"`` when the kernel itself ran
one CUDA operation at its start (inside the sandbox, under its limits: a GPU the grader sees but
the kernel cannot use costs nobody points; the reason goes into :attr:`GradingKernel.notes`).
Hidden checks loop over it. :meth:`GradingKernel.cuda_healthy` drops CUDA for the rest of the
notebook when a student's cell broke the CUDA context (a device-side assert), and says so once.

With ``sandbox`` settings the kernel runs in the sandbox of :mod:`gradschool.instructor.sandbox`
(its working folder is then a private copy of ``cwd``, and the probe files go through the
sandbox's exchange folder); without, it runs as the grader, in ``cwd``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import resource
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync

from gradschool.instructor.probe import RESET, Guard, answer, probe_cell
from gradschool.instructor.profiling import step
from gradschool.instructor.sandbox import Sandbox, SandboxedKernelManager

#: How long an interrupted kernel gets to come back before it is killed, in seconds.
INTERRUPT_GRACE = 5
#: The largest probe result read back, in bytes.
RESULT_LIMIT = 256 * 2**20

#: The longest message kept from an error, in characters.
MESSAGE_LIMIT = 300

OUT_OF_MEMORY_SIGNS = ("MemoryError", "can't allocate memory", "Cannot allocate memory")
CUDA_OUT_OF_MEMORY_SIGNS = ("CUDA out of memory", "CUDA error: out of memory")
#: The grader's environment variable giving each kernel's share of its GPU's memory (grade-all
#: sets it per worker when the machine has GPUs; see gradschool.instructor.gpus).
CUDA_MEMORY_FRACTION = "GRADSCHOOL_CUDA_MEMORY_FRACTION"
#: Seconds the first CUDA operation of a kernel may take (context creation, lazy loading).
CUDA_START_LIMIT = 120


class _OrphanedPollFilter(logging.Filter):
    """Keep one harmless asyncio report off the grader's stderr.

    When a kernel is killed in the middle of a cell, nbclient's IOPub poll task is left waiting
    on the old channel; once the channel closes it ends in ``queue.Empty`` that nothing awaits,
    and asyncio logs "Task exception was never retrieved" when the task is collected. The cell's
    outcome was already recorded (timeout or kernel_died): nothing is lost by dropping it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], queue.Empty))


logging.getLogger("asyncio").addFilter(_OrphanedPollFilter())

#: Run first in every kernel: ``exit()`` and ``quit()`` raise SystemExit (an error in that cell,
#: like in plain Python) instead of shutting the kernel down.
PREAMBLE = """\
def __gradschool_no_exit(*args, **kwargs):
    raise SystemExit("exit() called: while grading it only stops the cell")
get_ipython().ask_exit = __gradschool_no_exit
del __gradschool_no_exit
"""

#: Run at a kernel's start when the grader sees a GPU: can this kernel really use CUDA? Prints
#: one JSON line: {"cuda": bool, "why": str}. Caps the kernel's share of GPU memory first.
CUDA_CHECK = """\
def __gradschool_cuda(fraction):
    import json, torch
    ok, why = False, "torch.cuda.is_available() is False in the kernel"
    if torch.cuda.is_available():
        try:
            if fraction:
                torch.cuda.set_per_process_memory_fraction(fraction)
            ok = torch.ones(2, device="cuda").add_(1).sum().item() == 4.0
            why = "" if ok else "a CUDA addition gave a wrong result"
        except Exception as error:  # noqa: BLE001
            why = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
    print(json.dumps({"cuda": ok, "why": why}))
__gradschool_cuda(FRACTION)
del __gradschool_cuda
"""
#: Is the kernel's CUDA context still usable? Raises when a device-side assert broke it.
CUDA_HEALTH = """\
import torch as __gradschool_torch
__gradschool_torch.ones(1, device="cuda").add_(1).item()
__gradschool_torch.cuda.empty_cache()
del __gradschool_torch
"""


@dataclass
class Outcome:
    """What happened to one cell or probe.

    status: "ok", "error" (the code raised), "timeout", "kernel_died" or "out_of_memory".
    message: "" when ok, else one line: "ValueError: bad shape", "no reply within 60 s", ...
    """

    status: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class ProbeFailed(Exception):
    """A probe did not produce a result; ``outcome`` says why."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.message)
        self.outcome = outcome


class _CappedClient(NotebookClient):
    """nbclient's client, keeping at most ``output_limit`` characters of output per cell, and
    whose IOPub reader of a timed-out cell can be stopped (:meth:`stop_reading`)."""

    output_limit = 100_000
    _reader: asyncio.Task | None = None

    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        self._reader = asyncio.current_task()
        return await super()._async_poll_output_msg(parent_msg_id, cell, cell_index)

    def stop_reading(self) -> None:
        """Cancel the IOPub reader of the cell that just timed out. nbclient leaves it running
        (it is not told of the timeout); it would take its turn at every later message of the
        channel and drop those of other cells, so that each later cell and probe lost its
        outputs or waited ``iopub_timeout`` (4 s) for an idle status the reader had taken."""
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None

    def output(self, outs, msg, display_id, cell_index):
        used = sum(len(str(o)) for o in outs)
        if used >= self.output_limit:
            return None
        if used + len(str(msg["content"])) > self.output_limit:
            note = f"[gradschool: output cut at {self.output_limit} characters]\n"
            out = nbformat.v4.new_output("stream", name="stdout", text=note)
            outs.append(out)
            return out
        return super().output(outs, msg, display_id, cell_index)


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1][:MESSAGE_LIMIT] if lines else ""


def _outcome_from_outputs(outputs: list) -> Outcome:
    errors = [o for o in outputs if o.get("output_type") == "error"]
    if not errors:
        return Outcome("ok")
    ename, evalue = errors[0].get("ename", "Error"), _one_line(errors[0].get("evalue", ""))
    message = f"{ename}: {evalue}" if evalue else ename
    if any(sign in message for sign in CUDA_OUT_OF_MEMORY_SIGNS):
        return Outcome("out_of_memory", f"ran out of the kernel's share of GPU memory ({message})")
    if any(sign in message for sign in OUT_OF_MEMORY_SIGNS):
        return Outcome("out_of_memory", f"ran out of the grader's memory limit ({message})")
    return Outcome("error", message)


class GradingKernel:
    """Run the code cells of ``nb`` in a kernel started in ``cwd``; use as a context manager.

    Args:
        nb: the notebook; ``run_cell(i)`` executes ``nb.cells[i]`` and stores its outputs there.
        cwd: the kernel's working directory.
        timeout: seconds allowed to each cell and each probe.
        memory_limit_mb: RLIMIT_DATA of the kernel process in MiB; 0 for no limit.
        output_limit: characters of output kept per cell.
        max_restarts: kernel restarts allowed after a timeout or a crash.
        replay: ``replay(i)`` says whether cell i is re-run to restore the state after a restart
            (default: every cell that completed).
        sandbox: the sandbox settings, or None to run the kernel as the grader (unsafe).
    """

    def __init__(self, nb, cwd: Path, *, timeout: int = 60, memory_limit_mb: int = 4096,
                 output_limit: int = 100_000, max_restarts: int = 3, kernel_name: str = "python3",
                 replay=lambda index: True, sandbox: Sandbox | None = None):
        self.nb = nb
        self.cwd = Path(cwd)
        self.timeout = timeout
        self.memory_limit = memory_limit_mb * 2**20
        self.max_restarts = max_restarts
        self.replay = replay
        self.sandbox = sandbox
        self.kernel_name = kernel_name
        self.restarts = 0
        #: What the probes of the test being checked watch and replace (set by the grader).
        self.guard = Guard()
        #: Where hidden checks run the student's code: "cpu", plus "cuda" when it works here.
        self.devices: list[str] = ["cpu"]
        #: What the grader should tell about this grading (devices dropped and why), once each.
        self.notes: list[str] = []
        self._cuda_wanted = torch.cuda.is_available()  # no CUDA context in the grader
        fraction = os.environ.get(CUDA_MEMORY_FRACTION, "")
        self._cuda_fraction = float(fraction) if fraction else None
        self.completed: list[int] = []
        self.pids: list[int] = []  # of every kernel process started, to check none is left
        self._client = _CappedClient(
            nb, timeout=timeout, allow_errors=True, kernel_name=kernel_name,
            interrupt_on_timeout=False, resources={"metadata": {"path": str(self.cwd)}},
        )
        self._client.output_limit = output_limit
        self._scratch = tempfile.TemporaryDirectory(prefix="gradschool-probe-")
        self._probes = 0
        self._context = None

    # -- life cycle -------------------------------------------------------------------------
    def __enter__(self) -> GradingKernel:
        self._start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop()
        self._scratch.cleanup()

    def _limit_memory(self) -> None:  # runs in the kernel process, before it starts
        if self.memory_limit:
            resource.setrlimit(resource.RLIMIT_DATA, (self.memory_limit, self.memory_limit))
        if self.sandbox:  # bwrap itself ignores the interrupts meant for the kernel inside
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _start(self) -> None:
        with step("kernel start"):
            cwd = self.cwd
            if self.sandbox:
                self._client.km = SandboxedKernelManager(
                    settings=self.sandbox, submission=self.cwd, kernel_name=self.kernel_name)
                cwd = self._client.km.private
            self._context = self._client.setup_kernel(
                preexec_fn=self._limit_memory, cwd=str(cwd),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # the kernel's own chatter
            )
            self._context.__enter__()
            self.pids.append(self._client.km.provisioner.pid)
            self._attempt_scratch(PREAMBLE)
        if self._cuda_wanted:
            self._decide_cuda()

    def _decide_cuda(self) -> None:
        """Let the kernel say whether it can use CUDA (see the module doc)."""
        with step("CUDA checks"):
            outcome, text = self._scratch_output(
                CUDA_CHECK.replace("FRACTION", repr(self._cuda_fraction)), CUDA_START_LIMIT)
        try:
            reply = json.loads(text.strip().splitlines()[-1])
        except (ValueError, IndexError):
            reply = {"cuda": False, "why": outcome.message or "no answer from the kernel"}
        if reply["cuda"]:
            if "cuda" not in self.devices:
                self.devices.append("cuda")
        else:
            self._drop_cuda(f"the grader has a GPU but the grading kernel cannot use it "
                            f"({reply['why']}): hidden checks ran on the CPU only")

    def _drop_cuda(self, note: str) -> None:
        if "cuda" in self.devices:
            self.devices.remove("cuda")
        if note not in self.notes:
            self.notes.append(note)
        self._cuda_wanted = False  # a restarted kernel stays on the CPU too

    def cuda_healthy(self, before: str) -> bool:
        """Check the kernel's CUDA context before the test ``before``; when a student's cell
        broke it, drop CUDA for the rest of the notebook (noted once) and return False."""
        if "cuda" not in self.devices:
            return True
        with step("CUDA checks"):
            outcome = self._attempt_scratch(CUDA_HEALTH, CUDA_START_LIMIT)
        if outcome.ok:
            return True
        self._drop_cuda(f"the kernel's CUDA context broke before {before} ({outcome.message}), "
                        "e.g. by a device-side assert in an earlier cell: the hidden checks from "
                        "there on ran on the CPU only")
        return False

    def reset(self) -> Outcome:
        """Undo the global torch settings a student may have left (default device and dtype,
        grad mode, TF32) before a test cell runs."""
        with step("kernel reset"):
            return self._attempt_scratch(RESET)

    def _stop(self) -> None:
        """Shut the kernel down, killing its whole process group if it does not go quietly."""
        if self._context is None:
            return
        context, self._context = self._context, None
        km = self._client.km
        with step("kernel shutdown"):
            try:
                run_sync(km.shutdown_kernel)(now=True)
            except Exception:  # noqa: BLE001 - a dead or stuck kernel: kill below
                pass
            try:
                context.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - the kernel is gone either way
                pass

    @property
    def dead(self) -> bool:
        return self._context is None

    # -- running ----------------------------------------------------------------------------
    def run_cell(self, index: int, timeout: int | None = None) -> Outcome:
        """Execute code cell ``index`` of the notebook (within ``timeout`` seconds, default
        ``self.timeout``); its outputs replace the cell's."""
        cell = self.nb.cells[index]
        outcome = self._execute(cell, index, timeout)
        if outcome.ok or outcome.status == "error":
            self.completed.append(index)
        return outcome

    def _execute(self, cell, index: int, timeout: int | None = None) -> Outcome:
        """Run ``cell``; after a timeout or a crash, get a working kernel back."""
        outcome = self._attempt(cell, index, timeout)
        if outcome.status == "timeout" and not self._interrupted():
            self._restart()
        elif outcome.status == "kernel_died" and not self.dead:
            self._restart()
        return outcome

    def _attempt(self, cell, index: int, timeout: int | None = None) -> Outcome:
        """Run ``cell`` once, without any recovery."""
        if self.dead:
            return Outcome("kernel_died", "not run: the kernel died too often")
        cell.outputs = []
        self._client.timeout = timeout or self.timeout
        try:
            self._client.execute_cell(cell, index)
        except CellTimeoutError:
            self._client.stop_reading()
            return Outcome("timeout", f"no result within {self._client.timeout} s")
        except DeadKernelError:
            return Outcome("kernel_died", "the kernel died (os._exit, a crash or the memory limit)")
        finally:
            self._client.timeout = self.timeout
        return _outcome_from_outputs(cell.outputs)

    def _interrupted(self) -> bool:
        """Interrupt the kernel; True when it answers again within INTERRUPT_GRACE seconds."""
        with step("interrupts"):
            try:
                run_sync(self._client.km.interrupt_kernel)()
            except RuntimeError:
                return False
            return self._attempt_scratch("pass", INTERRUPT_GRACE).ok

    def _restart(self) -> None:
        """Kill the kernel, start a new one and re-run the cells that had completed; give up
        (the kernel stays dead) after ``max_restarts`` restarts."""
        while self.restarts < self.max_restarts:
            self._stop()
            self.restarts += 1
            self._start()
            sources = [self.nb.cells[i].source for i in self.completed if self.replay(i)]
            with step("replays after a restart"):
                if all(self._attempt_scratch(s).status in ("ok", "error") for s in sources):
                    return
        self._stop()

    def _attempt_scratch(self, source: str, timeout: int | None = None) -> Outcome:
        """Run ``source`` once as a temporary last cell (nbclient stores a cell at its index)."""
        return self._scratch_output(source, timeout)[0]

    def _scratch_output(self, source: str, timeout: int | None = None) -> tuple[Outcome, str]:
        """Like :meth:`_attempt_scratch`; also return what the cell printed on stdout."""
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        try:
            outcome = self._attempt(cell, len(self.nb.cells) - 1, timeout)
        finally:
            self.nb.cells.remove(cell)
        text = "".join(o.get("text", "") for o in cell.outputs
                       if o.get("output_type") == "stream" and o.get("name") == "stdout")
        return outcome, text

    # -- probes -----------------------------------------------------------------------------
    def probe(self, code: str, **inputs: Any) -> Any:
        """Run grader ``code`` in the kernel and return the value it assigns to ``result``.

        ``code`` sees the submission's global names (read them; assignments stay local to the
        probe) and ``inputs`` (tensors and plain values, made by the grader, copied in). It must
        assign ``result``: tensors and plain Python values only (lists, dicts, numbers, strings);
        tensors come back on the CPU. The probe runs under :attr:`guard`.

        Raises ProbeFailed: the code raised in the kernel (status "error"), or timed out, or the
        kernel died or ran out of memory, or ``result`` was missing or not plain data.
        Raises Delegated (an AssertionError): the guard saw the exercise reach torch's
        implementation.
        """
        with step("probes"):
            return self._probe(code, inputs)

    def _probe(self, code: str, inputs: dict[str, Any]) -> Any:
        self._probes += 1
        km = self._client.km
        if self.dead:
            raise ProbeFailed(Outcome("kernel_died", "not run: the kernel died too often"))
        if self.sandbox:  # the sandbox's exchange folder, from outside and from inside
            folder, inside = km.exchange, Path(km.exchange_inside)
        else:
            folder = inside = Path(self._scratch.name)
        name_in, name_out = f"in-{self._probes}.pt", f"out-{self._probes}.pt"
        source, target = inside / name_in, inside / name_out
        try:
            with _open_new(folder / name_in) as file:
                torch.save(inputs, file)
        except OSError as exc:
            raise ProbeFailed(Outcome("error", f"could not send the inputs to the kernel "
                                      f"({exc.strerror})")) from None
        cell = nbformat.v4.new_code_cell(probe_cell(code, str(source), str(target), self.guard))
        self.nb.cells.append(cell)
        try:
            outcome = self._execute(cell, len(self.nb.cells) - 1)
        finally:
            self.nb.cells.remove(cell)
        if not outcome.ok:
            raise ProbeFailed(outcome)
        try:
            return answer(read_result(folder / name_out))
        finally:
            for name in (name_in, name_out):
                with contextlib.suppress(OSError):
                    os.unlink(folder / name)



def read_result(path: Path) -> dict:
    """Load the plain data a probe wrote at ``path``, onto the CPU: a regular file (never through
    a symlink, a FIFO or a device the submission put there) of at most RESULT_LIMIT bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise ProbeFailed(Outcome("error", "the probe wrote no result")) from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ProbeFailed(Outcome("error", "the probe wrote no result"))
        if info.st_size > RESULT_LIMIT:
            raise ProbeFailed(Outcome("error", f"result larger than {RESULT_LIMIT} bytes"))
        try:
            saved = torch.load(file, weights_only=True, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - anything but plain data is refused
            raise ProbeFailed(
                Outcome("error", f"the result is not plain data ({type(exc).__name__})")
            ) from None
    if not isinstance(saved, dict) or "result" not in saved:
        raise ProbeFailed(Outcome("error", "the probe's answer is not the grader's format"))
    return saved


def _open_new(path: Path):
    """Create ``path`` for writing; fail rather than follow a symlink or reuse a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    return os.fdopen(fd, "wb")
