"""Objects are streamed: clients that stall mid-reply cost the real service
(uvicorn on 127.0.0.1) a bounded amount of memory.

The program carries a 6 MiB global, so each reply is about 8 MiB of JSON.  A
server that built its replies in memory (as it did) holds all of them while
N clients, reading a few bytes each over tiny receive windows, do not take
them.  The bound is derived from the object cap, not from a duration: the
service's resident memory may grow by less than one ``LCC_MAX_OBJECT_MB``
however many readers stall.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time

import pytest
from conftest import start_service
from servertools import toolchain_missing

pytestmark = pytest.mark.server

CAP_MB = 8
BLOB = 6 << 20
READERS = 16
BIG = f"""\
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"

const volatile char blob[{BLOB}] = {{1}};

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{{
\treturn blob[0];
}}

char LICENSE[] SEC("license") = "GPL";
"""


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) << 10
    raise AssertionError("no VmRSS")


def _stalled_reader(url: str, request: bytes) -> socket.socket:
    """A connection that sends ``request``, reads the status line and stops reading."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: little in flight
    s.settimeout(120)
    s.connect((host, int(port)))
    s.sendall(request)
    first = s.recv(16)
    assert first.startswith(b"HTTP/1.1 200"), first
    return s


@pytest.fixture(scope="module")
def capped_service(tmp_path_factory):
    reason = toolchain_missing()
    if reason:
        pytest.skip(reason)
    svc = start_service(tmp_path_factory.mktemp("lcc-capped"), LCC_MAX_OBJECT_MB=str(CAP_MB),
                        LCC_WARM="0")  # no background header build to blur the figure
    yield svc
    svc.child.stop()


def test_stalled_readers_hold_a_chunk_each_not_an_object(capped_service):
    svc = capped_service
    payload = json.dumps({"bundle": {"main": "big.bpf.c", "files": {"big.bpf.c": BIG}}})
    with svc.client(timeout=300) as c:
        r = c.post("/v1/compile", content=payload, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text[:2000]
        digest = r.json()["digest"]
        obj = base64.b64decode(r.json()["object"])
        assert len(obj) > BLOB and hashlib.sha256(obj).hexdigest() == digest
        reply_bytes = len(r.content)
        # Every path warm once (the object is now in the store's memory cache).
        assert c.get(f"/v1/artifacts/{digest}").status_code == 200
        assert c.get(f"/v1/artifacts/{digest}",
                     headers={"Accept": "application/octet-stream"}).content == obj

    auth = f"Authorization: Bearer {svc.token}\r\n"
    post = (f"POST /v1/compile HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(payload.encode())}\r\n\r\n").encode() + payload.encode()
    get_json = f"GET /v1/artifacts/{digest} HTTP/1.1\r\nHost: t\r\n{auth}\r\n".encode()
    get_raw = (f"GET /v1/artifacts/{digest} HTTP/1.1\r\nHost: t\r\n{auth}"
               "Accept: application/octet-stream\r\n\r\n").encode()
    pid = svc.child.proc.pid
    before = _rss(pid)
    readers = []
    try:
        for i in range(READERS):
            readers.append(_stalled_reader(svc.url, (post, get_json, get_raw)[i % 3]))
        # Every reply has started; sample while all of them stall (the largest counts).
        peak = 0
        for _ in range(5):
            peak = max(peak, _rss(pid))
            time.sleep(0.2)
    finally:
        for s in readers:
            s.close()
    growth = peak - before
    held_if_buffered = READERS * reply_bytes
    assert growth < CAP_MB << 20, (
        f"RSS grew {growth >> 10} KiB with {READERS} stalled readers (a buffering server "
        f"would hold ~{held_if_buffered >> 20} MiB)")
    assert svc.healthy()
    with svc.client(timeout=300) as c:  # and replies still arrive whole
        again = c.get(f"/v1/artifacts/{digest}", headers={"Accept": "application/octet-stream"})
        assert again.content == obj
