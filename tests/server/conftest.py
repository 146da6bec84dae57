"""Fixtures for the compile-service tests: the real service under uvicorn.

``lcc_service`` starts ``uvicorn lcc_server.app:create_app --factory`` on a
free port of 127.0.0.1 in a subprocess, with a private state directory, a
bearer token and small caps, waits for /healthz and stops it at the end of
the session.  Tests skip (with the reason) when clang or bpftool is missing.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

HELLO = """\
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"

LBC_HASH(counts, u32, u64, 1024);

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
\tu32 pid = bpf_get_current_pid_tgid() >> 32;

\tlbc_count(&counts, &pid);
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def toolchain_missing() -> str | None:
    if shutil.which("clang") is None:
        return "clang is not installed"
    if shutil.which("bpftool") is None and not os.path.exists("/usr/sbin/bpftool"):
        return "bpftool is not installed"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "this kernel has no BTF (/sys/kernel/btf/vmlinux)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """A running compile service."""

    url: str
    token: str
    state_dir: Path
    proc: subprocess.Popen

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

    def healthy(self) -> bool:
        try:
            with self.client(token=None, timeout=5) as c:
                return c.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False


def start_service(state_dir: Path, **env: str) -> Service:
    port = free_port()
    token = secrets.token_hex(16)
    full_env = {**os.environ, "LCC_STATE_DIR": str(state_dir), "LCC_TOKEN": token,
                "LCC_MAX_CONCURRENCY": "2", "LCC_MAX_BODY_BYTES": str(1 << 20),
                "LCC_MAX_FILE_BYTES": str(256 << 10), "LCC_MAX_BTF_BYTES": str(16 << 20),
                "LCC_COMPILE_CPU_SECONDS": "3", "LCC_COMPILE_TIMEOUT": "20", **env}
    full_env["PATH"] = full_env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    log = open(state_dir / "uvicorn.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "lcc_server.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=full_env, stdout=log, stderr=subprocess.STDOUT)
    svc = Service(url=f"http://127.0.0.1:{port}", token=token, state_dir=state_dir, proc=proc)
    deadline = time.monotonic() + 60
    while not svc.healthy():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_service(svc)
            raise RuntimeError("compile service did not start:\n"
                               + (state_dir / "uvicorn.log").read_text()[-3000:])
        time.sleep(0.1)
    return svc


def stop_service(svc: Service) -> None:
    if svc.proc.poll() is None:
        svc.proc.terminate()
        try:
            svc.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            svc.proc.kill()
            svc.proc.wait()


@pytest.fixture(scope="session")
def lcc_service(tmp_path_factory):
    """The compile service (token-protected) for the whole session."""
    reason = toolchain_missing()
    if reason:
        pytest.skip(reason)
    svc = start_service(tmp_path_factory.mktemp("lcc-service"))
    yield svc
    stop_service(svc)


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
