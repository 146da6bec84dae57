"""haproxy (Debian's) in front of compile-service replicas on 127.0.0.1, for tests and
benches.

It runs the fleet's own configuration, ``deploy/fleet/haproxy.cfg`` (health checks
on ``/healthz``, ``retry-on``, ``option redispatch``), with three changes made by
:func:`render_config`: it binds a free loopback port, its ``server`` lines name
the given replicas instead of the compose services (so the Docker resolvers
section goes), and an admin socket is added for :meth:`Haproxy.stats`.

- ``haproxy(servers)``: a context manager yielding a :class:`Haproxy` once it
  answers ``/healthz`` through a replica; stopped at exit.

Imported by name (``from haproxytools import haproxy``): ``tests/`` is on
``sys.path`` because ``tests/conftest.py`` lives there.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FLEET_CONFIG", "Haproxy", "haproxy", "haproxy_missing", "render_config"]

REPO = Path(__file__).resolve().parent.parent
#: The configuration deploy/fleet runs haproxy with.
FLEET_CONFIG = REPO / "deploy" / "fleet" / "haproxy.cfg"

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _haproxy_binary() -> str | None:
    return shutil.which("haproxy", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def haproxy_missing() -> str | None:
    """Why haproxy cannot run here, or None."""
    return None if _haproxy_binary() else "haproxy is not installed (scripts/setup.sh)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render_config(servers: Sequence[str], port: int, admin_socket: Path,
                  source: Path = FLEET_CONFIG) -> str:
    """``source`` (deploy/fleet/haproxy.cfg) serving 127.0.0.1:``port`` in front of
    ``servers`` (``host:port`` each), with an admin socket at ``admin_socket``.
    Raises ``ValueError`` when ``source`` lacks what is replaced (a frontend
    ``bind``, a backend with ``server`` lines)."""
    out: list[str] = []
    section = ""
    placed = False
    for line in source.read_text().splitlines():
        word = line.split("#", 1)[0].strip()
        if line[:1].strip():  # a section header starts at column 0
            section = word.split()[0] if word else section
        if section == "resolvers":
            continue  # the replicas are addresses, nothing to resolve
        if word.startswith("bind "):
            line = f"    bind 127.0.0.1:{port}"
        elif word.startswith("server "):
            if not placed:
                out += [f"    server replica{i + 1} {addr}" for i, addr in enumerate(servers)]
                placed = True
            continue
        out.append(line)
        if word == "global":
            out.append(f"    stats socket {admin_socket} mode 600 level admin")
    if not placed or f"bind 127.0.0.1:{port}" not in "\n".join(out):
        raise ValueError(f"{source} has no frontend bind or no backend server lines")
    return "\n".join(out) + "\n"


@dataclass
class Haproxy:
    """One haproxy process serving ``url``; owns the process (``stop``)."""

    port: int
    dir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def admin_socket(self) -> Path:
        return self.dir / "admin.sock"

    @property
    def log(self) -> Path:
        return self.dir / "haproxy.log"

    def admin(self, command: str) -> str:
        """One command on the admin socket; its answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.admin_socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the replicas' backend: ``{server name: row}`` (plus
        ``BACKEND``), each row haproxy's CSV columns (``scur``, ``status``,
        ``wretr`` retries, ``wredis`` redispatches, ``hrsp_5xx``, ...)."""
        text = self.admin("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r for r in rows if r.get("pxname") == "replicas"}

    def _ready(self) -> bool:
        try:
            with _DIRECT.open(self.url + "/healthz", timeout=3) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self, timeout: float = 30) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        binary = _haproxy_binary()
        if binary is None:
            raise RuntimeError(haproxy_missing())
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([binary, "-db", "-f", str(self.config)],
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                said = self.log.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"haproxy on port {self.port} did not start:\n{said}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s); idempotent."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def haproxy(servers: Sequence[str], *, source: Path = FLEET_CONFIG) -> Iterator[Haproxy]:
    """haproxy on a free loopback port in front of ``servers`` (``host:port`` or
    ``http://host:port`` each), running ``source``; stopped and its files
    deleted at exit."""
    addrs = [re.sub(r"^https?://", "", s).rstrip("/") for s in servers]
    d = Path(tempfile.mkdtemp(prefix="lcc-haproxy-"))
    proxy = Haproxy(port=_free_port(), dir=d)
    try:
        proxy.config.write_text(render_config(addrs, proxy.port, proxy.admin_socket, source))
        proxy.start()
        yield proxy
    finally:
        proxy.stop()
        shutil.rmtree(d, ignore_errors=True)
