"""The quick index (lcc.compile.quick): a cached local compile found again without the
compile side, and a miss for every change the full cache key would see."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lcc.compile import build, quick
from lcc.compile.bundle import Bundle

pytestmark = pytest.mark.toolchain

MAIN = '#include "lbc.h"\n#include "tool.h"\nint x = VALUE;\nchar LICENSE[] SEC("license") = "GPL";\n'


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The tool compiled once into a cache of its own: (cache root, artifact)."""
    root = tmp_path_factory.mktemp("cache")
    src = tmp_path_factory.mktemp("src")
    (src / "tool.bpf.c").write_text(MAIN)
    (src / "tool.h").write_text("#define VALUE 7\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LCC_CACHE_DIR", str(root))
        for k in ("LCC_BACKEND", "LCC_SERVER"):
            mp.delenv(k, raising=False)
        return root, build(Bundle.from_path(src / "tool.bpf.c"))


@pytest.fixture
def tool(compiled, tmp_path, monkeypatch):
    """A tool directory with a header, its object in a private cache and its quick
    entry written; returns (root, key, source dir, artifact)."""
    first_root, art = compiled
    root = tmp_path / "cache"
    shutil.copytree(first_root / "artifacts", root / "artifacts")
    src = tmp_path / "src"
    src.mkdir()
    (src / "tool.bpf.c").write_text(MAIN)
    (src / "tool.h").write_text("#define VALUE 7\n")
    monkeypatch.setenv("LCC_CACHE_DIR", str(root))
    for k in ("LCC_BACKEND", "LCC_SERVER"):
        monkeypatch.delenv(k, raising=False)
    bundle = Bundle.from_path(src / "tool.bpf.c")
    key = quick.quick_key(main="tool.bpf.c", text=MAIN, base_dir=str(src), defines={},
                          keep_types=(), root=str(root))
    assert quick.remember(str(root), key, art_key=art.key, digest=art.digest,
                          files=bundle.files, main=bundle.main, base_dir=str(src))
    return str(root), key, src, art


def test_a_hit_returns_the_same_object(tool):
    root, key, _src, art = tool
    hit = quick.lookup(root, key)
    assert hit is not None
    assert hit.object == art.object and hit.digest == art.digest and hit.key == art.key
    assert Path(hit.object_path).read_bytes() == art.object


def test_the_key_changes_with_every_input(tool):
    root, key, src, _art = tool
    base = dict(main="tool.bpf.c", text=MAIN, base_dir=str(src), defines={}, keep_types=(),
                root=root)
    changed = [dict(text=MAIN + " "), dict(defines={"A": "1"}), dict(keep_types=("event",)),
               dict(base_dir=str(src.parent)), dict(main="other.bpf.c"), dict(root=root + "x")]
    keys = {quick.quick_key(**{**base, **c}) for c in changed}
    assert key not in keys and len(keys) == len(changed)
    assert quick.quick_key(**base, environ={"LCC_CLANG": "clang-15"}) != key
    assert quick.quick_key(**base, environ={"LCC_SERVER": "http://x"}) is None
    assert quick.quick_key(**base, environ={"LCC_BACKEND": "docker"}) is None
    assert quick.quick_key(**base, environ={"LCC_BACKEND": "local",
                                            "LCC_SERVER": "http://x"}) is not None


def test_a_changed_header_is_a_miss_until_it_changes_back(tool):
    root, key, src, _art = tool
    (src / "tool.h").write_text("#define VALUE 8\n")
    assert quick.lookup(root, key) is None
    (src / "tool.h").write_text("#define VALUE 7\n")
    assert quick.lookup(root, key) is not None


def test_a_file_added_beside_the_tool_is_a_miss(tool):
    root, key, src, _art = tool
    st = os.stat(src)
    (src / "new.h").write_text("\n")
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert quick.lookup(root, key) is None


def test_a_changed_toolchain_file_is_a_miss(tool):
    root, key, _src, _art = tool
    path = Path(root) / "artifacts" / "v1" / "quick" / key[:2] / key
    lines = path.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("stat\t"))
    f = lines[i].split("\t")
    lines[i] = "\t".join([*f[:3], str(int(f[3]) + 1), f[4]])  # as if touched
    path.write_text("\n".join(lines) + "\n")
    assert quick.lookup(root, key) is None


@pytest.mark.parametrize("damage", ["magic", "truncate", "unknown", "blob", "key-entry"])
def test_damage_is_a_miss(tool, damage):
    root, key, _src, art = tool
    path = Path(root) / "artifacts" / "v1" / "quick" / key[:2] / key
    base = Path(root) / "artifacts" / "v1"
    if damage == "magic":
        path.write_text("lcc-quick 0\n" + path.read_text().split("\n", 1)[1])
    elif damage == "truncate":
        path.write_text(path.read_text()[:40])
    elif damage == "unknown":
        path.write_text(path.read_text() + "what\tever\n")
    elif damage == "blob":
        blob = base / "blobs" / art.digest[:2] / f"{art.digest}.o"
        data = blob.read_bytes()
        blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:  # lcc cache rm: the full entry is gone, so is the shortcut
        (base / "keys" / art.key[:2] / f"{art.key}.json").unlink()
    assert quick.lookup(root, key) is None


def test_a_hit_imports_nothing_from_the_compile_side(tool):
    root, key, _src, _art = tool
    code = ("import sys\nfrom lcc.compile import quick\n"
            f"assert quick.lookup({root!r}, {key!r}) is not None\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('lcc_toolchain', "
            "'lcc.compile.local', 'lcc.compile.pipeline', 'lcc.compile.cache', "
            "'lcc.compile.bundle', 'dataclasses', 'json', 'subprocess', 'hashlib')))\n"
            "print(bad)\nassert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr + r.stdout
