"""Which compile service URLs a client may use, and the order it tries them in.

``LCC_SERVER`` (and ``--server``) names one compile service, or several
separated by commas: the replicas of one fleet, or a load balancer and a
fallback behind it::

    LCC_SERVER=http://lb:7655,http://replica-a:7655,http://replica-b:7655

:class:`Endpoints` holds that list.  A client tries the endpoints in the
order given, starting from the one that last answered (so a dead first
endpoint costs one refused connection per client, not one per request);
it does not spread load over them, which is a balancer's job (haproxy in
``deploy/fleet/``).  Which failures move on to the next endpoint is
:class:`lcc.compile.service.ServiceClient`'s business (its module
docstring).

Every endpoint of one list must belong to one fleet: replicas sign with one
key (``LCC_SIGNING_KEY``), and the client checks each answer against the
keys it trusts exactly as it does for a single service.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterable

from ..errors import LccError
from .trust import is_loopback

__all__ = ["Endpoints", "normalize_url", "parse_endpoints"]


def normalize_url(url: str) -> str:
    """``url`` without a trailing slash, with lower-case scheme and host; a bare
    ``host:port`` gets ``http://``.  Raises :class:`LccError` when it is not
    an http(s) URL, or names several (a comma in it)."""
    raw = (url or "").strip()
    if "," in raw:
        raise LccError(f"compile service URL {url!r} names several services",
                       hint="give one URL here; LCC_SERVER and --server take a "
                            "comma-separated list")
    if raw and "://" not in raw:
        raw = "http://" + raw
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise LccError(f"compile service URL {url!r} is not an http(s) URL",
                       hint="e.g. http://127.0.0.1:7655")
    try:
        port = parts.port
    except ValueError:
        raise LccError(f"compile service URL {url!r} has a bad port",
                       hint="e.g. http://127.0.0.1:7655") from None
    host = parts.hostname  # lower-cased, without user info
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def parse_endpoints(value: str | Iterable[str]) -> tuple[str, ...]:
    """The normalized URLs of ``value``: one URL, a comma-separated list of them,
    or an iterable of URLs; duplicates are dropped, the order is kept.  Raises
    :class:`LccError` naming the bad entry, or when there is none."""
    items = value.split(",") if isinstance(value, str) else list(value)
    urls: list[str] = []
    for item in items:
        if not item.strip():
            continue
        try:
            url = normalize_url(item)
        except LccError as e:
            if len(items) == 1:
                raise
            raise LccError(f"compile service list {_show(value)!r}: {e.message}",
                           hint=e.hint) from None
        if url not in urls:
            urls.append(url)
    if not urls:
        raise LccError(f"no compile service URL in {_show(value)!r}",
                       hint="e.g. http://127.0.0.1:7655, or several separated by commas")
    return tuple(urls)


class Endpoints:
    """The compile services a client may use (at least one), in the order
    given, and the one that last answered.  Shared by the clients a
    :class:`lcc.compile.service.ServiceBackend` opens, so what one learned
    (the first endpoint is down) the next one starts from.  Thread-safe.
    ``str()`` is the list as ``LCC_SERVER`` spells it.
    """

    def __init__(self, urls: str | Iterable[str]) -> None:
        self.urls = parse_endpoints(urls)
        self._first = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.urls)

    def __str__(self) -> str:
        return ",".join(self.urls)

    def __repr__(self) -> str:
        return f"Endpoints({str(self)!r})"

    @property
    def several(self) -> bool:
        return len(self.urls) > 1

    def order(self) -> list[str]:
        """Every endpoint once, starting from the one that last answered."""
        with self._lock:
            first = self._first
        return list(self.urls[first:] + self.urls[:first])

    def answered(self, url: str) -> None:
        """``url`` answered: later requests start from it."""
        with self._lock:
            self._first = self.urls.index(url)

    @property
    def loopback(self) -> bool:
        """Whether every endpoint is on a loopback address."""
        return all(is_loopback(u) for u in self.urls)

    @property
    def trust_url(self) -> str:
        """The endpoint whose address decides the trust policy's loopback opt-out
        (:meth:`lcc.compile.trust.TrustPolicy.for_service`): the first one not on
        a loopback address, so the opt-out holds only when every endpoint is."""
        return next((u for u in self.urls if not is_loopback(u)), self.urls[0])


def _show(value: str | Iterable[str]) -> str:
    return value if isinstance(value, str) else ",".join(value)
