"""The service backend: the lcc compile service (``lcc_server``) over HTTP, with ``requests``.

:class:`ServiceBackend` is the :class:`lcc.compile.Backend` for a service
URL; when the service lacks BTF for the running kernel (404), it uploads
this kernel's ``/sys/kernel/btf/vmlinux`` once and asks again (unless
``push_btf`` is off: ``LCC_PUSH_BTF=0``; ``lcc btf push`` does it by hand).

:class:`ServiceClient` speaks the service's API (``POST /v1/compile``,
``GET /v1/artifacts/{digest}``, ``GET/PUT /v1/btf/...``, ``GET /healthz``)
and turns every answer other than success into an lcc error:

=======================================  ==========================================
service answer                           raised
=======================================  ==========================================
unreachable, refused, timed out          CompileServiceError naming the URL
401                                      CompileServiceError, hint about LCC_TOKEN
422 ``{"error": "compile"}``             CompileError with the Diagnostics and log
422 ``{"error": "btf"}``                 BtfError
404 ``{"error": "btf_missing"}``         CompileServiceError (status 404): push the BTF
any other 4xx/5xx                        CompileServiceError(status, detail)
200 whose object does not match digest   CompileServiceError
=======================================  ==========================================

Connection errors are retried (urllib3 ``Retry`` through an ``HTTPAdapter``,
with backoff); a request the service received is never sent twice.  The
bearer token comes from ``token`` or, for a client made without one,
``LCC_TOKEN``.  Loopback URLs bypass any proxy configured in the environment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import re
import urllib.parse
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from ..errors import BtfError, CompileError, CompileServiceError, Diagnostic, LccError
from . import kernel as _kernel
from .artifact import Artifact
from .bundle import Bundle
from .config import ClientConfig

__all__ = ["DEFAULT_TIMEOUT", "ServiceBackend", "ServiceClient", "compile_via", "normalize_url"]

log = logging.getLogger(__name__)

#: (connect, read) seconds.  A cold compile waits for a slot on a busy service.
DEFAULT_TIMEOUT = (5.0, 120.0)
DEFAULT_RETRIES = 3
_USER_AGENT = "lcc-client/0.1"


def normalize_url(url: str) -> str:
    """``url`` without a trailing slash, with lower-case scheme and host; a bare
    ``host:port`` gets ``http://``.  Raises :class:`LccError` when it is not
    an http(s) URL."""
    raw = (url or "").strip()
    if raw and "://" not in raw:
        raw = "http://" + raw
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise LccError(f"compile service URL {url!r} is not an http(s) URL",
                       hint="e.g. http://127.0.0.1:7655")
    try:
        port = parts.port
    except ValueError:
        raise LccError(f"compile service URL {url!r} has a bad port") from None
    host = parts.hostname  # lower-cased, without user info
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServiceClient:
    """A connection pool to one compile service; ``close()`` (or ``with``) releases it.

    ``token``: the bearer token; None takes ``LCC_TOKEN`` (through
    :meth:`ClientConfig.from_env`), ``""`` sends none.  ``timeout`` is
    (connect, read) seconds; ``retries`` counts retries of connection errors.
    ``session`` replaces the ``requests.Session`` (tests mount fake adapters
    on it).
    """

    def __init__(self, url: str, *, token: str | None = None,
                 timeout: tuple[float, float] | float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, session: requests.Session | None = None) -> None:
        self.url = normalize_url(url)
        self.token = (token if token is not None else ClientConfig.from_env().token) or None
        self.timeout = timeout
        self._http = session or requests.Session()
        if session is None:
            retry = Retry(total=retries, connect=retries, read=0, status=0, other=0,
                          backoff_factor=0.2, allowed_methods=None, raise_on_status=False)
            adapter = HTTPAdapter(max_retries=retry)
            self._http.mount("http://", adapter)
            self._http.mount("https://", adapter)
            if _is_loopback(self.url):
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
        return f"ServiceClient({self.url!r})"

    # -- transport ------------------------------------------------------------------

    def _request(self, method: str, path: str, **kw: Any) -> requests.Response:
        url = self.url + path
        try:
            r = self._http.request(method, url, timeout=kw.pop("timeout", self.timeout), **kw)
        except (requests.Timeout, requests.ConnectionError) as e:
            if isinstance(e, requests.ConnectTimeout) or not _is_read_timeout(e):
                raise CompileServiceError(
                    f"compile service at {self.url} is unreachable: {_reason(e)}",
                    hint="start one with `lcc server`, or check LCC_SERVER / --server") from None
            raise CompileServiceError(
                f"compile service at {self.url} did not answer in time ({method} {path})",
                hint="the service may be overloaded; retry, or raise the timeout") from None
        except requests.RequestException as e:
            raise CompileServiceError(f"request to compile service at {self.url} failed: "
                                      f"{_reason(e)}") from None
        if r.status_code >= 400:
            raise self._error(r)
        return r

    def _error(self, r: requests.Response) -> LccError:
        """The lcc error for a 4xx/5xx answer (see the module's table)."""
        body = _json_or_none(r)
        kind = body.get("error") if isinstance(body, dict) else None
        detail = body.get("detail") if isinstance(body, dict) else None
        if not isinstance(detail, str) or not detail:
            detail = _first_line(r.text) or r.reason or "no detail"
        status = r.status_code
        if status == 422 and kind == "compile":
            diags = []
            for d in body.get("diagnostics") or []:
                if isinstance(d, dict):
                    diags.append(Diagnostic.from_dict(d))
            log = body.get("log") if isinstance(body.get("log"), str) else ""
            msg = (detail if isinstance(body.get("detail"), str)
                   else "clang could not compile the program")
            return CompileError(msg, diags, log)
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
            return CompileServiceError(f"compile service at {self.url} is unavailable: {detail}",
                                       status=503, detail=detail)
        return CompileServiceError(
            f"compile service at {self.url} answered HTTP {status}: {detail}",
            status=status, detail=detail)

    # -- API --------------------------------------------------------------------------

    def compile(self, bundle: Bundle, *, kernel: str, arch: str,
                defines: dict[str, str | None] | None = None, btf: bool = False) -> Artifact:
        """``POST /v1/compile``: the artifact for ``bundle`` on kernel ``kernel``/``arch``.

        ``btf=True`` also asks for BTF tailored to the object.  The object is
        checked against the digest the service sends.  Raises as in the module
        docstring.
        """
        payload = {"bundle": bundle.to_dict(), "kernel": kernel, "arch": arch,
                   "defines": dict(defines or {}), "btf": bool(btf)}
        body = self._json(self._request("POST", "/v1/compile", json=payload))
        try:
            obj = _b64(body["object"])
            digest = str(body["digest"])
            tailored = _b64(body["btf"]) if body.get("btf") else None
            warnings = [Diagnostic.from_dict(d) for d in body.get("warnings") or []]
            toolchain = dict(body.get("toolchain") or {})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CompileServiceError(f"compile service at {self.url} sent a malformed answer "
                                      f"({type(e).__name__}: {e})") from None
        if hashlib.sha256(obj).hexdigest() != digest:
            raise CompileServiceError(f"compile service at {self.url} sent an object whose "
                                      f"sha256 does not match its digest {digest[:16]}...")
        if btf and tailored is None:
            raise CompileServiceError(f"compile service at {self.url} sent no BTF although "
                                      "it was asked for")
        return Artifact(object=obj, digest=digest, btf=tailored, warnings=warnings,
                        toolchain=toolchain, cached=bool(body.get("cached")), origin=self.url)

    def artifact(self, digest: str) -> bytes:
        """``GET /v1/artifacts/{digest}``: a compiled object by its sha256, verified."""
        r = self._request("GET", f"/v1/artifacts/{digest}",
                          headers={"Accept": "application/octet-stream"})
        if hashlib.sha256(r.content).hexdigest() != digest:
            raise CompileServiceError(f"compile service at {self.url} sent artifact bytes that "
                                      f"do not match {digest[:16]}...")
        return r.content

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

    def _json(self, r: requests.Response) -> Any:
        body = _json_or_none(r)
        if body is None:
            raise CompileServiceError(f"compile service at {self.url} answered "
                                      f"{r.status_code} without JSON: {_first_line(r.text)}")
        return body


class ServiceBackend:
    """A compile service at ``url`` (a :class:`lcc.compile.Backend`).

    ``token``: its bearer token (None or ``""``: none).  ``push_btf``: upload
    this kernel's BTF when the service lacks it.  Each :meth:`compile` opens
    and closes its own :class:`ServiceClient`; the object holds no resources.
    Raises :class:`LccError` for a URL that is not http(s).
    """

    name = "server"

    def __init__(self, url: str, *, token: str | None = None, push_btf: bool = True) -> None:
        self.url = normalize_url(url)
        self.token = token
        self.push_btf = push_btf
        self.origin = self.url

    @classmethod
    def from_config(cls, config: ClientConfig, url: str | None = None, *,
                    token: str | None = None) -> ServiceBackend:
        """The service ``url`` (default ``config.server``) with ``token`` (default
        ``config.token``).  Raises :class:`LccError` when no URL is known."""
        url = url or config.server
        if not url:
            raise LccError("the server backend needs a compile service URL",
                           hint="pass --server URL or set LCC_SERVER")
        return cls(url, token=token if token is not None else config.token,
                   push_btf=config.push_btf)

    def __repr__(self) -> str:
        return f"ServiceBackend({self.url!r})"

    def key_part(self) -> dict:
        return {"server": self.url}

    def compile(self, bundle: Bundle, *, kernel: str, arch: str,
                defines: dict[str, str | None], btf: bool) -> Artifact:
        with ServiceClient(self.url, token=self.token or "") as client:
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


def _json_or_none(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


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
