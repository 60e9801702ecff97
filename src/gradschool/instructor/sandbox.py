"""The sandbox every grading kernel runs in: bubblewrap, no network, nothing of the course.

:class:`SandboxedKernelManager` starts the kernel under ``bwrap`` (the Debian package
``bubblewrap``, the sandbox Flatpak uses) in its own user, mount, PID, network, IPC and UTS
namespaces:

- the file system is a fresh, empty root holding read-only binds of the system (``/usr``,
  ``/etc``, ``/sys``, ``/bin``, ``/lib*``), of the Python environment (its prefixes and the
  folders ``.pth`` files add to ``sys.path``, e.g. an editable install's ``src/``), ``/dev`` with
  the GPU device files when they exist (``/dev/nvidia*``, ``/dev/dri``, WSL2's ``/dev/dxg``,
  ROCm's ``/dev/kfd``; CUDA's MPS pipe folder too when it exists), and a private ``/proc``.
  Nothing else: no repository
  root, ``autograder/``, ``solutions/``, gradebook, other submissions or home folder;
- the only writable places are tmpfs of bounded size, gone when the kernel ends: ``/tmp``
  (``HOME`` too), which holds the kernel's working folder, a private copy of the submission's
  folder; ``/dev/shm``; and the exchange folder, a mount point the kernel cannot rename or
  replace, holding the kernel's IPC sockets and the probe files. The grader reaches it from
  outside through ``/proc/<pid>/root``; there is no writable host folder at all;
- no network at all: an empty network namespace (its own loopback only), the kernel is talked to
  over ZMQ IPC sockets;
- the kernel runs as an unprivileged user without capabilities (no-new-privs: setuid programs
  do not elevate), under a limit of ``max_processes`` processes and threads (``RLIMIT_NPROC``,
  counted in the sandbox's own user namespace). As root, bwrap runs privileged (so it can bind a
  Python installed under /root, mode 700) and the launcher inside drops to ``uid`` (default
  ``nobody``), keeping only the groups that own GPU device files it could not open otherwise
  (``video``, ``render``), for which the kernel enforces that limit (it never does for root);
  otherwise bwrap runs in a user namespace and the kernel as the grader's uid there;
- ``--die-with-parent``: when the grader dies, so do bwrap and everything in the sandbox, and
  since the kernel is the PID namespace's only child, nothing it started survives it.

The memory (``RLIMIT_DATA``), time and output limits of :class:`~gradschool.instructor.kernel.
GradingKernel` apply inside as before.
"""

from __future__ import annotations

import glob
import os
import resource
import secrets
import shutil
import site
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from jupyter_client import AsyncKernelManager

from gradschool.instructor.profiling import step

BWRAP = "bwrap"
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf "
                "install bubblewrap; Arch: pacman -S bubblewrap), or grade with --no-sandbox "
                "(unsafe: the submission's code runs as you)")
#: Where the sandbox sees its read-only inputs: the connection file and the submission's folder.
INPUTS = "/run/gradschool"
#: The kernel's working folder inside the sandbox, a copy of the submission's folder.
WORKDIR = "/tmp/submission"
#: Environment variables passed from the grader to the kernel; everything else is cleared.
PASSED_ENV = ("LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
              "NVIDIA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_MPS_PIPE_DIRECTORY",
              "CUDA_MPS_LOG_DIRECTORY", "PYTHONHASHSEED", "LD_LIBRARY_PATH", "CUDA_HOME")
#: CUDA's Multi-Process Service pipe folder when the environment does not name one.
MPS_PIPES = "/tmp/nvidia-mps"
#: Seconds the sandbox gets to set itself up before the kernel counts as dead.
START_LIMIT = 30

#: Runs first inside the sandbox: the process limit (in the sandbox's own user namespace, so it
#: counts the sandbox's processes only), the private copy of the submission, then the kernel.
LAUNCHER = """\
import ctypes, os, resource, shutil, sys
limit, uid, groups, original, work, exchange = sys.argv[1:7]
if uid != "-":  # bwrap ran as root: become uid, in a user namespace of the sandbox's own
    for folder in ("/tmp", "/dev/shm", exchange):
        os.chown(folder, int(uid), int(uid))
    os.setgroups([int(g) for g in groups.split(",") if g])  # the GPU files' groups only
    os.setgid(int(uid))
    os.setuid(int(uid))
    if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:  # CLONE_NEWUSER
        print("gradschool: no user namespace: the process limit counts all sandboxes",
              file=sys.stderr)
resource.setrlimit(resource.RLIMIT_NPROC, (int(limit), int(limit)))
shutil.copytree(original, work, symlinks=True)
os.chdir(work)
os.execv(sys.executable, [sys.executable, *sys.argv[7:]])
"""


class SandboxError(RuntimeError):
    """The sandbox cannot run here; the message (one line) says why and what to do."""


@dataclass(frozen=True)
class Sandbox:
    """Settings of the grading sandbox.

    tmp_size_mb: size of the kernel's /tmp (its working folder included), in MiB.
    exchange_size_mb: size of the folder of sockets and probe files, in MiB (probe results are
        at most :data:`~gradschool.instructor.kernel.RESULT_LIMIT`).
    max_processes: RLIMIT_NPROC inside: processes and threads the kernel may have at once.
    uid: the unprivileged uid (and gid) a grader running as root drops to before starting bwrap.
    """

    tmp_size_mb: int = 512
    exchange_size_mb: int = 320
    max_processes: int = 256
    uid: int = 65534


def bwrap_path() -> str:
    """The bwrap executable, or SandboxError saying how to install it."""
    path = shutil.which(BWRAP)
    if path is None:
        raise SandboxError(f"the grading sandbox needs bwrap, which is not installed: "
                           f"{INSTALL_HINT}")
    return path


def _python_folders() -> list[str]:
    """The folders the kernel's Python needs: its prefixes, the folders .pth files add, and
    those of LD_LIBRARY_PATH and CUDA_HOME (e.g. a CUDA driver outside /usr)."""
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    libraries = os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    folders |= {f for f in [*libraries, os.environ.get("CUDA_HOME", "")]
                if os.path.isabs(f) and os.path.isdir(f) and os.path.realpath(f) != "/"}
    for site_dir in [*site.getsitepackages(), site.getusersitepackages()]:
        for pth in sorted(glob.glob(os.path.join(site_dir, "*.pth"))):
            with open(pth, encoding="utf-8", errors="replace") as file:
                for line in file:
                    line = line.strip()
                    if line and not line.startswith(("#", "import")) and os.path.isdir(line):
                        folders.add(os.path.realpath(line))
    return _outermost(folders)


def _outermost(folders) -> list[str]:
    """``folders`` without those inside another one of them or inside /usr (bound anyway)."""
    kept: list[str] = []
    for folder in sorted({os.path.abspath(f) for f in folders}):
        if not any(folder == k or folder.startswith(k + os.sep) for k in [*kept, "/usr"]):
            kept.append(folder)
    return kept


def _as_root() -> bool:
    return os.geteuid() == 0


def gpu_devices() -> list[str]:
    """The GPU device files of this machine: NVIDIA's, DRI, WSL2's dxg, ROCm's kfd."""
    return sorted(glob.glob("/dev/nvidia*")) + sorted(
        d for d in ("/dev/dri", "/dev/dxg", "/dev/kfd") if os.path.exists(d))


def gpu_groups(devices: list[str]) -> list[int]:
    """The groups that own GPU device files others may not open (mode 0660 and the like): the
    dropped uid keeps them, or the kernel could not use the GPU."""
    groups = set()
    for device in devices:
        paths = [device] + (glob.glob(f"{device}/*") if os.path.isdir(device) else [])
        for path in paths:
            try:
                info = os.stat(path)
            except OSError:
                continue
            if info.st_gid != 0 and not info.st_mode & 0o006:
                groups.add(info.st_gid)
    return sorted(groups)


def bwrap_command(settings: Sandbox, inputs: Path, exchange: str, inner: list[str]) -> list[str]:
    """The bwrap command line that runs ``inner`` (a Python command: the interpreter, then its
    arguments) in the sandbox; see the module doc. ``inputs`` (a host folder, readable by
    ``settings.uid`` when the grader is root) appears read-only at :data:`INPUTS`, its
    ``submission`` folder copied to :data:`WORKDIR`; ``exchange`` is the path, inside, of the
    tmpfs for sockets and probe files.

    As root, bwrap runs privileged (it can bind a Python installed under /root, mode 700) and the
    launcher inside drops to ``settings.uid``; otherwise bwrap runs in a user namespace of its
    own, without capabilities.
    """
    args = [bwrap_path(), "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--hostname", "grading", "--clearenv"]
    if not _as_root():
        args += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL",
                 "--uid", "1000", "--gid", "1000"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    # The private /tmp first: a Python environment that lives under /tmp (a CI checkout) is then
    # bound on top of it instead of being hidden by it.
    args += ["--size", str(settings.tmp_size_mb * 2**20), "--tmpfs", "/tmp"]
    binds = {folder: folder for folder in ("/usr", "/etc", "/sys", *_python_folders())}
    binds[INPUTS] = str(inputs)
    parents = sorted({str(p) for inside in binds for p in Path(inside).parents} - {"/"})
    for parent in parents:  # bwrap would make them mode 700: the kernel's user passes through
        args += ["--perms", "0755", "--dir", parent]
    for inside, host in binds.items():
        args += ["--ro-bind", host, inside]
    args += ["--dev", "/dev", "--proc", "/proc"]
    devices = gpu_devices()
    for device in devices:
        args += ["--dev-bind", device, device]
    pipes = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", MPS_PIPES)
    if devices and os.path.isdir(pipes):  # CUDA's MPS daemon: its clients talk through pipes
        args += ["--bind", pipes, pipes]
    args += ["--size", str(settings.tmp_size_mb * 2**20), "--tmpfs", "/dev/shm",
             "--size", str(settings.exchange_size_mb * 2**20), "--tmpfs", exchange]
    env = {"HOME": "/tmp", "PATH": f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin",
           "LANG": "C.UTF-8", **{k: os.environ[k] for k in PASSED_ENV if k in os.environ}}
    for name, value in env.items():
        args += ["--setenv", name, value]
    uid = str(settings.uid) if _as_root() else "-"
    groups = ",".join(map(str, gpu_groups(devices))) if _as_root() else ""
    return [*args, "--", inner[0], "-c", LAUNCHER, str(settings.max_processes), uid, groups,
            f"{INPUTS}/submission", WORKDIR, exchange, *inner[1:]]


def _give_to(folder: Path, uid: int) -> None:
    """chown -R ``folder`` to ``uid`` (the grader is root): the sandbox's user reads it."""
    for root, _, files in os.walk(folder):
        for name in [root, *(os.path.join(root, f) for f in files)]:
            os.lchown(name, uid, uid)


#: Run in the sandbox by check_sandbox when the grader has a GPU: one real CUDA operation.
CUDA_CHECK = """\
import torch
if not torch.cuda.is_available():
    raise SystemExit("torch.cuda.is_available() is False inside the sandbox")
torch.ones(2, device="cuda").add_(1).sum().item()
"""


def _run_inside(settings: Sandbox, code: str, memory_limit_mb: int) -> subprocess.CompletedProcess:
    """Run Python ``code`` in an empty sandbox under the kernel's memory limit."""

    def limit() -> None:
        if memory_limit_mb:
            size = memory_limit_mb * 2**20
            resource.setrlimit(resource.RLIMIT_DATA, (size, size))

    with tempfile.TemporaryDirectory(prefix="gradschool-sandbox-check-") as folder:
        (Path(folder) / "submission").mkdir()
        if _as_root():
            _give_to(Path(folder), settings.uid)
        command = bwrap_command(settings, Path(folder), f"/tmp/.check-{secrets.token_hex(4)}",
                                [sys.executable, "-c", code])
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=120,
                                  preexec_fn=limit)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxError(f"bwrap does not start here ({exc}): {INSTALL_HINT}") from None


def _last_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()] or ["no message"]
    return lines[-1].strip()


def check_sandbox(settings: Sandbox, *, cuda: bool = False, memory_limit_mb: int = 4096) -> None:
    """Start an empty sandbox; raise SandboxError with bwrap's own message when it cannot. With
    ``cuda`` (the grader sees a GPU), also run one CUDA operation in it under the kernel's memory
    limit, and raise SandboxError saying why when that fails."""
    result = _run_inside(settings, "import ipykernel", memory_limit_mb)
    if result.returncode != 0:
        raise SandboxError(f"the grading sandbox does not start here ({_last_line(result)}); "
                           "user namespaces may be disabled (sysctl "
                           "kernel.unprivileged_userns_clone=1, or an AppArmor profile for "
                           "bwrap), or grade with --no-sandbox (unsafe)")
    if cuda:
        result = _run_inside(settings, CUDA_CHECK, memory_limit_mb)
        if result.returncode != 0:
            raise SandboxError(
                f"this machine has a GPU, but the grading sandbox cannot use it "
                f"({_last_line(result)}); fix the GPU's device files, driver or memory limit "
                "(autograder/README.md, The sandbox), or grade on the CPU only with "
                "CUDA_VISIBLE_DEVICES=")


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


class SandboxedKernelManager(AsyncKernelManager):
    """A KernelManager whose kernel runs in the sandbox (see the module doc).

    ``submission`` is the folder copied into the kernel's working folder. After the start,
    :attr:`exchange` is the exchange folder as the grader sees it (through ``/proc/<pid>/root``)
    and :attr:`exchange_inside` as the kernel sees it.
    """

    def __init__(self, *, settings: Sandbox, submission: Path, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.private = Path(tempfile.mkdtemp(prefix="gradschool-sandbox-"))
        shutil.copytree(submission, self.private / "submission", symlinks=True)
        self.exchange_inside = f"/tmp/.gradschool-{secrets.token_hex(16)}"
        self.exchange: Path | None = None
        self.transport = "ipc"
        self.ip = f"{self.exchange_inside}/kernel"
        self.connection_file = str(self.private / "kernel.json")

    def format_kernel_cmd(self, extra_arguments=None) -> list[str]:
        inner = super().format_kernel_cmd(extra_arguments)
        connection = os.path.realpath(self.connection_file)
        inner = [f"{INPUTS}/kernel.json" if arg == connection else arg for arg in inner]
        if _as_root():  # the kernel's user reads the connection file and the submission
            _give_to(self.private, self.settings.uid)
        return bwrap_command(self.settings, self.private, self.exchange_inside, inner)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        with step("sandbox start"):
            await super()._async_launch_kernel(kernel_cmd, **kw)
            self.exchange = self._wait_for_sandbox(self.provisioner.pid)
        self.ip = f"{self.exchange}/kernel"  # the grader connects from outside

    def _wait_for_sandbox(self, bwrap: int) -> Path:
        """The exchange folder seen through the sandbox's root, once bwrap has mounted it."""
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            for child in _children(bwrap):
                exchange = Path(f"/proc/{child}/root{self.exchange_inside}")
                if exchange.is_dir():  # its random name exists nowhere else
                    return exchange
            if self.provisioner.process.poll() is not None:
                break
            time.sleep(0.01)
        raise SandboxError("the grading sandbox did not start (run `bwrap --version`; "
                           "`gradschool grade` checks the sandbox before grading)")

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart)
        shutil.rmtree(self.private, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources
