"""A compile service impostor for tests: a real HTTP server on 127.0.0.1, in a
thread of the test process, that answers ``POST /v1/compile`` as told.

It speaks the service's API (``/v1/compile``, ``/v1/keys``, ``/healthz``) and
signs with a key of its own (``FakeService.ring``), so a test can make it an
honest service (:func:`honest`), a compromised or impersonated one (a
substituted object, a foreign key, a broken signature, a replayed answer), or
a broken one (a huge or endless answer, silence, 503s, escape sequences).

Imported by name (``from fakeservice import FakeService``): ``tests/`` is on
``sys.path`` because ``tests/conftest.py`` lives there.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from collections.abc import Callable
from pathlib import Path

from lcc_server.artifacts import Artifact
from lcc_server.signing import KeyRing, manifest
from lcc_toolchain.digest import bundle_digest
from lcc_toolchain.errors import Diagnostic

#: What the honest service "compiles" every bundle to, and what an attacker sends instead.
OBJ = b"\x7fELF honest object " + bytes(range(64))
EVIL = b"\x7fELF substituted object " + bytes(range(64, 128))

Behaviour = Callable[["FakeService", "Handler", dict], None]


class Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        svc = self.server.fake
        svc.requests.append(("GET", self.path))
        if self.path == "/v1/keys":
            self.reply(200, {"keys": svc.keys_ring.published()})
        elif self.path == "/healthz":
            self.reply(200, {"status": "ok"})
        else:
            self.reply(404, {"error": "not_found", "detail": self.path})

    def do_POST(self) -> None:
        svc = self.server.fake
        svc.requests.append(("POST", self.path))
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        svc.behaviour(svc, self, payload)

    def reply(self, status: int, body: object, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeService


class FakeService:
    """The impostor; ``with FakeService(behaviour) as svc:`` runs it at ``svc.url``.

    ``ring``: the key it signs with (``key_file()`` writes its public half for
    ``LCC_TRUSTED_KEYS``); ``keys_ring``: the key ``/v1/keys`` shows (the same
    unless a test changes it).  ``requests``: (method, path) of each request;
    ``sent``: body bytes the last streamed answer got out before the client
    hung up.  ``stopping`` is set when it stops (behaviours that stall wait on it).
    """

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or honest
        self.ring = KeyRing.generate()
        self.keys_ring = self.ring
        self.requests: list[tuple[str, str]] = []
        self.sent = 0
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.fake = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self) -> FakeService:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def key_file(self, directory: Path) -> Path:
        """A key file holding this service's public key (for LCC_TRUSTED_KEYS)."""
        path = Path(directory) / "fake-service.pub"
        path.write_text(self.ring.current.line("fake service") + "\n")
        return path

    def compile_count(self) -> int:
        return sum(1 for m, p in self.requests if (m, p) == ("POST", "/v1/compile"))


def answer(payload: dict, *, obj: bytes = OBJ, ring: KeyRing, btf: bytes | None = None,
           warnings: list[dict] | None = None, request: dict | None = None) -> dict:
    """The 200 body an lcc service sends for ``payload``, signed with ``ring``."""
    bundle = payload["bundle"]
    art = Artifact(digest=hashlib.sha256(obj).hexdigest(), object=obj,
                   toolchain={"clang": "fake 1.0"},
                   warnings=[Diagnostic.from_dict(w) for w in warnings or []])
    if request is None:
        request = {"bundle": bundle_digest(bundle["main"], bundle["files"]),
                   "defines": payload.get("defines") or {}, "arch": payload["arch"],
                   "kernel": payload["kernel"], "kernel_btf": "sha256:" + "b" * 64}
    if btf is None and payload.get("btf"):
        btf = b"\x9f\xeb\x01\x00 tailored"
    sealed = ring.seal(manifest(art, request=request, btf=btf))
    return {"digest": art.digest, "object": base64.b64encode(obj).decode(),
            "toolchain": art.toolchain, "warnings": [w.to_dict() for w in art.warnings],
            "programs": [], "maps": [],
            "btf": base64.b64encode(btf).decode() if btf is not None else None,
            "cached": False, "manifest": sealed.statement, "signature": sealed.signature,
            "key_id": sealed.key_id}


# -- behaviours -----------------------------------------------------------------------------

def honest(svc: FakeService, h: Handler, payload: dict) -> None:
    h.reply(200, answer(payload, ring=svc.ring))


def substituted(svc: FakeService, h: Handler, payload: dict) -> None:
    """Another object, with a digest that matches it; the manifest is the honest one."""
    body = answer(payload, ring=svc.ring)
    body.update(object=base64.b64encode(EVIL).decode(),
                digest=hashlib.sha256(EVIL).hexdigest())
    h.reply(200, body)


def foreign_key(svc: FakeService, h: Handler, payload: dict) -> None:
    """Another object, with a manifest made for it and signed by the attacker's key."""
    h.reply(200, answer(payload, obj=EVIL, ring=KeyRing.generate()))


def broken_signature(svc: FakeService, h: Handler, payload: dict) -> None:
    """Another object, the manifest edited to name it, the honest signature kept."""
    honest_body = answer(payload, ring=svc.ring)
    forged = json.loads(honest_body["manifest"])
    forged["object"] = {"sha256": hashlib.sha256(EVIL).hexdigest(), "size": len(EVIL)}
    body = answer(payload, obj=EVIL, ring=svc.ring)
    body.update(manifest=json.dumps(forged, sort_keys=True, separators=(",", ":")),
                signature=honest_body["signature"])
    h.reply(200, body)


def unsigned(svc: FakeService, h: Handler, payload: dict) -> None:
    """What a service sent before signing: object and digest only."""
    body = answer(payload, obj=EVIL, ring=svc.ring)
    for k in ("manifest", "signature", "key_id"):
        del body[k]
    h.reply(200, body)


def replayed(svc: FakeService, h: Handler, payload: dict) -> None:
    """A genuine signed answer, but to another request (another program)."""
    other = {**payload, "bundle": {"main": "other.bpf.c",
                                   "files": {"other.bpf.c": "// another tool\n"}}}
    h.reply(200, answer(other, obj=EVIL, ring=svc.ring))


def swapped_btf(svc: FakeService, h: Handler, payload: dict) -> None:
    """The honest object, with tailored BTF other than the one signed for."""
    body = answer(payload, ring=svc.ring)
    body["btf"] = base64.b64encode(b"\x9f\xeb\x01\x00 swapped").decode()
    h.reply(200, body)


def huge(announce: bool) -> Behaviour:
    """400 MB of answer, announced by Content-Length or not."""
    def behave(svc: FakeService, h: Handler, payload: dict) -> None:
        total, chunk = 400 << 20, b"A" * (1 << 20)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if announce:
            h.send_header("Content-Length", str(total))
        h.end_headers()
        svc.sent = 0
        try:
            while svc.sent < total and not svc.stopping.is_set():
                h.wfile.write(chunk)
                svc.sent += len(chunk)
        except OSError:  # the client hung up: what we want
            pass
        h.close_connection = True
    return behave


def silent(svc: FakeService, h: Handler, payload: dict) -> None:
    """Takes the request and never answers."""
    svc.stopping.wait(60)


def trickle(svc: FakeService, h: Handler, payload: dict) -> None:
    """Answers a byte at a time, for ever."""
    h.send_response(200)
    h.send_header("Content-Length", str(1 << 20))
    h.end_headers()
    try:
        while not svc.stopping.wait(0.1):
            h.wfile.write(b" ")
            h.wfile.flush()
    except OSError:
        pass
    h.close_connection = True


def busy(times: int, retry_after: str | None = "0") -> Behaviour:
    """503 (with ``Retry-After``) for the first ``times`` compiles, then honest."""
    def behave(svc: FakeService, h: Handler, payload: dict) -> None:
        if svc.compile_count() <= times:
            h.reply(503, {"error": "busy", "detail": "all compile slots are taken"},
                    {"Retry-After": retry_after} if retry_after is not None else None)
        else:
            honest(svc, h, payload)
    return behave


#: Sets the window title, clears the screen, a one-byte CSI, a right-to-left override.
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"


def escapes_in_warnings(svc: FakeService, h: Handler, payload: dict) -> None:
    """An honest, signed answer whose warnings carry terminal escape sequences."""
    warn = {"file": "tool.bpf.c", "line": 1, "column": 1, "severity": "warning",
            "message": "look" + ESCAPES}
    h.reply(200, answer(payload, ring=svc.ring, warnings=[warn]))


def escapes_in_errors(svc: FakeService, h: Handler, payload: dict) -> None:
    """A 422 compile error whose diagnostics, detail and log carry escape sequences."""
    diag = {"file": "tool.bpf.c" + ESCAPES, "line": 2, "column": 1, "severity": "error",
            "message": "boom" + ESCAPES}
    h.reply(422, {"error": "compile", "detail": "clang failed" + ESCAPES,
                  "diagnostics": [diag], "log": "log" + ESCAPES})

