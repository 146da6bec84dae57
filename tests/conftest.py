"""Shared test policy and fixtures.

Tiers: tests/unit runs anywhere; tests marked ``bpf`` load programs into the
running kernel and skip (with the reason) without root or kernel BTF, unless
``LCC_REQUIRE_BPF=1`` turns those skips into failures; tests marked
``toolchain`` run clang and skip without clang, bpftool or kernel BTF, unless
``LCC_REQUIRE_TOOLCHAIN=1``; tests marked ``docker`` likewise with
``LCC_REQUIRE_DOCKER=1`` (tests/container); tests marked ``fleet`` start
redis-server and haproxy and skip without them unless ``LCC_REQUIRE_FLEET=1``.  ``-m "not toolchain"`` leaves
a unit tier that needs no compiler.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROGS = Path(__file__).resolve().parent / "progs"


def _effective_caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


@functools.cache
def _bpf_unavailable() -> str | None:
    caps = _effective_caps()
    has = lambda c: bool(caps >> c & 1)  # noqa: E731
    if not (has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON))):
        return "kernel tests need CAP_BPF and CAP_PERFMON (or root)"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "this kernel has no BTF (/sys/kernel/btf/vmlinux)"
    if shutil.which("clang") is None:
        return "clang is not installed (scripts/setup.sh installs it)"
    return None


@functools.cache
def _toolchain_unavailable() -> str | None:
    from servertools import toolchain_missing
    missing = toolchain_missing()
    return f"{missing} (scripts/setup.sh installs the toolchain)" if missing else None


@functools.cache
def _fleet_unavailable() -> str | None:
    for tool in ("redis-server", "haproxy"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"{tool} is not installed (scripts/setup.sh installs it)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis package is not installed (extra `fleet`)"
    return None


# marker -> (why its tests cannot run here, or None; the variable that makes that a failure)
_NEEDS = {
    "bpf": (_bpf_unavailable, "LCC_REQUIRE_BPF"),
    "toolchain": (_toolchain_unavailable, "LCC_REQUIRE_TOOLCHAIN"),
    "fleet": (_fleet_unavailable, "LCC_REQUIRE_FLEET"),
}


def pytest_runtest_setup(item):
    for marker, (unavailable, require) in _NEEDS.items():
        if item.get_closest_marker(marker):
            reason = unavailable()
            if reason:
                if os.environ.get(require) == "1":
                    pytest.fail(f"{require}=1 but {reason}", pytrace=False)
                pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _mounts():
    """tracefs and bpffs, mounted when missing (root only)."""
    if os.geteuid() == 0:
        for fstype, path in (("tracefs", "/sys/kernel/tracing"), ("bpf", "/sys/fs/bpf")):
            if os.path.isdir(path) and subprocess.run(["mountpoint", "-q", path]).returncode:
                subprocess.run(["mount", "-t", fstype, fstype, path], capture_output=True)
    yield


@pytest.fixture(scope="session", autouse=True)
def _private_config_dir(tmp_path_factory):
    """The user's config directory, where ``lcc trust`` pins keys, is private to the
    session (XDG_CONFIG_HOME, which platformdirs and the ``lcc`` subprocesses follow):
    no test reads or changes the real one.  Fixtures that start a service pin its key
    there (tests/server/conftest.py)."""
    d = tmp_path_factory.mktemp("config")
    saved = {k: os.environ.get(k) for k in ("XDG_CONFIG_HOME", "LCC_TRUSTED_KEYS",
                                            "LCC_INSECURE_TRUST_LOOPBACK")}
    os.environ["XDG_CONFIG_HOME"] = str(d)
    os.environ.pop("LCC_TRUSTED_KEYS", None)
    os.environ.pop("LCC_INSECURE_TRUST_LOOPBACK", None)
    yield d
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def lcc_cache(tmp_path_factory):
    """A private artifact cache for the test session."""
    d = tmp_path_factory.mktemp("lcc-cache")
    old = os.environ.get("LCC_CACHE_DIR")
    os.environ["LCC_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("LCC_CACHE_DIR", None)
    else:
        os.environ["LCC_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def compile_prog(lcc_cache):
    """Compile a test program (a file under tests/progs or C text) to object bytes."""
    from lcc.compile.bundle import Bundle
    from lcc.compile import build

    def _compile(src: str, defines: dict | None = None) -> bytes:
        path = PROGS / src
        bundle = Bundle.from_path(str(path)) if path.exists() else Bundle.from_string(src)
        return build(bundle, defines=defines).object

    return _compile
