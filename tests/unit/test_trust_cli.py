"""``lcc trust add|ls|rm`` and the trust options of ``lcc compile``, run as a subprocess
against a fake compile service on 127.0.0.1 (tests/fakeservice.py).

Every run has its own config directory (XDG_CONFIG_HOME), cache and no LCC_* variables.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fakeservice import OBJ, FakeService, honest, silent
from lcc_server.signing import KeyRing

TOOL = "// SPDX-License-Identifier: GPL-2.0\n#include \"lbc.h\"\nint x;\n"


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("LCC_")}
    e.update(XDG_CONFIG_HOME=str(tmp_path / "config"), LCC_CACHE_DIR=str(tmp_path / "cache"))
    return e


@pytest.fixture
def lcc(env, tmp_path):
    def run(*args: str, check: int | None = 0, stdin: str | None = None,
            **extra: str) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "lcc.cli", *args], cwd=tmp_path,
                           env={**env, **extra}, capture_output=True, text=True, timeout=60,
                           input=stdin)
        if check is not None:
            assert p.returncode == check, f"lcc {' '.join(args)}: {p.returncode}\n{p.stderr}"
        return p
    return run


@pytest.fixture
def service():
    with FakeService(honest) as svc:
        yield svc


@pytest.fixture
def tool(tmp_path):
    (tmp_path / "tool.bpf.c").write_text(TOOL)
    return "tool.bpf.c"


def trusted_file(tmp_path):
    return tmp_path / "config" / "lcc" / "trusted_keys"


def test_add_url_shows_the_fingerprint_and_pins_it_when_it_matches(lcc, service, tmp_path,
                                                                   tool):
    refused = lcc("compile", tool, "--server", service.url, check=1)
    added = lcc("trust", "add", service.url, "--fingerprint", service.ring.key_id)
    again = lcc("trust", "add", service.url, "--fingerprint", service.ring.key_id)
    compiled = lcc("compile", tool, "--server", service.url)

    assert f"lcc trust add {service.url}" in refused.stderr
    assert f"The compile service at {service.url} signs with the ED25519 key\n" \
           f"  {service.ring.key_id}\n" in added.stdout
    assert f"pinned {service.ring.key_id} in {trusted_file(tmp_path)}" in added.stdout
    assert "already pinned" in again.stdout
    assert (tmp_path / "tool.bpf.o").read_bytes() == OBJ
    assert f"compiled by {service.url}" in compiled.stdout
    assert service.url in trusted_file(tmp_path).read_text()  # the comment says where from


def test_add_url_with_another_fingerprint_pins_nothing(lcc, service, tmp_path):
    other = KeyRing.generate().key_id

    p = lcc("trust", "add", service.url, "--fingerprint", other, check=1)

    assert f"presents {service.ring.key_id}, not {other}; nothing pinned" in p.stderr
    assert not trusted_file(tmp_path).exists()


def test_add_url_without_a_terminal_asks_for_a_fingerprint(lcc, service, tmp_path):
    p = lcc("trust", "add", service.url, check=1, stdin="y\n")  # stdin is no terminal

    assert service.ring.key_id in p.stdout
    assert "not pinned" in p.stderr and "--fingerprint" in p.stderr and "--yes" in p.stderr
    assert not trusted_file(tmp_path).exists()
    lcc("trust", "add", service.url, "--yes")
    assert service.ring.key_id in lcc("trust", "ls").stdout


def test_add_file_ls_and_rm(lcc, service, tmp_path, env):
    fleet_ring = KeyRing.generate()
    fleet = tmp_path / "fleet.pub"
    fleet.write_text(fleet_ring.current.line("fleet key") + "\n")

    added = lcc("trust", "add", str(service.key_file(tmp_path)))
    listed = lcc("trust", "ls", LCC_TRUSTED_KEYS=str(fleet))
    fleet_rm = lcc("trust", "rm", fleet_ring.key_id, check=1, LCC_TRUSTED_KEYS=str(fleet))
    removed = lcc("trust", "rm", service.ring.key_id[:15])
    missing = lcc("trust", "rm", service.ring.key_id, check=1)
    empty = lcc("trust", "ls")

    assert added.stdout == f"pinned {service.ring.key_id} (fake service)\n"
    assert f"{service.ring.key_id}  pinned" in listed.stdout
    assert f"{fleet_ring.key_id}  LCC_TRUSTED_KEYS  fleet key" in listed.stdout
    assert "2 trusted keys" in listed.stdout
    assert "comes from LCC_TRUSTED_KEYS" in fleet_rm.stderr
    assert removed.stdout == f"unpinned {service.ring.key_id} (fake service)\n"
    assert "no pinned key" in missing.stderr
    assert "0 trusted keys" in empty.stdout


def test_add_refuses_what_is_neither_file_nor_url(lcc):
    p = lcc("trust", "add", "ftp://somewhere", check=1)
    assert "neither a key file nor a compile service URL" in p.stderr


def test_compile_insecure_trust_loopback(lcc, service, tool):
    refused = lcc("compile", tool, "--server", service.url, check=1)
    allowed = lcc("compile", tool, "--server", service.url, "--insecure-trust-loopback")
    by_env = lcc("compile", tool, "--server", service.url, "--no-cache", "-o", "x.o",
                 LCC_INSECURE_TRUST_LOOPBACK="1")

    assert "LCC_INSECURE_TRUST_LOOPBACK=1" in refused.stderr
    assert "without a trusted signature" in allowed.stderr  # said every time it is used
    assert "compiled by" in allowed.stdout and "compiled by" in by_env.stdout


def test_compile_timeout_option(lcc, tool, tmp_path):
    with FakeService(silent) as svc:
        lcc("trust", "add", str(svc.key_file(tmp_path)))
        p = lcc("compile", tool, "--server", svc.url, "--timeout", "1", check=1)
        by_env = lcc("compile", tool, "--server", svc.url, check=1, LCC_TIMEOUT="0.5")

    assert "did not answer in time (1 s; POST /v1/compile)" in p.stderr
    assert "did not answer in time (0.5 s" in by_env.stderr
    assert lcc("compile", tool, "--timeout", "0", check=1).stderr.startswith(
        "lcc compile: --timeout 0 is not a positive number")
