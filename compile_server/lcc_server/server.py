"""Start the compile service with uvicorn: in this process (what ``lcc server``
calls), or in a child process for tests and benchmarks (:func:`spawn`).

TLS: pass ``ssl_certfile``/``ssl_keyfile`` (uvicorn's options), or put the
service behind a reverse proxy that terminates TLS.  With a token set
(``LCC_TOKEN``, ``LCC_TOKEN_FILE``) every route but /healthz and /v1/keys
needs ``Authorization: Bearer <token>``.  ``serve`` warns when it binds an
address other hosts can reach without one (``exposure_warning``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lcc_server.settings import DEFAULT_PORT, Settings

__all__ = ["Spawned", "exposure_warning", "free_port", "serve", "spawn"]

log = logging.getLogger("lcc_server")


def exposure_warning(host: str, settings: Settings) -> str | None:
    """What to say when ``host`` is not a loopback address and no token is set."""
    if settings.token or settings.token_file is not None:
        return None
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (f"listening on {host} without a token: anyone who reaches this port can make "
            "the service compile; set LCC_TOKEN or LCC_TOKEN_FILE")


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, workers: int = 1,
          settings: Settings | None = None, *, ssl_certfile: str | None = None,
          ssl_keyfile: str | None = None, log_level: str = "info") -> None:
    """Run the service until interrupted.

    ``workers > 1`` starts that many processes; they share the state
    directory (its caches are safe for that, and its disk budget is one
    ledger for all of them) and each takes ``settings`` through the
    environment.  Replicas on several hosts share a Redis store instead
    (``settings.store``).  Raises ``ValueError`` on malformed settings.
    """
    import uvicorn

    settings = settings or Settings.from_env()
    if (warning := exposure_warning(host, settings)) is not None:
        log.warning("%s", warning)
    common = dict(host=host, port=port, log_level=log_level, ssl_certfile=ssl_certfile,
                  ssl_keyfile=ssl_keyfile)
    if workers <= 1:
        from lcc_server.app import create_app
        uvicorn.run(create_app(settings), **common)
        return
    os.environ.update(settings.to_env())
    uvicorn.run("lcc_server.app:create_app", factory=True, workers=workers, **common)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that nothing listens on now (another process may take it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Spawned:
    """A compile service running in a child process (see :func:`spawn`); owns the child."""

    url: str
    proc: subprocess.Popen

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# No proxy from the environment stands between us and a service we started.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str) -> bool:
    try:
        with _DIRECT.open(url + "/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


def spawn(env: Mapping[str, str] | None = None, *,
          command: Callable[[int], Sequence[str]] | None = None, host: str = "127.0.0.1",
          log: Path | None = None, timeout: float = 60.0) -> Spawned:
    """Start the service in a child process on a free port of ``host``; return
    once it answers ``GET /healthz`` with 200.

    The child is ``python -m uvicorn lcc_server.app:create_app --factory``, or
    ``command(port)`` (e.g. an ``lcc server --port PORT`` command line).  Its
    environment is ``os.environ`` updated with ``env`` (the ``LCC_*`` settings),
    with /usr/sbin and /sbin added to PATH (where bpftool often is).  Its output
    goes to the file ``log`` (appended) or nowhere.  Raises ``RuntimeError``, with
    the end of ``log``, when the child exits or does not answer within
    ``timeout`` seconds; the child is killed first.
    """
    port = free_port(host)
    argv = list(command(port)) if command else [
        sys.executable, "-m", "uvicorn", "lcc_server.app:create_app", "--factory",
        "--host", host, "--port", str(port), "--log-level", "warning"]
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = full_env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    if log is None:
        proc = subprocess.Popen(argv, env=full_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    else:
        with open(log, "ab") as out:  # the child keeps its own copy of the fd
            proc = subprocess.Popen(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    child = Spawned(url=f"http://{host}:{port}", proc=proc)
    deadline = time.monotonic() + timeout
    while not _answers(child.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            said = log.read_text(errors="replace")[-3000:] if log is not None else ""
            raise RuntimeError(f"the compile service did not start ({' '.join(argv[:4])} ...)"
                               + (f":\n{said}" if said else ""))
        time.sleep(0.1)
    return child
