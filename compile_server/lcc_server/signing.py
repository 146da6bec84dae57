"""The service's signing keys, and the signed statements it makes with them.

Everything the service says about an object it hands out (the object's and
the tailored BTF's sha256, the request it answers, toolchain versions, the
maps, programs and warnings it reports) is a *statement*: a JSON object,
encoded canonically (:func:`canonical`: sorted keys, no spaces, ASCII only)
and signed with Ed25519.  Replies carry the exact signed text, so a client
verifies the bytes it received and never re-encodes anything.

Keys live in ``<state dir>/keys`` (mode 0700)::

    signing.pem          the current private key (PKCS#8 PEM, mode 0600)
    signing.pub          the public key in use, one line: ``ed25519 <base64> <comment>``
    retired/<hex>.pub    public keys of earlier rotations, same format

The private key is made on first start, or read from ``LCC_SIGNING_KEY``
(a PEM file kept outside the state directory, e.g. a mounted secret; then
a writer of the state directory cannot sign).  :func:`rotate` retires the
current key: its public half moves to ``retired/`` (the service still
accepts records it signed, and lists it in ``GET /v1/keys``) and a new
private key replaces it; the service uses it from its next start.

A key is named by its fingerprint, ``SHA256:`` and the unpadded base64 of
the sha256 of the 32 raw public-key bytes (the lcc client computes the same).

``python -m lcc_server.signing show|rotate [--state-dir DIR]`` prints the
current public key (to hand to clients out of band) or rotates it.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lcc_toolchain.atomic import write_atomic
from lcc_toolchain.keys import ALGORITHM, fingerprint, key_line, verify

__all__ = ["ALGORITHM", "MANIFEST_FORMAT", "KeyRing", "PublicKey", "Sealed", "canonical",
           "fingerprint", "keys_dir", "manifest", "rotate"]

log = logging.getLogger("lcc_server.signing")

PRIVATE_NAME = "signing.pem"
PUBLIC_NAME = "signing.pub"
RETIRED_DIR = "retired"
#: ``format`` of the manifest signed into every reply that carries an object.
MANIFEST_FORMAT = "lcc-manifest/1"


def canonical(statement: object) -> bytes:
    """The one encoding of ``statement`` that is signed: sorted keys, no
    whitespace, ASCII only, no NaN.  Raises ``ValueError``/``TypeError`` for
    what JSON cannot hold."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def keys_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "keys"


def manifest(art, *, request: dict | None, btf: bytes | None) -> dict:
    """The statement signed into a reply that hands out ``art`` (an
    ``lcc_server.artifacts.Artifact``)::

        {"format": "lcc-manifest/1",
         "object": {"sha256": hex, "size": n},
         "btf": {"sha256": hex, "size": n} | null,      tailored BTF sent with it
         "request": {"bundle": hex, "defines": {name: value | null}, "arch": str,
                     "kernel": release, "kernel_btf": "sha256:<hex>"} | null,
         "toolchain": {...}, "programs": [...], "maps": [...], "warnings": [...]}

    ``request`` is what the reply answers (None for ``GET /v1/artifacts``,
    which answers a digest): the bundle digest, defines, arch, kernel release
    and the sha256 of the kernel BTF the object was compiled against.
    """
    return {"format": MANIFEST_FORMAT,
            "object": {"sha256": art.digest, "size": len(art.object)},
            "btf": None if btf is None else {"sha256": hashlib.sha256(btf).hexdigest(),
                                             "size": len(btf)},
            "request": request,
            "toolchain": art.toolchain,
            "programs": art.programs,
            "maps": art.maps,
            "warnings": [w.to_dict() for w in art.warnings]}


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key (its 32 raw bytes)."""

    raw: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    def line(self, comment: str = "lcc-server") -> str:
        """The one-line form clients pin (``lcc trust add FILE``, ``LCC_TRUSTED_KEYS``)."""
        return key_line(self.raw, comment)

    def verify(self, data: bytes, signature: bytes) -> bool:
        return verify(self.raw, data, signature)

    @classmethod
    def from_line(cls, text: str) -> PublicKey:
        """Parse ``ed25519 <base64> [comment]``; raises ``ValueError``."""
        parts = text.split()
        if len(parts) < 2 or parts[0] != ALGORITHM:
            raise ValueError("not an 'ed25519 <base64>' key line")
        try:
            raw = base64.b64decode(parts[1], validate=True)
        except binascii.Error:
            raise ValueError("the key is not base64") from None
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 key has 32 bytes, not {len(raw)}")
        return cls(raw)


@dataclass(frozen=True)
class Sealed:
    """A signed statement: its canonical text, who signed it, the signature (base64)."""

    statement: str
    key_id: str
    signature: str

    def to_dict(self) -> dict:
        return {"statement": self.statement, "key_id": self.key_id,
                "signature": self.signature}


class KeyRing:
    """The current signing key and the retired public keys still honoured.

    ``sign`` uses the current key; ``verify`` accepts the current and every
    retired key.  ``source`` says where the private key came from (a path).
    """

    def __init__(self, private: Ed25519PrivateKey, retired: Iterable[PublicKey] = (),
                 source: str = "memory") -> None:
        self._private = private
        raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        self.current = PublicKey(raw)
        self.retired = [k for k in retired if k.raw != raw]
        self.source = source
        self._by_id = {k.fingerprint: k for k in (self.current, *self.retired)}

    def __repr__(self) -> str:
        return f"KeyRing({self.current.fingerprint}, {len(self.retired)} retired)"

    @property
    def key_id(self) -> str:
        return self.current.fingerprint

    @classmethod
    def generate(cls) -> KeyRing:
        """A fresh key held in memory only (tests, tools)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, directory: Path, *, key_file: Path | None = None) -> KeyRing:
        """The keys of ``directory`` (made on first use, see the module docstring),
        with the private key from ``key_file`` when given.

        Safe when several worker processes start at once: one key is made and
        all use it.  Raises ``ValueError`` for a key file that is not an
        Ed25519 private key, ``OSError`` when it cannot be read or the
        directory cannot be written.
        """
        directory = Path(directory)
        _make_dir(directory)
        if key_file is not None:
            private = _read_private(Path(key_file))
            source = str(key_file)
            _warn_if_readable(Path(key_file))
        else:
            path = directory / PRIVATE_NAME
            if not path.exists():
                _create_private(path)
            private = _read_private(path)
            source = str(path)
        ring = cls(private, _read_retired(directory / RETIRED_DIR), source=source)
        # signing.pub always names the key in use (the docker backend reads it).
        pub = directory / PUBLIC_NAME
        line = ring.current.line() + "\n"
        with contextlib.suppress(OSError):
            if not pub.exists() or pub.read_text() != line:
                _write(pub, line.encode(), 0o644)
        return ring

    def sign(self, data: bytes) -> str:
        """The base64 Ed25519 signature of ``data`` with the current key."""
        return base64.b64encode(self._private.sign(data)).decode()

    def seal(self, statement: dict) -> Sealed:
        """``statement`` in canonical form, signed with the current key."""
        text = canonical(statement)
        return Sealed(text.decode("ascii"), self.key_id, self.sign(text))

    def verify(self, data: bytes, key_id: object, signature: object) -> bool:
        """Whether ``signature`` (base64) over ``data`` was made by the key
        ``key_id``, the current or a retired one."""
        key = self._by_id.get(key_id) if isinstance(key_id, str) else None
        if key is None or not isinstance(signature, str):
            return False
        try:
            sig = base64.b64decode(signature, validate=True)
        except binascii.Error:
            return False
        return key.verify(data, sig)

    def open(self, sealed: object) -> dict | None:
        """The statement of a sealed record (a ``Sealed.to_dict()``) when its
        signature verifies and it is a JSON object; else None."""
        if not isinstance(sealed, dict) or not isinstance(sealed.get("statement"), str):
            return None
        text = sealed["statement"].encode("utf-8")
        if not self.verify(text, sealed.get("key_id"), sealed.get("signature")):
            return None
        try:
            statement = json.loads(text)
        except ValueError:
            return None
        return statement if isinstance(statement, dict) else None

    def published(self) -> list[dict]:
        """The public keys, current first, for ``GET /v1/keys``."""
        return [{"id": k.fingerprint, "algorithm": ALGORITHM,
                 "public_key": base64.b64encode(k.raw).decode(),
                 "status": "current" if k is self.current else "retired"}
                for k in (self.current, *self.retired)]


def rotate(directory: Path) -> tuple[PublicKey, PublicKey]:
    """Retire the current key of ``directory`` and make a new one.

    The old public key goes to ``retired/`` (still honoured and published);
    the old private key is deleted.  Returns (old, new).  A running service
    signs with the new key from its next start.
    """
    directory = Path(directory)
    old = KeyRing.load(directory)
    _write(directory / RETIRED_DIR / f"{old.current.raw.hex()}.pub",
           (old.current.line("retired") + "\n").encode(), 0o644)
    fresh = Ed25519PrivateKey.generate()
    _write(directory / PRIVATE_NAME, _pem(fresh), 0o600)
    new = KeyRing.load(directory)
    log.info("signing key %s retired; now signing with %s", old.key_id, new.key_id)
    return old.current, new.current


# -- files ---------------------------------------------------------------------------------

def _pem(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


def _make_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(directory, 0o700)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole with ``mode``, through a temporary file and a rename."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, data, mode=mode)


def _create_private(path: Path) -> None:
    """Make a private key at ``path`` unless another process just did."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_pem(Ed25519PrivateKey.generate()))
        try:
            os.link(tmp, path)  # never replaces: the first process to get here wins
            log.info("made a new signing key at %s", path)
        except FileExistsError:
            pass
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _read_private(path: Path) -> Ed25519PrivateKey:
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} is not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def _warn_if_readable(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("the signing key %s can be read by other users (chmod 600 it)", path)


def _read_retired(directory: Path) -> list[PublicKey]:
    out = []
    for path in sorted(directory.glob("*.pub")):
        try:
            out.append(PublicKey.from_line(path.read_text()))
        except (OSError, ValueError) as e:
            log.warning("ignoring retired key %s: %s", path.name, e)
    return out


# -- python -m lcc_server.signing ----------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    from lcc_server.settings import Settings

    ap = argparse.ArgumentParser(prog="python -m lcc_server.signing",
                                 description="Show or rotate the compile service's signing key.")
    ap.add_argument("action", choices=("show", "rotate"))
    ap.add_argument("--state-dir", metavar="DIR",
                    help="the service's state directory (default: LCC_STATE_DIR)")
    args = ap.parse_args(argv)
    settings = Settings.from_env()
    directory = keys_dir(Path(args.state_dir) if args.state_dir else settings.state_dir)
    if args.action == "rotate":
        if settings.signing_key is not None:
            print("LCC_SIGNING_KEY names the key: replace that file to rotate", file=sys.stderr)
            return 1
        old, new = rotate(directory)
        print(f"retired {old.fingerprint}\ncurrent {new.fingerprint}\n"
              "restart the service to sign with the new key; clients pin it with "
              "`lcc trust add URL`")
        return 0
    ring = KeyRing.load(directory, key_file=settings.signing_key)
    for entry in ring.published():
        print(f"{entry['status']:<8} {entry['id']}  {ALGORITHM} {entry['public_key']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
