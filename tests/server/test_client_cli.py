"""The ``lcc`` command against the real service: compile --server and the btf store."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys

import pytest

pytestmark = pytest.mark.server

HOST_BTF = "/sys/kernel/btf/vmlinux"


@pytest.fixture
def lcc(lcc_service, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LCC_SERVER", "LCC_BACKEND")}
    env.update(LCC_TOKEN=lcc_service.token, LCC_CACHE_DIR=str(tmp_path / "cache"))

    def run(*args: str, check: int | None = 0, **extra_env: str) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "lcc.cli", *args], cwd=tmp_path,
                           env={**env, **extra_env}, capture_output=True, text=True, timeout=300)
        if check is not None:
            assert p.returncode == check, p.stderr
        return p
    return run


def test_compile_with_server_and_btf(lcc, lcc_service, tmp_path, hello_source):
    (tmp_path / "hello.bpf.c").write_text(f"// {secrets.token_hex(8)}\n{hello_source}")

    first = lcc("compile", "hello.bpf.c", "--server", lcc_service.url, "--btf")
    second = lcc("compile", "hello.bpf.c", "--server", lcc_service.url, "--btf", "-o", "h2.o")
    via_env = lcc("compile", "hello.bpf.c", "-o", "h3.o", "--no-cache",
                  LCC_SERVER=lcc_service.url)

    assert f"compiled by {lcc_service.url}" in first.stdout
    assert "from the cache" in second.stdout
    assert f"cached by {lcc_service.url}" in via_env.stdout
    obj = (tmp_path / "hello.bpf.o").read_bytes()
    assert obj == (tmp_path / "h2.o").read_bytes() == (tmp_path / "h3.o").read_bytes()
    assert (tmp_path / "hello.btf").read_bytes() == (tmp_path / "h2.btf").read_bytes()


def test_compile_with_wrong_token_is_one_line(lcc, lcc_service, tmp_path, hello_source):
    (tmp_path / "hello.bpf.c").write_text(hello_source)

    p = lcc("compile", "hello.bpf.c", "--server", lcc_service.url, check=1, LCC_TOKEN="nope")

    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith(f"lcc compile: compile service at {lcc_service.url} refused")
    assert "LCC_TOKEN does not match" in p.stderr


def test_btf_push_ls_pull(lcc, lcc_service, tmp_path):
    release = f"6.1.0-lcc-cli-{secrets.token_hex(4)}"
    url = ["--server", lcc_service.url]
    data = open(HOST_BTF, "rb").read()

    pushed = lcc("btf", "push", *url, "--kernel", release)
    again = lcc("btf", "push", *url, "--kernel", release)
    listed = lcc("btf", "ls", *url)
    pulled = lcc("btf", "pull", *url, "--kernel", release, "-o", "k.btf")
    default_name = lcc("btf", "pull", *url, "--kernel", release)

    assert pushed.stdout.startswith(f"uploaded {os.uname().machine}/{release}")
    assert again.stdout.startswith(f"already there: {os.uname().machine}/{release}")
    sha = hashlib.sha256(data).hexdigest()[:16]
    assert any(release in ln and "upload" in ln and sha in ln for ln in listed.stdout.splitlines())
    assert pulled.stdout.startswith("k.btf: ")
    assert (tmp_path / "k.btf").read_bytes() == data
    assert default_name.stdout.startswith(f"{release}.btf: ")
    assert (tmp_path / f"{release}.btf").read_bytes() == data


def test_btf_push_rejects_garbage(lcc, lcc_service, tmp_path):
    (tmp_path / "junk").write_bytes(b"not BTF at all" * 10)

    p = lcc("btf", "push", "--server", lcc_service.url, "--kernel", "6.1.0-junk",
            "--file", "junk", check=1)

    assert p.stderr.startswith(f"lcc btf: compile service at {lcc_service.url} answered HTTP 400")
    assert "magic" in p.stderr and p.stderr.count("\n") == 1


def test_btf_pull_of_unknown_kernel(lcc, lcc_service):
    p = lcc("btf", "pull", "--server", lcc_service.url, "--kernel", "4.19.0-nowhere", check=1)
    assert "no BTF for kernel 4.19.0-nowhere" in p.stderr
