"""Fixtures for the compile-service tests: the real service under uvicorn.

``lcc_service`` starts ``uvicorn lcc_server.app:create_app --factory`` on a
free port of 127.0.0.1 in a subprocess, with a private state directory, a
bearer token and small caps, waits for /healthz and stops it at the end of
the session.  Its signing key is read from its state directory (out of band,
as an operator hands it over) and pinned in the session's trusted keys
(tests/conftest.py keeps those private), so clients load what it compiles
as they would from a service they trust.  Tests skip (with the reason) when
clang or bpftool is missing.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from lcc.compile.trust import TrustedKey, TrustStore, read_key_file
from lcc_server.server import Spawned, spawn
from servertools import HELLO, toolchain_missing

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


@dataclass
class Service:
    """A running compile service."""

    url: str
    token: str
    state_dir: Path
    child: Spawned

    def client(self, *, token: str | None = "default", timeout: float = 60) -> httpx.Client:
        """An HTTP client; ``token=None`` sends no Authorization header."""
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        with self.client() as c:
            text = c.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
            if not m or m[1] != name:
                continue
            have = dict(re.findall(r'(\w+)="([^"]*)"', m[2] or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m[3])
        return total

    @property
    def key(self) -> TrustedKey:
        """The service's public signing key, read from its state directory."""
        (key,) = read_key_file(self.state_dir / "keys" / "signing.pub")
        return key

    def pin(self) -> TrustedKey:
        """Trust the service's key (in the user's trusted keys, as ``lcc trust add``)."""
        TrustStore().add(TrustedKey(self.key.raw, f"test service {self.url}"))
        return self.key

    def healthy(self) -> bool:
        try:
            with self.client(token=None, timeout=5) as c:
                return c.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False


def start_service(state_dir: Path, **env: str) -> Service:
    """The service on a free port of 127.0.0.1, with a token and small caps; ``env``
    overrides its settings.  Its log is ``state_dir/uvicorn.log``."""
    token = secrets.token_hex(16)
    child = spawn({"LCC_STATE_DIR": str(state_dir), "LCC_TOKEN": token,
                   "LCC_MAX_CONCURRENCY": "2", "LCC_MAX_BODY_BYTES": str(1 << 20),
                   "LCC_MAX_FILE_BYTES": str(256 << 10), "LCC_MAX_BTF_BYTES": str(16 << 20),
                   "LCC_COMPILE_CPU_SECONDS": "3", "LCC_COMPILE_TIMEOUT": "20", **env},
                  log=state_dir / "uvicorn.log")
    return Service(url=child.url, token=token, state_dir=state_dir, child=child)


@pytest.fixture(scope="session")
def lcc_service(tmp_path_factory):
    """The compile service (token-protected) for the whole session."""
    reason = toolchain_missing()
    if reason:
        pytest.skip(reason)
    svc = start_service(tmp_path_factory.mktemp("lcc-service"))
    svc.pin()
    yield svc
    svc.child.stop()


@pytest.fixture(scope="session")
def lcc_service_as_nobody():
    """The service, run as root with its state in a directory others may search,
    so that clang and bpftool run as nobody in a private root."""
    import os
    import shutil
    import tempfile
    if os.geteuid() != 0:
        pytest.skip("running the compilers as another user needs root")
    reason = toolchain_missing()
    if reason:
        pytest.skip(reason)
    state = Path(tempfile.mkdtemp(prefix="lcc-nobody-", dir="/tmp"))
    state.chmod(0o755)
    svc = start_service(state)
    yield svc
    svc.child.stop()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def api(lcc_service):
    """An authorised client of ``lcc_service``; checks the service still answers
    /healthz after the test."""
    with lcc_service.client() as c:
        yield c
    assert lcc_service.healthy(), "the compile service stopped answering /healthz"


@pytest.fixture(scope="session")
def hello_source() -> str:
    """A small lbc.h program: one tracepoint program, one hash map."""
    return HELLO


@pytest.fixture(scope="session")
def unique_source():
    """``unique_source(tag)``: the hello program with a unique comment, so
    compiling it is never a cache hit."""
    def make(tag: str = "") -> str:
        return f"// {tag} {secrets.token_hex(8)}\n" + HELLO
    return make


@pytest.fixture(scope="session")
def compile_body():
    """``compile_body(source, **fields)``: a POST /v1/compile body for one file."""
    def make(source: str = HELLO, **extra) -> dict:
        return {"bundle": {"main": "hello.bpf.c", "files": {"hello.bpf.c": source}}, **extra}
    return make
