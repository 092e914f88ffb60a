"""Contained execution of model-written programs: real runs of hostile programs, no mocks.

Each case checks the score (failure, or harmless pass) and that the caller's process and files are untouched and no
process of the run survives it. On a root caller with namespaces (CI) every layer must be present; the degraded
paths (a non-root caller, a root caller without CAP_SYS_ADMIN) run as subprocesses where ``/usr/bin/python3`` exists.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spectune.evaluation import execution
from spectune.evaluation.execution import ExecResult, run_program

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

ROOT = os.geteuid() == 0
FULL = ("pidns", "mountns", "netns", "new_root", "capabilities_dropped", "no_new_privs")
SYSTEM_PYTHON = "/usr/bin/python3"


def _descendants(pid: int) -> list[int]:
    """Every live (non-zombie) process below ``pid``, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat[0] != "Z":
                parents.setdefault(int(stat[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _processes_of_uid(uid: int | None) -> list[int]:
    if uid is None:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _assert_clean(result: ExecResult) -> None:
    """Nothing of the run is left: no child of the caller, no process of the run's uid."""
    assert _descendants(os.getpid()) == []
    assert _processes_of_uid(result.uid) == []


def _assert_contained(result: ExecResult) -> None:
    """As root on Linux with namespaces (CI and this machine) every layer is applied and none reported missing."""
    if ROOT:
        assert set(FULL) | {"uid"} <= set(result.containment), result.not_applied
        assert result.not_applied == ()
        assert result.uid is not None and result.uid >= 10**8


def test_passing_program_runs_in_an_empty_private_folder():
    program = textwrap.dedent("""
        import os
        print("cwd", os.getcwd(), sorted(os.listdir(".")))
        with open("scratch.txt", "w") as f:
            f.write("fine")
        print("uid", os.getuid())
        assert open("scratch.txt").read() == "fine"
    """)
    result = run_program(program, timeout=5)
    assert result.passed and result.status == "passed" and result.returncode == 0, result
    _assert_contained(result)
    if "new_root" in result.containment:
        assert "cwd /sandbox ['program.py']" in result.output_tail
    if ROOT:
        assert f"uid {result.uid}" in result.output_tail
    _assert_clean(result)


def test_failing_assert_is_failed():
    result = run_program("def add(a, b):\n    return a - b\n\nassert add(2, 2) == 4\n", timeout=5)
    assert not result.passed and result.status == "failed" and result.returncode == 1
    assert "AssertionError" in result.output_tail
    _assert_clean(result)


def test_syntax_error_is_scored():
    result = run_program("def f(:\n    return 1\n", timeout=5)
    assert not result.passed and result.status == "syntax_error"
    assert "SyntaxError" in result.output_tail
    _assert_clean(result)


def test_infinite_loop_times_out_and_is_killed():
    start = time.monotonic()
    result = run_program("print('spinning', flush=True)\nwhile True:\n    pass\n", timeout=1.0)
    elapsed = time.monotonic() - start
    assert not result.passed and result.status == "timeout" and result.returncode is None
    assert elapsed < 1.0 + 1.5, elapsed
    assert "spinning" in result.output_tail
    _assert_clean(result)


def test_fork_storm_is_contained():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    start = time.monotonic()
    result = run_program(bomb, timeout=1.5, max_processes=8)
    assert time.monotonic() - start < 1.5 + 1.5
    assert not result.passed and result.status == "timeout"
    _assert_clean(result)
    # Forks beyond the limit fail in the program (the program itself is one of the 8 tasks) ...
    counting = textwrap.dedent("""
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                n += 1
        except OSError as e:
            print("forked", n, e.errno)
        raise SystemExit(1)
    """)
    result = run_program(counting, timeout=5, max_processes=8)
    assert result.status == "failed"
    forked = int(result.output_tail.split("forked ")[1].split()[0])
    assert 0 < forked <= 7, result.output_tail
    _assert_clean(result)  # ... and the sleeping children die with the run
    # ... while the caller can still start processes.
    assert subprocess.run(["true"], check=False).returncode == 0


def test_detached_grandchild_does_not_survive():
    program = textwrap.dedent("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        print("parent leaves")
    """)
    result = run_program(program, timeout=5)
    assert result.passed, result
    _assert_clean(result)


def test_huge_allocation_is_a_memory_failure():
    before = resource.getrlimit(resource.RLIMIT_AS)
    result = run_program("blob = bytearray(8 << 30)\nprint(len(blob))\n", timeout=5, memory_mb=512)
    assert not result.passed and result.status == "memory", result
    assert "MemoryError" in result.output_tail
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert len(bytearray(64 << 20)) == 64 << 20  # the caller still allocates
    _assert_clean(result)


def test_writes_outside_the_folder_leave_caller_files_untouched(tmp_path: Path):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    repo = Path(execution.__file__).resolve().parents[3]
    probe = repo / f".sandbox_probe_{os.getpid()}"
    probe.write_text("original")
    new_in_repo = repo / f".sandbox_created_{os.getpid()}"
    new_in_tmp = tmp_path / "created.txt"
    targets = [str(victim), str(probe)]
    program = textwrap.dedent(f"""
        import json, os
        done = []
        for path in {targets!r}:
            for action in ("write", "remove", "chmod"):
                try:
                    if action == "write":
                        open(path, "w").write("pwned")
                    elif action == "remove":
                        os.remove(path)
                    else:
                        os.chmod(path, 0o777)
                    done.append([action, path])
                except OSError:
                    pass
        for path in ({str(new_in_repo)!r}, {str(new_in_tmp)!r}):
            try:
                open(path, "w").write("pwned")
                done.append(["create", path])
            except OSError:
                pass
        print(json.dumps(done))
        raise SystemExit(1 if done else 0)
    """)
    try:
        before = {p: (p.read_text(), p.stat().st_mode) for p in (victim, probe)}
        result = run_program(program, timeout=5)
        assert result.status == "passed", result.output_tail  # every attempt failed inside the sandbox
        assert json.loads(result.output_tail.strip().splitlines()[-1]) == []
        assert {p: (p.read_text(), p.stat().st_mode) for p in (victim, probe)} == before
        assert not new_in_repo.exists() and not new_in_tmp.exists()
        _assert_contained(result)
        _assert_clean(result)
    finally:
        probe.unlink(missing_ok=True)
        new_in_repo.unlink(missing_ok=True)


def test_no_network_not_even_the_callers_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        port = server.getsockname()[1]
        program = textwrap.dedent(f"""
            import json, socket, time
            start = time.monotonic()
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
                outcome = "connected"
            except OSError as e:
                outcome = e.errno
            routes = open("/proc/net/route").read().splitlines()[1:]
            print(json.dumps({{"outcome": outcome, "seconds": time.monotonic() - start,
                               "interfaces": [name for _, name in socket.if_nameindex()], "routes": routes}}))
        """)
        result = run_program(program, timeout=5)
        with pytest.raises(BlockingIOError):
            server.accept()  # the listener saw no connection
    report = json.loads(result.output_tail.strip().splitlines()[-1])
    assert report["outcome"] != "connected"
    assert report["seconds"] < 1.0
    if ROOT:
        assert "netns" in result.containment
    if "netns" in result.containment:
        assert report["interfaces"] == ["lo"] and report["routes"] == []
    _assert_clean(result)


def test_callers_secret_environment_is_invisible(monkeypatch: pytest.MonkeyPatch):
    secret = f"spectune-secret-{os.getpid()}-{time.time_ns()}"
    monkeypatch.setenv("SPECTUNE_TEST_SECRET", secret)
    program = textwrap.dedent(f"""
        import os
        print(sorted(os.environ))
        print("direct", os.environ.get("SPECTUNE_TEST_SECRET"))
        found = [k for k, v in os.environ.items() if {secret!r} in v]
        for entry in os.listdir("/proc"):
            for name in ("environ", "cmdline"):
                try:
                    if {secret!r}.encode() in open(f"/proc/{{entry}}/{{name}}", "rb").read():
                        found.append(entry + "/" + name)
                except OSError:
                    pass
        print("found", found)
    """)
    result = run_program(program, timeout=5)
    assert result.passed, result
    assert "direct None" in result.output_tail and "found []" in result.output_tail
    assert secret not in result.output_tail.replace(repr(secret), "")  # only the program's own literal
    _assert_clean(result)


# ---- degraded callers, each in a subprocess with the system Python (readable by unprivileged uids) ----

_CHILD_SCRIPT = textwrap.dedent("""
    import ctypes, importlib.util, json, os, sys, tempfile
    if sys.argv[1] == "drop-sys-admin":  # root without CAP_SYS_ADMIN: no namespaces
        assert ctypes.CDLL(None, use_errno=True).prctl(24, 21, 0, 0, 0) == 0
    spec = importlib.util.spec_from_file_location("execution", sys.argv[2])
    execution = sys.modules["execution"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(execution)
    victim = os.path.join(tempfile.mkdtemp(), "victim.txt")
    open(victim, "w").write("original")
    os.chmod(victim, 0o644)
    program = (  # a detached child that execs `sleep <marker>`, and a write to the caller's file
        "import os\\n"
        f"if os.fork() == 0:\\n    os.setsid()\\n    os.execv('/bin/sleep', ['sleep', {sys.argv[3]!r}])\\n"
        f"try:\\n    open({victim!r}, 'w').write('pwned')\\nexcept OSError:\\n    pass\\n"
    )
    r = execution.run_program(program, 5, python=sys.executable)
    print(json.dumps({"status": r.status, "containment": r.containment, "not_applied": r.not_applied,
                      "uid": r.uid, "victim": open(victim).read(), "tail": r.output_tail}))
""")


def _with_marker(marker: str) -> list[int]:
    """Processes whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path("/proc", entry, "cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _degraded_run(mode: str, **kwargs) -> dict:
    """Run a program (detached child + write to the caller's file) from a degraded caller; check no survivor."""
    if not ROOT or not os.access(SYSTEM_PYTHON, os.X_OK) or not os.access("/bin/sleep", os.X_OK):
        pytest.skip(f"needs a root caller, {SYSTEM_PYTHON} and /bin/sleep")
    module = str(Path(execution.__file__).resolve())
    marker = f"60.{os.getpid()}{time.time_ns() % 10**6}"
    done = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", _CHILD_SCRIPT, mode, module, marker], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": "/tmp"}, cwd="/", check=False, **kwargs,
    )
    if done.returncode != 0:
        if "No module named" in done.stderr:
            pytest.skip(f"{SYSTEM_PYTHON} lacks a standard module: {done.stderr[-300:]}")
        pytest.fail(done.stderr[-3000:])
    assert _with_marker(marker) == [] and _descendants(os.getpid()) == []
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_non_root_caller_gets_namespaces_through_a_user_namespace():
    report = _degraded_run("plain", user=65534, group=65534, extra_groups=[])
    assert report["status"] == "passed" and report["victim"] == "original", report
    assert {"userns", *FULL} <= set(report["containment"]), report["not_applied"]
    assert report["uid"] is None


def test_root_caller_without_namespaces_records_the_lesser_containment():
    report = _degraded_run("drop-sys-admin")
    assert report["status"] == "passed" and report["victim"] == "original", report
    assert "uid" in report["containment"] and "pidns" not in report["containment"]
    missing = {entry.split(":")[0] for entry in report["not_applied"]}
    assert {"pidns", "mountns", "netns", "new_root"} <= missing
    assert _processes_of_uid(report["uid"]) == []
