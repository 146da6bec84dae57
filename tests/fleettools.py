"""Real fleet parts for tests and benches: redis-server, a Redis Cluster, and
compile-service replicas, each on free loopback ports, each cleaned up.

- ``redis_server()``: a context manager yielding a :class:`RedisServer`
  (``.url``, also its ``str()``, is ``redis://127.0.0.1:PORT/0``; ``stop()``,
  ``start()`` and ``restart()`` keep the port, so replicas reconnect to the
  same URL).  No
  persistence (``--save "" --appendonly no``); ``maxmemory-policy
  volatile-lru`` as a fleet's Redis should run.
- ``redis_cluster(n=3)``: ``n`` cluster-mode redis-servers joined by
  ``redis-cli --cluster create``; yields a :class:`RedisCluster` whose
  ``.url`` (and ``str()``) is ``redis+cluster://127.0.0.1:PORT,...`` once
  ``cluster_state:ok``.
- ``tiny_btf(name)``: a small valid raw BTF, distinct per name, to upload.
- ``start_replica(state_dir, port=None, store=URL, env=...)``: the compile
  service (``python -m uvicorn lcc_server.app:create_app --factory``) as its
  own process with its own state directory, returning a :class:`Replica` once
  ``/healthz`` answers.  Replicas started with the same ``store`` share one
  bearer token and one signing key (``fleet_secrets(store)``), as a fleet
  must: a client pinning that one key accepts every replica's replies.

Imported by name (``from fleettools import redis_server``): ``tests/`` is on
``sys.path`` because ``tests/conftest.py`` lives there.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FleetSecrets", "RedisCluster", "RedisServer", "Replica", "fleet_secrets",
           "free_port", "parse_metrics", "redis_cluster", "redis_server", "start_replica",
           "tiny_btf"]

_SBIN = ":/usr/sbin:/sbin"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` nothing listens on now (another process may take it)."""
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _cluster_port(host: str = "127.0.0.1") -> int:
    """A free port whose cluster bus port (+10000, so at most 55535) is free too."""
    import socket
    for _ in range(200):
        port = free_port(host)
        if port > 55535:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _which(tool: str) -> str:
    path = shutil.which(tool, path=os.environ.get("PATH", "") + _SBIN)
    if path is None:
        raise RuntimeError(f"{tool} is not installed (scripts/setup.sh installs it)")
    return path


def _wait(what: str, ready, timeout: float, proc: subprocess.Popen | None = None,
          log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            said = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} did not start" + (f":\n{said}" if said else ""))
        time.sleep(0.05)


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- Redis ---------------------------------------------------------------------------------

@dataclass
class RedisServer:
    """One redis-server on 127.0.0.1:``port`` with its files in ``dir``; owns the process."""

    port: int
    dir: Path
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __str__(self) -> str:
        return self.url

    def cli(self, *args: str) -> str:
        """``redis-cli -p PORT args...``'s output (raises on failure)."""
        return subprocess.run([_which("redis-cli"), "-h", "127.0.0.1", "-p", str(self.port),
                               *args], check=True, capture_output=True, text=True,
                              timeout=30).stdout

    def _pong(self) -> bool:
        try:
            return self.cli("PING").strip() == "PONG"
        except (subprocess.SubprocessError, OSError):
            return False

    def start(self) -> None:
        """Start it (on the same port as before); returns once it answers PING."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        log = self.dir / "redis.log"
        argv = [_which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--appendonly", "no",
                "--maxmemory", "256mb", "--maxmemory-policy", "volatile-lru",
                "--logfile", str(log), *self.extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(f"redis-server on port {self.port}", self._pong, 20, self.proc, log)

    def stop(self) -> None:
        """Stop it (SIGTERM); its data is gone (no persistence).  Idempotent."""
        _stop(self.proc)

    def kill(self) -> None:
        _stop(self.proc, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def redis_server(*extra: str) -> Iterator[RedisServer]:
    """A fresh redis-server on a free loopback port, stopped and deleted at exit."""
    d = Path(tempfile.mkdtemp(prefix="lcc-redis-"))
    server = RedisServer(port=free_port(), dir=d, extra=tuple(extra))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class RedisCluster:
    """``nodes`` cluster-mode redis-servers, all masters, no replicas."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def __str__(self) -> str:
        return self.url

    def info(self) -> str:
        return self.nodes[0].cli("CLUSTER", "INFO")


@contextlib.contextmanager
def redis_cluster(n: int = 3) -> Iterator[RedisCluster]:
    """``n`` redis-servers on free loopback ports, joined into one cluster
    (``cluster_state:ok`` before it is yielded); all stopped and deleted at exit."""
    base = Path(tempfile.mkdtemp(prefix="lcc-redis-cluster-"))
    nodes = [RedisServer(port=_cluster_port(), dir=base / str(i),
                         extra=("--cluster-enabled", "yes",
                                "--cluster-config-file", str(base / str(i) / "nodes.conf"),
                                "--cluster-node-timeout", "2000"))
             for i in range(n)]
    cluster = RedisCluster(nodes)
    try:
        for node in nodes:
            node.start()
        subprocess.run([_which("redis-cli"), "--cluster", "create",
                        *(node.address for node in nodes), "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        _wait("the Redis cluster", lambda: all(
            "cluster_state:ok" in node.cli("CLUSTER", "INFO") for node in nodes), 30)
        yield cluster
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)


def tiny_btf(name: str) -> bytes:
    """Raw BTF holding one 32-bit int type called ``name``: valid (bpftool turns
    it into a vmlinux.h), a few dozen bytes, and different for each ``name``."""
    import struct
    strings = b"\0" + name.encode() + b"\0"
    types = struct.pack("<IIII", 1, 1 << 24, 4, 32)  # name_off, INT, size 4, 32 bits
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types),
                       len(strings)) + types + strings


# -- compile-service replicas --------------------------------------------------------------

@dataclass(frozen=True)
class FleetSecrets:
    """What every replica of one fleet shares: the bearer token and the signing key."""

    token: str
    signing_key: Path


_SECRETS: dict[str, FleetSecrets] = {}


def fleet_secrets(store: object) -> FleetSecrets:
    """The token and Ed25519 signing key (PEM) of the fleet on ``store`` (a URL or a
    ``RedisServer``/``RedisCluster``), made on first use."""
    name = str(store) if store else "disk"
    if name not in _SECRETS:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        d = Path(tempfile.mkdtemp(prefix="lcc-fleet-key-"))
        key = d / "signing.pem"
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        _SECRETS[name] = FleetSecrets(token=secrets.token_hex(16), signing_key=key)
    return _SECRETS[name]


_METRIC_LINE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text as (name, labels, value) samples."""
    out = []
    for line in text.splitlines():
        m = _METRIC_LINE.match(line)
        if m:
            out.append((m[1], dict(re.findall(r'(\w+)="([^"]*)"', m[2] or "")), float(m[3])))
    return out


@dataclass
class Replica:
    """A compile-service process serving ``url``; owns the process (``stop``, ``kill``)."""

    state_dir: Path
    port: int
    argv: list[str]
    env: dict[str, str]
    token: str
    proc: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.state_dir / "replica.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, timeout: float = 10) -> bytes:
        """GET ``path`` with the token; raises ``OSError`` (urllib) on failure."""
        req = urllib.request.Request(self.url + path, headers=self.headers)
        with _DIRECT.open(req, timeout=timeout) as r:
            return r.read()

    def healthz(self) -> dict | None:
        """/healthz's JSON (whatever its status), or None when nothing answers."""
        import json
        try:
            with _DIRECT.open(self.url + "/healthz", timeout=3) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"{}")
        except OSError:
            return None

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        """Its /metrics samples, parsed (:func:`parse_metrics`)."""
        return parse_metrics(self.get("/metrics").decode())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        return sum(v for n, have, v in self.metrics()
                   if n == name and all(have.get(k) == want for k, want in labels.items()))

    @property
    def public_key(self) -> str:
        """The ``signing.pub`` line of the key it signs with."""
        return (self.state_dir / "keys" / "signing.pub").read_text().strip()

    def start(self, timeout: float = 60) -> None:
        """Start the process (again, on the same port); returns once /healthz answers."""
        if self.proc is not None and self.proc.poll() is None:
            return
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        _wait(f"the compile service on port {self.port}",
              lambda: self.healthz() is not None, timeout, self.proc, self.log)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; idempotent."""
        _stop(self.proc, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: it dies without releasing anything (leases expire)."""
        _stop(self.proc, signal.SIGKILL)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def start_replica(state_dir: Path, port: int | None = None, *, store: object = None,
                  env: Mapping[str, str] | None = None, timeout: float = 60) -> Replica:
    """A compile service on 127.0.0.1:``port`` (free one by default) with its own
    ``state_dir`` and ``LCC_STORE=store`` (None: the disk store), the fleet's
    token and signing key (:func:`fleet_secrets`), small caps like
    tests/server's service, and ``env`` on top.  Its output goes to
    ``state_dir/replica.log``.  Raises ``RuntimeError`` (with the log's end)
    when it does not answer /healthz within ``timeout``."""
    store = None if store is None else str(store)  # a URL, or a RedisServer/RedisCluster
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    fleet = fleet_secrets(store)
    full_env = {**os.environ,
                "LCC_STATE_DIR": str(state_dir), "LCC_TOKEN": fleet.token,
                "LCC_SIGNING_KEY": str(fleet.signing_key),
                "LCC_MAX_CONCURRENCY": "2", "LCC_MAX_BODY_BYTES": str(1 << 20),
                "LCC_MAX_FILE_BYTES": str(256 << 10), "LCC_MAX_BTF_BYTES": str(16 << 20),
                "LCC_COMPILE_CPU_SECONDS": "10", "LCC_COMPILE_TIMEOUT": "60",
                **({"LCC_STORE": store} if store else {}), **(env or {})}
    full_env["PATH"] = full_env.get("PATH", "/usr/bin:/bin") + _SBIN
    argv = [sys.executable, "-m", "uvicorn", "lcc_server.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    replica = Replica(state_dir=state_dir, port=port, argv=argv, env=full_env,
                      token=fleet.token)
    replica.start(timeout)
    return replica
