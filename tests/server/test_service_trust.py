"""Trusting the real service: pinning its key with ``lcc trust``, and rotating it.

Each test runs its own ``lcc server`` (its own state directory, so its own key)
and its own trusted keys (XDG_CONFIG_HOME), so nothing is trusted until the
test pins it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from lcc.compile import build
from lcc.compile.bundle import Bundle
from lcc.compile.cache import ArtifactCache
from lcc.compile.service import ServiceClient
from lcc.compile.trust import TrustedKey, TrustStore, read_key_file
from lcc.errors import UntrustedArtifact
import lcc_server.server
from lcc_server.server import Spawned, spawn
from lcc_server.signing import rotate

pytestmark = pytest.mark.server


class OwnService:
    """`lcc server` on a free port with a token; restartable on the same state."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.token = secrets.token_hex(8)
        self.log = tmp_path / "server.log"
        self.child: Spawned | None = None

    def start(self) -> str:
        """Start it (again on the same port: the client's cache keys name the URL)."""
        def command(port: int) -> list[str]:
            return [sys.executable, "-m", "lcc.cli", "server", "--port", str(port),
                    "--state-dir", str(self.state), "--log-level", "warning"]
        with pytest.MonkeyPatch.context() as mp:
            if self.child is not None:
                port = int(self.child.url.rsplit(":", 1)[1])
                mp.setattr(lcc_server.server, "free_port", lambda host="127.0.0.1": port)
            self.child = spawn({"LCC_TOKEN": self.token, "LCC_MAX_CONCURRENCY": "1",
                                "LCC_WARM": "0"}, command=command, log=self.log)
        return self.child.url

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(timeout=30)

    @property
    def key(self) -> TrustedKey:
        """Its current public key, read from its state directory (out of band)."""
        (key,) = read_key_file(self.state / "keys" / "signing.pub")
        return key


@pytest.fixture
def service(tmp_path, monkeypatch, lcc_service):  # lcc_service: skips without a toolchain
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # nothing trusted yet
    for var in ("LCC_SERVER", "LCC_BACKEND", "LCC_TRUSTED_KEYS"):
        monkeypatch.delenv(var, raising=False)
    svc = OwnService(tmp_path)
    monkeypatch.setenv("LCC_TOKEN", svc.token)
    yield svc
    svc.stop()


def source(hello_source: str, tag: str) -> Bundle:
    return Bundle.from_string(f"// {tag} {secrets.token_hex(8)}\n{hello_source}",
                              name="hello.bpf.c")


def lcc(*args: str, check: int = 0) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "lcc.cli", *args], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == check, p.stderr
    return p


def test_a_service_is_refused_until_its_key_is_pinned(service, tmp_path, hello_source):
    url = service.start()
    store = ArtifactCache(tmp_path / "cache")
    bundle = source(hello_source, "pin")

    with pytest.raises(UntrustedArtifact) as exc:
        build(bundle, server=url, cache=store)
    pinned = lcc("trust", "add", url, "--fingerprint", service.key.fingerprint)
    art = build(bundle, server=url, cache=store)

    assert service.key.fingerprint in str(exc.value) and f"lcc trust add {url}" in str(exc.value)
    assert store.entries()[0].meta["key_id"] == art.key_id == service.key.fingerprint
    assert f"pinned {service.key.fingerprint}" in pinned.stdout
    assert art.cached is True  # the refused compile was done; the service kept it


def test_key_rotation(service, tmp_path, hello_source):
    url = service.start()
    first_key = service.key
    TrustStore().add(TrustedKey(first_key.raw, "before rotation"))
    store = ArtifactCache(tmp_path / "cache")
    old = source(hello_source, "old")
    before = build(old, server=url, cache=store)

    service.stop()
    retired, current = rotate(service.state / "keys")
    assert service.start() == url
    with ServiceClient(url) as c:
        listed = [(k.fingerprint, k.comment) for k in c.keys()]
    hit = build(old, server=url, cache=store)  # the client's entry: still a trusted key
    new = source(hello_source, "new")
    with pytest.raises(UntrustedArtifact, match="which is not a trusted key") as exc:
        build(new, server=url, cache=store)

    assert retired.fingerprint == first_key.fingerprint != current.fingerprint
    assert listed == [(current.fingerprint, "current"), (retired.fingerprint, "retired")]
    assert (hit.cache_hit, hit.key_id) == (True, first_key.fingerprint)
    assert exc.value.key_id == current.fingerprint and "rotated" in str(exc.value)
    assert len(store.entries()) == 1

    lcc("trust", "add", url, "--fingerprint", current.fingerprint)
    after = build(new, server=url, cache=store)
    lcc("trust", "rm", first_key.fingerprint)
    rebuilt = build(old, server=url, cache=store)  # its entry's key is gone: dropped, fetched

    assert after.key_id == current.fingerprint
    assert (rebuilt.cache_hit, rebuilt.cached, rebuilt.key_id) == (False, True,
                                                                   current.fingerprint)
    assert rebuilt.object == before.object  # the service's own copy, sealed by the old key
    assert {e.meta["key_id"] for e in store.entries()} == {current.fingerprint}
    assert os.stat(service.state / "keys" / "signing.pem").st_mode & 0o077 == 0
