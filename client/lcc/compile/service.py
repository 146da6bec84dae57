"""The service backend: the lcc compile service (``lcc_server``) over HTTP, with ``requests``.

:class:`ServiceBackend` is the :class:`lcc.compile.Backend` for a service
URL; when the service lacks BTF for the running kernel (404), it uploads
this kernel's ``/sys/kernel/btf/vmlinux`` once and asks again (unless
``push_btf`` is off: ``LCC_PUSH_BTF=0``; ``lcc btf push`` does it by hand).

:class:`ServiceClient` speaks the service's API (``POST /v1/compile``,
``GET /v1/artifacts/{digest}``, ``GET/PUT /v1/btf/...``, ``GET /v1/keys``,
``GET /healthz``) and turns every answer other than success into an lcc
error:

=========================================  ==========================================
service answer                             raised
=========================================  ==========================================
unreachable, refused                       CompileServiceError naming the URL
no whole answer within the timeout         CompileServiceError: raise LCC_TIMEOUT
an answer larger than ``max_reply``        CompileServiceError (reading stops there)
401                                        CompileServiceError, hint about LCC_TOKEN
422 ``{"error": "compile"}``               CompileError with the Diagnostics and log
422 ``{"error": "btf"}``                   BtfError
404 ``{"error": "btf_missing"}``           CompileServiceError (status 404): push the BTF
503, after the retries                     CompileServiceError (status 503)
any other 4xx/5xx                          CompileServiceError(status, detail)
200 not signed by a trusted key, or not    UntrustedArtifact (:mod:`lcc.compile.trust`)
what its signed manifest says
=========================================  ==========================================

An object is returned only after its manifest's signature verified with a
trusted key and the object, the tailored BTF and the request matched it;
nothing unchecked reaches the cache or the kernel.  Text the service sends
(details, diagnostics, the compiler log) has its control characters made
visible (:func:`lcc.compile.trust.printable`) before it goes into an error
or an artifact, so printing it cannot drive the terminal.

Robustness against a service that misbehaves: answers are read in chunks
and dropped past ``max_reply`` bytes (``LCC_MAX_REPLY_MB``, default 96 MiB);
the whole answer must arrive within the timeout (``LCC_TIMEOUT``,
``lcc compile --timeout``; default 120 s, connecting 5 s); a 503 is asked
again after its ``Retry-After`` (or a short backoff) up to
``busy_retries`` times, as long as the wait fits in the timeout and is at
most 30 s.  Connection errors are retried (urllib3 ``Retry`` through an
``HTTPAdapter``, with backoff); a request the service received is sent
again only after a 503.  The bearer token comes from ``token`` or, for a
client made without one, ``LCC_TOKEN``.  Loopback URLs bypass any proxy
configured in the environment.

Several endpoints (``LCC_SERVER=http://a:7655,http://b:7655``, ``--server
a,b``; :mod:`lcc.compile.endpoints`): each request goes to the endpoints
in turn, starting from the one that last answered, until one answers it.
What moves on to the next endpoint:

=========================================  ==========================================
failure at one endpoint                    then
=========================================  ==========================================
refused, unreachable, connect timeout      next endpoint (after one quick retry)
connection broken off mid-answer           next endpoint (the replica died)
503                                        next endpoint; when every endpoint said
                                           503, the round is asked again after the
                                           shortest ``Retry-After``, within the
                                           busy budget above
any other 5xx                              next endpoint
no whole answer within the timeout         raised: the time budget is spent
4xx, 422, an answer too large, or an       raised: another replica of the same
untrusted answer                           fleet would answer the same
=========================================  ==========================================

When no endpoint answered, the :class:`CompileServiceError` names every
endpoint and what went wrong there (``detail``: a list of ``{url, status,
error}``; ``status``: theirs when they agree).  With a single endpoint every
error is exactly the one above.  Each answer is checked against the trusted
keys as for a single service; the loopback opt-out
(``LCC_INSECURE_TRUST_LOOPBACK``) holds only when every endpoint is on a
loopback address.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import json
import logging
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from ..errors import BtfError, CompileError, CompileServiceError, LccError
from . import kernel as _kernel
from .artifact import Artifact
from .bundle import Bundle
from .config import ClientConfig
from .endpoints import Endpoints, normalize_url, parse_endpoints
from .trust import (TrustedKey, TrustPolicy, artifact_from_manifest, check_manifest,
                    expected_request, printable, remote_diagnostic)

__all__ = ["DEFAULT_MAX_REPLY", "DEFAULT_TIMEOUT", "Endpoints", "ServiceBackend",
           "ServiceClient", "compile_via", "normalize_url", "parse_endpoints"]

log = logging.getLogger(__name__)

#: (connect, read) seconds.  A cold compile waits for a slot on a busy service.
DEFAULT_TIMEOUT = (5.0, 120.0)
DEFAULT_RETRIES = 3
#: The largest answer read (a compile's JSON holds the object and BTF in base64).
DEFAULT_MAX_REPLY = 96 << 20
#: How often a 503 is asked again, and the longest wait for one.
BUSY_RETRIES = 4
MAX_BUSY_WAIT = 30.0
_CHUNK = 64 << 10
_USER_AGENT = "lcc-client/0.1"


@dataclass
class Reply:
    """An answer read whole (at most ``max_reply`` bytes)."""

    status_code: int
    reason: str
    headers: Any = field(default_factory=dict)  # requests' case-insensitive dict
    content: bytes = b""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _TooLarge(Exception):
    pass


class _Late(Exception):
    pass


class _Down(Exception):
    """An endpoint failed in a way another endpoint may not (``error`` says how)."""

    def __init__(self, error: CompileServiceError) -> None:
        super().__init__(error.message)
        self.error = error


class ServiceClient:
    """A connection pool to a compile service; ``close()`` (or ``with``) releases it.

    ``url``: the service, or several (a comma-separated string, a sequence,
    or an :class:`Endpoints` shared with other clients), tried as the
    module docstring says; ``url`` is then the endpoint in use (the one
    that last answered), ``endpoints`` the list.  ``token``: the bearer
    token; None takes ``LCC_TOKEN`` (through :meth:`ClientConfig.from_env`),
    ``""`` sends none.  ``timeout`` is (connect, read) seconds, or one
    number for both (connecting takes at most 5 s of it); the read part
    bounds the whole answer, waits for busy services included.  ``retries``
    counts retries of connection errors per endpoint (at most one when there
    are several: the next endpoint is the retry), ``busy_retries`` the
    rounds asked again after 503s.  ``max_reply``: the largest answer read,
    in bytes.  ``trust``: whose signatures make a compiled object acceptable
    (default: the policy of :meth:`ClientConfig.from_env` for these
    endpoints).  ``session`` replaces the ``requests.Session`` (tests mount
    fake adapters on it).
    """

    def __init__(self, url: str | Sequence[str] | Endpoints, *, token: str | None = None,
                 timeout: tuple[float, float] | float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, session: requests.Session | None = None,
                 trust: TrustPolicy | None = None, max_reply: int = DEFAULT_MAX_REPLY,
                 busy_retries: int = BUSY_RETRIES) -> None:
        self.endpoints = url if isinstance(url, Endpoints) else Endpoints(url)
        self.url = self.endpoints.order()[0]
        config = ClientConfig.from_env() if token is None or trust is None else None
        self.token = (token if token is not None else config.token) or None
        self.trust = (trust if trust is not None
                      else TrustPolicy.for_service(config, self.endpoints.trust_url))
        self.timeout = _timeouts(timeout)
        self.max_reply = max_reply
        self.busy_retries = busy_retries
        self._http = session or requests.Session()
        if session is None:
            if self.endpoints.several:
                retries = min(retries, 1)
            retry = Retry(total=retries, connect=retries, read=0, status=0, other=0,
                          backoff_factor=0.2, allowed_methods=None, raise_on_status=False)
            adapter = HTTPAdapter(max_retries=retry)
            self._http.mount("http://", adapter)
            self._http.mount("https://", adapter)
            if self.endpoints.loopback:
                self._http.trust_env = False  # an environment proxy cannot reach our loopback
        self._http.headers["User-Agent"] = _USER_AGENT
        if self.token:
            self._http.headers["Authorization"] = f"Bearer {self.token}"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ServiceClient({str(self.endpoints)!r})"

    # -- transport ------------------------------------------------------------------

    def _request(self, method: str, path: str, **kw: Any) -> Reply:
        """One exchange, read whole, with the first endpoint that answers it; a
        round of 503s is asked again (module docstring).  Raises the lcc error
        of a 4xx/5xx answer, or one naming every endpoint when none answered."""
        timeout = _timeouts(kw.pop("timeout", self.timeout))
        give_up = time.monotonic() + timeout[1]  # waits for a busy service count too
        several = self.endpoints.several
        rounds = 0
        while True:
            failed: list[tuple[str, CompileServiceError]] = []
            waits: list[float] = []
            for url in self.endpoints.order():
                self.url = url
                try:
                    r = self._send(method, path, timeout, **kw)
                except _Down as down:
                    failed.append((url, down.error))
                    if several:
                        log.info("%s; trying the next compile service", down.error.message)
                    continue
                if r.status_code == 503:
                    waits.append(_retry_after(r.headers.get("Retry-After"), rounds))
                    failed.append((url, self._error(r, retried=rounds)))
                    continue
                if r.status_code >= 500 and several:
                    failed.append((url, self._error(r)))
                    log.info("%s; trying the next compile service", failed[-1][1].message)
                    continue
                # It answered (a 4xx too: a 404 for missing BTF is followed by an
                # upload, which must reach the same endpoint).
                self.endpoints.answered(url)
                if r.status_code >= 400:
                    raise self._error(r, retried=rounds)
                return r
            if waits and rounds < self.busy_retries:
                wait = min(waits)
                if wait <= MAX_BUSY_WAIT and time.monotonic() + wait <= give_up:
                    log.info("compile service %s is busy; asking again in %.1f s",
                             str(self.endpoints), wait)
                    time.sleep(wait)
                    rounds += 1
                    continue
            raise self._none_answered(failed)

    def _none_answered(self, failed: list[tuple[str, CompileServiceError]]) \
            -> CompileServiceError:
        """The error when every endpoint failed: a single endpoint's own, else
        one that names each endpoint and what went wrong there."""
        if len(failed) == 1:
            return failed[0][1]
        self.url = str(self.endpoints)
        statuses = {e.status for _, e in failed}
        hints = []
        if None in statuses:
            hints.append("start them, or check LCC_SERVER / --server")
        if 503 in statuses:
            hints.append("retry later")
        return CompileServiceError(
            f"none of {len(failed)} compile services answered: "
            + "; ".join(f"{url}: {_what_failed(url, e)}" for url, e in failed),
            status=statuses.pop() if len(statuses) == 1 else None,
            detail=[{"url": url, "status": e.status, "error": e.message} for url, e in failed],
            hint="; ".join(hints) or None)

    def _send(self, method: str, path: str, timeout: tuple[float, float], **kw: Any) -> Reply:
        url = self.url + path
        started = time.monotonic()
        try:
            r = self._http.request(method, url, timeout=timeout, stream=True, **kw)
        except (requests.Timeout, requests.ConnectionError) as e:
            if isinstance(e, requests.ConnectTimeout) or not _is_read_timeout(e):
                raise _Down(CompileServiceError(
                    f"compile service at {self.url} is unreachable: {_reason(e)}",
                    hint="start one with `lcc server`, or check LCC_SERVER / --server")) \
                    from None
            raise self._late(method, path, timeout) from None
        except requests.RequestException as e:
            raise CompileServiceError(f"request to compile service at {self.url} failed: "
                                      f"{_reason(e)}") from None
        try:
            content = self._read(r, started + timeout[1])
        except _TooLarge:
            raise CompileServiceError(
                f"compile service at {self.url} sent an answer larger than "
                f"{_mib(self.max_reply)} ({method} {path}); refused",
                hint="raise LCC_MAX_REPLY_MB if the service is trusted to send that much") \
                from None
        except (_Late, ReadTimeoutError, TimeoutError):
            raise self._late(method, path, timeout) from None
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as e:
            if _is_read_timeout(e):
                raise self._late(method, path, timeout) from None
            raise _Down(CompileServiceError(f"compile service at {self.url} broke off its "
                                            f"answer ({method} {path}): {_reason(e)}")) \
                from None
        finally:
            r.close()  # a connection left with unread data is not reused
        return Reply(r.status_code, printable(r.reason or "", newlines=False), r.headers,
                     content)

    def _late(self, method: str, path: str, timeout: tuple[float, float]) -> CompileServiceError:
        return CompileServiceError(
            f"compile service at {self.url} did not answer in time ({timeout[1]:g} s; "
            f"{method} {path})",
            hint="the service may be overloaded; retry, or raise the timeout "
                 "(LCC_TIMEOUT, lcc compile --timeout)")

    def _read(self, r: requests.Response, deadline: float) -> bytes:
        """The body of ``r``, at most ``max_reply`` bytes, read by ``deadline``."""
        if r.raw is None:  # a transport that answered with the content already read
            content = r.content or b""
            if len(content) > self.max_reply:
                raise _TooLarge
            return content
        announced = r.headers.get("Content-Length", "")
        if announced.isdigit() and int(announced) > self.max_reply:
            raise _TooLarge
        # read1 returns what one read of the socket gives, so the deadline is
        # checked however slowly the service sends.
        read = getattr(r.raw, "read1", None) or r.raw.read
        body = bytearray()
        while chunk := read(_CHUNK, decode_content=True):
            body += chunk
            if len(body) > self.max_reply:
                raise _TooLarge
            if time.monotonic() > deadline:
                raise _Late
        return bytes(body)

    def _error(self, r: Reply, *, retried: int = 0) -> LccError:
        """The lcc error for a 4xx/5xx answer (see the module's table)."""
        body = _json_or_none(r)
        kind = body.get("error") if isinstance(body, dict) else None
        detail = body.get("detail") if isinstance(body, dict) else None
        if not isinstance(detail, str) or not detail:
            detail = _first_line(r.text) or r.reason or "no detail"
        detail = printable(detail[:2000], newlines=False)
        status = r.status_code
        if status == 422 and kind == "compile":
            diags = []
            for d in body.get("diagnostics") or []:
                try:
                    diags.append(remote_diagnostic(d))
                except (TypeError, ValueError):
                    continue
            log_text = body.get("log") if isinstance(body.get("log"), str) else ""
            msg = (detail if isinstance(body.get("detail"), str)
                   else "clang could not compile the program")
            return CompileError(msg, diags, printable(log_text))
        if status == 422 and kind == "btf":
            return BtfError(f"compile service at {self.url}: {detail}")
        if status == 401:
            if self.token:
                hint = "LCC_TOKEN does not match the service's token"
            elif "LCC_TOKEN" not in detail:
                hint = "set LCC_TOKEN to the service's bearer token"
            else:
                hint = None  # the service's answer already says it
            return CompileServiceError(
                f"compile service at {self.url} refused the request: {detail}",
                status=401, detail=detail, hint=hint)
        if status == 404 and kind == "btf_missing":
            return CompileServiceError(f"compile service at {self.url}: {detail}",
                                       status=404, detail=detail)
        if status == 503:
            after = r.headers.get("Retry-After")
            tried = (f"asked {retried + 1} times" if retried else
                     f"it asks to retry after {printable(after, newlines=False)[:40]} s"
                     if after else "")
            return CompileServiceError(
                f"compile service at {self.url} is unavailable: {detail}"
                + (f" ({tried})" if tried else ""), status=503, detail=detail,
                hint="retry later" if retried else None)
        return CompileServiceError(
            f"compile service at {self.url} answered HTTP {status}: {detail}",
            status=status, detail=detail)

    # -- API --------------------------------------------------------------------------

    def compile(self, bundle: Bundle, *, kernel: str, arch: str,
                defines: dict[str, str | None] | None = None, btf: bool = False) -> Artifact:
        """``POST /v1/compile``: the artifact for ``bundle`` on kernel ``kernel``/``arch``.

        ``btf=True`` also asks for BTF tailored to the object.  The answer's
        manifest must be signed by a key of ``trust`` and name this object,
        this BTF and this request; the artifact's warnings and toolchain come
        from it.  Raises as in the module docstring (:class:`UntrustedArtifact`
        for an answer that fails those checks).
        """
        defines = dict(defines or {})
        payload = {"bundle": bundle.to_dict(), "kernel": kernel, "arch": arch,
                   "defines": defines, "btf": bool(btf)}
        body = self._json(self._request("POST", "/v1/compile", json=payload))
        try:
            obj = _b64(body["object"])
            tailored = _b64(body["btf"]) if body.get("btf") else None
            manifest, signature, key_id = (body.get("manifest"), body.get("signature"),
                                           body.get("key_id"))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CompileServiceError(f"compile service at {self.url} sent a malformed answer "
                                      f"({type(e).__name__}: {printable(str(e))[:200]})") \
                from None
        if btf and tailored is None:
            raise CompileServiceError(f"compile service at {self.url} sent no BTF although "
                                      "it was asked for")
        checked = self.trust.open(self.url, manifest, signature, key_id)
        check_manifest(checked, origin=self.url, obj=obj, btf=tailored,
                       request=expected_request(bundle, kernel=kernel, arch=arch,
                                                defines=defines))
        return artifact_from_manifest(checked, obj=obj, btf=tailored, origin=self.url,
                                      text=manifest, signature=signature, key_id=key_id,
                                      cached=body.get("cached") is True)

    def artifact(self, digest: str) -> bytes:
        """``GET /v1/artifacts/{digest}``: a compiled object by its sha256, verified
        against ``digest`` (which the caller must have from a trusted source)."""
        r = self._request("GET", f"/v1/artifacts/{digest}",
                          headers={"Accept": "application/octet-stream"})
        if _sha256(r.content) != digest:
            raise CompileServiceError(f"compile service at {self.url} sent artifact bytes that "
                                      f"do not match {digest[:16]}...")
        return r.content

    def keys(self) -> list[TrustedKey]:
        """``GET /v1/keys``: the service's public signing keys, the current one
        first (``comment``: ``current`` or ``retired``).  What it says is no
        reason to trust them: compare fingerprints out of band."""
        body = self._json(self._request("GET", "/v1/keys"))
        entries = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not entries:
            raise CompileServiceError(f"compile service at {self.url} sent no signing keys",
                                      hint="is it an lcc compile service of this version?")
        out = []
        for e in entries:
            try:
                key = TrustedKey.from_base64(e["public_key"], str(e.get("status", "")),
                                             self.url)
                if e.get("algorithm") != "ed25519" or e.get("id") != key.fingerprint:
                    raise LccError("its id is not its fingerprint")
            except (LccError, KeyError, TypeError) as exc:
                raise CompileServiceError(f"compile service at {self.url} sent a malformed "
                                          f"key ({printable(str(exc), newlines=False)[:100]})") \
                    from None
            out.append(TrustedKey(key.raw, printable(key.comment, newlines=False)[:20],
                                  self.url))
        return out

    def health(self) -> dict:
        """``GET /healthz``."""
        return self._json(self._request("GET", "/healthz"))

    def btf_list(self) -> list[dict]:
        """``GET /v1/btf``: the kernels the service can compile for."""
        body = self._json(self._request("GET", "/v1/btf"))
        entries = body.get("btf") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise CompileServiceError(f"compile service at {self.url} sent a malformed BTF list")
        return entries

    def btf_get(self, arch: str, release: str) -> bytes:
        """``GET /v1/btf/{arch}/{release}``: the raw BTF the service holds."""
        return self._request("GET", f"/v1/btf/{_seg(arch)}/{_seg(release)}").content

    def btf_put(self, arch: str, release: str, data: bytes, *,
                replace: bool = False) -> tuple[dict, bool]:
        """``PUT /v1/btf/{arch}/{release}``: upload raw BTF; returns (entry, created)."""
        r = self._request("PUT", f"/v1/btf/{_seg(arch)}/{_seg(release)}", data=data,
                          params={"replace": "true"} if replace else None,
                          headers={"Content-Type": "application/octet-stream"})
        return self._json(r), r.status_code == 201

    # -- helpers ----------------------------------------------------------------------

    def _json(self, r: Reply) -> Any:
        body = _json_or_none(r)
        if body is None:
            raise CompileServiceError(f"compile service at {self.url} answered "
                                      f"{r.status_code} without JSON: "
                                      f"{printable(_first_line(r.text), newlines=False)}")
        return body


class ServiceBackend:
    """A compile service at ``url`` (a :class:`lcc.compile.Backend`).

    ``url``: one service, or several separated by commas (the replicas of
    a fleet; tried in turn as :class:`ServiceClient` says, the last that
    answered first).  ``token``: its bearer token (None or ``""``: none).
    ``push_btf``: upload this kernel's BTF when the service lacks it.
    ``trust``: whose signatures make its objects loadable, here and when
    read back from the cache (default: the pinned keys and
    ``LCC_TRUSTED_KEYS``, see :mod:`lcc.compile.trust`).  ``timeout`` and
    ``max_reply``: as :class:`ServiceClient`'s.  Each :meth:`compile` opens
    and closes its own :class:`ServiceClient`; the object holds no
    resources.  Raises :class:`LccError` for a URL that is not http(s).
    """

    name = "server"

    def __init__(self, url: str, *, token: str | None = None, push_btf: bool = True,
                 trust: TrustPolicy | None = None,
                 timeout: tuple[float, float] | float = DEFAULT_TIMEOUT,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        self.endpoints = Endpoints(url)
        self.url = str(self.endpoints)
        self.token = token
        self.push_btf = push_btf
        self.origin = self.url
        self.trust = (trust if trust is not None
                      else TrustPolicy.for_service(ClientConfig.from_env(),
                                                   self.endpoints.trust_url))
        self.timeout = timeout
        self.max_reply = max_reply

    @classmethod
    def from_config(cls, config: ClientConfig, url: str | None = None, *,
                    token: str | None = None) -> ServiceBackend:
        """The service ``url`` (default ``config.server``; either may list several)
        with ``token`` (default ``config.token``), and the trust, timeout and
        reply cap of ``config``.  Raises :class:`LccError` when no URL is known."""
        url = url or config.server
        if not url:
            raise LccError("the server backend needs a compile service URL",
                           hint="pass --server URL or set LCC_SERVER")
        endpoints = Endpoints(url)
        return cls(str(endpoints), token=token if token is not None else config.token,
                   push_btf=config.push_btf,
                   trust=TrustPolicy.for_service(config, endpoints.trust_url),
                   timeout=config.timeout or DEFAULT_TIMEOUT,
                   max_reply=config.max_reply_bytes or DEFAULT_MAX_REPLY)

    def __repr__(self) -> str:
        return f"ServiceBackend({self.url!r})"

    def key_part(self) -> dict:
        return {"server": self.url}

    def compile(self, bundle: Bundle, *, kernel: str, arch: str,
                defines: dict[str, str | None], btf: bool) -> Artifact:
        with ServiceClient(self.endpoints, token=self.token or "", trust=self.trust,
                           timeout=self.timeout, max_reply=self.max_reply) as client:
            return compile_via(client, bundle, kernel=kernel, arch=arch, defines=defines,
                               btf=btf, push_btf=self.push_btf)


def compile_via(client: ServiceClient, bundle: Bundle, *, kernel: str, arch: str,
                defines: dict[str, str | None], btf: bool, push_btf: bool = True) -> Artifact:
    """``client.compile(...)``; when the service lacks the running kernel's BTF (404)
    and ``push_btf``, upload it once and ask again."""
    try:
        return client.compile(bundle, kernel=kernel, arch=arch, defines=defines, btf=btf)
    except CompileServiceError as e:
        me = _kernel.this_kernel()
        if not (e.status == 404 and (kernel, arch) == (me.release, me.arch) and me.has_btf
                and push_btf):
            raise
        log.info("compile service %s lacks BTF for %s (%s); uploading this kernel's",
                 client.url, kernel, arch)
        client.btf_put(arch, kernel, _kernel.read_btf())
    return client.compile(bundle, kernel=kernel, arch=arch, defines=defines, btf=btf)


def _seg(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError) as e:
        raise ValueError(f"bad base64 ({e})") from None


def _json_or_none(r: Reply) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _timeouts(value: tuple[float, float] | float) -> tuple[float, float]:
    """(connect, read) seconds from a pair or one number (connecting: at most 5 s of it)."""
    if isinstance(value, tuple):
        return float(value[0]), float(value[1])
    return min(float(value), DEFAULT_TIMEOUT[0]), float(value)


def _retry_after(value: str | None, attempt: int) -> float:
    """Seconds to wait before asking a busy service again: its ``Retry-After``
    (seconds or an HTTP date), else an exponential backoff from 0.5 s."""
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return 0.5 * 2 ** attempt


def _what_failed(url: str, e: CompileServiceError) -> str:
    """``e``'s message without the ``compile service at URL`` it starts with."""
    prefix = f"compile service at {url} "
    return e.message[len(prefix):] if e.message.startswith(prefix) else e.message


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


def _first_line(text: str, limit: int = 200) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def _causes(e: BaseException):
    """``e`` and the errors it wraps (urllib3 keeps them in ``reason`` or ``args[0]``)."""
    seen: set[int] = set()
    inner: BaseException | None = e
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        yield inner
        reason = getattr(inner, "reason", None)
        if isinstance(reason, BaseException):
            inner = reason
        elif inner.args and isinstance(inner.args[0], BaseException):
            inner = inner.args[0]
        else:
            inner = None


def _is_read_timeout(e: BaseException) -> bool:
    """Whether the service took the request and then went silent (urllib3 wraps a
    read timeout in a ConnectionError when a Retry is mounted)."""
    return any(isinstance(c, (ReadTimeoutError, requests.ReadTimeout)) for c in _causes(e))


def _reason(e: BaseException) -> str:
    """The innermost cause of a requests error, in a few words."""
    *_, inner = _causes(e)
    text = str(inner)
    # urllib3: "HTTPConnection(host=..., port=...): Failed to ...: [Errno 111] Connection refused"
    m = re.search(r"\[Errno -?\d+\] (.*)$", text)
    if m:
        text = m.group(1)
    elif "): " in text:
        text = text.rsplit("): ", 1)[1]
    return _first_line(text) or type(e).__name__
