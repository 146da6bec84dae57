"""Bundle gathering and symbolic links: a header that resolves outside the tool's
directory is refused, so its target's contents never reach a compile service."""

from __future__ import annotations

import os

import pytest

from lcc.compile.bundle import Bundle
from lcc.errors import LccError

SECRET = "root:x:0:0:the contents of a file outside the tool\n"


@pytest.fixture
def tool(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.h").write_text(SECRET)
    d = tmp_path / "tool"
    d.mkdir()
    return d


def test_a_header_linked_outside_the_directory_is_refused(tool):
    (tool / "x.h").symlink_to(tool.parent / "outside" / "secret.h")
    (tool / "t.bpf.c").write_text('#include "x.h"\nint x;\n')

    with pytest.raises(LccError) as exc:
        Bundle.from_path(tool / "t.bpf.c")

    assert 'includes "x.h", and x.h is a symbolic link to' in str(exc.value)
    assert "outside the tool's directory" in str(exc.value)
    assert SECRET not in str(exc.value)


def test_a_directory_linked_outside_is_refused(tool):
    (tool / "inc").symlink_to(tool.parent / "outside")
    (tool / "t.bpf.c").write_text('#include "inc/secret.h"\nint x;\n')

    with pytest.raises(LccError, match="outside the tool's directory"):
        Bundle.from_path(tool / "t.bpf.c")


def test_from_string_with_a_base_dir_checks_the_same(tool):
    (tool / "x.h").symlink_to(os.path.relpath(tool.parent / "outside" / "secret.h", tool))
    with pytest.raises(LccError, match="symbolic link"):
        Bundle.from_string('#include "x.h"\n', name="t.bpf.c", base_dir=str(tool))


def test_links_that_stay_inside_are_followed(tool):
    (tool / "common").mkdir()
    (tool / "common" / "real.h").write_text("#define N 1\n")
    (tool / "x.h").symlink_to("common/real.h")
    (tool / "t.bpf.c").write_text('#include "x.h"\nint x;\n')

    assert Bundle.from_path(tool / "t.bpf.c").files["x.h"] == "#define N 1\n"


def test_a_tool_directory_reached_through_a_link_still_works(tool, tmp_path):
    (tool / "x.h").write_text("#define N 1\n")
    (tool / "t.bpf.c").write_text('#include "x.h"\nint x;\n')
    (tmp_path / "alias").symlink_to(tool)

    assert sorted(Bundle.from_path(tmp_path / "alias" / "t.bpf.c").files) == ["t.bpf.c", "x.h"]
