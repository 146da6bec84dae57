"""Bundle gathering: the main source plus every local header it reaches."""

from __future__ import annotations

from pathlib import Path

import pytest

from lcc.compile.bundle import MAX_INCLUDE_DEPTH, Bundle, local_includes
from lcc.errors import LccError


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text)


def test_single_file(tmp_path):
    write(tmp_path, {"hello.bpf.c": '#include "lbc.h"\nint x;\n'})

    b = Bundle.from_path(tmp_path / "hello.bpf.c")

    assert b.main == "hello.bpf.c"
    assert b.files == {"hello.bpf.c": '#include "lbc.h"\nint x;\n'}


def test_libbpf_tools_layout(tmp_path):
    """x.bpf.c + x.h + maps.bpf.h + bits.bpf.h; toolchain and system headers stay out."""
    write(tmp_path, {
        "runqlat.bpf.c": '#include <vmlinux.h>\n#include "vmlinux.h"\n'
                         '#include <bpf/bpf_helpers.h>\n'
                         '#include "runqlat.h"\n#include "bits.bpf.h"\n#include "maps.bpf.h"\n'
                         '#include "core_fixes.bpf.h"\n',
        "runqlat.h": "#define MAX_SLOTS 26\n",
        "bits.bpf.h": "static int log2(int v) { return v; }\n",
        "maps.bpf.h": '#include <bpf/bpf_helpers.h>\n#include <asm-generic/errno.h>\n',
        "core_fixes.bpf.h": "/* fixes */\n",
        "unrelated.h": "not included\n",
    })

    b = Bundle.from_path(tmp_path / "runqlat.bpf.c")

    assert sorted(b.files) == ["bits.bpf.h", "core_fixes.bpf.h", "maps.bpf.h", "runqlat.bpf.c",
                               "runqlat.h"]
    assert b.files["runqlat.h"] == "#define MAX_SLOTS 26\n"


def test_nested_includes_resolve_beside_the_includer_then_at_the_root(tmp_path):
    write(tmp_path, {
        "tool.bpf.c": '#include "inc/a.h"\n',
        "inc/a.h": '#include "b.h"\n#include "deeper/c.h"\n#include "common.h"\n',
        "inc/b.h": "// b beside a\n",
        "inc/deeper/c.h": '#include "../b.h"\n#include "d.h"\n',
        "inc/deeper/d.h": "// d\n",
        "common.h": "// at the root: clang finds it through -I <bundle>\n",
        "b.h": "// a different b.h at the root, not included\n",
    })

    b = Bundle.from_path(tmp_path / "tool.bpf.c")

    assert sorted(b.files) == ["common.h", "inc/a.h", "inc/b.h", "inc/deeper/c.h",
                               "inc/deeper/d.h", "tool.bpf.c"]
    assert b.files["inc/b.h"] == "// b beside a\n"


def test_include_cycles_terminate(tmp_path):
    write(tmp_path, {"t.bpf.c": '#include "a.h"\n', "a.h": '#include "b.h"\n',
                     "b.h": '#include "a.h"\n#include "t.bpf.c"\n'})

    assert sorted(Bundle.from_path(tmp_path / "t.bpf.c").files) == ["a.h", "b.h", "t.bpf.c"]


@pytest.mark.parametrize("inc", ["../secret.h", "sub/../../secret.h", "/etc/passwd", ".."])
def test_includes_leaving_the_directory_are_rejected(tmp_path, inc):
    (tmp_path / "secret.h").write_text("int secret;\n")
    tool = tmp_path / "tool"
    write(tool, {"t.bpf.c": f'#include "{inc}"\n', "sub/x.h": ""})

    with pytest.raises(LccError, match="outside the tool's directory") as exc:
        Bundle.from_path(tool / "t.bpf.c")
    assert "int secret" not in str(exc.value)


def test_dotdot_that_stays_inside_is_normalised(tmp_path):
    write(tmp_path, {"t.bpf.c": '#include "sub/../x.h"\n#include "./y.h"\n', "x.h": "x\n",
                     "y.h": "y\n", "sub/z.h": ""})

    assert sorted(Bundle.from_path(tmp_path / "t.bpf.c").files) == ["t.bpf.c", "x.h", "y.h"]


def test_missing_and_commented_includes_are_left_to_the_compiler(tmp_path):
    write(tmp_path, {
        "t.bpf.c": '// #include "line.h"\n/* #include "block.h"\n   #include "block2.h" */\n'
                   'const char *s = "/* not a comment";\n#include "real.h"\n'
                   '#include "bpf/bpf_helpers.h"\n#include "nowhere.h"\n',
        "line.h": "", "block.h": "", "block2.h": "", "real.h": "ok\n"})

    assert sorted(Bundle.from_path(tmp_path / "t.bpf.c").files) == ["real.h", "t.bpf.c"]


def test_local_includes_sees_directives_after_comments():
    # A comment is one space to the preprocessor: `/* ... */ #include` is a directive.
    src = ('/* a\n b */ #include "x.h"\n  #  include   "y.h"\n#include <z.h>\n'
           'int i; // #include "w.h"\n')

    assert local_includes(src) == ["x.h", "y.h"]


def test_non_utf8_header_is_a_clear_error(tmp_path):
    write(tmp_path, {"t.bpf.c": '#include "bin.h"\n', "bin.h": b"\xff\xfe\x00junk"})

    with pytest.raises(LccError, match="bin.h is not UTF-8"):
        Bundle.from_path(tmp_path / "t.bpf.c")


def test_missing_main_file_is_a_clear_error(tmp_path):
    with pytest.raises(LccError, match="cannot read BPF source .*nope.bpf.c"):
        Bundle.from_path(tmp_path / "nope.bpf.c")


def test_include_depth_is_capped(tmp_path):
    n = MAX_INCLUDE_DEPTH + 2
    files = {"t.bpf.c": '#include "h0.h"\n'}
    files.update({f"h{i}.h": f'#include "h{i + 1}.h"\n' for i in range(n)})
    write(tmp_path, files)

    with pytest.raises(LccError, match="deeper than"):
        Bundle.from_path(tmp_path / "t.bpf.c")


def test_from_string_gathers_from_base_dir(tmp_path):
    write(tmp_path, {"ev.h": "struct ev { int x; };\n"})

    b = Bundle.from_string('#include "ev.h"\n', name="probe.bpf.c", base_dir=str(tmp_path))
    alone = Bundle.from_string('#include "ev.h"\n', name="probe.bpf.c")

    assert b.files == {"probe.bpf.c": '#include "ev.h"\n', "ev.h": "struct ev { int x; };\n"}
    assert alone.files == {"probe.bpf.c": '#include "ev.h"\n'}


def test_digest_is_canonical():
    a = Bundle("m.bpf.c", {"m.bpf.c": "x", "h.h": "y"})
    b = Bundle("m.bpf.c", {"h.h": "y", "m.bpf.c": "x"})

    assert a.digest() == b.digest()
    assert hash(a) == hash(b)
    assert Bundle.from_dict(a.to_dict()) == a


def test_client_and_service_agree_on_the_digest():
    """Both sides key their caches with it: the value is pinned, so that a
    change of either (or of the shared function) shows up here."""
    pytest.importorskip("fastapi")
    from lcc_server import service
    from lcc_toolchain.digest import bundle_digest

    b = Bundle("tool.bpf.c", {"tool.bpf.c": '#include "tool.h"\n// größe µs\n',
                              "tool.h": "struct ev { int x; };\n", "inc/bits.bpf.h": ""})
    pinned = "5b534d41a08c8402de54ce8aa9ab1a7c0d9f763fc1bb29f8950d49df67da092a"

    assert b.digest() == service.bundle_digest(b.main, b.files) == pinned
    assert service.bundle_digest is bundle_digest


@pytest.mark.parametrize("other", [
    Bundle("m.bpf.c", {"m.bpf.c": "x ", "h.h": "y"}),
    Bundle("m.bpf.c", {"m.bpf.c": "x", "h.h": "y\n"}),
    Bundle("m.bpf.c", {"m.bpf.c": "x", "g.h": "y"}),
    Bundle("m.bpf.c", {"m.bpf.c": "x", "h.h": "y", "i.h": ""}),
    Bundle("h.h", {"m.bpf.c": "x", "h.h": "y"}),
])
def test_digest_changes_with_any_file(other):
    assert Bundle("m.bpf.c", {"m.bpf.c": "x", "h.h": "y"}).digest() != other.digest()
