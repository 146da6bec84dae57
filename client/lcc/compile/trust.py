"""Which compile services' objects lcc loads: pinned signing keys and the checks made with them.

A compile service signs a *manifest* into every reply that carries an
object (``lcc_server.signing.manifest``): canonical JSON naming the
object's and the tailored BTF's sha256, the request it answers (bundle
digest, defines, arch, kernel release, the kernel BTF it compiled
against), the toolchain versions, the maps, programs and warnings.  lcc
loads an object only when

1. the manifest's Ed25519 signature verifies with a key trusted here
   (:class:`TrustPolicy`), and
2. the object and BTF are the ones the manifest names, for the request
   that was sent (:func:`check_manifest`), so a signed answer to another
   request cannot be replayed;

and what it reports (warnings, toolchain) comes from the manifest.  The
same checks run before anything is cached and on every read of a cache
entry.  Failing either raises :class:`lcc.errors.UntrustedArtifact`.

Trusted keys are the user's pinned keys (:class:`TrustStore`, the file
``trusted_keys`` in the user's config directory, edited by ``lcc trust
add|ls|rm``) and those of the file named by ``LCC_TRUSTED_KEYS`` (for a
fleet).  A key is trusted for every service: trust is in who holds the
private key, not in an address.  Key files hold lines
``ed25519 <base64 of the 32 raw bytes> [comment]`` (what ``GET /v1/keys``
and the service's ``keys/signing.pub`` give) or one PEM public key.

With no trusted key, a service's objects are refused.  The one exception
is explicit: ``LCC_INSECURE_TRUST_LOOPBACK=1`` (``lcc compile
--insecure-trust-loopback``) accepts unsigned or unknown-key answers from a
service on a loopback address (a development server).  It is off by
default because any local user can listen on a loopback port first.

A key's fingerprint is ``SHA256:`` and the unpadded base64 of the sha256 of
its 32 raw bytes, as the service prints it (``python -m lcc_server.signing
show``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lcc_toolchain.keys import ALGORITHM, fingerprint, key_line, verify

from .._files import write_atomic
from ..errors import Diagnostic, LccError, UntrustedArtifact
from .artifact import Artifact
from .config import ClientConfig

if TYPE_CHECKING:
    from .bundle import Bundle

__all__ = ["ALGORITHM", "MANIFEST_FORMAT", "TrustPolicy", "TrustStore", "TrustedKey",
           "artifact_from_manifest", "check_manifest", "default_trust_file",
           "expected_request", "fingerprint", "is_loopback", "parse_keys", "printable",
           "read_key_file", "remote_diagnostic"]

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "lcc-manifest/1"
_PEM_BEGIN = "-----BEGIN PUBLIC KEY-----"
_HEADER = "# lcc: signing keys of compile services whose objects lcc loads (lcc trust add|rm)\n"
_KEY_ID = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
# C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI), and the
# bidirectional overrides that reorder what a terminal shows.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e"
                          "\u2066-\u2069]")


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` from a compile service, safe to print: terminal escape sequences and
    other control characters become visible ``\\xNN``/``\\uNNNN`` (``newlines=False``:
    newlines too), so a service cannot move the cursor, rewrite what was printed,
    retitle the window or hide text."""
    def visible(m: re.Match) -> str:
        c = ord(m.group(0))
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    text = _UNPRINTABLE.sub(visible, str(text))
    return text if newlines else text.replace("\n", "\\n")


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is ``localhost`` or a loopback address."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TrustedKey:
    """An Ed25519 public key trusted to sign objects; ``source`` says where it
    was read (a file), ``comment`` what the line said."""

    raw: bytes
    comment: str = ""
    source: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    def line(self) -> str:
        """The key as one line of a key file."""
        return key_line(self.raw, " ".join(self.comment.split()))

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``data``."""
        return verify(self.raw, data, signature)

    @classmethod
    def from_base64(cls, value: str, comment: str = "", source: str = "") -> TrustedKey:
        """A key from the base64 of its 32 raw bytes; raises :class:`LccError`."""
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise LccError(f"{value[:60]!r} is not a base64 public key") from None
        if len(raw) != 32:
            raise LccError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
        return cls(raw, comment, source)


def parse_keys(text: str, *, source: str = "") -> list[TrustedKey]:
    """The keys of a key file's text (module docstring); raises :class:`LccError`
    naming the bad line."""
    if _PEM_BEGIN in text:
        return [_from_pem(text, source)]
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if parts[0] != ALGORITHM or len(parts) < 2:
            raise LccError(f"{source or 'key file'} line {n}: expected 'ed25519 <base64 key> "
                           "[comment]'")
        try:
            keys.append(TrustedKey.from_base64(parts[1], parts[2] if len(parts) > 2 else "",
                                               source))
        except LccError as e:
            raise LccError(f"{source or 'key file'} line {n}: {e}") from None
    return keys


def _from_pem(text: str, source: str) -> TrustedKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    try:
        key = serialization.load_pem_public_key(text.encode())
    except ValueError as e:
        raise LccError(f"{source or 'key file'}: not a PEM public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise LccError(f"{source or 'key file'}: a {type(key).__name__}, not an Ed25519 key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return TrustedKey(raw, "", source)


def read_key_file(path: str | os.PathLike) -> list[TrustedKey]:
    """The keys in the file at ``path``; raises :class:`LccError` when it cannot be
    read or holds something else (a private key is refused, to keep it private)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LccError(f"cannot read the key file {path}: {getattr(e, 'strerror', e)}") \
            from None
    if "PRIVATE KEY-----" in text:
        raise LccError(f"{path} holds a private key",
                       hint="give the public key: the service's keys/signing.pub, or what "
                            "`python -m lcc_server.signing show` prints")
    return parse_keys(text, source=str(path))


def default_trust_file(config: ClientConfig | None = None) -> Path:
    """``config.trust_file``, else ``trusted_keys`` in the user's config directory."""
    if config is not None and config.trust_file is not None:
        return config.trust_file
    import platformdirs  # lazy: start-up speed
    return Path(platformdirs.user_config_dir("lcc")) / "trusted_keys"


class TrustStore:
    """The keys the user pinned: a key file at ``path`` (default
    :func:`default_trust_file`), rewritten whole on every change."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_trust_file()

    def __repr__(self) -> str:
        return f"TrustStore({str(self.path)!r})"

    def keys(self) -> list[TrustedKey]:
        """The pinned keys (none when the file does not exist); raises :class:`LccError`
        when it cannot be read or parsed."""
        if not self.path.exists():
            return []
        return read_key_file(self.path)

    def add(self, key: TrustedKey) -> bool:
        """Pin ``key``; False when it was pinned already.  Raises :class:`LccError`
        when the file cannot be written."""
        keys = self.keys()
        if any(k.raw == key.raw for k in keys):
            return False
        self._write([*keys, key])
        return True

    def remove(self, prefix: str) -> list[TrustedKey]:
        """Unpin the keys whose fingerprint starts with ``prefix`` (``SHA256:`` may be
        left out); returns them.  Raises :class:`LccError` when ``prefix`` names
        several keys (nothing is removed) or the file cannot be written."""
        wanted = prefix if prefix.startswith("SHA256:") else "SHA256:" + prefix
        keys = self.keys()
        gone = [k for k in keys if k.fingerprint.startswith(wanted)]
        if len({k.raw for k in gone}) > 1:
            raise LccError(f"{prefix!r} names {len(gone)} keys",
                           hint="give more of the fingerprint")
        if gone:
            self._write([k for k in keys if k not in gone])
        return gone

    def _write(self, keys: list[TrustedKey]) -> None:
        text = _HEADER + "".join(k.line() + "\n" for k in keys)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(self.path, text.encode("utf-8"))
        except OSError as e:
            raise LccError(f"cannot write {self.path}: {e.strerror or e}") from None


class TrustPolicy:
    """The keys whose signatures make a service's objects loadable here.

    ``keys``: trusted keys given directly; ``store`` and ``key_file`` (the
    user's pinned keys, ``LCC_TRUSTED_KEYS``) are read on first use, so
    making a policy costs nothing.  ``insecure``: accept answers without a
    trusted signature (the loopback opt-out; :meth:`for_service` sets it
    only for a loopback URL).  ``opt_out_ignored``: the opt-out was asked
    for a URL that is not loopback (the refusal then says so).
    """

    def __init__(self, keys: Iterable[TrustedKey] = (), *, store: TrustStore | None = None,
                 key_file: Path | None = None, insecure: bool = False,
                 opt_out_ignored: bool = False) -> None:
        self._given = list(keys)
        self._store = store
        self._key_file = key_file
        self._loaded: list[TrustedKey] | None = None
        self.insecure = insecure
        self.opt_out_ignored = opt_out_ignored
        self._warned = False

    def __repr__(self) -> str:
        return f"TrustPolicy({len(self.keys())} keys{', insecure' if self.insecure else ''})"

    @classmethod
    def for_service(cls, config: ClientConfig, url: str | None = None) -> TrustPolicy:
        """The policy of ``config`` for the service at ``url``: its pinned keys, its
        ``LCC_TRUSTED_KEYS``, and the loopback opt-out when ``url`` is loopback."""
        loopback = url is not None and is_loopback(url)
        return cls(store=TrustStore(default_trust_file(config)), key_file=config.trusted_keys,
                   insecure=config.trust_loopback and loopback,
                   opt_out_ignored=config.trust_loopback and not loopback)

    def keys(self) -> list[TrustedKey]:
        """Every trusted key.  Raises :class:`LccError` when the pinned keys or
        ``LCC_TRUSTED_KEYS`` cannot be read."""
        if self._loaded is None:
            loaded = list(self._given)
            if self._store is not None:
                loaded += self._store.keys()
            if self._key_file is not None:
                try:
                    loaded += read_key_file(self._key_file)
                except LccError as e:
                    raise LccError(f"LCC_TRUSTED_KEYS: {e}") from None
            self._loaded = loaded
        return self._loaded

    def add(self, key: TrustedKey) -> None:
        """Trust ``key`` too (for this policy's life)."""
        self._given.append(key)
        if self._loaded is not None:
            self._loaded.append(key)

    def find(self, key_id: str) -> TrustedKey | None:
        return next((k for k in self.keys() if k.fingerprint == key_id), None)

    def open(self, origin: str, manifest: object, signature: object,
             key_id: object) -> dict:
        """The manifest (parsed) of an answer from ``origin`` once its signature
        verifies with a trusted key.  ``manifest`` is the signed text,
        ``signature`` base64.  Raises :class:`UntrustedArtifact`."""
        if not isinstance(manifest, str) or not manifest:
            raise UntrustedArtifact(f"{_who(origin)} sent an object without a signed manifest; "
                                    "refused", hint=self._hint(origin))
        named = key_id if isinstance(key_id, str) and _KEY_ID.fullmatch(key_id) else None
        key = self.find(named) if named else None
        sig = _b64(signature)
        data = manifest.encode("utf-8")
        if key is not None:
            if sig is None or not key.verify(data, sig):
                # A trusted key's name on a broken signature is a forgery, opt-out or not.
                raise UntrustedArtifact(
                    f"{_who(origin)} sent an object whose manifest signature does not verify "
                    f"with key {named}; refused (altered in transit, or not from that service)",
                    key_id=named)
        elif self.insecure:
            if not self._warned:
                self._warned = True
                log.warning("loading what %s sends without a trusted signature "
                            "(LCC_INSECURE_TRUST_LOOPBACK)", origin)
        else:
            who = f"key {named}" if named else "a key it does not name"
            if not self.keys():
                raise UntrustedArtifact(
                    f"{_who(origin)} sent an object signed by {who}, but no compile service key "
                    "is trusted here; refused", key_id=named, hint=self._hint(origin))
            raise UntrustedArtifact(
                f"{_who(origin)} sent an object signed by {who}, which is not a trusted key; "
                "refused", key_id=named, hint=self._hint(origin, rotated=True))
        try:
            parsed = json.loads(manifest)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or parsed.get("format") != MANIFEST_FORMAT:
            raise UntrustedArtifact(f"{_who(origin)} sent a manifest lcc does not understand "
                                    f"(format {_short(parsed)}); refused", key_id=named)
        return parsed

    def _hint(self, origin: str, *, rotated: bool = False) -> str:
        parts = []
        if rotated:
            parts.append("if the service's key was rotated, ask its operator for the new "
                         "fingerprint")
        if origin.startswith(("http://", "https://")):
            parts.append(f"pin the service's key with `lcc trust add {origin}` and compare "
                         "the fingerprint it shows with the operator's")
        parts.append("or name a key file in LCC_TRUSTED_KEYS")
        if self.opt_out_ignored:
            parts.append("LCC_INSECURE_TRUST_LOOPBACK applies to loopback addresses only")
        elif origin.startswith(("http://", "https://")) and is_loopback(origin):
            parts.append("for a development server on this machine only: "
                         "LCC_INSECURE_TRUST_LOOPBACK=1")
        return "; ".join(parts)


def expected_request(bundle: Bundle, *, kernel: str, arch: str,
                     defines: Mapping[str, str | None]) -> dict:
    """What a manifest's ``request`` must say for this compile (without ``kernel_btf``,
    which names the service's copy of the kernel BTF and is only recorded)."""
    return {"bundle": bundle.digest(), "defines": dict(defines), "arch": arch,
            "kernel": kernel}


def check_manifest(manifest: Mapping[str, Any], *, origin: str, obj: bytes,
                   btf: bytes | None, request: Mapping[str, Any] | None) -> None:
    """That ``obj`` and ``btf`` are what ``manifest`` names, and that it answers
    ``request`` (when given).  Raises :class:`UntrustedArtifact`."""
    if manifest.get("object") != _blob(obj):
        raise UntrustedArtifact(f"{_who(origin)} sent an object that is not the one its signed "
                                f"manifest names (sha256 {hashlib.sha256(obj).hexdigest()[:16]}"
                                f"..., manifest {_short(manifest.get('object'))}); refused")
    if manifest.get("btf") != (None if btf is None else _blob(btf)):
        raise UntrustedArtifact(f"{_who(origin)} sent tailored BTF that is not what its signed "
                                "manifest names; refused")
    if request is not None:
        said = manifest.get("request")
        said = ({k: v for k, v in said.items() if k != "kernel_btf"}
                if isinstance(said, dict) else said)
        if said != dict(request):
            raise UntrustedArtifact(f"{_who(origin)} sent an object signed for another request "
                                    f"({_difference(said, request)}); refused")
    for name, kind in (("toolchain", dict), ("warnings", list), ("programs", list),
                       ("maps", list)):
        if not isinstance(manifest.get(name), kind):
            raise UntrustedArtifact(f"{_who(origin)} sent a manifest without a valid {name!r}; "
                                    "refused")


def remote_diagnostic(d: object) -> Diagnostic:
    """A compiler message sent by a service, with its text made :func:`printable`.
    Raises ``ValueError``/``TypeError`` for what is not a diagnostic."""
    if not isinstance(d, dict):
        raise TypeError("a diagnostic is not a JSON object")
    return Diagnostic(file=printable(str(d.get("file", "")), newlines=False),
                      line=int(d.get("line", 0)), column=int(d.get("column", 0)),
                      severity=printable(str(d.get("severity", "error")), newlines=False),
                      message=printable(str(d.get("message", ""))))


def artifact_from_manifest(manifest: Mapping[str, Any], *, obj: bytes, btf: bytes | None,
                           origin: str, text: str, signature: object, key_id: object,
                           cached: bool = False) -> Artifact:
    """The :class:`Artifact` for a checked manifest (:func:`check_manifest`): what it
    reports comes from the manifest, which it keeps (``text``, ``signature``,
    ``key_id``) for the cache to check again.  Raises :class:`UntrustedArtifact`
    for warnings that are not diagnostics."""
    try:
        warnings = [remote_diagnostic(d) for d in manifest["warnings"]]
    except (TypeError, ValueError) as e:
        raise UntrustedArtifact(f"{_who(origin)} sent a manifest with malformed warnings ({e}); "
                                "refused") from None
    return Artifact(object=obj, digest=manifest["object"]["sha256"], btf=btf,
                    warnings=warnings, toolchain=dict(manifest["toolchain"]), cached=cached,
                    origin=origin, manifest=text,
                    signature=signature if isinstance(signature, str) else None,
                    key_id=key_id if isinstance(key_id, str) else None)


def _who(origin: str) -> str:
    return f"compile service at {origin}" if origin.startswith(("http://", "https://")) \
        else origin


def _blob(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _difference(said: object, want: Mapping[str, Any]) -> str:
    if not isinstance(said, dict):
        return "it names no request"
    for name in ("bundle", "kernel", "arch", "defines"):
        if said.get(name) != want.get(name):
            return f"{name} {_short(said.get(name))}, not {_short(want.get(name))}"
    return "its request differs"


def _short(value: object, limit: int = 40) -> str:
    """``value`` (sent by a service) in a few printable characters."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=True)
    return text if len(text) <= limit else text[:limit] + "..."


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def pin_comment(origin: str) -> str:
    """The comment a key pinned from ``origin`` gets: where and when."""
    return f"{origin} {time.strftime('%Y-%m-%d')}"
