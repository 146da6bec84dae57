"""What the service leaves behind when its application shuts down: nothing.

The lifespan's end must stop the sandbox spawner (a child process of the
service, with the tools it runs) and close the fleet store's Redis
connections (the pool the requests used and the notices' subscriber), so a
server stopped in-process (tests, an embedding application) does not keep
processes or sockets until the interpreter exits.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fleettools import redis_server
from lcc_server.app import create_app
from lcc_server.settings import Settings

HOST_BTF = Path("/sys/kernel/btf/vmlinux")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.server
def test_shutdown_stops_the_sandbox_spawner(tmp_path):
    from lcc_toolchain.sandbox import _spawner_usable
    if not _spawner_usable():
        pytest.skip("pidfd_open is not available: the service uses no spawner here")
    settings = Settings(state_dir=tmp_path / "state", warm=False, host_btf=HOST_BTF,
                        insecure_no_sandbox=True)
    app = create_app(settings)
    sandbox = app.state.service.toolchain.sandbox
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        sandbox.start()  # as the warm-up does; this process has several threads
        pid = sandbox._the_spawner().pid
        assert pid is not None and _alive(pid)
    assert not _alive(pid), "the spawner outlived the application"


def _other_clients(observer) -> list[dict]:
    me = observer.client_id()
    return [c for c in observer.client_list() if int(c["id"]) != me]


@pytest.mark.server
@pytest.mark.fleet
def test_shutdown_closes_the_redis_connections(tmp_path):
    import redis
    with redis_server() as server:
        observer = redis.Redis.from_url(server.url)
        settings = Settings(state_dir=tmp_path / "state", warm=False, host_btf=HOST_BTF,
                            store=server.url, insecure_no_sandbox=True)
        app = create_app(settings)
        notices = app.state.service.notices
        with TestClient(app) as client:
            assert client.get("/healthz").json()["store"]["ok"] is True
            deadline = time.monotonic() + 10
            while not notices.listening and time.monotonic() < deadline:
                time.sleep(0.05)
            assert notices.listening
            assert len(_other_clients(observer)) >= 2  # the pool's and the subscriber's
        # Redis notices a closed socket on its next event loop turn.
        deadline = time.monotonic() + 10
        while _other_clients(observer) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _other_clients(observer)
        observer.close()
        assert left == [], f"connections left open after shutdown: {left}"


def _open_files_under(root: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)):
            out.append(target)
    return out


@pytest.mark.server
def test_shutdown_closes_the_artifact_ledger(tmp_path):
    settings = Settings(state_dir=tmp_path / "state", warm=False, host_btf=HOST_BTF,
                        insecure_no_sandbox=True)
    app = create_app(settings)
    with TestClient(app) as client:
        r = client.get("/metrics")  # the disk gauges open the ledger
        assert r.status_code == 200 and "lcc_artifact_disk_bytes" in r.text
        assert any(p.endswith("ledger.sqlite") for p in _open_files_under(tmp_path))
    assert _open_files_under(tmp_path) == []
