"""Request validation, diagnostics parsing and other compile-service logic
that needs no compiler."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from lcc_server.btf_store import BtfConflict, BtfStore, check_btf
from lcc_server.settings import Settings
from lcc_toolchain import diagnostics, validation
from lcc_toolchain.errors import BtfUnavailable
from lcc_toolchain.pch import Pch, _parse_depfile, reason_not_applicable
from lcc_toolchain.sandbox_exec import decode_policy, encode_policy
from lcc_toolchain.validation import InvalidRequest


# -- validation -----------------------------------------------------------------

@pytest.mark.parametrize("release", ["6.18.44-fc-v769", "5.15.0-91-generic", "6.1.0+", "4.19~rc1",
                                     "a" * 128])
def test_good_releases(release):
    assert validation.check_release(release) == release


@pytest.mark.parametrize("release", ["", ".", "..", "../x", "a/b", ".hidden", "a b", "a\nb",
                                     "6.1.0\n", "a" * 129, "ü", 5, None])
def test_bad_releases(release):
    with pytest.raises(InvalidRequest):
        validation.check_release(release)


def test_arches_map_to_target_arch_macros():
    assert validation.ARCHES["x86_64"] == "x86"
    assert validation.ARCHES["aarch64"] == "arm64"
    with pytest.raises(InvalidRequest):
        validation.check_arch("x86")


@pytest.mark.parametrize("path", ["a.c", "inc/x.h", "a/b/c/d.h", "x-y_z+1.bpf.c"])
def test_good_bundle_paths(path):
    assert validation.check_path(path) == path


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x.h", "a/../b.h", "./a.h", "a//b.h", "a/",
                                  ".h", "a\\b.h", "a/b/c/d/e/f/g/h/i.h", "a:b.h", "x" * 200,
                                  "a.h\n", "inc\n/a.h"])
def test_bad_bundle_paths(path):
    with pytest.raises(InvalidRequest):
        validation.check_path(path)


def test_bundle_rules():
    ok = {"m.bpf.c": "int x;", "inc/a.h": ""}
    validation.check_bundle("m.bpf.c", ok)
    bad = [
        ("m.bpf.c", {}),                                   # no files
        ("m.h", {"m.h": "int x;"}),                        # main not .c
        ("n.bpf.c", ok),                                   # main not in files
        ("m.bpf.c", {"m.bpf.c": "  \n"}),                  # empty main
        ("m.bpf.c", {"m.bpf.c": "int x;\x00"}),            # NUL
        ("m.bpf.c", {"m.bpf.c": "int x; \ud800"}),         # not encodable as UTF-8
        ("m.bpf.c", {"m.bpf.c": "int x;", "A.h": "", "a.h": ""}),  # case clash
        ("m.bpf.c", {"m.bpf.c": "int x;", "a": "", "a/b.h": ""}),  # file and directory
        ("m.bpf.c", {"m.bpf.c": b"int x;"}),               # bytes, not text
    ]
    for main, files in bad:
        with pytest.raises(InvalidRequest):
            validation.check_bundle(main, files)


def test_bundle_caps():
    caps = validation.Caps(max_files=2, max_file_bytes=10, max_bundle_bytes=15)
    validation.check_bundle("m.c", {"m.c": "x" * 10, "a.h": "y" * 5}, caps)
    for files in ({"m.c": "x", "a.h": "", "b.h": ""}, {"m.c": "x" * 11},
                  {"m.c": "x" * 10, "a.h": "y" * 6}):
        with pytest.raises(InvalidRequest):
            validation.check_bundle("m.c", files, caps)


def test_defines():
    assert validation.check_defines({"A": "1", "_B2": None}) == {"A": "1", "_B2": None}
    for bad in ({"1A": "1"}, {"A-B": "1"}, {"A": "1\n2"}, {"A": "x\r"}, {"A": "\x00"},
                {"A": 1}, {"A" * 65: "1"}, {"-fplugin": None}, {"A\n": "1"}):
        with pytest.raises(InvalidRequest):
            validation.check_defines(bad)


def test_check_define_is_the_rule_for_one_define():
    validation.check_define("A" * 64, None)
    validation.check_define("_x1", "1 + 2")
    assert validation.DEFINE_NAME_RE.fullmatch("NAME")
    assert not validation.DEFINE_NAME_RE.fullmatch("NAME\n")
    with pytest.raises(InvalidRequest, match="define name"):
        validation.check_define("A\n", "1")
    with pytest.raises(InvalidRequest, match="longer than 4"):
        validation.check_define("A", "12345", validation.Caps(max_define_value=4))


@pytest.mark.parametrize("digest", ["a" * 64, "0123456789abcdef" * 4])
def test_good_digests(digest):
    assert validation.check_digest(digest) == digest


@pytest.mark.parametrize("digest", ["a" * 63, "A" * 64, "a" * 64 + "\n", "g" * 64, None])
def test_bad_digests(digest):
    with pytest.raises(InvalidRequest):
        validation.check_digest(digest)


def test_define_args_are_single_sorted_arguments():
    assert validation.define_args({"B": "2 -o /x", "A": None}) == ["-DA", "-DB=2 -o /x"]


def test_error_messages_do_not_echo_long_input():
    with pytest.raises(InvalidRequest) as err:
        validation.check_release("x" * 10_000)
    assert len(str(err.value)) < 200


# -- diagnostics ------------------------------------------------------------------

CLANG_LOG = """\
In file included from prog.bpf.c:3:
inc/tool.h:7:2: error: unknown type name 'u33'
        u33 pid;
        ^
prog.bpf.c:12:9: warning: unused variable 'x' [-Wunused-variable]
prog.bpf.c:4:1: note: expanded from here
<inline asm>:1:9: error: Could not find incbin file '/etc/passwd'
lbc.h:38:9: fatal error: 'vmlinux.h' file not found
clang-14: error: unable to execute command
error: something without a location
2 errors generated.
"""


def test_parse_clang_diagnostics():
    got = diagnostics.parse(CLANG_LOG)

    assert [(d.file, d.line, d.column, d.severity) for d in got] == [
        ("inc/tool.h", 7, 2, "error"),
        ("prog.bpf.c", 12, 9, "warning"),
        ("prog.bpf.c", 4, 1, "note"),
        ("<inline asm>", 1, 9, "error"),
        ("lbc.h", 38, 9, "fatal error"),
        ("", 0, 0, "error"),
        ("", 0, 0, "error"),
    ]
    assert got[0].message == "unknown type name 'u33'"
    assert got[1].message == "unused variable 'x' [-Wunused-variable]"


def test_scrubber_makes_server_paths_relative():
    scrub = diagnostics.PathScrubber([("/srv/tmp/c-1/src", ""), ("/srv/inc", ""),
                                      ("/srv", "<work>/")])
    text = ("/srv/tmp/c-1/src/a/b.h:1:2: error: x\n"
            "/srv/inc/lbc.h:3:4: note: y\n/srv/other/z.h:1:1: error: w\n-I/srv/tmp/c-1/src")
    out = scrub(text)

    assert out == ("a/b.h:1:2: error: x\nlbc.h:3:4: note: y\n<work>/other/z.h:1:1: error: w\n-I.")
    assert "/srv" not in out


def test_truncate_long_logs():
    assert diagnostics.truncate("abc", 10) == "abc"
    cut = diagnostics.truncate("x" * 100, 10)
    assert cut.startswith("x" * 10) and "90 more characters" in cut


# -- precompiled header applicability --------------------------------------------

PCH = Pch(path=Path("/pch/lbc.pch"),
          inputs=("/inc/lbc.h", "/vm/vmlinux.h", "/usr/include/bpf/bpf_helpers.h"),
          identifiers=frozenset({"task_struct", "pid", "TASK_COMM_LEN", "u32"}))


@pytest.mark.parametrize("main_text", [
    '#include "lbc.h"\nint x;',
    "// SPDX-License-Identifier: GPL-2.0\n/* a\n * comment */\n#include <lbc.h>\n",
    '\n\n  #  include "lbc.h" // the header\n',
])
def test_pch_applies_when_lbc_h_comes_first(main_text):
    assert reason_not_applicable(PCH, "m.bpf.c", {"m.bpf.c": main_text}, {"MY_KNOB": "1"}) is None


@pytest.mark.parametrize("main_text,files,defines", [
    ('#define X 1\n#include "lbc.h"\n', {}, {}),                      # something before
    ('#include "vmlinux.h"\n#include "lbc.h"\n', {}, {}),
    ('// comment \\\n#include "lbc.h"\n', {}, {}),                     # include is commented out
    ('// a comment #include "lbc.h"\n', {}, {}),
    ('/* a */ int x; /* b */ #include "lbc.h"\n', {}, {}),
    ('#include "lbc.hh"\n', {}, {}),
    ('#include "lbc.h"\n', {"inc/lbc.h": ""}, {}),                     # bundle shadows lbc.h
    ('#include "lbc.h"\n', {"bpf_helpers.h": ""}, {}),
    ('#include "lbc.h"\n', {}, {"TASK_COMM_LEN": "32"}),               # define used by headers
    ('#include "lbc.h"\n', {}, {"pid": "1"}),
    ('#include "lbc.h"\n', {}, {"_MY": "1"}),                          # reserved name
])
def test_pch_refused_when_it_could_change_the_result(main_text, files, defines):
    files = {"m.bpf.c": main_text, **files}
    assert reason_not_applicable(PCH, "m.bpf.c", files, defines)


def test_parse_depfile():
    text = ("/t/lbc.pch: /inc/lbc.h /vm/vmlinux.h \\\n"
            "  /usr/include/bpf/bpf_helpers.h \\\n  /a\\ b.h\n")
    assert _parse_depfile(text) == ["/inc/lbc.h", "/vm/vmlinux.h",
                                    "/usr/include/bpf/bpf_helpers.h", "/a b.h"]


# -- BTF store ------------------------------------------------------------------------

def _btf(types: bytes = b"", strings: bytes = b"\0", big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    return struct.pack(order + "HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types),
                       len(strings)) + types + strings


def test_check_btf():
    check_btf(_btf())
    check_btf(_btf(big_endian=True))
    for bad in (b"", b"\x9f\xeb", b"\x7fELF" + b"\0" * 40, _btf()[:-1],
                struct.pack("<HBBIIIII", 0xEB9F, 2, 0, 24, 0, 0, 0, 1) + b"\0",
                struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 0)):
        with pytest.raises(InvalidRequest):
            check_btf(bad)


def test_btf_store(tmp_path):
    host = tmp_path / "host.btf"
    host.write_bytes(_btf(b"\0" * 12))
    store = BtfStore(tmp_path / "store", host_btf=host, host_arch="x86_64", host_release="6.0-host")

    assert store.find("x86_64", "6.0-host").source == "host"
    assert store.find("x86_64", "5.10") is None
    entry, created = store.put("x86_64", "5.10", _btf())
    assert created and entry.sha256 == hashlib.sha256(_btf()).hexdigest()
    assert not hasattr(entry, "path")  # entries never carry a local path
    assert store.materialise("x86_64", "5.10") == (tmp_path / "store/x86_64/5.10.btf").resolve()
    assert store.read("x86_64", "5.10") == _btf()
    assert store.put("x86_64", "5.10", _btf()) == (entry, False)
    with pytest.raises(BtfConflict):
        store.put("x86_64", "5.10", _btf(b"\0" * 12))
    assert store.put("x86_64", "5.10", _btf(b"\0" * 12), replace=True)[1]
    with pytest.raises(BtfConflict):
        store.put("x86_64", "6.0-host", _btf())
    damaged = tmp_path / "store/x86_64/5.10.btf"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\1")
    with pytest.raises(BtfUnavailable, match="does not match its sha256"):
        store.materialise("x86_64", "5.10")
    with pytest.raises(BtfUnavailable):
        store.materialise("x86_64", "4.19")
    assert [(e.arch, e.release, e.source) for e in store.entries()] == [
        ("x86_64", "6.0-host", "host"), ("x86_64", "5.10", "upload")]
    for arch, release in (("x86_64", ".."), ("x86_64", "../../etc"), ("../x", "1"), ("x86", "1")):
        with pytest.raises(InvalidRequest):
            store.find(arch, release)


# -- settings and the sandbox trampoline's arguments ------------------------------------

def test_settings_from_env_round_trip(tmp_path):
    env = {"LCC_STATE_DIR": str(tmp_path), "LCC_TOKEN": "t", "LCC_MAX_CONCURRENCY": "3",
           "LCC_MAX_FILES": "5", "LCC_COMPILE_MEMORY_MB": "512", "LCC_SANDBOX": "0",
           "LCC_MAX_ARTIFACT_MB": "7", "LCC_CUT_TYPES": "0"}
    s = Settings.from_env(env)

    assert (s.state_dir, s.token, s.max_concurrency, s.caps.max_files) == (tmp_path, "t", 3, 5)
    assert s.limits.memory_bytes == 512 << 20 and s.sandbox is False
    assert s.max_artifact_bytes == 7 << 20 and s.cut_types is False
    assert Settings.from_env(s.to_env()) == s


@pytest.mark.parametrize("env", [{"LCC_MAX_CONCURRENCY": "two"}, {"LCC_MAX_QUEUE": "0"},
                                 {"LCC_SANDBOX": "maybe"}])
def test_settings_reject_malformed_values(env):
    with pytest.raises(ValueError, match=next(iter(env))):
        Settings.from_env(env)


def test_sandbox_policy_round_trip():
    args = encode_policy(cwd="/w", read=["/usr", "/a b"], write=["/w/out"],
                         rlimits={"cpu": 5, "as": 1 << 30}, env={"A": "x=y"},
                         landlock=True, netns=False, drop_caps=True)
    policy, program = decode_policy([*args, "/usr/bin/clang", "--", "-c"])

    assert program == ["/usr/bin/clang", "--", "-c"]
    assert policy == {"cwd": "/w", "read": ["/usr", "/a b"], "write": ["/w/out"],
                      "rlimits": {"cpu": 5, "as": 1 << 30}, "env": {"A": "x=y"},
                      "landlock": True, "netns": False, "drop_caps": True, "user": None,
                      "private_root": False}
    with pytest.raises(ValueError):
        decode_policy(["--cwd", "/w", "/bin/true"])  # no "--"


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", "x" * 10 + "\udc80"])
def test_define_value_that_is_not_utf8_is_invalid(value):
    with pytest.raises(InvalidRequest, match="not valid UTF-8"):
        validation.check_define("A", value)


def test_surrogate_define_is_400_not_500(tmp_path):
    from lcc_server.app import create_app
    from lcc_server.btf_store import BtfStore
    from lcc_server.settings import Settings
    from lcc_toolchain.sandbox import Sandbox
    host = tmp_path / "vmlinux"
    host.write_bytes(b"\x9f\xeb\x01\x00" + b"\0" * 20)
    app = create_app(Settings(state_dir=tmp_path, warm=False, host_btf=host,
                              insecure_no_sandbox=True),
                     btf_store=BtfStore(tmp_path / "btf", host_btf=host, host_arch="x86_64",
                                        host_release="6.0-test"),
                     sandbox=Sandbox(enabled=False))
    body = (b'{"bundle": {"main": "a.bpf.c", "files": {"a.bpf.c": "int x;"}}, '
            b'"defines": {"A": "\\ud800"}}')
    from starlette.testclient import TestClient
    with TestClient(app) as client:
        r = client.post("/v1/compile", content=body,
                        headers={"content-type": "application/json"})
    assert r.status_code == 400 and "UTF-8" in r.json()["detail"]
