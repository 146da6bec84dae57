"""Hostile inputs against the real compile service: each gets a clear 4xx,
no reply contains a file the request tried to read, and the service keeps
answering /healthz (checked by the ``api`` fixture after every case).
"""

from __future__ import annotations

import os
import struct

import pytest

pytestmark = pytest.mark.server

MACRO_BOMB = ("#define A0 x x x x\n"
              + "".join(f"#define A{i} A{i - 1} A{i - 1} A{i - 1} A{i - 1}\n" for i in range(1, 16))
              + "int y = A15;\n")


def _secret_lines() -> list[str]:
    """Text that must never come back: lines of /etc/passwd."""
    try:
        with open("/etc/passwd") as f:
            return [ln.strip() for ln in f if ln.count(":") >= 6][:5]
    except OSError:
        return []


def src(text: str, **extra) -> dict:
    return {"json": {"bundle": {"main": "x.bpf.c", "files": {"x.bpf.c": text}}, **extra}}


def bundle(main: str, files: dict, **extra) -> dict:
    return {"json": {"bundle": {"main": main, "files": files}, **extra}}


def raw(body: bytes, ctype: str = "application/json") -> dict:
    return {"content": body, "headers": {"content-type": ctype}}


def _body(**fields: str) -> bytes:
    """A compile request as JSON text, ``fields`` given as raw JSON (for escapes
    that a Python str cannot hold, like lone surrogates)."""
    extra = "".join(f', "{k}": {v}' for k, v in fields.items())
    return ('{"bundle": {"main": "x.bpf.c", "files": {"x.bpf.c": "int x;"}}' + extra
            + "}").encode()


OCTETS = "application/octet-stream"
BTF_HEADER = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 0)
TINY_BTF = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 1) + b"\0"  # no types

# (id, method, path, request kwargs or a function of the service, allowed statuses)
CASES = [
    # -- reading files of the server through the compiler --------------------
    ("include-etc-passwd", "POST", "/v1/compile", src('#include "/etc/passwd"\n'), {422}),
    ("include-angle-etc-shadow", "POST", "/v1/compile", src("#include </etc/shadow>\n"), {422}),
    ("include-proc-environ", "POST", "/v1/compile", src('#include "/proc/self/environ"\n'), {422}),
    ("include-dotdot", "POST", "/v1/compile", src('#include "../../x"\n'), {422}),
    ("include-dotdot-passwd", "POST", "/v1/compile",
     src('#include "../../../../../../../../etc/passwd"\n'), {422}),
    ("include-state-dir", "POST", "/v1/compile",
     lambda svc: src(f'#include "{svc.state_dir}/uvicorn.log"\n'), {422}),
    ("incbin-etc-passwd", "POST", "/v1/compile",
     src('asm(".incbin \\"/etc/passwd\\"");\nint x;\n'), {422}),
    ("incbin-split-literal", "POST", "/v1/compile",
     src('asm(".section .rodata\\n.inc" "bin \\"/etc/" "passwd\\"");\nint x;\n'), {422}),
    ("macro-include-path", "POST", "/v1/compile",
     src('#define P "/etc/passwd"\n#include P\n'), {422}),
    ("macro-stringified-path", "POST", "/v1/compile",
     src("#define S(x) #x\n#include S(/proc/self/environ)\n"), {422}),
    ("include-dev-zero", "POST", "/v1/compile", src('#include "/dev/zero"\n'), {422}),
    # out of the system include directories (the multiarch one included)
    ("include-via-asm-dotdot", "POST", "/v1/compile",
     src("#include <asm/../../../../etc/passwd>\n"), {422}),
    ("include-next-dotdot", "POST", "/v1/compile",
     src("#include_next <../../../etc/passwd>\n"), {422}),
    # -- resource exhaustion -----------------------------------------------------
    ("deep-include-recursion", "POST", "/v1/compile", src('#include "x.bpf.c"\n'), {422}),
    ("mutual-include-recursion", "POST", "/v1/compile",
     bundle("x.bpf.c", {"x.bpf.c": '#include "a.h"\n', "a.h": '#include "b.h"\n',
                        "b.h": '#include "a.h"\n'}), {422}),
    ("macro-bomb", "POST", "/v1/compile", src(MACRO_BOMB), {422}),
    ("huge-body", "POST", "/v1/compile",
     src("int x;\n" + "/" * (2 << 20)), {413}),
    ("huge-file", "POST", "/v1/compile", src("int x;\n//" + "a" * (300 << 10)), {400}),
    ("too-many-files", "POST", "/v1/compile",
     bundle("x.bpf.c", {"x.bpf.c": "int x;\n", **{f"h{i}.h": "" for i in range(80)}}), {400}),
    # -- malformed bodies ----------------------------------------------------------
    ("empty-body", "POST", "/v1/compile", raw(b""), {400}),
    ("empty-source", "POST", "/v1/compile", src(""), {400}),
    ("empty-files", "POST", "/v1/compile", bundle("x.bpf.c", {}), {400}),
    ("not-json", "POST", "/v1/compile", raw(b"hello"), {400}),
    ("json-array", "POST", "/v1/compile", raw(b"[1, 2, 3]"), {400}),
    ("non-utf8-body", "POST", "/v1/compile", raw(b'{"bundle": "\xff\xfe"}'), {400}),
    ("lone-surrogate-source", "POST", "/v1/compile",
     raw(b'{"bundle": {"main": "x.bpf.c", "files": {"x.bpf.c": "int x; \\ud800"}}}'), {400}),
    ("nul-in-source", "POST", "/v1/compile", src("int x;\x00\n"), {400}),
    ("wrong-type-bundle", "POST", "/v1/compile", {"json": {"bundle": "int x;"}}, {400}),
    ("wrong-type-files", "POST", "/v1/compile",
     {"json": {"bundle": {"main": "x.bpf.c", "files": ["int x;"]}}}, {400}),
    ("wrong-type-file-text", "POST", "/v1/compile", bundle("x.bpf.c", {"x.bpf.c": 42}), {400}),
    ("wrong-type-defines", "POST", "/v1/compile", src("int x;\n", defines=["A=1"]), {400}),
    ("wrong-type-define-value", "POST", "/v1/compile", src("int x;\n", defines={"A": 1}), {400}),
    ("wrong-type-btf", "POST", "/v1/compile", src("int x;\n", btf="yes"), {400}),
    ("wrong-type-kernel", "POST", "/v1/compile", src("int x;\n", kernel=5), {400}),
    ("wrong-content-type", "POST", "/v1/compile", raw(b"int x;", "text/plain"), {400}),
    # -- no way to pass compiler flags ---------------------------------------------
    ("flags-field", "POST", "/v1/compile", src("int x;\n", flags=["-fplugin=/tmp/x.so"]), {400}),
    ("cflags-field", "POST", "/v1/compile", src("int x;\n", cflags="-Xclang -load"), {400}),
    ("define-name-flag", "POST", "/v1/compile",
     src("int x;\n", defines={"X -fplugin=/tmp/x.so": "1"}), {400}),
    ("define-name-dash", "POST", "/v1/compile", src("int x;\n", defines={"-o/tmp/x": None}), {400}),
    ("define-value-newline", "POST", "/v1/compile",
     src("int x;\n", defines={"A": "1\n#include \"/etc/passwd\""}), {400}),
    ("define-value-nul", "POST", "/v1/compile", src("int x;\n", defines={"A": "1\x00"}), {400}),
    # -- bad names -----------------------------------------------------------------
    ("bad-arch", "POST", "/v1/compile", src("int x;\n", arch="sparc"), {400}),
    ("bad-arch-traversal", "POST", "/v1/compile", src("int x;\n", arch="../x86_64"), {400}),
    ("bad-release-traversal", "POST", "/v1/compile", src("int x;\n", kernel="../../etc"), {400}),
    ("bad-release-slash", "POST", "/v1/compile", src("int x;\n", kernel="a/b"), {400}),
    ("bad-release-dotdot", "POST", "/v1/compile", src("int x;\n", kernel=".."), {400}),
    ("bad-release-long", "POST", "/v1/compile", src("int x;\n", kernel="5" * 129), {400}),
    ("unknown-release", "POST", "/v1/compile", src("int x;\n", kernel="1.2.3-nowhere"), {404}),
    ("main-traversal", "POST", "/v1/compile",
     bundle("../x.bpf.c", {"../x.bpf.c": "int x;"}), {400}),
    ("file-absolute", "POST", "/v1/compile",
     bundle("x.bpf.c", {"x.bpf.c": "int x;", "/etc/x.h": ""}), {400}),
    ("file-traversal", "POST", "/v1/compile",
     bundle("x.bpf.c", {"x.bpf.c": "int x;", "a/../../b.h": ""}), {400}),
    ("file-hidden", "POST", "/v1/compile",
     bundle("x.bpf.c", {"x.bpf.c": "int x;", ".h": ""}), {400}),
    ("main-not-c", "POST", "/v1/compile", bundle("x.o", {"x.o": "int x;"}), {400}),
    ("main-missing", "POST", "/v1/compile", bundle("y.bpf.c", {"x.bpf.c": "int x;"}), {400}),
    ("file-and-dir", "POST", "/v1/compile",
     bundle("x.bpf.c", {"x.bpf.c": "int x;", "a": "", "a/b.h": ""}), {400}),
    # -- artifacts and the BTF store -------------------------------------------------
    ("artifact-bad-digest", "GET", "/v1/artifacts/xyz", {}, {400}),
    ("artifact-traversal", "GET", "/v1/artifacts/..%2f..%2fetc%2fpasswd", {}, {400, 404}),
    ("artifact-unknown", "GET", "/v1/artifacts/" + "0" * 64, {}, {404}),
    ("btf-get-dotdot", "GET", "/v1/btf/x86_64/%2e%2e", {}, {400, 404}),
    ("btf-get-traversal", "GET", "/v1/btf/x86_64/..%2f..%2fetc%2fpasswd", {}, {400, 404}),
    ("btf-put-traversal", "PUT", "/v1/btf/x86_64/..%2f..%2fevil",
     raw(BTF_HEADER, OCTETS), {400, 404}),
    ("btf-put-bad-arch", "PUT", "/v1/btf/..%2fx/1.0", raw(BTF_HEADER, OCTETS), {400, 404}),
    ("btf-put-not-btf", "PUT", "/v1/btf/x86_64/9.9.9-junk",
     raw(b"\x7fELF" + b"\0" * 100, OCTETS), {400}),
    ("btf-put-short", "PUT", "/v1/btf/x86_64/9.9.9-short",
     raw(b"\x9f\xeb\x01", OCTETS), {400}),
    ("btf-put-bad-sections", "PUT", "/v1/btf/x86_64/9.9.9-sections",
     raw(struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 1000, 1000, 10), OCTETS), {400}),
    ("btf-put-garbage-types", "PUT", "/v1/btf/x86_64/9.9.9-garbage",
     raw(struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 16, 16, 4) + b"\xff" * 16 + b"\0ab\0",
         OCTETS), {400}),
    ("btf-put-too-large", "PUT", "/v1/btf/x86_64/9.9.9-big",
     raw(BTF_HEADER + b"\0" * (17 << 20), OCTETS), {413}),
    ("btf-put-host-kernel", "PUT", "/v1/btf/{host_arch}/{host_release}",
     raw(TINY_BTF, OCTETS), {409}),
    ("btf-unknown", "GET", "/v1/btf/x86_64/0.0.0-nowhere", {}, {404}),
    # -- device and process files as includes ------------------------------------------
    ("include-dev-urandom", "POST", "/v1/compile", src('#include "/dev/urandom"\n'), {422}),
    ("include-dev-stdin", "POST", "/v1/compile", src('#include "/dev/stdin"\n'), {422}),
    ("include-dev-random-angle", "POST", "/v1/compile", src("#include </dev/random>\n"), {422}),
    ("include-dev-fd-0", "POST", "/v1/compile", src('#include "/dev/fd/0"\n'), {422}),
    ("include-proc-self-fd", "POST", "/v1/compile", src('#include "/proc/self/fd/1"\n'), {422}),
    ("include-proc-self-cwd", "POST", "/v1/compile",
     src('#include "/proc/self/cwd/x.bpf.c"\nint y;\n'), {422}),
    ("has-include-etc-shadow", "POST", "/v1/compile",
     src('#if __has_include("/etc/shadow")\n#error present\n#endif\n#error end\n'), {422}),
    ("has-include-next-dotdot", "POST", "/v1/compile",
     src('#if __has_include_next(<../../../etc/passwd>)\n#error present\n#endif\n'
         '#error end\n'), {422}),
    # -- text that is not UTF-8 in every string field ------------------------------------
    ("surrogate-define-value", "POST", "/v1/compile",
     raw(_body(defines='{"A": "\\ud800"}')), {400}),
    ("surrogate-define-name", "POST", "/v1/compile",
     raw(_body(defines='{"A\\udc00": "1"}')), {400}),
    ("surrogate-main", "POST", "/v1/compile",
     raw(b'{"bundle": {"main": "x\\ud800.bpf.c", "files": {"x\\ud800.bpf.c": "int x;"}}}'),
     {400}),
    ("surrogate-file-name", "POST", "/v1/compile",
     raw(b'{"bundle": {"main": "x.bpf.c", "files": {"x.bpf.c": "int x;", '
         b'"a\\udfff.h": ""}}}'), {400}),
    ("surrogate-kernel", "POST", "/v1/compile", raw(_body(kernel='"6.1\\ud800"')), {400}),
    ("surrogate-arch", "POST", "/v1/compile", raw(_body(arch='"x86_64\\ud800"')), {400}),
    # -- names with newlines --------------------------------------------------------------
    ("newline-define-name", "POST", "/v1/compile",
     src("int x;\n", defines={"A\n#include </etc/passwd>": "1"}), {400}),
    ("newline-file-name", "POST", "/v1/compile",
     bundle("x.bpf.c", {"x.bpf.c": "int x;", "a\n.h": ""}), {400}),
    ("newline-main", "POST", "/v1/compile", bundle("x\n.bpf.c", {"x\n.bpf.c": "int x;"}), {400}),
    ("newline-kernel", "POST", "/v1/compile", src("int x;\n", kernel="6.1\n"), {400}),
    ("carriage-return-define-value", "POST", "/v1/compile",
     src("int x;\n", defines={"A": "1\r#x"}), {400}),
    # -- oversize fields ------------------------------------------------------------------
    ("oversize-define-value", "POST", "/v1/compile",
     src("int x;\n", defines={"A": "1" * 300}), {400}),
    ("oversize-define-name", "POST", "/v1/compile",
     src("int x;\n", defines={"A" * 65: "1"}), {400}),
    ("too-many-defines", "POST", "/v1/compile",
     src("int x;\n", defines={f"D{i}": "1" for i in range(65)}), {400}),
    ("oversize-main-name", "POST", "/v1/compile",
     bundle("a" * 2000 + ".c", {"a" * 2000 + ".c": "int x;"}), {400}),
    ("too-deep-file", "POST", "/v1/compile",
     bundle("x.bpf.c", {"x.bpf.c": "int x;", "/".join(["d"] * 9) + ".h": ""}), {400}),
    ("artifact-upper-case-digest", "GET", "/v1/artifacts/" + "A" * 64, {}, {400}),
]


@pytest.mark.parametrize("method,path,kwargs,statuses",
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_hostile_input_gets_clear_4xx(lcc_service, api, method, path, kwargs, statuses):
    if callable(kwargs):
        kwargs = kwargs(lcc_service)
    if "{host_release}" in path:
        path = path.format(host_arch=os.uname().machine, host_release=os.uname().release)
    r = api.request(method, path, **kwargs)

    assert r.status_code in statuses, r.text[:500]
    body = r.json()
    assert body["error"]
    assert body.get("detail") or body.get("diagnostics"), body
    if r.status_code == 422 and body["error"] == "compile":
        assert any("error" in d["severity"] for d in body["diagnostics"])
    text = r.text
    for line in _secret_lines():
        assert line not in text
    assert lcc_service.token not in text  # the service's environment holds it
    assert str(lcc_service.state_dir / "work") not in text  # no server paths


# -- no answer tells whether a path exists on the server ---------------------------------

SAME_LENGTH_PAIRS = [("/etc/passwd", "/etc/passwq"), ("/etc/shadow", "/etc/shadoq"),
                     ("/dev/zero", "/dev/zerq"), ("/root", "/roox"),
                     ("/proc/self/environ", "/proc/self/environq")]


def _answer(client, text: str, path: str):
    r = client.post("/v1/compile", json=src(text.format(path))["json"])
    return r.status_code, str(r.json()).replace(path, "P")


@pytest.mark.parametrize("existing,missing", SAME_LENGTH_PAIRS)
@pytest.mark.parametrize("text", ['#include "{}"\n', "#include <{}>\n",
                                  'int a;\n#include "{}"\nint b;\n'])
def test_existing_and_missing_forbidden_paths_get_the_same_answer(api, existing, missing, text):
    assert _answer(api, text, existing) == _answer(api, text, missing)


HAS_INCLUDE = '#if __has_include("{}")\n#error present\n#else\n#error absent\n#endif\n'


@pytest.mark.parametrize("existing,missing", SAME_LENGTH_PAIRS)
def test_has_include_does_not_tell_whether_a_path_exists(lcc_service_as_nobody, existing,
                                                         missing):
    with lcc_service_as_nobody.client() as c:
        seen = _answer(c, HAS_INCLUDE, existing)
        assert seen == _answer(c, HAS_INCLUDE, missing)
        assert seen[0] == 422 and "absent" in seen[1]
    assert lcc_service_as_nobody.healthy()
