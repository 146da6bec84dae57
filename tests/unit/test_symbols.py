"""lcc.symbols: kallsyms lookups, ELF function offsets for uprobes, finding binaries."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lcc import symbols
from lcc.errors import LccError
from lcc.symbols import (
    BinaryNotFound,
    ElfSymbols,
    KernelSymbols,
    Symbol,
    SymbolNotFound,
    SymbolsUnavailable,
    kernel_symbols,
    resolve_binary,
)

FAKE_KALLSYMS = """\
ffffffff81000100 T zeta_func
ffffffff81000000 T _text
ffffffff81000000 T _stext
ffffffff81000000 t alias_later
0000000000000000 A fixed_percpu_data
0000000000001000 A cpu_debug_store
ffffffff81000200 t helper
ffffffff81000300 D some_data
ffffffffc0001000 t mod_fn\t[nf_tables]
ffffffffc0001080 t mod_fn2\t[nf_tables]
"""


@pytest.fixture(autouse=True)
def _fresh_cache():
    symbols.refresh()
    yield
    symbols.refresh()


@pytest.fixture
def fake(tmp_path) -> Path:
    path = tmp_path / "kallsyms"
    path.write_text(FAKE_KALLSYMS)
    return path


# ---------------------------------------------------------------- kallsyms

def test_resolve_finds_enclosing_symbol(fake):
    ks = KernelSymbols(fake)
    assert ks.resolve(0xFFFFFFFF81000105) == Symbol("zeta_func", 5, None)
    assert ks.resolve(0xFFFFFFFF810002FF) == Symbol("helper", 0xFF, None)
    assert ks.resolve(0xFFFFFFFFC0001084) == Symbol("mod_fn2", 4, "nf_tables")


def test_aliases_keep_the_first_name_listed(fake):
    # the kernel lists the preferred alias of an address first
    assert KernelSymbols(fake).format(0xFFFFFFFF81000010) == "_text+0x10"


def test_format(fake):
    ks = KernelSymbols(fake)
    assert ks.format(0xFFFFFFFF8100011A) == "zeta_func+0x1a"
    assert ks.format(0xFFFFFFFF81000100) == "zeta_func+0x0"
    assert ks.format(0xFFFFFFFFC0001004) == "mod_fn+0x4 [nf_tables]"


def test_unknown_addresses_format_as_hex(fake):
    ks = KernelSymbols(fake)
    # absolute (per-CPU) symbols must not claim small numbers
    assert ks.resolve(0x1010) is None
    assert ks.format(0x1010) == "0x1010"
    assert ks.resolve(0) is None


def test_signed_addresses_are_taken_modulo_2_64(fake):
    ks = KernelSymbols(fake)
    assert ks.format(0xFFFFFFFF81000104 - (1 << 64)) == "zeta_func+0x4"


def test_symbolize_stops_at_zero_padding(fake):
    stack = [0xFFFFFFFF81000204, 0xFFFFFFFFC0001002, 0, 0xFFFFFFFF81000100, 0]
    assert KernelSymbols(fake).symbolize(stack) == ["helper+0x4", "mod_fn+0x2 [nf_tables]"]
    assert KernelSymbols(fake).symbolize([]) == []


def test_address_of_and_contains(fake):
    ks = KernelSymbols(fake)
    assert ks.address_of("helper") == 0xFFFFFFFF81000200
    assert ks.address_of("mod_fn") == 0xFFFFFFFFC0001000
    assert ks.address_of("no_such_function") is None
    assert "zeta_func" in ks and "no_such_function" not in ks
    assert ks.address_of("_stext") == 0xFFFFFFFF81000000  # aliases are found by name
    assert ks.address_of("cpu_debug_store") is None  # absolute symbols are not addresses
    assert len(ks) == 6  # distinct addresses of non-absolute symbols


def test_file_is_read_once_and_refresh_rereads(fake):
    first = KernelSymbols(fake)
    assert first.format(0xFFFFFFFF81000201) == "helper+0x1"
    fake.write_text(FAKE_KALLSYMS.replace(" helper", " renamed"))
    # a second instance shares the cached table: no re-read
    assert KernelSymbols(fake).format(0xFFFFFFFF81000201) == "helper+0x1"
    first.refresh()
    assert KernelSymbols(fake).format(0xFFFFFFFF81000201) == "renamed+0x1"
    fake.write_text(FAKE_KALLSYMS.replace(" helper", " again"))
    symbols.refresh()
    assert first.format(0xFFFFFFFF81000201) == "again+0x1"


def test_hidden_addresses_raise_with_hint(tmp_path):
    path = tmp_path / "kallsyms"
    path.write_text("".join(f"0000000000000000 T fn{i}\n" for i in range(5)))
    ks = KernelSymbols(path)  # constructing does not read yet
    with pytest.raises(SymbolsUnavailable) as info:
        ks.format(0xFFFFFFFF81000000)
    assert isinstance(info.value, LccError)
    assert "kptr_restrict" in str(info.value) and "root" in str(info.value)


def test_missing_file_raises(tmp_path):
    with pytest.raises(SymbolsUnavailable, match="cannot read"):
        KernelSymbols(tmp_path / "absent").resolve(1)


def _kallsyms_visible() -> bool:
    try:
        with open(symbols.KALLSYMS) as f:
            return any(int(line.split()[0], 16) for line, _ in zip(f, range(1000)))
    except (OSError, ValueError, IndexError):
        return False


@pytest.mark.skipif(not _kallsyms_visible(), reason="kernel addresses are hidden (not root, or kptr_restrict)")
def test_real_kallsyms():
    ks = kernel_symbols()
    assert kernel_symbols() is ks
    addr = ks.address_of("schedule")
    assert addr is not None
    assert ks.format(addr + 3) == "schedule+0x3"
    assert ks.symbolize([addr, 0]) == ["schedule+0x0"]


# ---------------------------------------------------------------- ELF

MARKER = b"LCCMARK!"

MAIN_C = r"""
__asm__(".text\n.globl lcc_marker\n.type lcc_marker, %function\nlcc_marker:\n"
        ".ascii \"LCCMARK!\"\n.size lcc_marker, .-lcc_marker\n");
static int __attribute__((noinline, used)) dup_fn(int x) { return x + 1; }
static int __attribute__((noinline, used)) twin(int x) { return x + 2; }
int call_a(int x) { return dup_fn(x) + twin(x); }
int main(void) { return call_a(1) == 0; }
"""

OTHER_C = r"""
int dup_fn(int x) { return x * 3; }
static int __attribute__((noinline, used)) twin(int x) { return x * 5; }
int call_b(int x) { return twin(x); }
"""

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None,
                               reason="gcc and nm are needed to build test binaries")


def _build(tmp_path: Path, kind: str) -> Path:
    main, other = tmp_path / "main.c", tmp_path / "other.c"
    main.write_text(MAIN_C)
    other.write_text(OTHER_C)
    if kind == "object":
        out = tmp_path / "main.o"
        cmd = ["gcc", "-O1", "-c", "-o", str(out), str(main)]
    else:
        out = tmp_path / kind
        flags = {
            "nopie": ["-no-pie", "-fno-pie"],
            "pie": ["-pie", "-fPIE"],
            "shared": ["-shared", "-fPIC"],
        }[kind]
        cmd = ["gcc", "-O1", *flags, "-o", str(out), str(main), str(other)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def _nm_value(path: Path, name: str) -> int:
    out = subprocess.run(["nm", str(path)], check=True, capture_output=True, text=True).stdout
    values = [int(line.split()[0], 16) for line in out.splitlines()
              if line.split()[-1] == name and len(line.split()) == 3]
    assert values, f"nm does not list {name}"
    return values[0]


@needs_gcc
@pytest.mark.parametrize("kind", ["nopie", "pie", "shared", "object"])
def test_offset_points_at_the_function_bytes(tmp_path, kind):
    path = _build(tmp_path, kind)
    elf = ElfSymbols(path)
    sym = elf.lookup("lcc_marker")
    assert sym.value == _nm_value(path, "lcc_marker")
    data = path.read_bytes()
    assert data[sym.offset:sym.offset + len(MARKER)] == MARKER
    assert elf.offset("lcc_marker") == sym.offset
    assert elf.is_pie == (kind in ("pie", "shared"))
    if kind == "nopie":
        # a fixed-address executable: the file offset is not the link address
        assert sym.value != sym.offset


@needs_gcc
def test_stripped_library_uses_dynsym(tmp_path):
    path = _build(tmp_path, "shared")
    if shutil.which("strip") is None:
        pytest.skip("strip is not installed")
    subprocess.run(["strip", "--strip-all", str(path)], check=True)
    elf = ElfSymbols(path)
    assert "lcc_marker" in elf
    assert "twin" not in elf  # local symbols went with .symtab
    data = path.read_bytes()
    assert data[elf.offset("lcc_marker"):][:len(MARKER)] == MARKER


@needs_gcc
def test_global_wins_over_local_and_locals_are_ambiguous(tmp_path):
    elf = ElfSymbols(_build(tmp_path, "nopie"))
    assert elf.lookup("dup_fn").binding == "STB_GLOBAL"
    assert elf.lookup("dup_fn@VERS_1") == elf.lookup("dup_fn")
    with pytest.raises(LccError, match="defined 2 times"):
        elf.lookup("twin")


@needs_gcc
def test_missing_symbol(tmp_path):
    elf = ElfSymbols(_build(tmp_path, "pie"))
    with pytest.raises(SymbolNotFound) as info:
        elf.offset("no_such_function")
    assert isinstance(info.value, KeyError) and isinstance(info.value, LccError)
    assert "no_such_function" in str(info.value)


def test_not_an_elf_and_missing_file(tmp_path):
    text = tmp_path / "script.sh"
    text.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(SymbolsUnavailable, match="not a readable ELF"):
        ElfSymbols(text)
    with pytest.raises(BinaryNotFound) as info:
        ElfSymbols(tmp_path / "absent")
    assert isinstance(info.value, FileNotFoundError)


# ---------------------------------------------------------------- resolve_binary

def test_resolve_binary_on_path():
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh on PATH")
    assert resolve_binary("sh") == Path(sh)


def test_resolve_binary_by_path(tmp_path, monkeypatch):
    exe = tmp_path / "tool"
    exe.write_bytes(b"\x7fELF")
    monkeypatch.chdir(tmp_path)
    assert resolve_binary("./tool") == exe
    assert resolve_binary(str(exe)) == exe
    with pytest.raises(BinaryNotFound):
        resolve_binary("./missing")


def test_resolve_binary_missing():
    with pytest.raises(BinaryNotFound) as info:
        resolve_binary("lcc-no-such-binary-or-library")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, LccError)


def test_library_names_and_abi_preference(monkeypatch):
    entries = (
        ("libfoo.so.1", "libc6", "/lib32/libfoo.so.1"),
        ("libfoo.so.1", "libc6,x86-64", "/lib/x86_64-linux-gnu/libfoo.so.1"),
        ("libfoobar.so.2", "libc6,x86-64", "/lib/x86_64-linux-gnu/libfoobar.so.2"),
    )
    monkeypatch.setattr(symbols, "_ldconfig_entries", lambda: entries)
    monkeypatch.setattr(symbols.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("PATH", "")
    want = Path("/lib/x86_64-linux-gnu/libfoo.so.1")
    for name in ("libfoo.so.1", "libfoo.so", "libfoo", "foo"):
        assert resolve_binary(name) == want, name
    assert resolve_binary("foobar") == Path("/lib/x86_64-linux-gnu/libfoobar.so.2")
    monkeypatch.setattr(symbols.platform, "machine", lambda: "i686")
    assert resolve_binary("libfoo.so.1") == Path("/lib32/libfoo.so.1")


@pytest.mark.skipif(not os.path.exists("/etc/ld.so.cache"), reason="no ldconfig cache here")
def test_real_libc():
    libc = resolve_binary("libc.so.6")
    assert libc.is_file()
    assert resolve_binary("c") == libc
    elf = ElfSymbols(libc)
    assert elf.offset("malloc") > 0


# -- the compact table and its per-boot cache file ---------------------------------


def test_table_round_trips_through_its_cache_bytes(fake):
    from lcc.symbols import _KallsymsTable, _parse_kallsyms
    t = _parse_kallsyms(str(fake))
    stamp = b"s" * 32
    back = _KallsymsTable.from_bytes(t.to_bytes(stamp), stamp)
    assert back is not None
    assert list(back.addrs) == list(t.addrs) and back.blob == t.blob
    assert back.modules == t.modules and list(back.order) == list(t.order)
    for i in range(len(t.addrs)):
        assert back.name(i) == t.name(i)


def test_a_stale_or_damaged_cache_file_is_refused(fake):
    from lcc.symbols import _KallsymsTable, _parse_kallsyms
    data = _parse_kallsyms(str(fake)).to_bytes(b"s" * 32)
    assert _KallsymsTable.from_bytes(data, b"t" * 32) is None  # another boot or modules
    assert _KallsymsTable.from_bytes(data[:-1], b"s" * 32) is None
    assert _KallsymsTable.from_bytes(b"LCCKSYM0" + data[8:], b"s" * 32) is None
    assert _KallsymsTable.from_bytes(b"", b"s" * 32) is None


@pytest.mark.skipif(not os.access("/proc/kallsyms", os.R_OK), reason="no /proc/kallsyms")
def test_the_running_kernels_table_is_cached_and_answers_the_same(tmp_path, monkeypatch):
    from lcc import symbols
    monkeypatch.setenv("LCC_CACHE_DIR", str(tmp_path))
    try:
        parsed = symbols._parse_kallsyms(symbols.KALLSYMS)
    except SymbolsUnavailable:
        pytest.skip("kernel addresses are hidden here")
    first = symbols._cached_kallsyms()  # parses and writes the cache file
    files = list(tmp_path.glob("kallsyms-*"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o077 == 0
    second = symbols._cached_kallsyms()  # from the file
    assert second.blob == first.blob
    i = len(parsed.addrs) // 2
    addr = parsed.addrs[i]
    for t in (first, second):
        j, base = t.resolve(addr + 1)
        assert base == addr and t.name(j) == parsed.name(parsed.resolve(addr)[0])
        assert t.address_of(parsed.name(i)) is not None
    files[0].write_bytes(b"damaged")
    # Read again and rewritten (BPF programs come and go meanwhile: compare a
    # kernel symbol, not the whole table).
    third = symbols._cached_kallsyms()
    assert third.name(third.resolve(addr + 1)[0]) == first.name(first.resolve(addr + 1)[0])
    assert files[0].read_bytes() != b"damaged"
