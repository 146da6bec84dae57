"""lcc.compile.build: which backend compiles, the cache in front of any backend,
and the local path end to end.

Backend choice needs nothing; the local builds need clang, bpftool and
kernel BTF (marker ``toolchain``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lcc.compile import Artifact, Backend, ClientConfig, build, choose_backend
from lcc.compile.backends import BACKENDS
from lcc.compile.bundle import Bundle
from lcc.compile.cache import ArtifactCache, CachedBackend, artifact_key
from lcc.compile.docker import DockerServiceBackend
from lcc.compile.kernel import this_kernel
from lcc.compile.local import LocalBackend
from lcc.compile.service import ServiceBackend
from lcc.errors import CompileError, Diagnostic, LccError, ToolchainMissing

HELLO = """\
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"
LBC_HASH(counts, u32, u64, 16);
SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
\tu32 pid = bpf_get_current_pid_tgid() >> 32;

\tlbc_count(&counts, &pid);
\treturn 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("LCC_SERVER", "LCC_BACKEND", "LCC_TOKEN", "LCC_CLANG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LCC_CACHE_DIR", str(tmp_path / "cache"))
    return monkeypatch


# -- backend choice ----------------------------------------------------------------------

def test_explicit_server_wins(clean_env):
    clean_env.setenv("LCC_BACKEND", "local")
    b = choose_backend(server="http://127.0.0.1:7655/")
    assert (b.name, b.key_part()) == ("server", {"server": "http://127.0.0.1:7655"})


def test_backend_argument_wins_over_everything(clean_env):
    clean_env.setenv("LCC_SERVER", "http://10.0.0.1:7655")
    assert choose_backend(backend="docker", server="http://x:1").name == "docker"
    assert choose_backend(backend="server").key_part() == {"server": "http://10.0.0.1:7655"}


def test_lcc_server_selects_the_service(clean_env):
    clean_env.setenv("LCC_SERVER", "compile.example:7655")
    assert choose_backend().key_part() == {"server": "http://compile.example:7655"}


def test_lcc_backend_overrides_lcc_server(clean_env):
    clean_env.setenv("LCC_SERVER", "http://10.0.0.1:7655")
    clean_env.setenv("LCC_BACKEND", "docker")
    clean_env.setenv("LCC_DOCKER_IMAGE", "lcc-compiler:test")
    d = choose_backend()
    assert (d.name, d.key_part(), d.origin) == ("docker", {"docker": "lcc-compiler:test"},
                                                 "docker:lcc-compiler:test")
    clean_env.setenv("LCC_BACKEND", "local")
    assert choose_backend().name == "local"


def test_unknown_backend(clean_env):
    clean_env.setenv("LCC_BACKEND", "cloud")
    with pytest.raises(LccError, match="unknown compile backend 'cloud' \\(LCC_BACKEND\\)"):
        choose_backend()


def test_server_backend_needs_a_url(clean_env):
    with pytest.raises(LccError, match="needs a compile service URL"):
        choose_backend(backend="server")


def test_local_default_needs_clang(clean_env):
    clean_env.setenv("LCC_CLANG", "clang-that-does-not-exist")
    with pytest.raises(ToolchainMissing) as exc:
        choose_backend()
    assert "LCC_SERVER" in str(exc.value) and "clang" in str(exc.value)


def test_defines_are_checked_before_anything_runs(clean_env):
    clean_env.setenv("LCC_SERVER", "http://127.0.0.1:1")
    with pytest.raises(LccError, match="not a C identifier"):
        build(Bundle.from_string(HELLO), defines={"1BAD": "x"})
    with pytest.raises(LccError, match="one line"):
        build(Bundle.from_string(HELLO), defines={"OK": "a\nb"})


def test_choose_backend_takes_an_injected_config(clean_env, tmp_path):
    clean_env.setenv("LCC_BACKEND", "local")  # ignored: the config says otherwise
    cfg = ClientConfig(server="http://cfg:1", token="t", push_btf=False)
    b = choose_backend(config=cfg)
    assert isinstance(b, ServiceBackend)
    assert (b.url, b.token, b.push_btf) == ("http://cfg:1", "t", False)
    assert choose_backend(config=cfg, token="other").token == "other"

    d = choose_backend(config=ClientConfig(backend="docker", docker_image="i:1",
                                           docker_container="c", docker_port=7700))
    assert isinstance(d, DockerServiceBackend)
    assert (d.image, d.container, d.port, d.origin) == ("i:1", "c", 7700, "docker:i:1")

    with pytest.raises(ToolchainMissing):
        choose_backend(config=ClientConfig(clang="clang-that-does-not-exist"))


@pytest.mark.toolchain
def test_local_backend_gets_its_settings_from_the_config(clean_env, tmp_path):
    cfg = ClientConfig(clang="clang", bpftool="bpftool-x", sandbox=False,
                       cache_dir=tmp_path / "c")
    b = choose_backend(config=cfg)
    assert isinstance(b, LocalBackend)
    assert (b.clang, b.bpftool, b.sandbox) == ("clang", "bpftool-x", False)
    assert b.work_dir == tmp_path / "c" / "toolchain"


def test_every_shipped_backend_is_a_backend(clean_env, tmp_path):
    assert isinstance(LocalBackend(tmp_path), Backend)
    assert isinstance(ServiceBackend("http://x:1"), Backend)
    assert isinstance(DockerServiceBackend(), Backend)
    assert [b.name for b in (LocalBackend(tmp_path), ServiceBackend("x:1"),
                             DockerServiceBackend())] == list(BACKENDS)


# -- any backend, through the cache --------------------------------------------------------

class FakeBackend:
    """A backend that compiles nothing: the object is the bundle's digest and defines."""

    name = "fake"
    origin = "fake:1"

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def key_part(self) -> dict:
        return {"fake": 1}

    def compile(self, bundle, *, kernel, arch, defines, btf) -> Artifact:
        self.calls.append(dict(main=bundle.main, kernel=kernel, arch=arch, defines=defines,
                               btf=btf))
        obj = f"{bundle.digest()} {sorted(defines.items())}".encode()
        return Artifact(object=obj, digest=hashlib.sha256(obj).hexdigest(),
                        btf=b"tailored" if btf else None, origin=self.origin,
                        warnings=[Diagnostic("t.bpf.c", 1, 2, "warning", "w")],
                        toolchain={"fake": "1"})


BUNDLE = Bundle("t.bpf.c", {"t.bpf.c": "int x;\n"})


def test_a_backend_object_is_called_once_then_cached(clean_env, tmp_path):
    fake = FakeBackend()
    assert isinstance(fake, Backend)
    store = ArtifactCache(tmp_path / "c")

    first = build(BUNDLE, backend=fake, cache=store, defines={"N": 3}, kernel="6.1.0",
                  arch="x86_64")
    hit = build(BUNDLE, backend=fake, cache=store, defines={"N": "3"}, kernel="6.1.0",
                arch="x86_64")

    assert fake.calls == [dict(main="t.bpf.c", kernel="6.1.0", arch="x86_64",
                               defines={"N": "3"}, btf=False)]
    assert (first.cache_hit, first.cached, first.origin) == (False, False, "fake:1")
    assert (hit.cache_hit, hit.cached, hit.origin) == (True, True, "fake:1")
    assert (hit.object, hit.digest, hit.key) == (first.object, first.digest, first.key)
    assert hit.warnings == first.warnings and hit.toolchain == {"fake": "1"}
    assert first.key == artifact_key(BUNDLE, defines={"N": "3"}, arch="x86_64", kernel="6.1.0",
                                     kernel_btf=None, via={"fake": 1})


def test_the_cache_keys_the_running_kernel_by_its_btf(clean_env, tmp_path):
    me = this_kernel()
    cached = CachedBackend(FakeBackend(), ArtifactCache(tmp_path / "c"))
    assert cached.key(BUNDLE, kernel=me.release, arch=me.arch, defines={}) == artifact_key(
        BUNDLE, defines={}, arch=me.arch, kernel=me.release, kernel_btf=me.btf_id,
        via={"fake": 1})
    assert (cached.name, cached.origin, cached.key_part()) == ("fake", "fake:1", {"fake": 1})


def test_a_hit_without_btf_compiles_again_for_btf(clean_env, tmp_path):
    fake = FakeBackend()
    store = ArtifactCache(tmp_path / "c")
    kw = dict(backend=fake, cache=store, kernel="6.1.0", arch="x86_64")

    build(BUNDLE, **kw)
    with_btf = build(BUNDLE, btf=True, **kw)
    again = build(BUNDLE, btf=True, **kw)

    assert [c["btf"] for c in fake.calls] == [False, True]
    assert Path(with_btf.btf_path).read_bytes() == b"tailored"
    assert again.cache_hit and Path(again.btf_path).read_bytes() == b"tailored"


def test_without_cache_the_backend_runs_every_time(clean_env):
    fake = FakeBackend()
    a = build(BUNDLE, backend=fake, cache=False, btf=True, kernel="6.1.0", arch="x86_64")
    build(BUNDLE, backend=fake, cache=False, kernel="6.1.0", arch="x86_64")

    assert len(fake.calls) == 2 and a.key is None and not a.cache_hit
    assert Path(a.btf_path).read_bytes() == b"tailored"


def test_a_backend_object_needs_no_environment(clean_env, tmp_path):
    clean_env.setenv("LCC_BACKEND", "cloud")  # would be refused if it were read
    fake = FakeBackend()
    build(BUNDLE, backend=fake, cache=ArtifactCache(tmp_path / "c"))
    assert len(fake.calls) == 1


def test_build_refuses_what_is_not_a_backend(clean_env):
    with pytest.raises(TypeError, match="not object"):
        build(BUNDLE, backend=object(), cache=False)


def test_build_uses_the_injected_configs_cache_dir(clean_env, tmp_path):
    fake = FakeBackend()
    build(BUNDLE, backend=fake, config=ClientConfig(cache_dir=tmp_path / "cfg"),
          kernel="6.1.0", arch="x86_64")
    assert len(ArtifactCache(tmp_path / "cfg").entries()) == 1
    assert not (tmp_path / "cache").exists()  # LCC_CACHE_DIR of clean_env


# -- local builds --------------------------------------------------------------------------

@pytest.mark.toolchain
def test_local_build_caches_and_hits(clean_env, tmp_path):
    store = ArtifactCache(tmp_path / "c")
    bundle = Bundle.from_string(HELLO, name="hello.bpf.c")

    first = build(bundle, cache=store, defines={"N": 3})
    hit = build(bundle, cache=store, defines={"N": "3"})
    other = build(bundle, cache=store, defines={"N": "4"})

    assert (first.cached, first.cache_hit, first.origin) == (False, False, "local")
    assert (hit.cached, hit.cache_hit, hit.digest, hit.key) == (True, True, first.digest,
                                                                 first.key)
    assert other.key != first.key and not other.cache_hit
    assert hit.toolchain == first.toolchain and "clang" in first.toolchain
    assert (store.toolchain_dir / "identity.json").exists()


@pytest.mark.toolchain
def test_local_btf_without_cache_lands_in_a_private_file(clean_env):
    art = build(Bundle.from_string(HELLO, name="hello.bpf.c"), cache=False, btf=True)

    path = Path(art.btf_path)
    assert path.read_bytes() == art.btf
    assert path.parent.stat().st_mode & 0o077 == 0
    assert not art.cached and art.key is None


@pytest.mark.toolchain
def test_local_compile_error(clean_env):
    with pytest.raises(CompileError) as exc:
        build(Bundle.from_string('#include "lbc.h"\nint x = ;\n', name="bad.bpf.c"))
    assert exc.value.diagnostics[0].file == "bad.bpf.c"
    assert exc.value.diagnostics[0].line == 2


@pytest.mark.toolchain
def test_local_rejects_what_the_service_would(clean_env):
    with pytest.raises(LccError, match="bundle"):
        build(Bundle("bad name.bpf.c", {"bad name.bpf.c": HELLO}))


@pytest.mark.toolchain
def test_unwritable_cache_still_builds(clean_env, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")

    art = build(Bundle.from_string(HELLO, name="hello.bpf.c"),
                cache=ArtifactCache(blocker / "c"), backend="local", btf=True)

    assert art.object[:4] == b"\x7fELF" and Path(art.btf_path).read_bytes() == art.btf


def test_the_package_exports_resolve():
    import lcc.compile as package
    for name in package.__all__:
        assert getattr(package, name) is not None
    assert package.build is build and package.Artifact is Artifact
    with pytest.raises(AttributeError):
        package.no_such_name  # noqa: B018
