"""lcc.compile.build: which backend compiles, and the local path end to end.

Backend choice needs nothing; the local builds need clang, bpftool and
kernel BTF (marker ``toolchain``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lcc.bundle import Bundle
from lcc.cache import ArtifactCache
from lcc.compile import build, choose_backend
from lcc.errors import CompileError, LccError, ToolchainMissing

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
