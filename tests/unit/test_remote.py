"""The compile service's HTTP client: requests it sends and how answers become errors.

Error mapping uses canned responses through a fake transport adapter, signed
with a key of the test's own that the client trusts; unreachable and silent
services are real sockets on 127.0.0.1.  (A hostile service, over real HTTP:
test_remote_hostile.py.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket

import pytest
import requests
from requests.adapters import BaseAdapter

from lcc.compile.bundle import Bundle
from lcc.compile.service import ServiceClient, normalize_url
from lcc.compile.trust import TrustedKey, TrustPolicy
from lcc.errors import (BtfError, CompileError, CompileServiceError, Diagnostic, LccError,
                        UntrustedArtifact)
from lcc_server.signing import KeyRing

URL = "http://compile.test:7655"
BUNDLE = Bundle("t.bpf.c", {"t.bpf.c": "int x;", "t.h": "#define N 1\n"})
OBJ = b"\x7fELF-object"
RING = KeyRing.generate()  # the canned service's signing key, trusted by client()


class Canned(BaseAdapter):
    """A transport that records requests and answers with one canned response."""

    def __init__(self, status: int, body: object = None, *, text: str | None = None,
                 headers: dict | None = None) -> None:
        super().__init__()
        self.status, self.body, self.text, self.headers = status, body, text, headers or {}
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.requests.append(request)
        r = requests.Response()
        r.status_code = self.status
        r.reason = {200: "OK", 401: "Unauthorized", 500: "Internal Server Error"}.get(
            self.status, "")
        if self.text is not None:
            r._content = self.text.encode()
            r.headers["Content-Type"] = "text/html"
        else:
            r._content = json.dumps(self.body).encode()
            r.headers["Content-Type"] = "application/json"
        r.headers.update(self.headers)
        r.url, r.request = request.url, request
        return r

    def close(self):
        pass


class Sequence_(Canned):
    """A transport answering with [(status, body, headers)] in turn."""

    def __init__(self, answers: list) -> None:
        super().__init__(200)
        self.answers = list(answers)

    def send(self, request, **kwargs):
        self.status, self.body, self.headers = self.answers.pop(0)
        return super().send(request, **kwargs)


def client(adapter: Canned, token: str | None = "", **kw) -> ServiceClient:
    s = requests.Session()
    s.mount("http://", adapter)
    return ServiceClient(URL, token=token, session=s,
                         trust=TrustPolicy([TrustedKey(RING.current.raw)]), **kw)


def ok_body(obj: bytes = OBJ, *, defines: dict | None = None, btf: bytes | None = None,
            warnings: list | None = None, **over) -> dict:
    """A 200 of POST /v1/compile for compile_(), signed by RING as the service does."""
    from lcc_server.artifacts import Artifact
    from lcc_server.signing import manifest

    art = Artifact(digest=hashlib.sha256(obj).hexdigest(), object=obj,
                   toolchain={"clang": "14"},
                   warnings=[Diagnostic.from_dict(w) for w in warnings or []])
    request = {"bundle": BUNDLE.digest(), "defines": dict(defines or {}), "arch": "x86_64",
               "kernel": "6.18.0", "kernel_btf": "sha256:" + "b" * 64}
    sealed = RING.seal(manifest(art, request=request, btf=btf))
    return {"digest": art.digest, "object": base64.b64encode(obj).decode(),
            "toolchain": art.toolchain, "warnings": warnings or [], "programs": [], "maps": [],
            "btf": base64.b64encode(btf).decode() if btf is not None else None,
            "cached": False, "manifest": sealed.statement, "signature": sealed.signature,
            "key_id": sealed.key_id, **over}


def compile_(c: ServiceClient, **kw):
    return c.compile(BUNDLE, kernel="6.18.0", arch="x86_64", **kw)


# -- requests ---------------------------------------------------------------------------

def test_compile_request_and_answer():
    warn = {"file": "t.bpf.c", "line": 3, "column": 1, "severity": "warning", "message": "w"}
    fake = Canned(200, ok_body(warnings=[warn], cached=True, btf=b"B",
                               defines={"N": "2", "X": None}))

    art = compile_(client(fake, token="tok"), defines={"N": "2", "X": None}, btf=True)

    req = fake.requests[0]
    assert (req.method, req.url) == ("POST", f"{URL}/v1/compile")
    assert req.headers["Authorization"] == "Bearer tok"
    assert json.loads(req.body) == {"bundle": BUNDLE.to_dict(), "kernel": "6.18.0",
                                    "arch": "x86_64", "defines": {"N": "2", "X": None},
                                    "btf": True}
    assert (art.object, art.btf, art.cached, art.origin) == (OBJ, b"B", True, URL)
    assert art.warnings == [Diagnostic.from_dict(warn)]


def test_token_comes_from_lcc_token(monkeypatch):
    monkeypatch.setenv("LCC_TOKEN", "from-env")
    fake = Canned(200, ok_body())
    compile_(client(fake, token=None))
    assert fake.requests[0].headers["Authorization"] == "Bearer from-env"

    fake = Canned(200, ok_body())
    compile_(client(fake, token=""))  # explicitly none
    assert "Authorization" not in fake.requests[0].headers


def test_btf_requests():
    fake = Canned(201, {"arch": "x86_64", "release": "6.1 x", "sha256": "ab"})
    entry, created = client(fake).btf_put("x86_64", "6.1 x", b"BTF", replace=True)

    req = fake.requests[0]
    assert (req.method, req.url) == ("PUT", f"{URL}/v1/btf/x86_64/6.1%20x?replace=true")
    assert req.body == b"BTF" and req.headers["Content-Type"] == "application/octet-stream"
    assert created and entry["sha256"] == "ab"


# -- error mapping -----------------------------------------------------------------------

def test_compile_error_carries_diagnostics_and_log():
    diags = [{"file": "t.h", "line": 2, "column": 5, "severity": "error", "message": "boom"},
             {"file": "t.bpf.c", "line": 1, "column": 1, "severity": "note", "message": "here"}]
    fake = Canned(422, {"error": "compile", "detail": "clang could not compile the program",
                        "diagnostics": diags, "log": "t.h:2:5: error: boom\n"})

    with pytest.raises(CompileError) as exc:
        compile_(client(fake))

    e = exc.value
    assert e.diagnostics == [Diagnostic.from_dict(d) for d in diags]
    assert e.log == "t.h:2:5: error: boom\n"
    assert "t.h:2:5: error: boom" in str(e)


def test_401_without_token_hints_at_lcc_token():
    fake = Canned(401, {"error": "unauthorized", "detail": "missing bearer token"})

    with pytest.raises(CompileServiceError) as exc:
        compile_(client(fake, token=""))

    assert exc.value.status == 401
    assert "LCC_TOKEN" in str(exc.value) and URL in str(exc.value)


def test_401_with_wrong_token_says_it_does_not_match():
    with pytest.raises(CompileServiceError, match="does not match") as exc:
        compile_(client(Canned(401, {"error": "unauthorized", "detail": "wrong token"}),
                        token="bad"))
    assert exc.value.status == 401


@pytest.mark.parametrize("status,body,cls,match", [
    (404, {"error": "btf_missing", "detail": "no BTF for kernel 6.18.0 (x86_64); lcc btf push"},
     CompileServiceError, "no BTF for kernel 6.18.0.*lcc btf push"),
    (422, {"error": "btf", "detail": "bpftool could not tailor BTF"}, BtfError, "tailor BTF"),
    (400, {"error": "invalid_request", "detail": "defines.1X: bad name"}, CompileServiceError,
     "HTTP 400: defines.1X: bad name"),
    (413, {"error": "too_large", "detail": "body over 1 MiB"}, CompileServiceError,
     "HTTP 413: body over 1 MiB"),
    (503, {"error": "busy", "detail": "9 compiles are waiting"}, CompileServiceError,
     "unavailable: 9 compiles are waiting"),
])
def test_service_errors(status, body, cls, match):
    with pytest.raises(cls, match=match) as exc:
        compile_(client(Canned(status, body), busy_retries=0))  # 503 retries: see below
    if isinstance(exc.value, CompileServiceError):
        assert exc.value.status == status
        assert exc.value.detail == body["detail"]


def test_non_json_error_page_becomes_one_line():
    fake = Canned(502, text="<html>\n<h1>502 Bad Gateway</h1>\n</html>")

    with pytest.raises(CompileServiceError) as exc:
        compile_(client(fake))

    assert exc.value.status == 502
    assert "\n" not in str(exc.value) and "<html>" in str(exc.value)


@pytest.mark.parametrize("body,match", [
    (ok_body(object=base64.b64encode(b"other").decode()), "not the one its signed manifest"),
    ({k: v for k, v in ok_body().items() if k != "object"}, "malformed"),
    (ok_body(object="%%%not base64"), "malformed"),
    (["not", "an", "object"], "malformed"),
    ({k: v for k, v in ok_body().items() if k != "manifest"}, "without a signed manifest"),
    (ok_body(signature=ok_body(b"other")["signature"]), "does not verify"),
    (ok_body(key_id="SHA256:" + "A" * 43), "not a trusted key"),
    (ok_body(defines={"N": "3"}), "signed for another request .defines"),
])
def test_bad_success_answers_are_rejected(body, match):
    with pytest.raises(CompileServiceError, match=match):
        compile_(client(Canned(200, body)))


def test_what_is_reported_comes_from_the_signed_manifest():
    warn = {"file": "t.bpf.c", "line": 3, "column": 1, "severity": "warning", "message": "w"}
    body = ok_body(warnings=[warn], toolchain={"clang": "forged"})
    body["warnings"] = []  # the reply's unsigned fields count for nothing

    art = compile_(client(Canned(200, body)))

    assert art.warnings == [Diagnostic.from_dict(warn)]
    assert art.toolchain == {"clang": "14"}
    assert (art.key_id, art.signature) == (RING.key_id, body["signature"])
    assert art.manifest == body["manifest"]


def test_without_trusted_keys_the_answer_is_refused_with_a_way_out(tmp_path):
    s = requests.Session()
    s.mount("http://", Canned(200, ok_body()))
    c = ServiceClient(URL, token="", session=s,
                      trust=TrustPolicy(store=None, key_file=None))

    with pytest.raises(UntrustedArtifact) as exc:
        compile_(c)

    assert exc.value.key_id == RING.key_id
    assert "no compile service key is trusted here" in str(exc.value)
    assert f"lcc trust add {URL}" in str(exc.value) and "LCC_TRUSTED_KEYS" in str(exc.value)


def test_missing_btf_when_asked_is_an_error():
    with pytest.raises(CompileServiceError, match="no BTF"):
        compile_(client(Canned(200, ok_body(btf=None))), btf=True)


def test_503_is_asked_again_after_retry_after():
    answers = [(503, {"error": "busy", "detail": "2 waiting"}, {"Retry-After": "0"})] * 2 \
        + [(200, ok_body(), {})]
    fake = Sequence_(answers)

    art = compile_(client(fake))

    assert art.object == OBJ and len(fake.requests) == 3


def test_503_retries_are_bounded():
    fake = Sequence_([(503, {"error": "busy", "detail": "full"}, {"Retry-After": "0"})] * 9)

    with pytest.raises(CompileServiceError, match=r"unavailable: full \(asked 3 times\)") as e:
        compile_(client(fake, busy_retries=2))

    assert e.value.status == 503 and len(fake.requests) == 3


def test_503_asking_for_a_long_wait_is_not_waited_for():
    fake = Sequence_([(503, {"error": "busy", "detail": "full"}, {"Retry-After": "3600"})] * 3)

    with pytest.raises(CompileServiceError, match="asks to retry after 3600 s"):
        compile_(client(fake))

    assert len(fake.requests) == 1


def test_a_reply_larger_than_the_cap_is_refused():
    with pytest.raises(CompileServiceError, match="larger than 100 bytes"):
        compile_(client(Canned(200, ok_body()), max_reply=100))


def test_text_from_the_service_cannot_drive_the_terminal():
    nasty = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"
    diags = [{"file": "t\x1b[1m.h", "line": 1, "column": 1, "severity": "error",
              "message": "boom" + nasty}]
    refusals = [Canned(400, {"error": "invalid_request", "detail": "bad" + nasty}),
                Canned(422, {"error": "compile", "detail": "no", "diagnostics": diags,
                             "log": "log" + nasty})]
    warned = Canned(200, ok_body(warnings=[{**diags[0], "severity": "warning"}]))

    errors = []
    for fake in refusals:
        with pytest.raises(LccError) as exc:
            compile_(client(fake))
        errors.append(exc.value)
    art = compile_(client(warned))

    texts = [str(e) for e in errors] + [errors[1].log, str(errors[1].diagnostics[0]),
                                        str(art.warnings[0])]
    for text in texts:
        assert not any(c in text for c in "\x1b\x07\x9b\u202e"), repr(text)
        assert "\\x1b" in text
    assert art.warnings[0].file == "t\\x1b[1m.h"


def test_artifact_by_digest_is_verified():
    c = client(Canned(200, text="tampered"))
    with pytest.raises(CompileServiceError, match="do not match"):
        c.artifact(hashlib.sha256(OBJ).hexdigest())


# -- real sockets -------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_service_names_the_url():
    url = f"http://127.0.0.1:{closed_port()}"

    with pytest.raises(CompileServiceError) as exc:
        ServiceClient(url, retries=1).compile(BUNDLE, kernel="6.18.0", arch="x86_64")

    assert url in str(exc.value)
    assert "unreachable" in str(exc.value) and "refused" in str(exc.value).lower()
    assert exc.value.status is None


def test_connection_errors_are_retried_and_answers_are_not():
    c = ServiceClient("http://127.0.0.1:7655", retries=3)
    retry = c._http.get_adapter("http://127.0.0.1:7655").max_retries

    assert (retry.connect, retry.read, retry.status) == (3, 0, 0)
    assert retry.allowed_methods is None  # connection errors of POST are retried too


def test_silent_service_times_out():
    with socket.socket() as srv:  # listens, never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        c = ServiceClient(f"http://127.0.0.1:{srv.getsockname()[1]}", timeout=(2, 0.2))
        with pytest.raises(CompileServiceError, match=r"did not answer in time \(0.2 s") as e:
            c.health()
    assert "LCC_TIMEOUT" in str(e.value)


# -- URLs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,norm", [
    ("http://127.0.0.1:7655/", "http://127.0.0.1:7655"),
    ("HTTP://Compile.Example:80/lcc/", "http://compile.example:80/lcc"),
    ("127.0.0.1:7655", "http://127.0.0.1:7655"),
    ("https://user:pw@host", "https://host"),
    ("http://[::1]:7655", "http://[::1]:7655"),
])
def test_normalize_url(raw, norm):
    assert normalize_url(raw) == norm


@pytest.mark.parametrize("raw", ["", "ftp://x", "http://", "http://h:notaport"])
def test_bad_urls(raw):
    with pytest.raises(LccError):
        normalize_url(raw)


def test_loopback_ignores_environment_proxies():
    assert ServiceClient("http://127.0.0.1:1")._http.trust_env is False
    assert ServiceClient("http://localhost:1")._http.trust_env is False
    assert ServiceClient("http://compile.example:1")._http.trust_env is True
