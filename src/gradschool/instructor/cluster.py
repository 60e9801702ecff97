"""grade-all's engine past one machine: a Dask cluster (``grade-all --scheduler``).

Needs the ``cluster`` extra (``dask[distributed]``); ``grade-all`` without ``--scheduler`` never
imports this module. :func:`grade_on_cluster` is an engine of
:func:`~gradschool.instructor.grade_all.grade_all`, like the local process pool: it yields each
job's outcome as it completes, and the batch loop, on the client alone, imports it into the
gradebook and writes the results, so the two engines grade and record alike.

How a batch runs on the cluster:

1. The client connects to ``tcp://HOST:8786`` (a running ``dask scheduler``), or starts a
   ``LocalCluster`` of N single-threaded worker processes for ``local:N``, and waits up to
   :data:`WORKER_WAIT` seconds for a first worker.
2. It registers a worker plugin holding the assignment's :class:`~gradschool.instructor.bundle.
   Bundle`: every worker, also one that joins later, unpacks it into its local directory under
   its sha256, so workers need no course checkout.
3. It checks every worker (:func:`worker_problem`): the same gradschool code as the client (its
   version and a sha256 of its source files), the bundle, and unless ``--no-sandbox`` a
   grading sandbox that starts (with CUDA when the worker sees a GPU); a worker without
   gradschool or torch fails to load this module, which names the missing module. Workers that
   fail are named with why; when none is fit the batch stops with one line.
4. It submits one task per notebook (:func:`grade_task`, at most :data:`IN_FLIGHT_PER_THREAD`
   per worker thread at a time, so the scheduler never holds a whole MOOC's notebooks). The
   task checks its worker again (a refusal: ``not graded, run again (worker ...: why)``, never
   a grade), writes the notebook into a scratch folder of its own, grades it with the same
   function as the local pool (``grade_all._grade_one``) and returns the report with the graded
   notebook and the feedback page as bytes. It writes nothing else, so running it twice is
   harmless.

Faults: a worker that dies or leaves mid-task has its tasks run again elsewhere by the scheduler
(``distributed.scheduler.allowed-failures``, 3 by default; a task that killed more workers than
that, or one the cluster lost, is reported ``not graded, run again``). The client records each
notebook once, when its task's result arrives; Ctrl-C cancels what is not finished, and the
next run grades only the notebooks without a result for the same sha256.

GPU workers: a worker grades on what its own process sees. A worker given a GPU runs the hidden
checks on CUDA too (its sandbox check includes one CUDA operation); whoever starts the workers
shares the GPUs out, one GPU per worker process and a share of its memory each
(``CUDA_VISIBLE_DEVICES``, ``GRADSCHOOL_CUDA_MEMORY_FRACTION``), as the local pool's plan does
(:mod:`~gradschool.instructor.gpus`). ``local:N`` does no such sharing: on a machine with GPUs
use the local pool.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from itertools import islice
from pathlib import Path

from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

import gradschool
from gradschool.instructor.bundle import Bundle, unpacked_course
from gradschool.instructor.course import Course, CourseError
from gradschool.instructor.grade import AUTOGRADED, FEEDBACK
from gradschool.instructor.grade_all import _grade_one  # the local pool's very function

WORKER_WAIT = 120
"""Seconds to wait for the cluster's first worker before giving up."""

IN_FLIGHT_PER_THREAD = 2
"""Tasks submitted ahead per worker thread: enough to keep every worker busy."""

BUNDLES = "gradschool-bundles"
"""The folder of unpacked bundles in each worker's local directory."""


def parse_scheduler(text: str) -> str | int:
    """``local:N`` -> N (workers to start here), an address (``tcp://HOST:PORT``, any
    ``scheme://``) -> itself; CourseError otherwise."""
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if count.isdigit() and int(count) >= 1:
            return int(count)
    elif "://" in text:
        return text
    raise CourseError(f"--scheduler takes tcp://HOST:PORT (a running dask scheduler) or local:N "
                      f"(N worker processes here), not {text!r}")


def code_digest() -> str:
    """sha256 of the installed gradschool package's source files (paths and contents): two
    installs grade alike when it matches."""
    package = Path(gradschool.__file__).parent
    total = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        total.update(f"\0{path.relative_to(package).as_posix()}\0".encode() + path.read_bytes())
    return total.hexdigest()


def _code() -> str:
    return f"gradschool {gradschool.__version__} (code {code_digest()[:12]})"


class ShipBundle(WorkerPlugin):
    """Unpack a bundle into each worker's local directory, at registration and on every worker
    that joins later (the scheduler keeps the plugin). Named after the bundle's digest:
    registering it again replaces it."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.name = f"gradschool-bundle-{bundle.digest[:16]}"

    def setup(self, worker) -> None:
        self.bundle.unpack(Path(worker.local_directory) / BUNDLES)


@functools.cache
def worker_problem(folder: Path, code: str, sandbox: bool) -> str:
    """Why this worker process cannot grade with the bundle unpacked in ``folder`` for a client
    running ``code`` (:func:`_code`), in the sandbox if ``sandbox``; "" when it can. Checked once
    per process."""
    if _code() != code:
        return f"{_code()} here, {code} on the client: install the same gradschool on both"
    if not (folder / "nbgrader_config.py").is_file():
        return f"no copy of the assignment {folder.name[:12]} here (the plugin did not reach it)"
    if sandbox:
        import torch  # there: grading imports it (without it this module does not load)

        from gradschool.instructor.sandbox import Sandbox, SandboxError, check_sandbox

        try:
            check_sandbox(Sandbox(), cuda=torch.cuda.is_available())
        except SandboxError as exc:
            return str(exc)
    return ""


def _problem_here(digest: str, code: str, sandbox: bool, dask_worker=None) -> str:
    """:func:`worker_problem` of the worker this runs on (``Client.run`` passes it)."""
    return worker_problem(Path(dask_worker.local_directory) / BUNDLES / digest, code, sandbox)


def grade_task(digest: str, code: str, notebook: bytes, source: str, assignment: str,
               timeout: int | None, sandbox: bool) -> dict:
    """On a worker: grade ``notebook`` (bytes of the client's file ``source``) with the bundle
    ``digest``; return ``grade_all._grade_one``'s outcome (an error names ``source``, as the
    local pool's does) with, instead of its folder, ``files``: {file name: bytes} of the graded
    notebook and the feedback page; or ``{"refused": why}`` when this worker cannot grade
    (:func:`worker_problem`). Writes only into a scratch folder of its own, removed at the end."""
    worker = get_worker()
    folder = Path(worker.local_directory) / BUNDLES / digest
    problem = worker_problem(folder, code, sandbox)
    if problem:
        return {"refused": f"worker {worker.address}: {problem}"}
    with tempfile.TemporaryDirectory(prefix="gradschool-task-", dir=worker.local_directory) as tmp:
        path = Path(tmp) / "submitted" / Path(source).name
        path.parent.mkdir()
        path.write_bytes(notebook)
        outcome = _grade_one(unpacked_course(folder), path, assignment, timeout,
                             Path(tmp) / "work", sandbox)
        if "error" in outcome:
            outcome["error"] = outcome["error"].replace(str(path), source)
        if "work" in outcome:
            work = Path(outcome.pop("work"))
            outcome["files"] = {file: (work / file).read_bytes() for file in (AUTOGRADED, FEEDBACK)}
    return outcome


def grade_on_cluster(course: Course, assignment: str, jobs: list, *, timeout: int | None,
                     sandbox: bool, log: Callable[[str], None], scheduler: str) -> Iterator:
    """The engine: grade ``jobs`` (``grade_all.Job``) on the cluster ``scheduler`` (see
    :func:`parse_scheduler`); yield (job, outcome) as each completes, the outcome as the local
    pool's (its files written into ``job.work``), or ``{"died": why}`` when it was not graded
    this time. Raises CourseError (one line) when the cluster cannot be reached or no worker
    is fit."""
    if not jobs:
        return
    bundle = Bundle.of(course, assignment)
    code = _code()
    with ExitStack() as stack:
        client = _connect(parse_scheduler(scheduler), scheduler, stack)
        _start(client, bundle, code, sandbox, log)
        pending = iter(jobs)
        running = as_completed()
        futures: dict = {}

        def submit(count: int) -> None:
            for job in islice(pending, max(0, count)):
                notebook = Path(job.submission.path)
                future = client.submit(grade_task, bundle.digest, code, notebook.read_bytes(),
                                       str(notebook), assignment, timeout, sandbox, pure=False)
                futures[future] = job
                running.add(future)

        submit(_window(client))
        try:
            for future in running:
                job = futures.pop(future)
                yield job, _outcome(future, job)
                submit(_window(client) - len(futures))
        except BaseException:  # Ctrl-C, or the batch loop stopped: cancel what is left
            client.cancel(list(futures))
            raise


def _connect(target: str | int, scheduler: str, stack: ExitStack) -> Client:
    """A client of the scheduler at ``target``, or of a new LocalCluster of ``target``
    single-threaded workers (their kernels with this machine's cores shared out, as the local
    pool's), both closed with ``stack``."""
    try:
        if isinstance(target, str):
            return stack.enter_context(Client(target, timeout="20s"))
        threads = str(max(1, (os.cpu_count() or 1) // target))
        cluster = stack.enter_context(LocalCluster(
            n_workers=target, threads_per_worker=1, processes=True,
            dashboard_address=":0", silence_logs=logging.ERROR,  # any free port: no warning
            env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}))
        client = stack.enter_context(Client(cluster))
        client.register_plugin(IgnoreInterrupts())
        return client
    except OSError as exc:
        raise CourseError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None


class IgnoreInterrupts(WorkerPlugin):
    """In the worker processes of ``local:N`` (in the terminal's process group, so Ctrl-C
    reaches them too): ignore Ctrl-C, which is the client's to handle (it closes the cluster),
    so that an interrupt prints no worker tracebacks."""

    name = "gradschool-ignore-interrupts"

    def setup(self, worker) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start(client: Client, bundle: Bundle, code: str, sandbox: bool,
           log: Callable[[str], None]) -> None:
    """Wait for a worker, ship the bundle, check every worker; CourseError when none is fit."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT)
    except TimeoutError:
        raise CourseError(f"no Dask worker joined {client.scheduler.address} within "
                          f"{WORKER_WAIT} s: start some (dask worker "
                          f"{client.scheduler.address} --nthreads 1)") from None
    try:
        client.register_plugin(ShipBundle(bundle))
    except Exception:  # noqa: BLE001 - a worker that cannot take it is named by the check below
        pass
    problems = client.run(_problem_here, bundle.digest, code, sandbox, on_error="return")
    for address, problem in sorted(problems.items()):
        if problem:
            log(f"worker {address} cannot grade: {_line(problem)}")
    fit = [address for address, problem in problems.items() if not problem]
    if not fit:
        address, problem = sorted(problems.items())[0]
        raise CourseError(f"no Dask worker can grade: {address}: {_line(problem)}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    threads = sum(client.nthreads().values())
    log(f"grading on the Dask cluster {client.scheduler.address}: {len(fit)} worker(s) fit "
        f"of {len(problems)}, {threads} thread(s)")


def _line(problem: str | BaseException) -> str:
    if isinstance(problem, BaseException):
        return f"{type(problem).__name__}: {problem}"
    return problem


def _window(client: Client) -> int:
    """How many tasks to have submitted: :data:`IN_FLIGHT_PER_THREAD` per worker thread now."""
    return IN_FLIGHT_PER_THREAD * max(1, sum(client.nthreads().values()))


def _outcome(future, job) -> dict:
    """The local pool's outcome of a finished ``future``: files written into ``job.work``;
    ``{"died": why}`` for a refusal, a lost or cancelled task."""
    try:
        outcome = future.result()
    except Exception as exc:  # noqa: BLE001 - lost, cancelled, killed workers: grade it next run
        return {"died": _line(exc)[:200]}
    if "refused" in outcome:
        return {"died": outcome["refused"]}
    files = outcome.pop("files", None)
    if files is not None:
        work = Path(job.work)
        work.mkdir(parents=True, exist_ok=True)
        for file, content in files.items():
            (work / file).write_bytes(content)
        outcome["work"] = str(work)
    return outcome
