"""Run model-written Python (a candidate solution plus its tests) in a contained child process.

MBPP / HumanEval scoring executes code a model wrote: :func:`run_program` treats that code as hostile. It writes the
program to a file, runs ``python -I program.py`` in a separate process and scores it as execution-based benchmarks do
(``passed`` = exit code 0 within the time limit). The work is done by this same file run as a script (a launcher:
``python -I execution.py <config>``; it imports only the standard library), in three processes::

    caller ── launcher (caller's uid; new session) ── init (pid 1 of a new PID namespace) ── program

Containment layers, outermost first. Each run records in :attr:`ExecResult.containment` which ones were applied and
in :attr:`ExecResult.not_applied` which ones the OS refused and why; a refused layer is also logged as a warning. No
layer is ever skipped silently.

- **Process and environment**: the launcher starts in a new session with ``close_fds``, stdin ``/dev/null``, a
  working directory of its own and a minimal environment (``PATH``, ``LANG``, ``HOME``/``TMPDIR`` = the work folder,
  one-thread settings for BLAS/OpenMP): none of the caller's variables reach the program. The program runs under
  ``python -I`` (isolated mode: no ``PYTHON*`` variables, no user site, no script folder on ``sys.path``).
- **Wall clock**: the launcher kills the namespace's init at ``timeout`` seconds (``SIGKILL``), counted from the fork
  of init (so the sandbox set-up, ~10-20 ms, and the interpreter's start-up count); the kernel then kills every
  process of the PID namespace, so ``setsid``/double-fork escapes die too. When the program exits, init exits and the
  same happens to anything it left running. The caller keeps a backstop (``timeout`` + 10 s) in case the launcher
  itself hangs. stdout and stderr go to one file in a root-only folder (never buffered in memory).
- **rlimits** (on init and the program): ``RLIMIT_AS`` = ``memory_mb`` per process, ``RLIMIT_NPROC`` =
  ``max_processes`` tasks (threads count), ``RLIMIT_CPU`` = ceil(timeout) + 1 s (a backstop: ``SIGXCPU``),
  ``RLIMIT_FSIZE`` = ``output_limit_bytes`` (bounds the captured stdout+stderr file and every file the program writes;
  Python turns an overrun into ``OSError: File too large``), ``RLIMIT_CORE`` = 0, ``RLIMIT_NOFILE`` = 1024.
- **Identity** (caller is root): the program and its init run as a fresh, random, otherwise unused uid/gid
  (10^8 ... 2^31) with no supplementary groups: it owns no file on the machine, shares its ``RLIMIT_NPROC`` count with
  no other run (concurrent runs never starve each other, as they would all sharing ``nobody``), and without a PID
  namespace the launcher kills every process of that uid after the run (``kill(-1)`` as that uid).
  Caller not root: a **user namespace** maps the caller's uid to itself, which gives the namespaces below without
  privileges; the program keeps the caller's uid, so the read-only view below is what protects the caller's files.
- **Capabilities**: the bounding and ambient sets are dropped, the effective/permitted sets cleared, and
  ``PR_SET_NO_NEW_PRIVS`` is set (set-uid binaries and file capabilities grant nothing).
- **PID namespace** (``CLONE_NEWPID``): the program sees only its own processes (a fresh ``/proc``), cannot signal or
  read the ``/proc`` (environment, command line) of anything outside, and dies with its init.
- **Mount namespace + new root** (``CLONE_NEWNS``, all mounts private): a small tmpfs becomes the root
  (``pivot_root``; ``chroot`` where the architecture's syscall number is unknown), holding read-only, nosuid, nodev
  bind mounts of ``/usr``, ``/etc``, ``/bin``, ``/sbin``, ``/lib*`` (symlinks where they are links) and the
  interpreter's prefixes (the venv and its base Python; e.g. ``/root/.pyenv/...``), a tmpfs ``/dev`` with
  ``null``/``zero``/``full``/``random``/``urandom``, a fresh ``/proc``, and the work folder ``/sandbox`` (also
  ``/tmp``): an empty tmpfs of ``disk_mb`` MiB owned by the program's uid, holding only ``program.py``, gone when the
  namespace ends. Nothing else of the machine (the repository, ``/root``, ``/home``, the caller's temporary files)
  exists in that view, and the only writable place is ``/sandbox``.
- **Network namespace** (``CLONE_NEWNET``): the only interface is ``lo``, and it is down: every ``connect`` (to
  127.0.0.1 as to any other address) fails at once with "Network is unreachable".
- **IPC and UTS namespaces**: no System V IPC shared with the machine; host name ``sandbox``.

Where the OS refuses a layer (no namespaces, e.g. in an unprivileged container, or a non-root caller where user
namespaces are disabled), the run goes on with the rest, and the lesser containment is recorded:

- no PID namespace: the launcher is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so every orphan of the program,
  ``setsid`` or not, is reparented to it; at the end it kills the program's process group, (as root) every process
  of the run's uid, then kills and reaps its remaining children layer by layer. The program can see (and, as
  non-root, signal and ``/proc/<pid>/environ``-read) the machine's processes of its uid;
- no mount namespace: the program runs in a host temporary folder (``chmod 700``, owned by its uid, removed
  afterwards); as root the fresh uid still cannot write any file it does not own (world-writable places like
  ``/tmp`` excepted) and can read what ``other`` may read; the interpreter must then be readable by that uid (a
  pyenv Python under ``/root`` is not: the run raises :class:`SandboxError` rather than running as root); as non-root
  the program can do whatever the caller's uid can do to files, and ``RLIMIT_NPROC`` is set to the caller's current
  task count + ``max_processes`` (that limit counts every task of the uid, so it is approximate);
- no network namespace: the program has the machine's network.

Limits not enforced here: aggregate memory is only bounded by ``max_processes`` x ``memory_mb`` (no cgroup is
created: the per-process ``RLIMIT_AS`` is what holds); no seccomp filter (every syscall the kernel allows an
unprivileged process remains, so a kernel bug is the remaining path out); CPU share and disk I/O bandwidth are not
throttled; ``/etc`` and the interpreter prefixes are readable (read-only); ``/dev/shm`` does not exist (POSIX
semaphores, so ``multiprocessing`` locks, fail); where the kernel allows unprivileged user namespaces the program can
create its own (and mount inside them), but the mounts it inherits stay locked read-only and its new namespaces hold
nothing of the machine. Runs are Linux-only.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import platform
import resource
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Every status :func:`run_program` returns.
STATUSES = ("passed", "failed", "syntax_error", "timeout", "memory", "output_limit", "signal")

_GRACE_S = 10.0  # the caller's backstop beyond ``timeout`` when the launcher itself does not return
_SANDBOX_DIR = "/sandbox"
_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
_DEVICES = ("null", "zero", "full", "random", "urandom")
_UID_RANGE = (10**8, 2**31 - 2)
_warned: set[tuple[str, ...]] = set()


class SandboxError(RuntimeError):
    """The sandbox could not be set up or could not start the interpreter (a fault of the machine, not the program)."""


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one contained run.

    ``status`` is one of :data:`STATUSES`: "passed" (exit code 0 in time), "failed" (another exit code),
    "syntax_error" (the program does not compile), "timeout" (wall clock or CPU limit), "memory" (``MemoryError``
    under the address-space limit), "output_limit" (stdout+stderr or a file reached ``output_limit_bytes``), "signal"
    (killed by another signal, e.g. a segfault or the kernel's OOM killer). ``returncode`` is the exit code, or minus
    the signal number, or None when the program was killed at the time limit. ``wall_time`` is the caller's wall time
    for the whole run (launcher included); ``output_truncated`` says the output reached its cap. ``containment`` names
    the layers applied (see the module doc), ``not_applied`` the ones the OS refused, each as "layer: reason";
    ``uid`` is the run's own uid (root callers) or None.
    """

    passed: bool
    status: str
    output_tail: str
    returncode: int | None
    wall_time: float
    output_truncated: bool
    containment: tuple[str, ...]
    not_applied: tuple[str, ...]
    uid: int | None


def run_program(
    program: str,
    timeout: float,
    *,
    memory_mb: int = 1024,
    max_processes: int = 8,
    disk_mb: int = 64,
    output_limit_bytes: int = 8 << 20,
    tail_bytes: int = 4096,
    python: str | None = None,
) -> ExecResult:
    """Run ``program`` (Python source) contained, with a wall-clock limit of ``timeout`` seconds (see the module doc).

    ``memory_mb`` is the address-space limit of each process, ``max_processes`` the number of tasks (processes and
    threads) the program may have at once, ``disk_mb`` the size of its work folder, ``output_limit_bytes`` the cap on
    its captured output and on each file it writes; ``output_tail`` holds the last ``tail_bytes`` of stdout+stderr.
    ``python`` is the interpreter (default: this one, ``sys.executable``, so its venv's packages are importable).
    Raises :class:`SandboxError` when the sandbox cannot be built or cannot start the interpreter.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    python = os.path.abspath(python or sys.executable)
    root_mode = os.geteuid() == 0
    uid = gid = None
    if root_mode:
        uid = gid = _UID_RANGE[0] + secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0])
    base = Path(tempfile.mkdtemp(prefix="spectune-exec-"))
    status_r = status_w = -1
    try:
        os.chmod(base, 0o711)  # the program's uid may traverse (only needed without a mount namespace)
        (base / "program.py").write_bytes(program.encode("utf-8", "surrogatepass"))
        os.chmod(base / "program.py", 0o644)
        work = base / "work"
        work.mkdir(mode=0o700)
        (base / "root").mkdir(mode=0o755)
        if uid is not None and gid is not None:
            os.chown(work, uid, gid)
        config = {
            "python": python,
            "binds": _interpreter_prefixes(python),
            "base": str(base),
            "uid": uid,
            "gid": gid,
            "timeout": float(timeout),
            "memory_mb": int(memory_mb),
            "max_processes": int(max_processes),
            "disk_mb": int(disk_mb),
            "output_limit": int(output_limit_bytes),
            "parent_pid": os.getpid(),
        }
        status_r, status_w = os.pipe()
        config["status_fd"] = status_w
        out_path = base / "output.log"
        start = time.monotonic()
        with open(out_path, "wb") as out:
            os.chmod(out_path, 0o600)
            launcher = subprocess.Popen(
                [sys.executable, "-I", "-B", os.path.abspath(__file__), json.dumps(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=base,
                env=_child_env(),
                close_fds=True,
                pass_fds=(status_w,),
                start_new_session=True,
            )
        os.close(status_w)
        status_w = -1
        backstop = False
        try:
            launcher.wait(timeout=timeout + _GRACE_S)
        except subprocess.TimeoutExpired:
            backstop = True
            logger.error("Sandbox launcher %d overran its %.1f s limit; killing it.", launcher.pid, timeout)
            _kill_group(launcher.pid)
            launcher.wait()
        wall = time.monotonic() - start
        if uid is not None and backstop:
            _reap_uid(uid, gid)
        report = _read_report(status_r)
        size = out_path.stat().st_size
        tail = _tail(out_path, tail_bytes)
    finally:
        for fd in (status_r, status_w):
            if fd >= 0:
                os.close(fd)
        if sys.version_info >= (3, 12):
            shutil.rmtree(base, onexc=_force_remove)
        else:
            shutil.rmtree(base, onerror=_force_remove)
    if backstop:
        report["timed_out"] = True
    else:
        problem = report.get("setup_error") or report.get("exec_error")
        if problem is None and not report.get("timed_out") and not {"exit_code", "exit_signal"} & set(report):
            problem = f"the launcher ended with code {launcher.returncode} and no report"
        if problem:
            if "exec_error" in report and "new_root" not in report.get("layers", ()):
                problem += (" (without a mount namespace the interpreter must be readable by an unprivileged uid:"
                            " pass python= one that is, e.g. /usr/bin/python3)")
            raise SandboxError(f"Sandbox failed: {problem}\n{tail[-2000:]}")
    return _result(report, tail, wall, size >= output_limit_bytes, uid)


def _result(report: dict[str, Any], tail: str, wall: float, truncated: bool, uid: int | None) -> ExecResult:
    """Score the launcher's report (timeout, exit code or signal) and the output tail."""
    containment = tuple(report.get("layers", ()))
    not_applied = tuple(report.get("missing", ()))
    if not_applied and not_applied not in _warned:
        _warned.add(not_applied)
        logger.warning("Sandbox ran with lesser containment: %s", "; ".join(not_applied))
    code = report.get("exit_code")
    sig = report.get("exit_signal")
    returncode = code if code is not None else (-sig if sig is not None else None)
    last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
    if report.get("timed_out") or sig == signal.SIGXCPU:
        status = "timeout"
    elif code == 0:
        status = "passed"
    elif sig is not None:
        status = "output_limit" if sig == signal.SIGXFSZ else "signal"
    elif last.startswith(("SyntaxError", "IndentationError", "TabError")) or "source code cannot contain null" in last:
        status = "syntax_error"
    elif last.startswith("MemoryError") or "\nMemoryError" in tail:
        status = "memory"
    elif truncated or "File too large" in last:
        status = "output_limit"
    else:
        status = "failed"
    if status == "timeout":
        returncode = None
    return ExecResult(
        passed=status == "passed",
        status=status,
        output_tail=tail,
        returncode=returncode,
        wall_time=wall,
        output_truncated=truncated,
        containment=containment,
        not_applied=not_applied,
        uid=uid,
    )


def _child_env(workdir: str = _SANDBOX_DIR) -> dict[str, str]:
    """The whole environment of the launcher and the program (the caller's variables never pass)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
    env.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    return env


def _interpreter_prefixes(python: str) -> list[str]:
    """Folders to expose read-only for ``python`` to start: its prefix, every symlink hop's, the venv's base."""
    prefixes: set[str] = set()
    path = python
    for _ in range(40):
        prefixes.add(os.path.dirname(os.path.dirname(path)))
        if not os.path.islink(path):
            break
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    prefixes.add(os.path.dirname(os.path.dirname(os.path.realpath(python))))
    for prefix in list(prefixes):
        cfg = Path(prefix, "pyvenv.cfg")
        if cfg.is_file():
            for line in cfg.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    prefixes.add(os.path.dirname(os.path.realpath(value.strip())))
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        prefixes.update({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})
    prefixes.update({os.path.realpath(p) for p in prefixes})
    system = tuple(f"/{name}" for name in _SYSTEM_DIRS)
    under_system = tuple(s + "/" for s in system)
    kept = sorted(p for p in prefixes if p != "/" and p not in system and not p.startswith(under_system))
    return [p for p in kept if not any(p.startswith(q + "/") for q in kept if q != p)]


def _read_report(fd: int) -> dict[str, Any]:
    """The launcher's JSON report from the status pipe ({} when it wrote none)."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return {}


def _tail(path: Path, size: int) -> str:
    """The last ``size`` bytes of ``path``, decoded leniently."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - size))
        return f.read().decode("utf-8", "replace")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reap_uid(uid: int, gid: int | None) -> None:
    """Kill every process of ``uid`` (run as that uid through the launcher script; the caller itself never forks)."""
    subprocess.run(
        [sys.executable, "-I", "-B", os.path.abspath(__file__), "--reap", str(uid), str(gid)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_child_env(),
        close_fds=True, check=False, timeout=30,
    )


def _force_remove(func: Any, path: str, _exc: Any) -> None:
    """rmtree error hook: make the folders writable and retry (a program without a mount namespace may chmod them)."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            shutil.rmtree(path, ignore_errors=True)
        else:
            func(path)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------------------------------
# The launcher: this file run as a script. Everything below runs in the launcher, init or the program's process.
# --------------------------------------------------------------------------------------------------------------------

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME = 1024, 2048, 1 << 21
_ST_NOATIME, _ST_NODIRATIME, _ST_RELATIME = 1024, 2048, 4096
_MNT_DETACH = 2
_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_CHILD_SUBREAPER, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT = 1, 24, 36, 38, 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SYS_PIVOT_ROOT = {"x86_64": 155, "amd64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41}


class _Libc:
    """The few libc calls Python's ``os`` lacks (3.10/3.11 have no ``os.unshare``, ``mount``, ``prctl``)."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(None, use_errno=True)
        self.lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        self.lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self.lib.unshare.argtypes = [ctypes.c_int]
        self.lib.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        self.lib.syscall.restype = ctypes.c_long

    @staticmethod
    def _check(ret: int, what: str) -> None:
        if ret != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def unshare(self, flags: int) -> None:
        self._check(self.lib.unshare(flags), "unshare")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        enc = (lambda s: None if s is None else s.encode())  # noqa: E731
        self._check(self.lib.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")

    def umount2(self, target: str, flags: int) -> None:
        self._check(self.lib.umount2(target.encode(), flags), f"umount {target}")

    def prctl(self, option: int, arg: int = 0, arg3: int = 0) -> None:
        self._check(self.lib.prctl(option, arg, arg3, 0, 0), f"prctl {option}")

    def pivot_root(self, new_root: str, put_old: str) -> None:
        number = _SYS_PIVOT_ROOT.get(platform.machine().lower())
        if number is None:
            raise OSError(38, "pivot_root: syscall number unknown on this architecture")
        new, old = ctypes.c_char_p(new_root.encode()), ctypes.c_char_p(put_old.encode())
        ret = self.lib.syscall(ctypes.c_long(number), new, old)
        self._check(int(ret), "pivot_root")

    def drop_bounding_set(self) -> None:
        """Drop every capability from the bounding set (needs CAP_SETPCAP: before a uid change)."""
        for cap in range(64):
            try:
                self.prctl(_PR_CAPBSET_DROP, cap)
            except OSError:
                break  # EINVAL past the kernel's last capability

    def drop_capabilities(self) -> None:
        """Empty the ambient, effective, permitted and inheritable capability sets."""
        try:
            self.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
        except OSError:
            pass  # kernels before 4.3 have no ambient set

        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]

        header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3, this thread, all zero
        self._check(self.lib.capset(ctypes.byref(header), data), "capset")


def _write_json(fd: int, message: dict[str, Any]) -> None:
    """One small JSON line on a pipe (atomic below PIPE_BUF)."""
    os.write(fd, (json.dumps(message)[:3500] + "\n").encode())


def _launcher_main(config: dict[str, Any]) -> int:
    """The launcher: set up namespaces, fork init, enforce the wall clock, report on the status pipe."""
    libc = _Libc()
    status_fd = config["status_fd"]
    os.set_inheritable(status_fd, False)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != config["parent_pid"]:
        return 1  # the caller died before the prctl
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphans of the program come back here, not to the machine's init
    root_mode = os.geteuid() == 0
    layers = ["session", "minimal_env", "rlimits", "subreaper"]
    missing: list[str] = []
    userns = False
    if root_mode:
        layers.append("uid")
    else:
        uid, gid = os.getuid(), os.getgid()
        try:
            libc.unshare(_CLONE_NEWUSER)
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
            layers.append("userns")
            userns = True
        except OSError as e:
            missing.append(f"userns: {e}")
    try:
        libc.unshare(_CLONE_NEWPID)
        pidns = True
        layers.append("pidns")
    except OSError as e:
        pidns = False
        missing.append(f"pidns: {e}")
    alive_r, alive_w = os.pipe()
    report_r, report_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        os.close(report_r)
        os.close(status_fd)
        # Tasks that share the program's RLIMIT_NPROC count: init (fresh uid), init and launcher (fresh user
        # namespace), else every task of the caller's uid on the machine.
        shared = 1 if root_mode else 2 if userns else _tasks_of_uid(os.getuid())
        _init_main(config, libc, report_w, alive_r, root_mode, pidns, shared)  # never returns
    os.close(alive_r)
    os.close(report_w)
    timed_out = not _wait_until(pid, start + config["timeout"])
    if timed_out:
        _kill_pid(pid, group=not pidns)
    _, wait_status = os.waitpid(pid, 0)
    wall = time.monotonic() - start
    if not pidns:  # with one, the kernel has already killed every process of the namespace (none can leave it)
        _kill_pid(pid, group=True)
        if root_mode:
            _reap_uid_now(config["uid"], config["gid"])
        _reap_orphans()
    report: dict[str, Any] = {}
    for line in _read_all(report_r).splitlines():
        try:
            report.update(json.loads(line))
        except ValueError:
            continue
    report["layers"] = layers + report.get("layers", [])
    report["missing"] = missing + report.get("missing", [])
    report["timed_out"] = timed_out
    report["wall"] = wall
    if "exit_code" not in report and "exit_signal" not in report and not timed_out and "setup_error" not in report:
        report["setup_error"] = f"init ended with wait status {wait_status} before reporting"
    os.write(status_fd, json.dumps(report).encode())
    os.close(status_fd)
    return 0


def _wait_until(pid: int, deadline: float) -> bool:
    """Wait for child ``pid`` to end (without reaping it) until ``deadline``; True when it ended in time."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    if pidfd >= 0:
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            while (left := deadline - time.monotonic()) > 0:
                if poller.poll(max(1, int(left * 1000))):
                    return True
            return False
        finally:
            os.close(pidfd)
    while time.monotonic() < deadline:  # kernels before 5.3
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(0.005)
    return False


def _kill_pid(pid: int, *, group: bool) -> None:
    """SIGKILL ``pid`` and, with ``group``, its process group (which outlives it while members are left)."""
    for kill, target in ((os.kill, pid), (os.killpg, pid)) if group else ((os.kill, pid),):
        try:
            kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def _tasks_of_uid(uid: int) -> int:
    """Tasks (threads) whose real uid is ``uid``: what RLIMIT_NPROC counts."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = dict(line.split(":", 1) for line in Path("/proc", entry, "status").read_text().splitlines())
            except (OSError, ValueError):
                continue
            if int(fields.get("Uid", "-1 ").split()[0]) == uid:
                total += int(fields.get("Threads", "1"))
    return total


def _reap_orphans() -> None:
    """As subreaper: kill and reap every process left with the launcher as parent, layer by layer."""
    me = os.getpid()
    for _ in range(10000):
        kids = _children(me)
        if not kids:
            return
        for kid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)
        for kid in kids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(kid, 0)


def _reap_uid_now(uid: int, gid: int) -> None:
    """Fork, become ``uid`` and ``kill(-1, SIGKILL)`` until no process of that uid is left (never the caller's)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            for _ in range(100):  # dying processes (zombies until the subreaper reaps them) still count: bounded
                os.kill(-1, signal.SIGKILL)  # every process of this uid but this one
        except OSError:
            pass  # ESRCH: none left
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def _init_main(
    config: dict[str, Any], libc: _Libc, report_w: int, alive_r: int, root_mode: bool, pidns: bool, shared_tasks: int
) -> None:
    """Init (pid 1 of the new PID namespace): build the view, drop privileges, run the program, report its end."""
    try:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        os.setpgid(0, 0)
        layers, missing = _unshare_rest(libc)
        base = config["base"]
        if "mountns" in layers:
            _build_root(config, libc, pidns, root_mode)
            layers.append("new_root")
        else:
            missing.append("new_root: no mount namespace; the program runs in a host temporary folder")
            os.chdir(os.path.join(base, "work"))
            shutil.copyfile(os.path.join(base, "program.py"), "program.py")
            if root_mode:
                os.chown("program.py", config["uid"], config["gid"])
        if "utsns" in layers:
            socket.sethostname("sandbox")
        _set_limits(config, extra_tasks=shared_tasks)
        libc.drop_bounding_set()
        if root_mode:
            os.setgroups([])
            os.setresgid(config["gid"], config["gid"], config["gid"])
            os.setresuid(config["uid"], config["uid"], config["uid"])
        libc.drop_capabilities()
        libc.prctl(_PR_SET_NO_NEW_PRIVS, 1)
        layers += ["capabilities_dropped", "no_new_privs"]
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the uid change: set again, then check the launcher
        if select.select([alive_r], [], [], 0)[0]:
            os._exit(1)  # the launcher is gone (its end of the pipe closed)
        _write_json(report_w, {"layers": layers, "missing": missing})
    except BaseException as e:  # noqa: BLE001 - every setup fault is reported, then init ends
        _write_json(report_w, {"setup_error": f"{type(e).__name__}: {e}"})
        os._exit(1)
    child = os.fork()
    if child == 0:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execve(config["python"], [config["python"], "-I", "program.py"], _child_env(os.getcwd()))
        except BaseException as e:  # noqa: BLE001
            _write_json(report_w, {"exec_error": f"{config['python']}: {type(e).__name__}: {e}"})
        os._exit(127)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)  # init ignores default-action signals sent from inside its namespace
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        if pid == child:
            break
    if os.WIFSIGNALED(status):
        _write_json(report_w, {"exit_signal": os.WTERMSIG(status)})
    else:
        _write_json(report_w, {"exit_code": os.WEXITSTATUS(status)})
    os._exit(0)


def _unshare_rest(libc: _Libc) -> tuple[list[str], list[str]]:
    """Enter new mount, network, IPC and UTS namespaces; each the OS refuses is listed with its reason."""
    names = {"mountns": _CLONE_NEWNS, "netns": _CLONE_NEWNET, "ipcns": _CLONE_NEWIPC, "utsns": _CLONE_NEWUTS}
    try:
        libc.unshare(sum(names.values()))
        return list(names), []
    except OSError:
        pass
    layers, missing = [], []
    for name, flag in names.items():
        try:
            libc.unshare(flag)
            layers.append(name)
        except OSError as e:
            missing.append(f"{name}: {e}")
    return layers, missing


def _bind_ro(libc: _Libc, source: str, target: str) -> None:
    """Bind ``source`` on ``target`` read-only, nosuid, nodev (keeping flags a user namespace may not clear)."""
    libc.mount(source, target, None, _MS_BIND)
    kept = os.statvfs(target).f_flag
    flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | (kept & _MS_NOEXEC)
    flags |= (_MS_NOATIME if kept & _ST_NOATIME else 0) | (_MS_NODIRATIME if kept & _ST_NODIRATIME else 0)
    flags |= _MS_RELATIME if kept & _ST_RELATIME else 0
    libc.mount(None, target, None, flags)


def _build_root(config: dict[str, Any], libc: _Libc, pidns: bool, root_mode: bool) -> None:
    """Assemble the program's file-system view on a tmpfs and make it the root (see the module doc)."""
    base = config["base"]
    source = Path(base, "program.py").read_bytes()
    libc.mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    root = os.path.join(base, "root")
    libc.mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=4m,nr_inodes=4096,mode=0755")
    for name in _SYSTEM_DIRS:
        host = f"/{name}"
        inside = os.path.join(root, name)
        if os.path.islink(host):
            os.symlink(os.readlink(host), inside)
        elif os.path.isdir(host):
            os.mkdir(inside)
            _bind_ro(libc, host, inside)
    for prefix in config["binds"]:
        if os.path.isdir(prefix):
            inside = root + prefix
            os.makedirs(inside, exist_ok=True)
            _bind_ro(libc, prefix, inside)
    dev = os.path.join(root, "dev")
    os.mkdir(dev)
    libc.mount("tmpfs", dev, "tmpfs", _MS_NOSUID | _MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755")
    for name in _DEVICES:
        Path(dev, name).touch()
        libc.mount(f"/dev/{name}", os.path.join(dev, name), None, _MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))
    sandbox = root + _SANDBOX_DIR
    os.mkdir(sandbox)
    owner = f",uid={config['uid']},gid={config['gid']}" if root_mode else ""
    libc.mount("tmpfs", sandbox, "tmpfs", _MS_NOSUID | _MS_NODEV,
               f"size={config['disk_mb']}m,nr_inodes=16384,mode=0700{owner}")
    Path(sandbox, "program.py").write_bytes(source)
    if root_mode:
        os.chown(os.path.join(sandbox, "program.py"), config["uid"], config["gid"])
    tmp_inside = os.path.join(root, "tmp")
    if not os.path.exists(tmp_inside):
        os.mkdir(tmp_inside)
        libc.mount(sandbox, tmp_inside, None, _MS_BIND)
    # else: a bound interpreter prefix lives under /tmp (a checkout or venv there): /tmp then holds only that read-only
    # path, and TMPDIR still points at the private /sandbox.
    os.mkdir(os.path.join(root, "proc"))
    # A new PID namespace gets its own /proc; without one, hide other uids' processes at least.
    libc.mount("proc", os.path.join(root, "proc"), "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
               None if pidns else "hidepid=2")
    libc.mount(None, root, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    os.chdir(root)
    try:
        libc.pivot_root(".", ".")
        libc.umount2(".", _MNT_DETACH)  # the old root, stacked on the new one by pivot_root(".", ".")
    except OSError:
        os.chroot(".")
    os.chdir(_SANDBOX_DIR)


def _set_limits(config: dict[str, Any], extra_tasks: int) -> None:
    """rlimits of init and (inherited) the program; ``extra_tasks``: others counted against the same RLIMIT_NPROC."""
    cpu = math.ceil(config["timeout"]) + 1
    memory = config["memory_mb"] << 20
    for limit, soft, hard in (
        (resource.RLIMIT_AS, memory, memory),
        (resource.RLIMIT_NPROC, config["max_processes"] + extra_tasks, config["max_processes"] + extra_tasks),
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_FSIZE, config["output_limit"], config["output_limit"]),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NOFILE, 1024, 1024),
    ):
        old_soft, old_hard = resource.getrlimit(limit)
        if old_hard != resource.RLIM_INFINITY:
            hard = min(hard, old_hard)
            soft = min(soft, hard)
        resource.setrlimit(limit, (soft, hard))


def _reap_main(uid: int, gid: int) -> int:
    """``--reap UID GID``: the caller's backstop when the launcher did not return."""
    _reap_uid_now(uid, gid)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--reap":
        sys.exit(_reap_main(int(sys.argv[2]), int(sys.argv[3])))
    sys.exit(_launcher_main(json.loads(sys.argv[1])))
