"""lcc_toolchain as a package both sides depend on: what importing it loads,
that the service never loads the client, and how the client maps its errors.

The import checks run in a fresh interpreter: this one has loaded everything.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from lcc_toolchain import errors as tc_errors
from lcc_toolchain.errors import (BtfUnavailable, CompileFailed, Diagnostic, InvalidRequest,
                                  ToolchainError, ToolMissing)

TOOLCHAIN_MODULES = ["lcc_toolchain." + p.stem
                     for p in sorted((Path(tc_errors.__file__).parent).glob("*.py"))
                     if p.stem != "__init__"]


def _modules_after(code: str) -> list[str]:
    """Names in sys.modules starting with 'lcc' after running ``code`` in a
    fresh interpreter with this one's sys.path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run(
        [sys.executable, "-c",
         code + "\nimport sys; print(' '.join(sorted(m for m in sys.modules "
                "if m.startswith('lcc'))))"],
        env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    return out.split()


def _is_client(name: str) -> bool:
    return name == "lcc" or name.startswith("lcc.")


def test_importing_the_package_imports_none_of_its_modules():
    assert _modules_after("import lcc_toolchain") == ["lcc_toolchain"]
    assert _modules_after("import lcc_toolchain.errors") == ["lcc_toolchain",
                                                             "lcc_toolchain.errors"]


def test_toolchain_modules_import_neither_the_client_nor_the_service():
    loaded = _modules_after("\n".join(f"import {m}" for m in TOOLCHAIN_MODULES))
    assert not [m for m in loaded if _is_client(m) or m.startswith("lcc_server")]
    assert set(TOOLCHAIN_MODULES) <= set(loaded)


def test_the_service_imports_no_client_module():
    pytest.importorskip("fastapi")
    loaded = _modules_after("import lcc_server.app, lcc_server.server")
    assert "lcc_server.app" in loaded
    assert [m for m in loaded if _is_client(m)] == []


def test_lazy_names_of_the_package():
    import lcc_toolchain
    from lcc_toolchain.digest import bundle_digest
    from lcc_toolchain.toolchain import Toolchain

    assert lcc_toolchain.bundle_digest is bundle_digest
    assert lcc_toolchain.Toolchain is Toolchain
    with pytest.raises(AttributeError):
        lcc_toolchain.no_such_name  # noqa: B018


# -- errors ----------------------------------------------------------------------------


def test_diagnostic_is_one_class_on_both_sides():
    from lcc.errors import Diagnostic as ClientDiagnostic

    assert ClientDiagnostic is Diagnostic


def test_diagnostic_is_a_read_only_value():
    d = Diagnostic("x.bpf.c", 3, 5, "error", "boom")
    assert d == Diagnostic("x.bpf.c", 3, 5, "error", "boom")
    assert hash(d) == hash(Diagnostic("x.bpf.c", 3, 5, "error", "boom"))
    assert d != Diagnostic("x.bpf.c", 3, 6, "error", "boom")
    assert pickle.loads(pickle.dumps(d)) == d
    assert repr(d) == ("Diagnostic(file='x.bpf.c', line=3, column=5, severity='error', "
                       "message='boom')")
    with pytest.raises(AttributeError):
        d.line = 4  # type: ignore[misc]


def test_compile_failed_names_the_first_error_once():
    diags = [Diagnostic("a.c", 1, 1, "warning", "w"), Diagnostic("a.c", 2, 3, "error", "e")]
    exc = CompileFailed("clang could not compile the program", diags, "log")
    assert exc.message == "clang could not compile the program: a.c:2:3: error: e"
    assert CompileFailed(exc.message, diags).message == exc.message
    assert (exc.diagnostics, exc.log) == (diags, "log")


def test_invalid_request_is_a_value_error():
    assert issubclass(InvalidRequest, ValueError)
    assert str(InvalidRequest("arch 'x' is not one of ...")) == "arch 'x' is not one of ..."


@pytest.mark.parametrize("raised, expected", [
    (ToolMissing("clang (clang) was not found on PATH"), "ToolchainMissing"),
    (ToolMissing("lbc.h is missing", hint="reinstall lcc"), "ToolchainMissing"),
    (BtfUnavailable("BTF file x cannot be read: No such file"), "BtfError"),
    (InvalidRequest("bundle.main 'x' must be a .c file"), "LccError"),
    (ToolchainError("the compiler sandbox could not be set up: no", hint="h"), "LccError"),
])
def test_client_sees_its_own_errors(raised, expected):
    import lcc.errors
    from lcc.compile.local import _from_toolchain

    mapped = _from_toolchain(raised)
    assert type(mapped) is getattr(lcc.errors, expected)
    assert str(mapped) == str(raised)


def test_client_sees_a_compile_error_with_the_same_diagnostics():
    from lcc.compile.local import _from_toolchain
    from lcc.errors import CompileError

    diags = [Diagnostic("p.bpf.c", 2, 9, "error", "expected expression")]
    raised = CompileFailed("clang could not compile the program", diags, "p.bpf.c:2:9: ...",
                           hint="simplify")
    mapped = _from_toolchain(raised)
    assert type(mapped) is CompileError
    assert (mapped.message, mapped.diagnostics, mapped.log, mapped.hint) == (
        raised.message, diags, raised.log, "simplify")
    # The same words; lcc's str() lists each diagnostic on a line of its own.
    assert str(mapped).splitlines() == ["clang could not compile the program (1 error):",
                                        str(diags[0]), "hint: simplify"]


def test_tool_missing_reads_as_toolchain_missing_did():
    from lcc.errors import ToolchainMissing

    assert ToolMissing.hint == ToolchainMissing.hint
