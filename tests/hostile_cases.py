"""Hostile requests to the compile service, as data, and the checks every
answer must pass; shared by the tiers that send them to a service: the one
the server tests start (tests/server/test_hostile_inputs.py) and the
packaged image (tests/container/test_container_hostile.py).

A *target* is a running service: ``url``, ``token``, ``state_dir`` (the
service's own view of it), ``client(token=...)`` (an httpx client, bearer
token by default) and ``healthy()``.

``CASES``: (id, method, path, request kwargs or a function of the target,
allowed statuses, error code or None).  ``RAW_CASES``: (id, request bytes
with ``{auth}`` for the Authorization line, status, error code or None for
a refusal by the HTTP server itself).  ``CONTAINER_CASES``: the ids of the
quick subset run against the image.

Imported by name (``from hostile_cases import CASES``): ``tests/`` is on
``sys.path`` because ``tests/conftest.py`` lives there.
"""

from __future__ import annotations

import gzip
import os
import socket
import struct

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
_CASES = [
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



ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HHI", 1, 62, 1) + b"\0" * 40
# A valid BTF with one type, `int x` (4 bytes), different from TINY_BTF.
INT_BTF = (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 16, 16, 3)
           + struct.pack("<IIII", 1, 1 << 24, 4, 32) + b"\0x\0")
DEEP = 100_000  # nesting levels, well inside the body cap


def _host_btf_half(target) -> dict:
    """The first half of this host's kernel BTF: a truncated upload."""
    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        data = f.read()
    return raw(data[:len(data) // 2], OCTETS)


def _file(name: str) -> dict:
    """A bundle with one extra file called ``name``."""
    return bundle("x.bpf.c", {"x.bpf.c": "int x;", name: ""})


def _token(value: str | bytes) -> dict:
    return {"headers": {"Authorization": value}}


# (id, method, path, kwargs, statuses, error): each answer exactly one status and code.
NEW_CASES = [
    # -- bodies that are not what they claim ---------------------------------------------
    ("deep-json-define", "POST", "/v1/compile",
     raw(_body(defines='{"A": ' + "[" * DEEP + "]" * DEEP + "}")), {400}, "invalid_request"),
    ("deep-json-body", "POST", "/v1/compile", raw(b"[" * DEEP + b"]" * DEEP), {400},
     "invalid_request"),
    ("gzip-bomb-body", "POST", "/v1/compile",
     lambda t: {"content": gzip.compress(b"{" + b" " * (64 << 20) + b"}"),
                "headers": {"content-type": "application/json", "content-encoding": "gzip"}},
     {400}, "invalid_request"),
    ("multipart-body", "POST", "/v1/compile",
     raw(_body(), "multipart/form-data; boundary=x"), {400}, "invalid_request"),
    ("form-body", "POST", "/v1/compile",
     raw(b"bundle=x", "application/x-www-form-urlencoded"), {400}, "invalid_request"),
    ("no-content-type", "POST", "/v1/compile", {"content": _body()}, {400}, "invalid_request"),
    # -- look-alike text: no normalisation makes it valid --------------------------------
    ("fullwidth-define-name", "POST", "/v1/compile",
     src("int x;\n", defines={"\uff21\uff22": "1"}), {400}, "invalid_request"),
    ("combining-define-name", "POST", "/v1/compile",
     src("int x;\n", defines={"A\u0301": "1"}), {400}, "invalid_request"),
    ("fullwidth-file-name", "POST", "/v1/compile", _file("\uff58.h"), {400}, "invalid_request"),
    ("bidi-override-file-name", "POST", "/v1/compile", _file("\u202eh.x"), {400},
     "invalid_request"),
    ("fullwidth-release", "GET", "/v1/btf/x86_64/%EF%BC%96.1", {}, {400}, "invalid_request"),
    ("fullwidth-arch", "GET", "/v1/btf/%EF%BD%9886_64/6.1", {}, {400}, "invalid_request"),
    # -- bundle paths that climb out -------------------------------------------------------
    ("file-dot-slash-dotdot", "POST", "/v1/compile", _file("./../x.h"), {400}, "invalid_request"),
    ("file-backslash-dotdot", "POST", "/v1/compile", _file("a\\..\\..\\b.h"), {400},
     "invalid_request"),
    ("file-windows-drive", "POST", "/v1/compile", _file("C:\\x.h"), {400}, "invalid_request"),
    ("file-nul", "POST", "/v1/compile", _file("x.h\x00.c"), {400}, "invalid_request"),
    ("file-overlong", "POST", "/v1/compile", _file("a/" * 300 + "b.h"), {400}, "invalid_request"),
    ("file-percent-dotdot", "POST", "/v1/compile", _file("%2e%2e/x.h"), {400}, "invalid_request"),
    ("file-dot", "POST", "/v1/compile", _file("."), {400}, "invalid_request"),
    ("file-double-slash", "POST", "/v1/compile", _file("a//b.h"), {400}, "invalid_request"),
    ("main-dotdot", "POST", "/v1/compile", bundle("..", {"..": "int x;"}), {400},
     "invalid_request"),
    # -- releases, arches and digests with odd characters ------------------------------
    ("release-trailing-space", "GET", "/v1/btf/x86_64/6.1%20", {}, {400}, "invalid_request"),
    ("release-nul", "GET", "/v1/btf/x86_64/6.1%00", {}, {400}, "invalid_request"),
    ("release-semicolon", "POST", "/v1/compile", src("int x;\n", kernel="6.1;id"), {400},
     "invalid_request"),
    ("arch-upper-case", "GET", "/v1/btf/X86_64/6.1", {}, {400}, "invalid_request"),
    ("arch-trailing-space", "POST", "/v1/compile", src("int x;\n", arch="x86_64 "), {400},
     "invalid_request"),
    ("digest-newline", "GET", "/v1/artifacts/" + "0" * 63 + "%0a", {}, {400},
     "invalid_request"),
    # -- BTF uploads -----------------------------------------------------------------------
    ("btf-put-empty", "PUT", "/v1/btf/x86_64/9.9.9-empty", raw(b"", OCTETS), {400},
     "invalid_request"),
    ("btf-put-truncated-vmlinux", "PUT", "/v1/btf/x86_64/9.9.9-half", _host_btf_half, {400},
     "invalid_request"),
    ("btf-put-elf", "PUT", "/v1/btf/x86_64/9.9.9-elf", raw(ELF, OCTETS), {400},
     "invalid_request"),
    ("btf-put-bad-replace-flag", "PUT", "/v1/btf/x86_64/9.9.9-flag?replace=maybe",
     raw(TINY_BTF, OCTETS), {400}, "invalid_request"),
    ("btf-put-json-body", "PUT", "/v1/btf/x86_64/9.9.9-json", raw(b'{"btf": "x"}'), {400},
     "invalid_request"),
    ("compile-wrong-method", "DELETE", "/v1/compile", {}, {405}, "method_not_allowed"),
    # -- tokens: only the exact token, in its one header ----------------------------------
    ("token-truncated", "GET", "/v1/btf", lambda t: _token(f"Bearer {t.token[:-1]}"), {401},
     "unauthorized"),
    ("token-extended", "GET", "/v1/btf", lambda t: _token(f"Bearer {t.token}0"), {401},
     "unauthorized"),
    ("token-upper-case", "GET", "/v1/btf", lambda t: _token(f"Bearer {t.token.upper()}"),
     {401}, "unauthorized"),
    ("token-basic-scheme", "GET", "/v1/btf", lambda t: _token(f"Basic {t.token}"), {401},
     "unauthorized"),
    ("token-non-ascii", "GET", "/v1/btf", _token(b"Bearer \xff\xfe\xfd"), {401},
     "unauthorized"),
    ("token-empty", "GET", "/v1/btf", _token("Bearer"), {401}, "unauthorized"),
]

CASES = [(*c, None) for c in _CASES] + NEW_CASES

# (id, request with {auth}, status, error code or None when the HTTP server refuses it)
_JSON_POST = ('POST /v1/compile HTTP/1.1\r\nHost: t\r\n{auth}'
              'Content-Type: application/json\r\n')
_BODY = '{"bundle": {"main": "x.bpf.c", "files": {"x.bpf.c": "int x;"}}}'
RAW_CASES = [
    ("smuggle-cl-and-te", _JSON_POST + f"Content-Length: {len(_BODY)}\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_request"),
    ("smuggle-two-content-lengths", _JSON_POST + f"Content-Length: 5\r\n"
     f"Content-Length: {len(_BODY)}\r\n\r\n{_BODY}", 400, None),
    ("negative-content-length", _JSON_POST + "Content-Length: -1\r\n\r\n", 400, None),
    ("huge-header", "GET /v1/btf HTTP/1.1\r\nHost: t\r\n{auth}X-Big: " + "a" * (200 << 10)
     + "\r\n\r\n", 400, None),
    ("nul-in-header", "GET /v1/btf HTTP/1.1\r\nHost: t\r\n{auth}X-A: a\x00b\r\n\r\n",
     400, None),
    ("two-tokens-right-first", "GET /v1/btf HTTP/1.1\r\nHost: t\r\n{auth}"
     "Authorization: Bearer wrong\r\n\r\n", 400, "invalid_request"),
    ("two-tokens-wrong-first", "GET /v1/btf HTTP/1.1\r\nHost: t\r\n"
     "Authorization: Bearer wrong\r\n{auth}\r\n", 400, "invalid_request"),
]

#: The quick subset sent to the packaged image too: no compile that runs long, and
#: none that depends on the small caps of the test service (the image has the defaults).
CONTAINER_CASES = {
    "include-etc-passwd", "incbin-etc-passwd", "include-dev-zero", "not-json",
    "lone-surrogate-source", "define-value-newline", "main-traversal", "artifact-traversal",
    "btf-put-traversal", "btf-put-not-btf", "btf-put-elf", "deep-json-define",
    "gzip-bomb-body", "fullwidth-define-name", "file-backslash-dotdot", "file-overlong",
    "release-nul", "btf-put-truncated-vmlinux", "token-truncated", "token-non-ascii",
    "smuggle-cl-and-te", "smuggle-two-content-lengths", "huge-header",
    "two-tokens-right-first",
}


def check_case(target, client, method: str, path: str, kwargs, statuses: set,
               error: str | None) -> None:
    """Send one of ``CASES`` with ``client`` (of ``target``) and check the answer:
    the status (and code), a detail, no secret, no token, no server path."""
    if callable(kwargs):
        kwargs = kwargs(target)
    if "{host_release}" in path:
        path = path.format(host_arch=os.uname().machine, host_release=os.uname().release)
    r = client.request(method, path, **kwargs)

    assert r.status_code in statuses, r.text[:500]
    body = r.json()
    assert body["error"]
    if error is not None:
        assert body["error"] == error, body
    assert body.get("detail") or body.get("diagnostics"), body
    if r.status_code == 422 and body["error"] == "compile":
        assert any("error" in d["severity"] for d in body["diagnostics"])
    _check_leaks(target, r.text)


def _check_leaks(target, text: str) -> None:
    for line in _secret_lines():
        assert line not in text
    assert target.token not in text  # the service's environment holds it
    assert f"{target.state_dir}/work" not in text  # no server paths


def send_raw(target, request: str) -> tuple[int, bytes]:
    """``request`` (``{auth}`` filled in) on a fresh connection; the status and body."""
    host, port = target.url.removeprefix("http://").rsplit(":", 1)
    auth = f"Authorization: Bearer {target.token}\r\n"
    data = request.replace("{auth}", auth).encode("latin-1")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(data)
        reply = b""
        while b"\r\n\r\n" not in reply:
            part = s.recv(65536)
            if not part:
                break
            reply += part
        head, _, body = reply.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        try:
            while length is not None and len(body) < length or length is None:
                part = s.recv(65536)
                if not part:
                    break
                body += part
        except (ConnectionResetError, TimeoutError):
            pass  # the server hung up after answering
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, body


def check_raw(target, request: str, status: int, error: str | None) -> None:
    """Send one of ``RAW_CASES`` and check the status and (for the service's own
    answers) the error code."""
    got, body = send_raw(target, request)
    assert got == status, body[:300]
    if error is not None:
        import json
        assert json.loads(body)["error"] == error, body[:300]
    _check_leaks(target, body.decode("latin-1"))


def store_snapshot(client, digest: str) -> tuple[dict, bytes]:
    """What a hostile request must not take away: the BTF entries (by kernel)
    and the object of a stored artifact."""
    listing = client.get("/v1/btf")
    assert listing.status_code == 200, listing.text[:300]
    btf = {(e["arch"], e["release"]): e["sha256"] for e in listing.json()["btf"]}
    obj = client.get(f"/v1/artifacts/{digest}", headers={"Accept": OCTETS})
    assert obj.status_code == 200, obj.text[:300]
    return btf, obj.content


def assert_nothing_lost(before: tuple[dict, bytes], after: tuple[dict, bytes]) -> None:
    btf_before, obj_before = before
    btf_after, obj_after = after
    lost = {k: v for k, v in btf_before.items() if btf_after.get(k) != v}
    assert not lost, f"BTF entries lost or changed: {lost}"
    assert obj_after == obj_before, "a stored artifact changed"
