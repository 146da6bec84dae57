"""The signing-key formats the compile service and its clients agree on.

The service signs with an Ed25519 key and publishes the public half; the
client pins it by its fingerprint and verifies with it.  Both sides use these
functions, so the fingerprint and the key-file line cannot drift apart.
``cryptography`` is imported only to verify: fingerprints and key lines need
nothing but the standard library.
"""

from __future__ import annotations

import base64
import hashlib

ALGORITHM = "ed25519"

__all__ = ["ALGORITHM", "fingerprint", "key_line", "verify"]


def fingerprint(raw: bytes) -> str:
    """``SHA256:<unpadded base64>`` of a raw 32-byte Ed25519 public key."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def key_line(raw: bytes, comment: str = "") -> str:
    """The key as one line of a key file: ``ed25519 <base64> [comment]``."""
    return f"{ALGORITHM} {base64.b64encode(raw).decode()} {comment}".rstrip()


def verify(raw: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the Ed25519 signature of ``data`` by public key ``raw``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, data)
        return True
    except (InvalidSignature, ValueError):
        return False
