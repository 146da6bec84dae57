"""The compile service image, built and used as CI uses it.

Builds ``lcc-compiler:latest`` with scripts/docker/build.sh (cached base image
and layers are reused), starts the service in a container and, from the host:
compiles over HTTP (the reply signed with the key the container holds), loads
and attaches the object and sees its event (the container's key pinned as an
operator would), sends the hostile-include cases, and compiles through the
docker backend, which pins the container's key itself, in a process that has
no clang on PATH.

Skips, with the reason, only when no Docker engine can be started
(scripts/docker/engine.sh fails); ``LCC_REQUIRE_DOCKER=1`` makes that a
failure. Removes every container and volume it starts.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
import requests

from lcc.compile.docker import DockerBackend, DockerImageMissing, DockerUnavailable
from lcc.compile.trust import TrustedKey, TrustStore, read_key_file

pytestmark = pytest.mark.docker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(REPO, "scripts", "docker")
IMAGE = os.environ.get("LCC_DOCKER_IMAGE", "lcc-compiler:latest")
PREFIX = f"lcc-test-{os.getpid()}"

# One event per getpid() of the test's own process.
GETPID_SRC = r"""
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"

const volatile int target_tgid = 0;

struct event {
    int tgid;
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
    int tgid = bpf_get_current_pid_tgid() >> 32;
    struct event *e;

    /* only the test process: other getpid() callers are noise */
    if (tgid != target_tgid)
        return 0;
    e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e)
        return 0;
    e->tgid = tgid;
    bpf_ringbuf_submit(e, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

PASSWD_MARK = "root:x:0:0"


def _require_docker() -> bool:
    return os.environ.get("LCC_REQUIRE_DOCKER") == "1"


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def engine():
    """A Docker engine, started (and installed from Debian) by the script if needed."""
    r = _run(["bash", os.path.join(SCRIPTS, "engine.sh")], timeout=600)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        reason = f"no Docker engine could be started: {last}"
        if _require_docker():
            pytest.fail(f"LCC_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    import docker
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def image(engine):
    """The image, built from this checkout (cached layers reused)."""
    r = _run(["bash", os.path.join(SCRIPTS, "build.sh")], timeout=1200,
             env={"PYTHON": sys.executable, "LCC_IMAGE": IMAGE})
    if r.returncode != 0:
        pytest.fail(f"scripts/docker/build.sh failed:\n{r.stderr[-4000:]}", pytrace=False)
    return engine.images.get(IMAGE)


def _remove(client, name: str) -> None:
    """Remove container ``name`` and its state volume, if they exist."""
    import docker
    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass
    try:
        client.volumes.get(f"{name}-state").remove(force=True)
    except docker.errors.NotFound:
        pass


@pytest.fixture(scope="module")
def service(engine, image):
    """A service container of the image, healthy, on 127.0.0.1."""
    name = f"{PREFIX}-svc"
    backend = DockerBackend(IMAGE, name=name, keep_running=False)
    try:
        backend.endpoint()
        yield backend
    finally:
        backend.close()
        _remove(engine, name)


def _compile(service: DockerBackend, src: str, **extra) -> requests.Response:
    payload = {"bundle": {"main": "prog.bpf.c", "files": {"prog.bpf.c": src}},
               "kernel": os.uname().release, "arch": os.uname().machine,
               "defines": {}, "btf": False, **extra}
    return requests.post(f"{service.endpoint()}/v1/compile", json=payload,
                         headers=service.headers(), timeout=120)


def test_image_runs_as_non_root_with_toolchain(engine, image):
    container = engine.containers.run(
        image.id, ["sh", "-c", "id -u; clang --version | head -n1; bpftool version | head -n1"],
        detach=True)
    try:
        container.wait(timeout=60)
        out = container.logs().decode()
    finally:
        container.remove(v=True, force=True)  # v: the anonymous volume of VOLUME too
    uid, clang, bpftool = out.strip().splitlines()[:3]
    assert uid != "0"
    assert "clang version" in clang
    assert "bpftool" in bpftool
    cfg = image.attrs["Config"]
    assert "7655/tcp" in cfg["ExposedPorts"]
    assert cfg["Healthcheck"]["Test"]
    assert "/var/lib/lcc" in cfg["Volumes"]


def test_healthcheck_reports_healthy(service, engine):
    # Docker's own HEALTHCHECK (the one docker-compose relies on) must pass too.
    import time

    container = engine.containers.get(service.name)
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        container.reload()
        status = container.attrs["State"].get("Health", {}).get("Status")
        if status in ("healthy", "unhealthy"):
            break
        time.sleep(1)
    assert status == "healthy"


def test_sandbox_is_active_in_container(service):
    # Landlock must work under Docker's default seccomp profile, as the image ships.
    health = requests.get(f"{service.endpoint()}/healthz", timeout=10).json()
    assert health.get("landlock_abi", 0) > 0, health


def test_token_is_required(service):
    r = requests.post(f"{service.endpoint()}/v1/compile", json={}, timeout=30)
    assert r.status_code == 401


def test_compile_over_http(service):
    r = _compile(service, GETPID_SRC)
    assert r.status_code == 200, r.text[:2000]
    body = r.json()
    obj = base64.b64decode(body["object"])
    assert obj[:4] == b"\x7fELF"
    assert body["digest"] == hashlib.sha256(obj).hexdigest()
    # Signed with the key in the container's state, which /v1/keys publishes too.
    key = service.signing_key()
    assert body["key_id"] == key.fingerprint
    assert key.verify(body["manifest"].encode(), base64.b64decode(body["signature"]))
    keys = requests.get(f"{service.endpoint()}/v1/keys", timeout=10).json()["keys"]
    assert [(k["id"], k["status"]) for k in keys] == [(key.fingerprint, "current")]


@pytest.mark.bpf
def test_load_attach_and_see_event(service, monkeypatch, lcc_cache):
    from lcc import ClbcBase

    monkeypatch.setenv("LCC_TOKEN", service.token or "")
    TrustStore().add(TrustedKey(service.signing_key().raw, f"container {service.name}"))
    seen: list[bytes] = []
    with ClbcBase("getpid", bpf_str=GETPID_SRC, server=service.endpoint(), cache=False,
                  rodata={"target_tgid": os.getpid()}) as tool:
        tool.maps["events"].open_ring_buffer(lambda data: seen.append(bytes(data)), raw=True)
        os.getpid()
        tool.ring_buffer_poll(timeout_ms=1000)
    assert seen, "no event from sys_enter_getpid"
    assert int.from_bytes(seen[0][:4], sys.byteorder) == os.getpid()


HOSTILE = {
    "absolute include": '#include "/etc/passwd"\n',
    "proc include": '#include "/proc/self/environ"\n',
    "relative escape": '#include "../../../../../../etc/passwd"\n',
    "macro path": '#define P "/etc/passwd"\n#include P\n',
    "incbin": 'asm(".incbin \\"/etc/passwd\\"");\n',
    "incbin environ": 'asm(".incbin \\"/proc/self/environ\\"");\n',
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_includes_are_refused(service, case):
    r = _compile(service, HOSTILE[case] + "int x;\n")
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    text = r.text
    assert PASSWD_MARK not in text
    assert service.token not in text  # the container's environment holds the token
    assert "PATH=" not in text
    # And the service keeps serving.
    assert requests.get(f"{service.endpoint()}/healthz", timeout=10).status_code == 200


def test_backend_reuses_running_container(service):
    other = DockerBackend(IMAGE, name=service.name)
    try:
        assert other.endpoint() == service.endpoint()
        assert other.token == service.token
    finally:
        other.close()


def test_backends_starting_at_once_share_one_container(engine, image):
    # Several processes may ask for the container at the same moment.
    from concurrent.futures import ThreadPoolExecutor

    name = f"{PREFIX}-race"
    backends = [DockerBackend(IMAGE, name=name) for _ in range(3)]
    try:
        with ThreadPoolExecutor(len(backends)) as pool:
            urls = list(pool.map(lambda b: b.endpoint(), backends))
        assert len(set(urls)) == 1
        assert len({b.token for b in backends}) == 1
        assert requests.get(f"{urls[0]}/healthz", timeout=10).status_code == 200
    finally:
        for b in backends:
            b.close()
        _remove(engine, name)


def test_backend_names_the_build_command_when_image_missing(engine):
    backend = DockerBackend("lcc-compiler:no-such-tag", name=f"{PREFIX}-none")
    with pytest.raises(DockerImageMissing) as ei:
        backend.endpoint()
    assert "scripts/docker/build.sh" in str(ei.value)
    with pytest.raises(DockerImageMissing):
        backend.image_id()
    backend.close()
    with DockerBackend(IMAGE) as present:
        assert present.image_id() == engine.images.get(IMAGE).id


def test_backend_without_engine(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(DockerUnavailable) as ei:
        DockerBackend(IMAGE, name=f"{PREFIX}-none").endpoint()
    assert "Docker engine" in str(ei.value)


NO_CLANG_SCRIPT = textwrap.dedent("""
    import shutil, sys
    assert shutil.which("clang") is None, shutil.which("clang")
    assert shutil.which("bpftool") is None, shutil.which("bpftool")
    from lcc.compile.bundle import Bundle
    from lcc.compile import build
    art = build(Bundle.from_string(sys.stdin.read(), name="getpid.bpf.c"), cache=False)
    sys.stdout.write(art.digest + " " + art.object[:4].hex() + " " + art.origin)
""")


def test_docker_backend_compiles_without_clang(engine, image, tmp_path):
    name = f"{PREFIX}-noclang"
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LCC_", "PYTHON"))}
    env.update(PATH=str(empty_bin), LCC_BACKEND="docker", LCC_DOCKER_IMAGE=IMAGE,
               LCC_DOCKER_CONTAINER=name, LCC_CACHE_DIR=str(tmp_path / "cache"),
               HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               # this checkout's lcc, whatever an installed one is
               PYTHONPATH=os.pathsep.join(os.path.join(REPO, d)
                                          for d in ("client", "compile_server", "toolchain")))
    try:
        r = subprocess.run([sys.executable, "-c", NO_CLANG_SCRIPT], input=GETPID_SRC,
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        digest, magic, origin = r.stdout.split()
        assert magic == b"\x7fELF".hex()
        assert len(digest) == 64
        assert origin == f"docker:{IMAGE}"

        # The CLI's flag reaches the same backend (and reuses the container).
        src = tmp_path / "getpid.bpf.c"
        src.write_text(GETPID_SRC)
        out = tmp_path / "getpid.bpf.o"
        del env["LCC_BACKEND"]
        r = subprocess.run([sys.executable, "-m", "lcc.cli", "compile", "--backend", "docker",
                            str(src), "-o", str(out)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert out.read_bytes()[:4] == b"\x7fELF"

        # Nothing was trusted before: the backend pinned its container's own key.
        with DockerBackend(IMAGE, name=name) as backend:
            key = backend.signing_key()
        (pinned,) = read_key_file(tmp_path / "config" / "lcc" / "trusted_keys")
        assert pinned.raw == key.raw and pinned.comment.startswith(f"docker container {name}")
    finally:
        _remove(engine, name)
