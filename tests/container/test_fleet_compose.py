"""deploy/fleet/docker-compose.yml brought up as an operator would, and torn down.

Builds the fleet's images offline with scripts/docker/build-fleet.sh (the
compiler image, and Redis and haproxy from Debian on the same debootstrap
base; cached layers are reused), makes the fleet's signing key and token,
runs ``docker-compose up`` under a project name of its own on a free
loopback port, and compiles one program through haproxy with a client that
pins the fleet's public key.  ``docker-compose down -v`` removes the
containers, the network and the volumes whatever happened.

Skips, with the reason, when no Docker engine can be started or
docker-compose is missing; ``LCC_REQUIRE_DOCKER=1`` makes that a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lcc.compile.bundle import Bundle
from lcc.compile.service import ServiceBackend
from lcc.compile.trust import TrustPolicy, parse_keys
from servertools import HELLO

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "docker"
COMPOSE_FILE = REPO / "deploy" / "fleet" / "docker-compose.yml"
LCC_UID = 10001  # the compiler image's lcc user, who must read the signing key
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _unavailable(reason: str):
    if os.environ.get("LCC_REQUIRE_DOCKER") == "1":
        pytest.fail(f"LCC_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def images():
    """A Docker engine and the fleet's images, built from this checkout."""
    compose = shutil.which("docker-compose")
    if compose is None:
        _unavailable("docker-compose is not installed (apt-get install docker-compose)")
    r = _run(["bash", str(SCRIPTS / "engine.sh")], timeout=600)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        _unavailable(f"no Docker engine could be started: {last}")
    r = _run(["bash", str(SCRIPTS / "build-fleet.sh")], timeout=1800,
             env={"PYTHON": sys.executable})
    if r.returncode != 0:
        pytest.fail(f"scripts/docker/build-fleet.sh failed:\n{r.stderr[-4000:]}", pytrace=False)
    return compose


def _signing_key(directory: Path) -> tuple[Path, str]:
    """A fresh Ed25519 key (PEM) readable by the replicas' user only, and its
    public half (PEM), as `openssl genpkey` / `openssl pkey -pubout` make them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    path = directory / "signing.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    try:
        os.chown(path, LCC_UID, LCC_UID)
        path.chmod(0o400)
    except PermissionError:  # not root: a throw-away key may be readable by all
        path.chmod(0o444)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, public.decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthz(url: str) -> dict | None:
    try:
        with _DIRECT.open(url + "/healthz", timeout=5) as r:
            return json.loads(r.read()) if r.status == 200 else None
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def fleet(images, tmp_path_factory):
    """The compose project, up and answering through haproxy: (url, token, public key)."""
    d = tmp_path_factory.mktemp("fleet-compose")
    key_file, public = _signing_key(d)
    token = secrets.token_hex(16)
    port = _free_port()
    project = f"lcc-fleet-test-{os.getpid()}"
    env = {"LCC_TOKEN": token, "LCC_SIGNING_KEY_FILE": str(key_file), "LCC_PORT": str(port),
           "LCC_BIND": "127.0.0.1", "COMPOSE_PROJECT_NAME": project}
    compose = [images, "--project-name", project, "--file", str(COMPOSE_FILE)]
    url = f"http://127.0.0.1:{port}"
    try:
        up = _run([*compose, "up", "--detach", "--no-build"], timeout=300, env=env)
        assert up.returncode == 0, up.stderr[-4000:]
        deadline = time.monotonic() + 180
        while (health := _healthz(url)) is None:
            if time.monotonic() > deadline:
                logs = _run([*compose, "logs", "--tail", "40"], timeout=60, env=env)
                pytest.fail(f"the fleet did not answer through haproxy at {url}:\n"
                            f"{logs.stdout[-4000:]}", pytrace=False)
            time.sleep(1)
        yield url, token, public, health, compose, env
    finally:
        down = _run([*compose, "down", "--volumes", "--remove-orphans", "--timeout", "10"],
                    timeout=300, env=env)
        assert down.returncode == 0, down.stderr[-4000:]


def test_compose_fleet_compiles_through_haproxy(fleet):
    url, token, public, health, compose, env = fleet
    assert health["store"]["kind"] != "disk" and health["store"]["ok"], health

    ps = _run([*compose, "ps", "--services", "--filter", "status=running"], timeout=60, env=env)
    assert set(ps.stdout.split()) == {"redis", "replica1", "replica2", "replica3", "lb"}, ps

    client = ServiceBackend(url, token=token, push_btf=False,
                            trust=TrustPolicy(parse_keys(public, source="fleet key")))
    art = client.compile(Bundle("hello.bpf.c", {"hello.bpf.c": HELLO}),
                         kernel=os.uname().release, arch=os.uname().machine, defines={},
                         btf=False)
    assert art.object[:4] == b"\x7fELF"
    assert art.origin == url
