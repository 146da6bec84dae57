"""Configuration of the compile service, read from the environment at the edge.

``Settings.from_env()`` reads these variables (all optional):

=========================  ===========================================  ==================
variable                   meaning                                      default
=========================  ===========================================  ==================
LCC_TOKEN                  bearer token required on /v1 and /metrics    none (open)
LCC_TOKEN_FILE             named tokens, `name token [admin]` a line    none
                           (lcc_server.tokens); with LCC_TOKEN too
LCC_STATE_DIR              BTF store, artifacts, header caches          user state dir/server
LCC_MAX_CONCURRENCY        compiles running at once                     CPU count
LCC_MAX_QUEUE              compiles waiting before 503                  256
LCC_MAX_BODY_BYTES         JSON request body                            8 MiB
LCC_MAX_BTF_BYTES          uploaded BTF                                 64 MiB
LCC_MAX_ARTIFACT_MB        the state directory's one disk budget:       2048
                           compiled objects and per-kernel vmlinux.h
                           and PCH (evicted LRU beyond it), BTF
                           uploads; one budget for all worker processes
LCC_MAX_BTF_RELEASES       uploaded kernel releases kept (409 beyond)   256
LCC_MAX_OBJECT_MB          one compiled object handed out (larger:      32
                           422 object_too_large)
LCC_MAX_FILES              files in a bundle                            64
LCC_MAX_FILE_BYTES         one bundle file                              1 MiB
LCC_MAX_BUNDLE_BYTES       all bundle files                             4 MiB
LCC_COMPILE_TIMEOUT        wall-clock seconds per tool run              30
LCC_COMPILE_CPU_SECONDS    CPU seconds per tool run                     20
LCC_COMPILE_MEMORY_MB      address space per tool run                   1024
LCC_CLANG / LCC_BPFTOOL    tool names or paths                          clang / bpftool
LCC_SANDBOX                0 disables Landlock/namespaces (not limits)  1
LCC_INSECURE_NO_SANDBOX    1: compile even when clang cannot be         0 (refuse: 503)
                           confined (no Landlock, or LCC_SANDBOX=0)
LCC_TOOL_USER              user clang/bpftool run as when the service   nobody
                           is root (name or uid; "root" keeps root)
LCC_PCH                    0 disables precompiled headers               1
LCC_CUT_TYPES              0: always the whole vmlinux.h (no cut)       1
LCC_HOST_BTF               the server's own kernel BTF                  /sys/kernel/btf/vmlinux
LCC_WARM                   0: do not build the host PCH at start        1
LCC_SIGNING_KEY            Ed25519 private key (PEM) replies are        made on first start
                           signed with; replicas of a fleet share it    in state dir/keys
LCC_STORE                  where artifacts and BTF are shared: `disk`   disk
                           (the state dir), `redis://host:port/db`,
                           `redis+cluster://host:port[,host:port...]`
LCC_STORE_TTL              seconds an artifact stays in Redis unused    604800 (7 days)
LCC_LEASE_MS               fleet single-flight lease (renewed while     10000
                           compiling; a dead holder's expires)
LCC_STORE_RETRY_SECONDS    while Redis is down, how often to try again  2
=========================  ===========================================  ==================

A malformed value raises ``ValueError`` naming the variable.  Nothing is read
at import time; tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

from lcc_toolchain.sandbox import Limits
from lcc_toolchain.validation import Caps

__all__ = ["DEFAULT_PORT", "STORE_SCHEMES", "Settings", "check_store"]

DEFAULT_PORT = 7655


#: What ``LCC_STORE`` may name: the state directory, or a Redis server or cluster.
STORE_SCHEMES = ("disk", "redis://", "rediss://", "redis+cluster://")


def check_store(value: str) -> str:
    """``value`` if it names a store ``STORE_SCHEMES`` knows, else ``ValueError``
    with what it should look like."""
    if value == "disk" or (value.startswith(STORE_SCHEMES[1:])
                           and value.split("://", 1)[1].strip("/")):
        return value
    raise ValueError(f"LCC_STORE={value!r} is not a store: use `disk`, "
                     "`redis://host:6379/0` or `redis+cluster://host:port[,host:port]`")


def _default_state_dir() -> Path:
    return platformdirs.user_state_path("lcc") / "server"


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know; see the module docstring."""

    state_dir: Path = field(default_factory=_default_state_dir)
    token: str | None = None
    token_file: Path | None = None
    max_concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_queue: int = 256
    max_body_bytes: int = 8 << 20
    max_btf_bytes: int = 64 << 20
    max_artifact_bytes: int = 2 << 30
    max_btf_releases: int = 256
    max_object_bytes: int = 32 << 20
    caps: Caps = field(default_factory=Caps)
    limits: Limits = field(default_factory=Limits)
    clang: str = "clang"
    bpftool: str = "bpftool"
    sandbox: bool = True
    insecure_no_sandbox: bool = False
    tool_user: str = "nobody"
    pch: bool = True
    cut_types: bool = True
    host_btf: Path = Path("/sys/kernel/btf/vmlinux")
    warm: bool = True
    signing_key: Path | None = None
    store: str = "disk"
    store_ttl: int = 7 * 24 * 3600
    lease_ms: int = 10_000
    store_retry_seconds: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env

        def num(name: str, default: int) -> int:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not an integer") from None
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{name}={raw!r} is not a boolean (use 1 or 0)")

        base = cls()
        limits = Limits(
            cpu_seconds=num("LCC_COMPILE_CPU_SECONDS", base.limits.cpu_seconds),
            memory_bytes=num("LCC_COMPILE_MEMORY_MB", base.limits.memory_bytes >> 20) << 20,
            wall_seconds=float(num("LCC_COMPILE_TIMEOUT", int(base.limits.wall_seconds))))
        caps = Caps(
            max_files=num("LCC_MAX_FILES", base.caps.max_files),
            max_file_bytes=num("LCC_MAX_FILE_BYTES", base.caps.max_file_bytes),
            max_bundle_bytes=num("LCC_MAX_BUNDLE_BYTES", base.caps.max_bundle_bytes))
        return replace(
            base,
            state_dir=Path(env["LCC_STATE_DIR"]) if env.get("LCC_STATE_DIR") else base.state_dir,
            token=env.get("LCC_TOKEN") or None,
            token_file=Path(env["LCC_TOKEN_FILE"]) if env.get("LCC_TOKEN_FILE") else None,
            max_concurrency=num("LCC_MAX_CONCURRENCY", base.max_concurrency),
            max_queue=num("LCC_MAX_QUEUE", base.max_queue),
            max_body_bytes=num("LCC_MAX_BODY_BYTES", base.max_body_bytes),
            max_btf_bytes=num("LCC_MAX_BTF_BYTES", base.max_btf_bytes),
            max_artifact_bytes=num("LCC_MAX_ARTIFACT_MB", base.max_artifact_bytes >> 20) << 20,
            max_btf_releases=num("LCC_MAX_BTF_RELEASES", base.max_btf_releases),
            max_object_bytes=num("LCC_MAX_OBJECT_MB", base.max_object_bytes >> 20) << 20,
            caps=caps, limits=limits,
            clang=env.get("LCC_CLANG") or base.clang,
            bpftool=env.get("LCC_BPFTOOL") or base.bpftool,
            sandbox=flag("LCC_SANDBOX", base.sandbox),
            tool_user=env.get("LCC_TOOL_USER") or base.tool_user,
            insecure_no_sandbox=flag("LCC_INSECURE_NO_SANDBOX", base.insecure_no_sandbox),
            pch=flag("LCC_PCH", base.pch),
            cut_types=flag("LCC_CUT_TYPES", base.cut_types),
            host_btf=Path(env.get("LCC_HOST_BTF") or base.host_btf),
            warm=flag("LCC_WARM", base.warm),
            signing_key=Path(env["LCC_SIGNING_KEY"]) if env.get("LCC_SIGNING_KEY") else None,
            store=check_store(env.get("LCC_STORE") or base.store),
            store_ttl=num("LCC_STORE_TTL", base.store_ttl),
            lease_ms=num("LCC_LEASE_MS", base.lease_ms),
            store_retry_seconds=num("LCC_STORE_RETRY_SECONDS", base.store_retry_seconds))

    def tool_credentials(self) -> tuple[int, int] | None:
        """(uid, gid) the tools run as: ``tool_user``'s when this process is
        root, else None (they keep this process's).  Raises ``ValueError`` for
        an unknown user."""
        if os.geteuid() != 0 or self.tool_user in ("root", "0"):
            return None
        try:
            entry = (pwd.getpwuid(int(self.tool_user)) if self.tool_user.isdigit()
                     else pwd.getpwnam(self.tool_user))
        except KeyError:
            if self.tool_user.isdigit():
                return int(self.tool_user), int(self.tool_user)
            raise ValueError(f"LCC_TOOL_USER={self.tool_user!r}: no such user") from None
        return entry.pw_uid, entry.pw_gid

    def to_env(self) -> dict[str, str]:
        """The variables that make ``from_env`` return these settings (for
        worker processes started by uvicorn)."""
        out = {
            "LCC_STATE_DIR": str(self.state_dir),
            "LCC_MAX_CONCURRENCY": str(self.max_concurrency),
            "LCC_MAX_QUEUE": str(self.max_queue),
            "LCC_MAX_BODY_BYTES": str(self.max_body_bytes),
            "LCC_MAX_BTF_BYTES": str(self.max_btf_bytes),
            "LCC_MAX_ARTIFACT_MB": str(self.max_artifact_bytes >> 20),
            "LCC_MAX_BTF_RELEASES": str(self.max_btf_releases),
            "LCC_MAX_OBJECT_MB": str(self.max_object_bytes >> 20),
            "LCC_MAX_FILES": str(self.caps.max_files),
            "LCC_MAX_FILE_BYTES": str(self.caps.max_file_bytes),
            "LCC_MAX_BUNDLE_BYTES": str(self.caps.max_bundle_bytes),
            "LCC_COMPILE_TIMEOUT": str(int(self.limits.wall_seconds)),
            "LCC_COMPILE_CPU_SECONDS": str(self.limits.cpu_seconds),
            "LCC_COMPILE_MEMORY_MB": str(self.limits.memory_bytes >> 20),
            "LCC_CLANG": self.clang,
            "LCC_BPFTOOL": self.bpftool,
            "LCC_SANDBOX": "1" if self.sandbox else "0",
            "LCC_INSECURE_NO_SANDBOX": "1" if self.insecure_no_sandbox else "0",
            "LCC_TOOL_USER": self.tool_user,
            "LCC_PCH": "1" if self.pch else "0",
            "LCC_CUT_TYPES": "1" if self.cut_types else "0",
            "LCC_HOST_BTF": str(self.host_btf),
            "LCC_WARM": "1" if self.warm else "0",
            "LCC_STORE": self.store,
            "LCC_STORE_TTL": str(self.store_ttl),
            "LCC_LEASE_MS": str(self.lease_ms),
            "LCC_STORE_RETRY_SECONDS": str(self.store_retry_seconds),
        }
        if self.token:
            out["LCC_TOKEN"] = self.token
        if self.token_file is not None:
            out["LCC_TOKEN_FILE"] = str(self.token_file)
        if self.signing_key is not None:
            out["LCC_SIGNING_KEY"] = str(self.signing_key)
        return out

