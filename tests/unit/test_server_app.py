"""The HTTP application with its toolchain replaced by a fake (no clang needed):
routing, error shapes, auth, caps, single-flight, metrics."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from lcc_server.app import create_app  # noqa: E402
from lcc_server.btf_store import BtfStore  # noqa: E402
from lcc_server.settings import Settings  # noqa: E402
from lcc_toolchain.errors import (BtfUnavailable, CompileFailed, Diagnostic,  # noqa: E402
                                  ToolchainError, ToolMissing)
from lcc_toolchain.toolchain import CompileResult  # noqa: E402
from lcc_toolchain.validation import Caps  # noqa: E402

import faketoolchain  # noqa: E402
from faketoolchain import FAKE_BTF, FakeSandbox  # noqa: E402


class FakeToolchain(faketoolchain.FakeToolchain):
    """Compiles by hashing the source; 'FAIL' in it is a compile error."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.hanging = threading.Event()
        self.killed = False

    def compile(self, bundle, *, arch, defines, btf_path, cancel=None) -> CompileResult:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        text = bundle.files[bundle.main]
        if "HANG" in text:  # a compile that runs until it is cancelled
            self.hanging.set()
            self.killed = cancel.wait(10)
            from lcc_toolchain.sandbox import Cancelled
            raise Cancelled("killed")
        if text in RAISES:
            raise RAISES[text]
        if "FAIL" in text:
            raise CompileFailed("clang could not compile the program",
                                [Diagnostic(bundle.main, 2, 5, "error", "FAIL found")],
                                f"{bundle.main}:2:5: error: FAIL found\n")
        return self.result(text, defines, arch)


@pytest.fixture
def make_app(tmp_path):
    host = tmp_path / "vmlinux"
    host.write_bytes(FAKE_BTF)

    def make(token: str | None = None, delay: float = 0.0, **settings):
        fake = FakeToolchain(delay)
        s = Settings(state_dir=tmp_path / "state", token=token, warm=False, host_btf=host,
                     max_concurrency=2, **settings)
        store = BtfStore(tmp_path / "state" / "btf", host_btf=host, host_arch="x86_64",
                         host_release="6.0-test")
        return create_app(s, toolchain=fake, btf_store=store), fake
    return make


def run(app, requests):
    """Send ``requests`` [(method, path, kwargs)] concurrently; return the responses."""
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(*(c.request(m, p, **kw) for m, p, kw in requests))
    return asyncio.run(main())


def body(text="int x;", **extra):
    return {"json": {"bundle": {"main": "a.bpf.c", "files": {"a.bpf.c": text}},
                     "arch": "x86_64", "kernel": "6.0-test", **extra}}


def test_compile_and_cache(make_app):
    app, fake = make_app()
    first, second = run(app, [("POST", "/v1/compile", body())]) + \
        run(app, [("POST", "/v1/compile", body())])

    assert first.status_code == 200, first.text
    assert first.json()["cached"] is False and second.json()["cached"] is True
    assert fake.calls == 1
    obj = base64.b64decode(first.json()["object"])
    assert first.json()["digest"] == hashlib.sha256(obj).hexdigest()
    assert first.json()["programs"] == [] and first.json()["maps"] == []


def test_concurrent_identical_requests_compile_once(make_app):
    app, fake = make_app(delay=0.2)
    replies = run(app, [("POST", "/v1/compile", body("int y;"))] * 16)

    assert [r.status_code for r in replies] == [200] * 16
    assert fake.calls == 1
    assert sum(not r.json()["cached"] for r in replies) == 1


def test_different_requests_compile_separately(make_app):
    app, fake = make_app()
    replies = run(app, [("POST", "/v1/compile", body(defines={"N": str(i)})) for i in range(4)])

    assert len({r.json()["digest"] for r in replies}) == 4
    assert fake.calls == 4


def test_compile_error_is_422(make_app):
    app, _ = make_app()
    (r,) = run(app, [("POST", "/v1/compile", body("int x;\nFAIL"))])

    assert r.status_code == 422
    assert r.json()["error"] == "compile"
    assert r.json()["diagnostics"] == [{"file": "a.bpf.c", "line": 2, "column": 5,
                                        "severity": "error", "message": "FAIL found"}]


RAISES = {
    "no clang": ToolMissing("clang (clang) was not found on PATH"),
    "bad btf": BtfUnavailable("bpftool could not turn the BTF into vmlinux.h: bad magic",
                              hint="upload the kernel's /sys/kernel/btf/vmlinux unchanged"),
    "no sandbox": ToolchainError("the compiler sandbox could not be set up: EPERM",
                                 hint="disable the sandbox"),
}


@pytest.mark.parametrize("text, status, error", [
    ("no clang", 503, "toolchain_missing"),
    ("bad btf", 422, "btf"),
    ("no sandbox", 503, "unavailable"),
])
def test_toolchain_errors_become_replies(make_app, text, status, error):
    app, _ = make_app()
    (r,) = run(app, [("POST", "/v1/compile", body(text))])

    assert r.status_code == status
    assert r.json() == {"error": error, "detail": str(RAISES[text])}
    assert "(" in r.json()["detail"]  # the hint is part of the detail


def test_tailored_btf(make_app):
    app, _ = make_app()
    (r,) = run(app, [("POST", "/v1/compile", body(btf=True))])
    assert base64.b64decode(r.json()["btf"]) == FAKE_BTF


def test_token(make_app):
    app, _ = make_app(token="s3cret")
    anon, wrong, good, health = run(app, [
        ("POST", "/v1/compile", body()),
        ("POST", "/v1/compile", {**body(), "headers": {"Authorization": "Bearer nope"}}),
        ("POST", "/v1/compile", {**body(), "headers": {"Authorization": "Bearer s3cret"}}),
        ("GET", "/healthz", {}),
    ])
    assert (anon.status_code, wrong.status_code, good.status_code, health.status_code) == \
        (401, 401, 200, 200)
    assert anon.json()["error"] == "unauthorized"


async def _chunks(parts):
    """A streamed body without Content-Length."""
    for part in parts:
        yield part


def test_caps(make_app):
    app, _ = make_app(max_body_bytes=1000, caps=Caps(max_file_bytes=100))
    big_body, big_file, chunked = run(app, [
        ("POST", "/v1/compile", body("int x;//" + "a" * 2000)),
        ("POST", "/v1/compile", body("int x;//" + "a" * 200)),
        ("POST", "/v1/compile", {"content": _chunks([b"{" + b" " * 600, b" " * 600 + b"}"]),
                                 "headers": {"content-type": "application/json"}}),
    ])
    assert big_body.status_code == 413 and big_body.json()["error"] == "too_large"
    assert big_file.status_code == 400 and "100" in big_file.json()["detail"]
    assert chunked.status_code == 413


def test_unknown_kernel_and_artifacts(make_app):
    app, _ = make_app()
    (compiled,) = run(app, [("POST", "/v1/compile", body())])
    digest = compiled.json()["digest"]
    missing, art, raw, bad, absent = run(app, [
        ("POST", "/v1/compile", body(kernel="9.9")),
        ("GET", f"/v1/artifacts/{digest}", {}),
        ("GET", f"/v1/artifacts/{digest}", {"headers": {"Accept": "application/octet-stream"}}),
        ("GET", "/v1/artifacts/ABC", {}),
        ("GET", "/v1/artifacts/" + "f" * 64, {}),
    ])
    assert missing.status_code == 404 and "lcc btf push" in missing.json()["detail"]
    assert art.json()["object"] == compiled.json()["object"]
    assert raw.content == base64.b64decode(compiled.json()["object"])
    assert (bad.status_code, absent.status_code) == (400, 404)


def test_corrupt_artifact_is_never_served(make_app, tmp_path):
    app, _ = make_app()
    (first,) = run(app, [("POST", "/v1/compile", body())])
    digest = first.json()["digest"]
    (tmp_path / "state" / "artifacts" / "objects" / f"{digest}.o").write_bytes(b"garbage")

    (same_process,) = run(app, [("POST", "/v1/compile", body())])
    restarted, fake = make_app()  # a new process has only the disk copy
    (after_restart,) = run(restarted, [("POST", "/v1/compile", body())])

    assert same_process.json()["object"] == first.json()["object"]  # the verified copy
    assert after_restart.json()["cached"] is False and fake.calls == 1
    assert after_restart.json()["digest"] == digest


def test_btf_routes(make_app):
    app, _ = make_app()
    put, again, got, listing, bad = run(app, [
        ("PUT", "/v1/btf/aarch64/5.10-arm", {"content": FAKE_BTF}),
    ]) + run(app, [
        ("PUT", "/v1/btf/aarch64/5.10-arm", {"content": FAKE_BTF}),
        ("GET", "/v1/btf/aarch64/5.10-arm", {}),
        ("GET", "/v1/btf", {}),
        ("PUT", "/v1/btf/aarch64/5.10-bad", {"content": b"not btf"}),
    ])
    assert (put.status_code, again.status_code) == (201, 200)
    assert got.content == FAKE_BTF
    assert [(e["arch"], e["release"], e["source"]) for e in listing.json()["btf"]] == [
        ("x86_64", "6.0-test", "host"), ("aarch64", "5.10-arm", "upload")]
    assert bad.status_code == 400


def test_metrics(make_app):
    app, _ = make_app()
    run(app, [("POST", "/v1/compile", body())])
    run(app, [("POST", "/v1/compile", body())])
    (m,) = run(app, [("GET", "/metrics", {})])

    text = m.text
    assert 'lcc_requests_total{endpoint="/v1/compile",status="200"} 2.0' in text
    assert 'lcc_cache_hits_total{kind="artifact",tier="memory"} 1.0' in text
    assert 'lcc_compiles_total{pch="no",result="ok"} 1.0' in text
    assert "lcc_compile_seconds_count 1.0" in text
    assert "lcc_compile_queue_depth 0.0" in text


def test_two_apps_do_not_share_state(make_app):
    (a, _), (b, _) = make_app(), make_app()
    run(a, [("POST", "/v1/compile", body())])
    (m,) = run(b, [("GET", "/metrics", {})])
    assert 'lcc_requests_total{endpoint="/v1/compile"' not in m.text


# -- no sandbox, no compiling ---------------------------------------------------


def _no_landlock_app(tmp_path, **settings):
    """The real toolchain, on a kernel that (the probe says) has no Landlock."""
    from lcc_toolchain.sandbox import Sandbox
    host = tmp_path / "vmlinux"
    host.write_bytes(FAKE_BTF)
    s = Settings(state_dir=tmp_path / "state", warm=False, host_btf=host, **settings)
    store = BtfStore(tmp_path / "state" / "btf", host_btf=host, host_arch="x86_64",
                     host_release="6.0-test")
    return create_app(s, btf_store=store, sandbox=Sandbox(probe=lambda: 0))


def test_without_landlock_the_service_refuses_to_compile(tmp_path, caplog):
    with caplog.at_level("ERROR", logger="lcc_server"):
        app = _no_landlock_app(tmp_path)
    health, comp, put = run(app, [
        ("GET", "/healthz", {}),
        ("POST", "/v1/compile", body()),
        ("PUT", "/v1/btf/aarch64/5.10-arm", {"content": FAKE_BTF}),
    ])

    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert "Landlock" in health.json()["reason"]
    assert (comp.status_code, comp.json()["error"]) == (503, "sandbox_unavailable")
    assert "LCC_INSECURE_NO_SANDBOX=1" in comp.json()["detail"]
    assert (put.status_code, put.json()["error"]) == (503, "sandbox_unavailable")
    assert any("refuses to compile" in r.getMessage() for r in caplog.records)


def test_insecure_opt_out_compiles_and_says_so(make_app, monkeypatch):
    monkeypatch.setattr(FakeSandbox, "unconfined", "Landlock is not available")
    refused, _ = make_app()
    allowed, _ = make_app(insecure_no_sandbox=True)
    (r1, h1) = run(refused, [("POST", "/v1/compile", body()), ("GET", "/healthz", {})])
    (r2, h2) = run(allowed, [("POST", "/v1/compile", body()), ("GET", "/healthz", {})])

    assert (r1.status_code, h1.status_code) == (503, 503)
    assert (r2.status_code, h2.status_code) == (200, 200)
    assert h2.json()["insecure"] == "Landlock is not available"


def test_insecure_no_sandbox_setting():
    assert Settings.from_env({"LCC_INSECURE_NO_SANDBOX": "1"}).insecure_no_sandbox
    assert not Settings.from_env({}).insecure_no_sandbox
    assert Settings.from_env(Settings(insecure_no_sandbox=True).to_env()).insecure_no_sandbox


# -- a client that goes away ---------------------------------------------------


def test_disconnected_client_stops_its_compile_and_frees_the_slot(make_app):
    app, fake = make_app(max_queue=1)
    service = app.state.service
    payload = (b'{"bundle": {"main": "a.bpf.c", "files": {"a.bpf.c": "HANG"}}, '
               b'"arch": "x86_64", "kernel": "6.0-test"}')
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/compile", "raw_path": b"/v1/compile",
             "query_string": b"", "root_path": "", "server": ("t", 80), "client": ("c", 1),
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(payload)).encode())]}
    sent = []

    async def main():
        gone = asyncio.Event()
        first = [True]

        async def receive():
            if first[0]:
                first[0] = False
                return {"type": "http.request", "body": payload, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        request = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.get_running_loop().run_in_executor(None, fake.hanging.wait, 5)
        gone.set()  # the client hangs up while clang runs
        await asyncio.wait_for(request, 5)
        for _ in range(100):  # the slot is given back once clang is dead
            if service._slots._value == 2:
                break
            await asyncio.sleep(0.02)
        free = service._slots._value
        # the slot is free: the next compile runs at once
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return free, await c.post("/v1/compile", **body())

    started = time.monotonic()
    free, after = asyncio.run(main())

    assert fake.killed and time.monotonic() - started < 5
    assert sent[0]["status"] == 499 and free == 2
    assert after.status_code == 200
    assert service._waiting == 0 and len(service._flight) == 0


# -- named tokens and who owns a BTF upload ---------------------------------------

ALICE, BOB, ROOT = "a" * 32, "b" * 32, "r" * 32
OTHER_BTF = FAKE_BTF[:-1] + b"\0\0"  # different bytes, still BTF


def test_token_file_names_callers_and_guards_btf_uploads(make_app, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# name token [admin]\nalice {ALICE}\nbob {BOB}\nops {ROOT} admin\n")
    app, _ = make_app(token_file=tokens)

    def as_(token, method, path, **kw):
        return (method, path, {**kw, "headers": {"Authorization": f"Bearer {token}"}})

    (anon, put, bob_replace, alice_replace, admin_replace, compiled) = [
        run(app, [r])[0] for r in [
            ("GET", "/v1/btf", {}),
            as_(ALICE, "PUT", "/v1/btf/aarch64/5.10-arm", content=FAKE_BTF),
            as_(BOB, "PUT", "/v1/btf/aarch64/5.10-arm?replace=true", content=OTHER_BTF),
            as_(ALICE, "PUT", "/v1/btf/aarch64/5.10-arm?replace=true", content=OTHER_BTF),
            as_(ROOT, "PUT", "/v1/btf/aarch64/5.10-arm?replace=true", content=FAKE_BTF),
            as_(BOB, "POST", "/v1/compile", **body()),
        ]]

    assert anon.status_code == 401
    assert put.status_code == 201
    assert (bob_replace.status_code, bob_replace.json()["error"]) == (403, "forbidden")
    assert "alice" in bob_replace.json()["detail"]
    assert alice_replace.status_code == 201 and admin_replace.status_code == 201
    assert compiled.status_code == 200
    assert app.state.service.btf_store.owner("aarch64", "5.10-arm") == "ops"


@pytest.mark.parametrize("text,error", [
    ("alice\n", "expected"),
    (f"alice {ALICE} root\n", "expected"),
    ("alice short\n", "shorter than 16"),
    (f"al/ice {ALICE}\n", "name must match"),
    (f"alice {ALICE}\nalice {BOB}\n", "already listed"),
    (f"alice {ALICE}\nbob {ALICE}\n", "already listed"),
])
def test_malformed_token_file_is_refused(tmp_path, text, error):
    from lcc_server.tokens import TokenTable
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        TokenTable.load(token_file=path)


def test_token_file_setting():
    s = Settings.from_env({"LCC_TOKEN_FILE": "/etc/lcc/tokens"})
    assert s.token_file == Path("/etc/lcc/tokens")
    assert Settings.from_env(s.to_env()).token_file == Path("/etc/lcc/tokens")


# -- the API contract ---------------------------------------------------------------


def test_openapi_states_constraints_and_the_bearer_token(make_app):
    app, _ = make_app(token="s3cret")
    anon_docs, anon_redoc, anon_doc, doc = run(app, [
        ("GET", "/docs", {}), ("GET", "/redoc", {}), ("GET", "/openapi.json", {}),
        ("GET", "/openapi.json", {"headers": {"Authorization": "Bearer s3cret"}})])
    assert (anon_docs.status_code, anon_redoc.status_code, anon_doc.status_code) == (401,) * 3

    spec = doc.json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"][
            "securitySchemes"]["bearer"]["description"]}
    assert spec["security"] == [{"bearer": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    schemas = spec["components"]["schemas"]
    req, bundle_ = schemas["CompileRequest"]["properties"], schemas["BundleModel"]["properties"]
    assert req["defines"]["propertyNames"]["pattern"] == r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
    assert req["defines"]["maxProperties"] == 64
    assert "pattern" in str(req["kernel"]) and "x86_64" in str(req["arch"])
    assert bundle_["files"]["maxProperties"] == 64
    assert bundle_["main"]["pattern"].startswith("^(?:[A-Za-z0-9_]")
    params = {p["name"]: p["schema"] for p in
              spec["paths"]["/v1/btf/{arch}/{release}"]["get"]["parameters"]}
    assert "aarch64" in params["arch"]["enum"] and params["release"]["maxLength"] == 128


def test_path_pattern_is_what_check_path_accepts():
    import re

    from lcc_toolchain import validation
    for good in ["a.bpf.c", "inc/x.h", "/".join(["d"] * 8)]:
        assert re.fullmatch(validation.PATH_RE, good)
        validation.check_path(good)
    for bad in ["../x.h", ".h", "/x.h", "a//b", "/".join(["d"] * 9), "a/./b"]:
        assert not re.fullmatch(validation.PATH_RE, bad)
        with pytest.raises(ValueError):
            validation.check_path(bad)


def test_warning_when_exposed_without_a_token():
    from lcc_server.server import exposure_warning
    assert exposure_warning("0.0.0.0", Settings()) is not None
    assert exposure_warning("192.0.2.1", Settings()) is not None
    assert exposure_warning("::", Settings()) is not None
    assert exposure_warning("127.0.0.1", Settings()) is None
    assert exposure_warning("::1", Settings()) is None
    assert exposure_warning("localhost", Settings()) is None
    assert exposure_warning("0.0.0.0", Settings(token="t" * 20)) is None
    assert exposure_warning("0.0.0.0", Settings(token_file=Path("/x"))) is None


def test_openapi_documents_what_the_guard_answers(make_app):
    # Found by the schema fuzz: /metrics and /v1/btf answered an undocumented 401.
    app, _ = make_app(token="s3cret")
    metrics, listing = run(app, [("GET", "/metrics", {}), ("GET", "/v1/btf", {})])
    assert (metrics.status_code, listing.status_code) == (401, 401)
    assert metrics.json()["error"] == "unauthorized"

    paths = app.openapi()["paths"]
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, ops in paths.items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if path in ("/healthz", "/v1/keys"):
                assert "401" not in codes, (method, path)
            else:
                assert "401" in codes, (method, path)
                assert op["responses"]["401"]["content"]["application/json"]["schema"] == ref
            if method in ("post", "put"):
                assert {"400", "413"} <= codes, (method, path)


def test_docs_pages_load_their_assets_from_the_service(make_app):
    import re

    app, _ = make_app(token="s3cret")
    auth = {"headers": {"Authorization": "Bearer s3cret"}}
    docs, redoc = run(app, [("GET", "/docs", auth), ("GET", "/redoc", auth)])
    assert (docs.status_code, redoc.status_code) == (200, 200)
    refs = {}
    for page in (docs, redoc):
        assert page.headers["content-type"].startswith("text/html")
        found = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert found, page.text
        # Every script, style and icon is a path of this service: no host at all.
        assert all(u.startswith("/docs-assets/") for u in found), found
        refs.update({u: None for u in found})
    assert "http://" not in docs.text and "https://" not in docs.text
    assert "http://" not in redoc.text and "https://" not in redoc.text
    assert "fonts.googleapis" not in redoc.text

    wanted = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",),
              ".png": ("image/png",)}
    paths = sorted(refs)
    assert {p.rsplit(".", 1)[1] for p in paths} == {"js", "css", "png"}
    served = run(app, [("GET", p, auth) for p in paths])
    anon = run(app, [("GET", p, {}) for p in paths])
    for path, r, a in zip(paths, served, anon):
        assert r.status_code == 200, path
        assert r.headers["content-type"].split(";")[0] in wanted["." + path.rsplit(".", 1)[1]]
        assert len(r.content) > 100, path
        assert a.status_code == 401 and a.json()["error"] == "unauthorized", path
    (outside,) = run(app, [("GET", "/docs-assets/%2e%2e/core.py", auth)])
    assert outside.status_code == 404  # nothing but the assets directory


def test_object_replies_are_streamed_with_an_exact_length(make_app):
    app, _ = make_app()
    (r,) = run(app, [("POST", "/v1/compile", body("int big[1];" + "x" * 200_000))])
    assert r.status_code == 200, r.text[:300]
    assert int(r.headers["content-length"]) == len(r.content)
    obj = base64.b64decode(r.json()["object"], validate=True)
    digest = r.json()["digest"]
    assert hashlib.sha256(obj).hexdigest() == digest and len(obj) > 200_000

    as_json, raw = run(app, [
        ("GET", f"/v1/artifacts/{digest}", {}),
        ("GET", f"/v1/artifacts/{digest}", {"headers": {"Accept": "application/octet-stream"}})])
    assert base64.b64decode(as_json.json()["object"]) == obj
    assert int(as_json.headers["content-length"]) == len(as_json.content)
    assert raw.content == obj and raw.headers["x-lcc-digest"] == digest
    assert int(raw.headers["content-length"]) == len(obj)


def test_object_larger_than_the_cap_is_refused(make_app, tmp_path):
    app, fake = make_app(max_object_bytes=4096)
    small, large = run(app, [("POST", "/v1/compile", body("int x;")),
                             ("POST", "/v1/compile", body("int x;" + "y" * 5000))])
    assert small.status_code == 200
    assert large.status_code == 422
    assert large.json()["error"] == "object_too_large"
    assert "4096 bytes" in large.json()["detail"] and "LCC_MAX_OBJECT_MB" in large.json()["detail"]
    assert fake.calls == 2
    # Nothing of the refused object was stored: only the small one is on disk.
    stored = list((tmp_path / "state" / "artifacts" / "objects").glob("*.o"))
    assert [p.stem for p in stored] == [small.json()["digest"]]


def test_object_cap_setting():
    assert Settings.from_env({"LCC_MAX_OBJECT_MB": "3"}).max_object_bytes == 3 << 20
    assert Settings.from_env({}).max_object_bytes == 32 << 20
    assert Settings.from_env(Settings(max_object_bytes=5 << 20).to_env()).max_object_bytes \
        == 5 << 20
    with pytest.raises(ValueError, match="LCC_MAX_OBJECT_MB"):
        Settings.from_env({"LCC_MAX_OBJECT_MB": "0"})


def test_a_file_changed_after_its_check_is_not_sent_whole(tmp_path):
    from lcc_server.replies import CHUNK, ObjectSource
    data = bytes(range(256)) * (CHUNK // 128)
    path = tmp_path / "obj"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert b"".join(ObjectSource(digest, data, path).chunks()) == data
    path.write_bytes(data[:-1] + b"\0")  # same size, other content
    assert len(b"".join(ObjectSource(digest, data, path).chunks())) < len(data)
    path.unlink()  # evicted: the bytes in hand are served
    assert b"".join(ObjectSource(digest, data, path).chunks()) == data


def test_racing_first_uploads_of_one_kernel_do_not_both_win(make_app):
    # Found by the hostile suite: both were told 201 and the second overwrote the first.
    app, _ = make_app()
    other = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 2) + b"\0\0"
    for round_ in range(5):
        path = f"/v1/btf/x86_64/9.9-race{round_}"
        a, b = run(app, [("PUT", path, {"content": FAKE_BTF}), ("PUT", path, {"content": other})])
        assert sorted((a.status_code, b.status_code)) == [201, 409], (a.text, b.text)
        winner = FAKE_BTF if a.status_code == 201 else other
        (got,) = run(app, [("GET", path, {})])
        assert got.content == winner


def test_ambiguous_credentials_and_framing_are_refused(make_app):
    # Found by the hostile suite: with two Authorization headers the first decided.
    app, _ = make_app(token="s3cret")
    good, wrong = ("Authorization", "Bearer s3cret"), ("Authorization", "Bearer nope")
    right_first, wrong_first, both_framings = run(app, [
        ("GET", "/v1/btf", {"headers": [good, wrong]}),
        ("GET", "/v1/btf", {"headers": [wrong, good]}),
        ("POST", "/v1/compile", {**body(), "headers": [
            good, ("Transfer-Encoding", "chunked")]})])
    for r in (right_first, wrong_first):
        assert r.status_code == 400
        assert r.json() == {"error": "invalid_request",
                            "detail": "more than one Authorization header; send exactly one"}
    assert both_framings.status_code == 400
    assert "Transfer-Encoding" in both_framings.json()["detail"]


def test_an_object_source_never_iterated_closes_its_file(tmp_path):
    import gc
    import os

    from lcc_server.replies import ObjectSource
    path = tmp_path / "obj"
    path.write_bytes(b"x" * 1000)
    fds = len(os.listdir("/proc/self/fd"))
    sources = [ObjectSource("0" * 64, b"x" * 1000, path) for _ in range(20)]
    assert len(os.listdir("/proc/self/fd")) >= fds + 20  # each holds its file open
    del sources
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= fds
