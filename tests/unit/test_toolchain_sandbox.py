"""The sandbox that clang and bpftool run in: filesystem, environment,
capabilities, network and resource limits.  Needs no root; the Landlock
checks skip on kernels without Landlock.  Every test runs three times: with
the confining process forked from this one (a single-threaded caller, as
``lcc compile``), forked by the spawner (a multi-threaded caller, as the
service) and started as the Python trampoline (a multi-threaded caller without
the spawner)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lcc_toolchain import landlock
from lcc_toolchain import sandbox as sandbox_mod
from lcc_toolchain.sandbox import Limits, Sandbox, SandboxError

needs_landlock = pytest.mark.skipif(landlock.abi_version() < 1,
                                    reason="this kernel has no Landlock")
PY = shutil.which("python3", path="/usr/bin:/bin")


@pytest.fixture(autouse=True, params=["fork", "spawner", "trampoline"])
def start(request, monkeypatch):
    """How the confining process starts in this test."""
    if request.param != "fork":
        monkeypatch.setattr(sandbox_mod, "_single_threaded", lambda: False)
    if request.param == "trampoline":
        monkeypatch.setattr(sandbox_mod, "_spawner_usable", lambda: False)
    return request.param


@pytest.fixture
def box(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "rw").mkdir()
    (tmp_path / "ro" / "public.txt").write_text("public\n")
    (tmp_path / "secret.txt").write_text("secret\n")
    return tmp_path


@needs_landlock
def test_reads_only_allowed_paths(box):
    sb = Sandbox()
    allowed = sb.run(["/usr/bin/cat", str(box / "ro" / "public.txt")], cwd=box / "rw",
                     read=[box / "ro"], write=[box / "rw"])
    denied = sb.run(["/usr/bin/cat", str(box / "secret.txt")], cwd=box / "rw",
                    read=[box / "ro"], write=[box / "rw"])
    passwd = sb.run(["/usr/bin/cat", "/etc/passwd"], cwd=box / "rw")

    assert allowed.ok and allowed.stdout == b"public\n"
    assert denied.returncode != 0 and b"secret" not in denied.stdout
    assert b"Permission denied" in denied.stderr
    assert passwd.returncode != 0 and passwd.stdout == b""


@needs_landlock
def test_writes_only_in_write_paths(box):
    sb = Sandbox()
    inside = sb.run(["/usr/bin/touch", str(box / "rw" / "ok")], cwd=box / "rw",
                    read=[box / "ro"], write=[box / "rw"])
    outside = sb.run(["/usr/bin/touch", str(box / "ro" / "no")], cwd=box / "rw",
                     read=[box / "ro"], write=[box / "rw"])

    assert inside.ok and (box / "rw" / "ok").exists()
    assert outside.returncode != 0 and not (box / "ro" / "no").exists()


def test_environment_is_empty_unless_given(box):
    sb = Sandbox()
    empty = sb.run(["/usr/bin/env"], cwd=box)
    given = sb.run(["/usr/bin/env"], cwd=box, env={"ONLY": "this"})

    assert empty.ok and empty.stdout == b""
    assert given.stdout == b"ONLY=this\n"


@needs_landlock
def test_no_capabilities_and_no_new_privileges(box):
    done = Sandbox().run(["/usr/bin/cat", "/proc/self/status"], cwd=box, read=["/proc"])
    status = dict(line.split(":\t", 1) for line in done.stdout.decode().splitlines()
                  if ":\t" in line)

    assert status["CapEff"].strip() == "0000000000000000"
    assert status["CapPrm"].strip() == "0000000000000000"
    assert status["NoNewPrivs"].strip() == "1"


@pytest.mark.skipif(PY is None, reason="no system python3 to act as a client")
def test_no_tcp_connections(box):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        code = ("import socket; print('connecting', flush=True); "
                f"socket.create_connection(('127.0.0.1', {port}), timeout=2)")
        server.setblocking(False)
        confined = Sandbox().run([PY, "-c", code], cwd=box)
        with pytest.raises(BlockingIOError):  # nothing reached the listener
            server.accept()
        control = Sandbox(enabled=False).run([PY, "-c", code], cwd=box)
        server.accept()[0].close()  # the unconfined client's connection did

    assert control.ok, control.stderr
    # The confined client got as far as connect(), and connect() failed.
    assert confined.stdout == b"connecting\n" and confined.returncode != 0, confined.stderr


def test_wall_clock_limit_kills(box):
    done = Sandbox(limits=Limits(wall_seconds=0.5)).run(["/usr/bin/sleep", "30"], cwd=box)
    assert done.exceeded == "wall-clock time"


@pytest.mark.skipif(PY is None, reason="no system python3")
def test_cpu_limit_kills(box):
    done = Sandbox(limits=Limits(cpu_seconds=1, wall_seconds=20)).run(
        [PY, "-c", "while True: pass"], cwd=box)
    assert done.exceeded == "CPU time"


def test_output_size_limit(box):
    done = Sandbox(limits=Limits(file_size_bytes=1 << 20)).run(
        ["/usr/bin/dd", "if=/dev/zero", f"of={box / 'rw' / 'big'}", "bs=1M", "count=4"],
        cwd=box / "rw", read=["/dev/zero"], write=[box / "rw"])
    assert done.exceeded == "output size"
    assert (box / "rw" / "big").stat().st_size <= 1 << 20


def test_missing_program_is_reported(box):
    done = Sandbox().run([str(Path("/nonexistent/tool"))], cwd=box)
    assert done.returncode == 127 and b"cannot execute" in done.stderr


def test_only_the_head_of_the_output_is_kept(box):
    done = Sandbox().run(["/usr/bin/head", "-c", str(3 << 20), "/dev/zero"], cwd=box,
                         read=["/dev/zero"])
    assert done.ok
    assert len(done.stdout) < (1 << 20) + 100
    assert done.stdout.endswith(b"[... output cut]\n")


# -- an unprivileged user ---------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
NOBODY = (65534, 65534)


@needs_root
def test_switch_user_drops_root_and_groups():
    from lcc_toolchain.sandbox_exec import switch_user
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child changes user; the test process stays root
        try:
            os.setgroups([0, 4])
            switch_user(*NOBODY)
            try:
                os.setuid(0)
                regained = "yes"
            except PermissionError:
                regained = "no"
            os.write(w, repr((os.getresuid(), os.getresgid(), os.getgroups(),
                              regained)).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        seen = f.read()
    os.waitpid(pid, 0)
    assert seen == repr(((65534,) * 3, (65534,) * 3, [], "no"))


def test_user_option_round_trips():
    from lcc_toolchain.sandbox_exec import decode_policy, encode_policy
    policy, program = decode_policy(encode_policy(cwd="/", user=NOBODY) + ["/bin/true"])
    assert policy["user"] == NOBODY and program == ["/bin/true"]


@needs_root
def test_program_runs_as_the_given_user(box):
    (box / "rw" / "root-only").write_text("secret\n")
    os.chmod(box / "rw" / "root-only", 0o600)
    code = ("import os\ntry:\n os.setuid(0)\n r = 'regained'\nexcept PermissionError:\n"
            " r = 'kept'\nprint(os.getresuid(), os.getresgid(), os.getgroups(), r)")
    sb = Sandbox(user=NOBODY)
    who = sb.run([PY, "-I", "-S", "-c", code], cwd=box / "rw", write=[box / "rw"])
    denied = sb.run(["/usr/bin/cat", str(box / "rw" / "root-only")], cwd=box / "rw",
                    write=[box / "rw"])

    assert who.ok, who.stderr
    assert who.stdout.decode().split("\n")[0] == \
        "(65534, 65534, 65534) (65534, 65534, 65534) [] kept"
    # Landlock allows the write directory; the file's owner still says no.
    assert denied.returncode != 0 and b"secret" not in denied.stdout
    assert (box / "rw").stat().st_uid == 65534


@needs_root
def test_other_host_paths_do_not_exist_for_the_program(box):
    sb = Sandbox(user=NOBODY)
    done = sb.run(["/usr/bin/stat", "-c", "%n", "/etc/passwd", "/root", "/dev/zero",
                   str(box / "secret.txt"), str(box / "ro" / "public.txt")],
                  cwd=box / "rw", read=[box / "ro"], write=[box / "rw"])

    assert done.stdout.decode().split() == [str(box / "ro" / "public.txt")]
    assert done.stderr.count(b"No such file or directory") == 4


def test_cancel_kills_the_program(box):
    import threading
    import time

    from lcc_toolchain.sandbox import Cancelled
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        Sandbox().run(["/usr/bin/sleep", "30"], cwd=box, cancel=cancel)
    assert time.monotonic() - started < 5


def test_a_single_threaded_caller_forks_a_threaded_one_asks_the_spawner(box, start):
    import threading

    alone = Sandbox().run(["/bin/true"], cwd=box)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        threaded = Sandbox().run(["/bin/true"], cwd=box)
        plain = Sandbox(spawner=False).run(["/bin/true"], cwd=box)
    finally:
        stop.set()
        other.join()

    assert alone.ok and threaded.ok and plain.ok
    if start == "fork" and not sandbox_mod._single_threaded():
        # Earlier tests in this process left a thread running: forking here
        # would be unsafe, so the spawner serves it. A fresh interpreter is
        # single-threaded and must fork.
        assert alone.started == ("spawner" if sandbox_mod._spawner_usable() else "trampoline")
        code = ("import sys; from lcc_toolchain.sandbox import Sandbox; "
                "print(Sandbox().run(['/bin/true'], cwd=sys.argv[1]).started)")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        out = subprocess.run([sys.executable, "-c", code, str(box)], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "fork"
    else:
        assert alone.started == start
    assert threaded.started == ("trampoline" if start == "trampoline" else "spawner")
    assert plain.started == "trampoline"
    assert Sandbox(fork=False, spawner=False).run(["/bin/true"], cwd=box).started == "trampoline"


def test_the_program_inherits_no_descriptor_of_the_caller(box):
    fd = os.open(box / "secret.txt", os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        done = Sandbox().run(["/usr/bin/ls", "/proc/self/fd"], cwd=box, read=["/proc"])
    finally:
        os.close(fd)

    assert done.ok, done.stderr
    assert set(done.stdout.split()) <= {b"0", b"1", b"2", b"3"}  # 3: ls's own listing


def test_a_setup_failure_is_a_sandbox_error(box):
    # no process may raise its open-file limit past the kernel's (fs.nr_open)
    with pytest.raises(SandboxError, match="lcc-sandbox"):
        Sandbox(limits=Limits(open_files=1 << 40)).run(["/bin/true"], cwd=box)
