"""When the sandbox cannot run a tool, every endpoint answers 503 ``unavailable``,
never 500.

The compile path mapped a sandbox failure to a ``ToolchainError``; bpftool's
runs (vmlinux.h for an uploaded kernel, tailored BTF) and the precompiled
header did not, so the same failure became an unhandled exception there.
The failure is real: the service's sandbox is given a Python that does not
exist, so its spawner cannot start (the service is multi-threaded: every run
goes through the spawner).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lcc_server.app import create_app
from lcc_server.settings import Settings
from lcc_toolchain.sandbox import Sandbox
from servertools import toolchain_missing

pytestmark = pytest.mark.server

HOST_BTF = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture
def client(tmp_path):
    reason = toolchain_missing()
    if reason:
        pytest.skip(reason)
    from lcc_toolchain.sandbox import _spawner_usable
    if not _spawner_usable():
        pytest.skip("pidfd_open is not available: the service uses no spawner here")
    sandbox = Sandbox(python=str(tmp_path / "no-such-python"))
    settings = Settings(state_dir=tmp_path / "state", warm=False, host_btf=HOST_BTF,
                        insecure_no_sandbox=True)
    with TestClient(create_app(settings, sandbox=sandbox),
                    raise_server_exceptions=False) as c:
        yield c


def test_a_btf_upload_the_sandbox_cannot_read_is_503(client):
    r = client.put("/v1/btf/x86_64/6.0-sandbox-test", content=HOST_BTF.read_bytes())
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "unavailable" and "spawner" in r.json()["detail"]


def test_a_compile_the_sandbox_cannot_run_is_503(client):
    r = client.post("/v1/compile", json={"bundle": {"main": "p.bpf.c", "files": {
        "p.bpf.c": '#include "lbc.h"\nchar LICENSE[] SEC("license") = "GPL";\n'}}})
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "unavailable"
