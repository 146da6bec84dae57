"""Replies that carry a compiled object, streamed so that slow readers cost
the server a chunk each, not an object each.

The wire format is unchanged: ``json_reply(fields, source)`` sends the JSON
object ``fields`` plus ``"object": "<base64>"``, and ``raw_reply(source)`` the
raw bytes; both with an exact Content-Length.  Only the first is built in
memory (it holds the manifest, metadata and tailored BTF, which are small);
the object is read ``CHUNK`` bytes at a time, encoded and sent, and the next
chunk is read only when the connection has taken the previous one (uvicorn
waits for its write buffer to drain).  So N clients that stall mid-reply hold
about N chunks, whatever the objects' sizes.  The chunks are read and encoded
on the event loop (a ``pread`` of 48 KiB, usually from the page cache, and its
base64): iterating in worker threads instead costs each stalled reply a
thread and its malloc arena, about a megabyte.

An ``ObjectSource`` reads the object from its file when the store has one
(held open, so an eviction while the reply is sent does not cut it), else from the bytes in memory.  What it streams is hashed on the way:
if it is not the object whose digest the reply names (the file was replaced
after it was checked), the reply is cut short, so the client sees a
truncated answer, never a wrong object under a signed manifest.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from starlette.responses import StreamingResponse

__all__ = ["CHUNK", "ObjectSource", "json_reply", "raw_reply"]

log = logging.getLogger("lcc_server")

#: Bytes of object read, encoded and sent at a time; a multiple of 3, so the
#: base64 of consecutive chunks is the base64 of the whole.
CHUNK = 48 << 10
assert CHUNK % 3 == 0


class ObjectSource:
    """The object with sha256 ``digest``: its file at ``path`` when that can be
    opened (held open from here on), else ``data``.  Owns the open file:
    iterating to the end, ``close()``, or dropping the source closes it."""

    def __init__(self, digest: str, data: bytes, path: Path | None = None) -> None:
        self.digest = digest
        self.size = len(data)
        self._data: bytes | None = data
        # A file object, not a bare descriptor: a reply dropped before it was
        # iterated (the client left first) still closes it when collected.
        self._file: io.FileIO | None = None
        if path is not None:
            try:
                f = io.FileIO(path, "r")
            except OSError:
                f = None  # evicted since it was read: serve the bytes in hand
            if f is not None:
                if os.fstat(f.fileno()).st_size == self.size:
                    self._file, self._data = f, None  # the reply no longer pins the bytes
                else:
                    f.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._data = None

    def chunks(self) -> Iterator[bytes]:
        """The object, ``CHUNK`` bytes at a time; stops early (and logs) when
        what was read is not the object of ``digest``."""
        sha = hashlib.sha256()
        sent = 0
        try:
            while sent < self.size:
                n = min(CHUNK, self.size - sent)
                if self._file is not None:
                    part = os.pread(self._file.fileno(), n, sent)
                else:
                    part = self._data[sent:sent + n]
                if len(part) != n:
                    log.error("artifact %s: its file shrank while it was sent; reply cut",
                              self.digest[:16])
                    return
                sha.update(part)
                sent += n
                if sent == self.size and sha.hexdigest() != self.digest:
                    log.error("artifact %s: its file changed while it was sent; reply cut",
                              self.digest[:16])
                    return
                yield part
        finally:
            self.close()


def _b64_length(n: int) -> int:
    return 4 * ((n + 2) // 3)


def json_reply(fields: dict, source: ObjectSource) -> StreamingResponse:
    """``fields`` (a JSON object without ``object``) and the object, base64."""
    head = json.dumps(fields)[:-1].encode() + b', "object": "'
    tail = b'"}'

    async def body() -> AsyncIterator[bytes]:
        yield head
        for part in source.chunks():
            yield base64.b64encode(part)
        yield tail
    length = len(head) + _b64_length(source.size) + len(tail)
    return StreamingResponse(body(), media_type="application/json",
                             headers={"Content-Length": str(length)})


def raw_reply(source: ObjectSource, headers: dict[str, str]) -> StreamingResponse:
    """The object's bytes as ``application/octet-stream``."""
    async def body() -> AsyncIterator[bytes]:
        for part in source.chunks():
            yield part
    return StreamingResponse(body(), media_type="application/octet-stream",
                             headers={**headers, "Content-Length": str(source.size)})
