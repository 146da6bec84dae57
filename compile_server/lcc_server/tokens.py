"""Who a bearer token belongs to: the service's callers, by name.

``TokenTable.load(token=..., token_file=...)`` reads ``LCC_TOKEN`` (one caller,
``default``, an admin) and the file named by ``LCC_TOKEN_FILE``, one caller a
line::

    # name   token                              [admin]
    ci       3f0c...                            
    alice    9b1e...                            admin

Names match ``NAME_RE``; tokens are at least 16 characters; names and
tokens are unique.  ``TokenTable.match(given)`` compares the given token with
every entry in constant time and returns its ``Caller`` or None.  What a
caller may do beyond compiling: replace a BTF release only if it uploaded it,
or is an admin (``lcc_server.btf_store``).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Caller", "NAME_RE", "TokenTable"]

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_MIN_TOKEN = 16


@dataclass(frozen=True)
class Caller:
    """The owner of a token."""

    name: str
    admin: bool = False


class TokenTable:
    def __init__(self, entries: dict[bytes, Caller]) -> None:
        self._entries = entries

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def load(cls, *, token: str | None = None, token_file: Path | None = None) -> TokenTable:
        """The callers of ``token`` and ``token_file``.  Raises ``ValueError``
        (naming the file and line) for a malformed file, ``OSError`` when it
        cannot be read."""
        entries: dict[bytes, Caller] = {}
        if token:
            entries[token.encode()] = Caller("default", admin=True)
        if token_file is not None:
            text = Path(token_file).read_text(encoding="utf-8")
            for number, line in enumerate(text.splitlines(), 1):
                fields = line.split("#", 1)[0].split()
                if not fields:
                    continue
                where = f"{token_file}:{number}"
                if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] != "admin"):
                    raise ValueError(f"{where}: expected `name token [admin]`")
                name, secret = fields[0], fields[1].encode()
                if not NAME_RE.fullmatch(name):
                    raise ValueError(f"{where}: name must match {NAME_RE.pattern}")
                if len(secret) < _MIN_TOKEN:
                    raise ValueError(f"{where}: the token of {name} is shorter than "
                                     f"{_MIN_TOKEN} characters")
                if secret in entries or any(c.name == name for c in entries.values()):
                    raise ValueError(f"{where}: {name} or its token is already listed")
                entries[secret] = Caller(name, admin=len(fields) == 3)
        return cls(entries)

    def match(self, given: bytes) -> Caller | None:
        """The caller whose token is ``given``, else None (constant time per entry)."""
        found = None
        for secret, caller in self._entries.items():
            if hmac.compare_digest(given, secret):
                found = caller
        return found
