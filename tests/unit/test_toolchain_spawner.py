"""The spawner a multi-threaded caller (the service) starts confined programs
through: restarted when it died, many runs at once, stopped with its sandbox,
failing closed.  The confinement itself is checked through the spawner by
every test of test_toolchain_sandbox.py."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lcc_toolchain import sandbox as sandbox_mod
from lcc_toolchain.sandbox import Sandbox, SandboxError


@pytest.fixture(autouse=True)
def threaded(monkeypatch):
    """Runs as from a multi-threaded caller, which the spawner serves."""
    monkeypatch.setattr(sandbox_mod, "_single_threaded", lambda: False)


@pytest.fixture
def sb():
    box = Sandbox()
    yield box
    box.close()


def _gone(pid: int, within: float = 10.0) -> bool:
    """Whether ``pid`` has ended (or is a zombie) within ``within`` seconds."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_a_killed_spawner_is_restarted_for_the_next_run(sb, tmp_path):
    first = sb.run(["/bin/echo", "one"], cwd=tmp_path)
    old = sb._spawner.pid
    os.kill(old, signal.SIGKILL)
    assert _gone(old)

    second = sb.run(["/bin/echo", "two"], cwd=tmp_path)

    assert (first.stdout, second.stdout) == (b"one\n", b"two\n")
    assert second.started == "spawner" and sb._spawner.pid != old


def test_a_program_running_when_its_spawner_dies_fails_and_is_killed(sb, tmp_path):
    rw = tmp_path / "rw"
    rw.mkdir()
    errors: list[BaseException] = []

    def run():
        try:
            sb.run(["/bin/sh", "-c", f"echo $$ > {rw}/pid; exec /bin/sleep 30"],
                   cwd=tmp_path, write=[rw])
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)

    sb.run(["/bin/true"], cwd=tmp_path)  # the spawner is up
    worker = threading.Thread(target=run)
    worker.start()
    pid_file = rw / "pid"
    while not (pid_file.is_file() and pid_file.read_text().strip()):
        assert worker.is_alive(), errors
        time.sleep(0.01)
    os.kill(sb._spawner.pid, signal.SIGKILL)
    worker.join(20)

    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], SandboxError), errors
    assert "spawner" in str(errors[0])
    assert _gone(int(pid_file.read_text()))
    assert sb.run(["/bin/true"], cwd=tmp_path).ok  # and the next run works


def test_concurrent_runs_each_get_their_own_output(sb, tmp_path):
    def run(n: int) -> tuple[str, bytes, bytes]:
        done = sb.run(["/bin/sh", "-c", 'echo "$TAG"; echo "err $TAG" >&2'],
                      cwd=tmp_path, env={"TAG": f"run-{n}"})
        assert done.ok and done.started == "spawner"
        return f"run-{n}", done.stdout, done.stderr

    sb.run(["/bin/true"], cwd=tmp_path)  # the spawner is up
    first = sb._spawner.pid
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(32)))

    for tag, out, err in results:
        assert out == f"{tag}\n".encode() and err == f"err {tag}\n".encode()
    assert sb._spawner.pid == first  # one spawner served them all: none was restarted


def test_close_stops_the_spawner(tmp_path):
    sb = Sandbox()
    sb.run(["/bin/true"], cwd=tmp_path)
    pid = sb._spawner.pid

    sb.close()

    assert _gone(pid)
    assert sb.run(["/bin/true"], cwd=tmp_path).ok  # a later run starts another


def test_a_spawner_that_cannot_start_fails_the_run(tmp_path):
    sb = Sandbox(python=str(tmp_path / "no-python"))
    with pytest.raises(SandboxError, match="spawner"):
        sb.run(["/bin/true"], cwd=tmp_path)


def test_the_spawner_holds_no_descriptor_of_the_caller(sb, tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        sb.run(["/bin/true"], cwd=tmp_path)
    finally:
        os.close(fd)
    fds = os.listdir(f"/proc/{sb._spawner.pid}/fd")
    targets = {os.readlink(f"/proc/{sb._spawner.pid}/fd/{n}") for n in fds}

    assert str(Path(tmp_path)) not in targets
