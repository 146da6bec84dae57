"""The compile service's HTTP API (FastAPI).

``create_app(settings=None, *, toolchain=None, btf_store=None, artifacts=None,
keys=None)`` builds an application; every dependency not given is made from
``settings`` (by default ``Settings.from_env()``); ``keys`` is the
``lcc_server.signing.KeyRing`` replies are signed with (default: the keys of
the state directory, or ``LCC_SIGNING_KEY``).  Nothing happens at import
time, so ``uvicorn lcc_server.app:create_app --factory`` works.

Routes (OpenAPI at ``/docs`` and ``/redoc``, whose assets the service serves itself,
``lcc_server.docs``; models in ``lcc_server.models``)::

    POST /v1/compile                  200 CompileResponse | 422 compile error | 4xx ErrorBody
    GET  /v1/artifacts/{digest}       JSON like /v1/compile, or the raw object with
                                      ``Accept: application/octet-stream``
    PUT  /v1/btf/{arch}/{release}     raw BTF body; 201 created | 200 already there
    GET  /v1/btf/{arch}/{release}     raw BTF
    GET  /v1/btf                      {"btf": [entries]}
    GET  /v1/keys                     {"keys": [public signing keys]}, open like /healthz
    GET  /healthz   GET /metrics

``/v1/compile`` and ``/v1/artifacts`` stream the object (``lcc_server.replies``):
a slow reader holds a chunk of server memory, not an object.  An object larger
than ``LCC_MAX_OBJECT_MB`` (``Settings.max_object_bytes``) is never handed out:
422 ``object_too_large``.

Every reply that carries an object carries its signed manifest too
(``manifest``: the canonical JSON text, ``signature``, ``key_id``; see
``lcc_server.signing.manifest``), and clients load only what a key they
trust signed.

Status codes: 400 invalid request, 401 no/wrong token, 403 another
caller's BTF upload (only its uploader or an admin token replaces it), 404 unknown
kernel/artifact, 409 BTF conflict, 413 too large, 422 compiler error,
503 busy, no toolchain or no sandbox (``sandbox_unavailable``: Landlock is
missing and ``LCC_INSECURE_NO_SANDBOX`` is not set; ``/healthz`` is then 503
too).  A compiler failure is never a 500.  The
toolchain's errors (``lcc_toolchain.errors``) answer: ``InvalidRequest`` 400,
``CompileFailed`` 422 ``compile`` (with diagnostics and log),
``BtfUnavailable`` 422 ``btf``, ``ToolMissing`` 503 ``toolchain_missing``,
any other ``ToolchainError`` 503 ``unavailable``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lcc_server.artifacts import Artifact, ArtifactStore
from lcc_server.btf_store import BtfConflict, BtfForbidden, BtfStore
from lcc_server.derived import DerivedFiles
from lcc_server.docs import mount_docs
from lcc_server.guard import RequestGuard
from lcc_server.metrics import CONTENT_TYPE, Metrics
from lcc_server.models import (BtfEntryModel, BtfList, CompileErrorBody, CompileRequest,
                               CompileResponse, ErrorBody, KeyList)
from lcc_server.replies import ObjectSource, json_reply, raw_reply
from lcc_server.service import (BtfMissing, Busy, CompileService, ObjectTooLarge,
                                SandboxUnavailable, check_object_size)
from lcc_server.settings import Settings
from lcc_server.signing import KeyRing, keys_dir, manifest
from lcc_server.stores import open_stores
from lcc_server.tokens import TokenTable
from lcc_toolchain.errors import (BtfUnavailable, CompileFailed, InvalidRequest, ToolchainError,
                                  ToolMissing)
from lcc_toolchain.sandbox import Sandbox
from lcc_toolchain.toolchain import Toolchain
from lcc_toolchain.validation import (ARCHES, DIGEST_RE, RELEASE_RE, check_arch, check_digest,
                                     check_release)

__all__ = ["create_app"]

log = logging.getLogger("lcc_server")

# /v1/keys is open: a public key is no secret, and clients pin it before they hold a token.
# The API documents (/docs, /redoc, /openapi.json) need the token like the API.
_OPEN_PATHS = frozenset({"/healthz", "/v1/keys"})
# Path parameters as the OpenAPI document states them (check_* enforce them, with 400).
_ARCH = PathParam(json_schema_extra={"enum": sorted(ARCHES)})
_RELEASE = PathParam(json_schema_extra={"pattern": RELEASE_RE.pattern, "maxLength": 128})
_DIGEST = PathParam(json_schema_extra={"pattern": DIGEST_RE.pattern})
# How often a waiting compile checks whether its client is still there.
_DISCONNECT_POLL_SECONDS = 0.2
# The error bodies every route may answer with, for the OpenAPI document.
_ERROR_RESPONSES = {status: {"model": ErrorBody}
                    for status in (400, 401, 403, 404, 409, 413, 503)}
# Exceptions answered with {"error": name, "detail": str(exc)}: (status, name, headers).
_PLAIN_ERRORS = {
    InvalidRequest: (400, "invalid_request", None),
    BtfMissing: (404, "btf_missing", None),
    BtfConflict: (409, "conflict", None),
    BtfForbidden: (403, "forbidden", None),
    BtfUnavailable: (422, "btf", None),
    Busy: (503, "busy", {"Retry-After": "1"}),
    ToolMissing: (503, "toolchain_missing", None),
    SandboxUnavailable: (503, "sandbox_unavailable", None),
    ObjectTooLarge: (422, "object_too_large", None),
}


def _error(status: int, error: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _plain_handler(status: int, name: str, headers: dict | None):
    """An exception handler answering ``_error(status, name, str(exc), headers)``."""
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return _error(status, name, str(exc), headers)
    return handler


def _validation_detail(exc: RequestValidationError) -> str:
    """Pydantic's complaints as one short line; never echoes the input."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p)[:60] for p in err.get("loc", ()) if p != "body")
        if not loc and tuple(err.get("loc", ())) == ("body",):
            loc = "body"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")[:300]
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def _artifact_fields(art: Artifact, *, btf: bytes | None, cached: bool, keys: KeyRing,
                     request: dict | None) -> dict:
    """The JSON reply about ``art``, all but its ``object`` (``lcc_server.replies``
    streams that)."""
    sealed = keys.seal(manifest(art, request=request, btf=btf))
    return {
        "digest": art.digest,
        "toolchain": art.toolchain,
        "warnings": [w.to_dict() for w in art.warnings],
        "programs": art.programs,
        "maps": art.maps,
        "btf": base64.b64encode(btf).decode() if btf is not None else None,
        "cached": cached,
        "manifest": sealed.statement,
        "signature": sealed.signature,
        "key_id": sealed.key_id,
    }


def _document_guard(doc: dict) -> None:
    """Add the answers ``RequestGuard`` gives before any route runs to every
    operation of ``doc``: 401 where a token is required, 400 (bad
    Content-Length) and 413 where a body is read."""
    error = {"description": "Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            answers = op.setdefault("responses", {})
            codes = []
            if path not in _OPEN_PATHS:
                codes.append("401")
            if method.upper() in ("POST", "PUT", "PATCH"):
                codes += ["400", "413"]
            for code in codes:
                answers.setdefault(code, error)


def create_app(settings: Settings | None = None, *, toolchain: Toolchain | None = None,
               btf_store: BtfStore | None = None,
               artifacts: ArtifactStore | None = None, keys: KeyRing | None = None,
               sandbox: Sandbox | None = None) -> FastAPI:
    """A ready application; see the module docstring.  ``sandbox`` confines the
    default toolchain's tools (default: made from ``settings``).  Raises ``ValueError`` on
    malformed settings in the environment or a signing key that is not an
    Ed25519 private key, ``OSError`` when the keys cannot be read or made."""
    settings = settings or Settings.from_env()
    state = Path(settings.state_dir)
    tokens = TokenTable.load(token=settings.token, token_file=settings.token_file)
    keys = keys or KeyRing.load(keys_dir(state), key_file=settings.signing_key)
    metrics = Metrics()
    if toolchain is None:
        if sandbox is None:
            sandbox = Sandbox(enabled=settings.sandbox, limits=settings.limits,
                              user=settings.tool_credentials())
            sandbox.extra_read = tuple(sandbox.toolchain_paths(settings.clang, settings.bpftool))
        toolchain = Toolchain(
            clang=settings.clang, bpftool=settings.bpftool, work_dir=state / "work",
            sandbox=sandbox, limits=settings.limits, pch=settings.pch,
            cut=settings.cut_types, caps=settings.caps)
    stores = open_stores(settings, keys=keys, metrics=metrics, btf_store=btf_store,
                         artifacts=artifacts)
    metrics.watch_artifacts(stores.artifacts)
    metrics.watch_state(stores.artifacts, stores.usage, settings.max_artifact_bytes,
                        stores.btf.upload_count)
    disk_store = getattr(stores.artifacts, "local", stores.artifacts)
    derived = None
    if hasattr(disk_store, "put_derived") and getattr(toolchain, "work_dir", None) is not None:
        derived = DerivedFiles(toolchain.work_dir, disk_store)
        derived.adopt()
        metrics.watch_derived(derived)
    service = CompileService(settings, toolchain, stores.btf, stores.artifacts, metrics,
                             leases=stores.leases, notices=stores.notices, derived=derived)
    if service.refusal is not None:
        log.error("%s", service.refusal)
    elif toolchain.sandbox.unconfined is not None:
        log.warning("compiling WITHOUT a sandbox (LCC_INSECURE_NO_SANDBOX=1): %s; any "
                    "client can make clang read files of this host",
                    toolchain.sandbox.unconfined)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.get_running_loop().run_in_executor(None, stores.register_host)
        stores.start()
        if settings.warm:
            service.warm()
        yield
        # joins the notices' thread and closes sockets: off the event loop
        await asyncio.get_running_loop().run_in_executor(None, stores.close)
        service.close()

    app = FastAPI(title="lcc compile service", version="1",
                  description="Compiles BPF C bundles into CO-RE objects; see lcc_server.app.",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    mount_docs(app)  # /docs and /redoc with their assets served here, not from a CDN
    app.state.service = service
    app.state.settings = settings
    app.state.keys = keys
    log.info("signing with key %s (%s)", keys.key_id, keys.source)

    # -- errors -------------------------------------------------------------

    for exc_type, (status, name, headers) in _PLAIN_ERRORS.items():
        app.add_exception_handler(exc_type, _plain_handler(status, name, headers))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _error(400, "invalid_request", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        name = {400: "invalid_request", 404: "not_found",
                405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, name, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(CompileFailed)
    async def _compile_error(request: Request, exc: CompileFailed):
        return JSONResponse({"error": "compile", "detail": exc.message,
                             "diagnostics": [d.to_dict() for d in exc.diagnostics],
                             "log": exc.log}, status_code=422)

    @app.exception_handler(ToolchainError)
    async def _toolchain_error(request: Request, exc: ToolchainError):
        log.error("compile service failure: %s", exc)
        return _error(503, "unavailable", str(exc))

    # -- routes -------------------------------------------------------------

    def object_source(art: Artifact) -> ObjectSource:
        """The object to stream: from its file when the store keeps one."""
        object_path = getattr(getattr(service, "artifacts", None), "object_path", None)
        return ObjectSource(art.digest, art.object,
                            object_path(art.digest) if object_path else None)

    @app.get("/healthz", tags=["service"])
    async def healthz() -> JSONResponse:
        """Health, open even when a token is configured: 503 when the service
        refuses to compile (no sandbox); ``store`` says whether the shared store
        answers (still 200 while it does not: the replica works on its own)."""
        store = await asyncio.get_running_loop().run_in_executor(None, stores.status)
        body = {"status": "ok", "landlock_abi": toolchain.sandbox.landlock_abi,
                "store": store.to_dict()}
        if service.refusal is not None:
            body.update(status="unavailable", reason=service.refusal)
            return JSONResponse(body, status_code=503)
        if toolchain.sandbox.unconfined is not None:
            body["insecure"] = toolchain.sandbox.unconfined
        return JSONResponse(body)

    @app.get("/metrics", tags=["service"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics (see lcc_server.metrics)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/v1/compile", tags=["compile"], response_model=None,
              responses={200: {"model": CompileResponse},
                         422: {"model": CompileErrorBody | ErrorBody},
                         **_ERROR_RESPONSES})
    async def compile_bundle(req: CompileRequest, request: Request) -> Response:
        """Compile a bundle for a kernel; identical requests compile once.  A
        client that disconnects gives up its place: its compile is stopped
        (unless identical requests still wait for it)."""
        job = asyncio.ensure_future(service.compile(req))
        while not job.done():
            await asyncio.wait({job}, timeout=_DISCONNECT_POLL_SECONDS)
            if not job.done() and await request.is_disconnected():
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
                metrics.cancelled.inc()
                return Response(status_code=499)  # nobody reads it
        out = job.result()
        fields = _artifact_fields(out.artifact, btf=out.btf, cached=out.cached, keys=keys,
                                  request=out.request)
        return json_reply(fields, object_source(out.artifact))

    @app.get("/v1/artifacts/{digest}", tags=["compile"], response_model=None,
             responses={200: {"model": CompileResponse, "content": {
                 "application/octet-stream": {}}}, 422: {"model": ErrorBody},
                 **_ERROR_RESPONSES})
    async def get_artifact(digest: str = _DIGEST, *, request: Request) -> Response:
        """A compiled object by its sha256; raw bytes with Accept: application/octet-stream."""
        check_digest(digest)
        art = await service.get_artifact(digest)
        if art is None:
            return _error(404, "not_found", f"no artifact {digest} on this server")
        check_object_size(len(art.object), settings.max_object_bytes)
        if "application/octet-stream" in request.headers.get("accept", ""):
            return raw_reply(object_source(art), {"X-Lcc-Digest": digest})
        return json_reply(_artifact_fields(art, btf=None, cached=True, keys=keys, request=None),
                          object_source(art))

    @app.get("/v1/keys", tags=["service"], response_model=KeyList)
    async def public_keys() -> dict:
        """The public keys replies are signed with: the current one first, then
        retired ones still honoured.  Open even when a token is configured."""
        return {"keys": keys.published()}

    @app.get("/v1/btf", tags=["btf"], response_model=BtfList)
    async def list_btf() -> dict:
        """Kernels this server can compile for."""
        return {"btf": await service.list_btf()}

    @app.get("/v1/btf/{arch}/{release}", tags=["btf"], response_class=Response,
             responses={200: {"content": {"application/octet-stream": {}}},
                        **_ERROR_RESPONSES})
    async def get_btf(arch: str = _ARCH, release: str = _RELEASE) -> Response:
        """The raw BTF stored for a kernel."""
        check_arch(arch)
        check_release(release)
        return Response(await service.btf_bytes(arch, release),
                        media_type="application/octet-stream")

    @app.put("/v1/btf/{arch}/{release}", tags=["btf"], response_model=BtfEntryModel,
             status_code=201, responses={200: {"model": BtfEntryModel},
                                         **_ERROR_RESPONSES},
             openapi_extra={"requestBody": {"content": {"application/octet-stream": {}},
                                            "required": True}})
    async def put_btf(request: Request, arch: str = _ARCH, release: str = _RELEASE,
                      replace: bool = Query(False, description="overwrite a different upload")):
        """Upload a kernel's raw BTF (its /sys/kernel/btf/vmlinux)."""
        check_arch(arch)
        check_release(release)
        data = await request.body()
        # Two first uploads of different BTF for one kernel give one 201 and one
        # 409 across processes and replicas: the store decides (BtfStore.put).
        try:
            entry, created = await service.put_btf(arch, release, data, replace,
                                                   caller=request.state.caller)
        except BtfUnavailable as exc:  # bpftool cannot read the upload: the client's fault
            raise InvalidRequest(str(exc)) from None
        return JSONResponse(entry, status_code=201 if created else 200)

    def openapi() -> dict:
        """FastAPI's document, with the bearer token the guard asks for."""
        if app.openapi_schema is None:
            doc = FastAPI.openapi(app)
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "LCC_TOKEN, or a token of LCC_TOKEN_FILE; "
                                          "required when the service has any"}}
            doc["security"] = [{"bearer": []}]
            for path in _OPEN_PATHS:
                for op in doc["paths"].get(path, {}).values():
                    op["security"] = []
            _document_guard(doc)
            app.openapi_schema = doc
        return app.openapi_schema
    app.openapi = openapi

    known = frozenset({"/healthz", "/metrics", "/v1/compile", "/v1/btf", "/v1/keys",
                       "/docs", "/redoc", "/openapi.json"})

    def body_limit(method: str, path: str) -> int:
        if method == "PUT" and path.startswith("/v1/btf/"):
            return settings.max_btf_bytes
        return settings.max_body_bytes

    app.add_middleware(RequestGuard, tokens=tokens, open_paths=_OPEN_PATHS,
                       body_limit=body_limit, metrics=metrics, known_paths=known)
    return app
