"""A toolchain stand-in for unit tests of the compile service's HTTP and
signing layers: it "compiles" by packing the source into a minimal ELF, so
those tests run without clang.  The server tier (tests/server) uses the real
toolchain.

Imported by name (``from faketoolchain import FakeToolchain``): ``tests/`` is
on ``sys.path`` because ``tests/conftest.py`` lives there.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from pathlib import Path

from lcc_toolchain.toolchain import CompileResult

#: The smallest well-formed BTF: a header and a one-byte string section.
FAKE_BTF = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 1) + b"\0"


def fake_object(payload: bytes) -> bytes:
    """A minimal ELF64 relocatable BPF object with no sections, then ``payload``."""
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    return ident + struct.pack("<HHIQQQIHHHHHH", 1, 247, 1, 0, 0, 0, 0, 64, 0, 0, 64, 0, 0) \
        + payload


class FakeSandbox:
    landlock_abi = 6
    unconfined = None


class FakeToolchain:
    """The toolchain interface the service calls.  ``compile`` gives an object
    made from the source, defines and arch (so equal requests give equal bytes)
    and counts its calls; tests subclass it for failures and warnings."""

    def __init__(self) -> None:
        self.calls = 0
        self.sandbox = FakeSandbox()
        self._lock = threading.Lock()

    def identity(self) -> dict:
        return {"clang": "fake 1.0"}

    def btf_sha256(self, path: Path) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    def vmlinux_h(self, path: Path) -> Path:
        return Path(path)

    def prepare(self, *args) -> bool:
        return False

    def compile(self, bundle, *, arch, defines, btf_path, cancel=None) -> CompileResult:
        with self._lock:
            self.calls += 1
        return self.result(bundle.files[bundle.main], defines, arch)

    def result(self, text: str, defines: dict, arch: str, **fields) -> CompileResult:
        obj = fake_object(repr((text, sorted(defines.items()), arch)).encode())
        return CompileResult(object=obj, digest=hashlib.sha256(obj).hexdigest(),
                             toolchain=self.identity(), **fields)

    def min_core_btf(self, obj: bytes, btf_path: Path) -> bytes:
        return FAKE_BTF
