#!/usr/bin/env python3
"""A few loopback TCP connections, so that tcpconnlat has something to show.

    connect_loop.py [INTERVAL [SECONDS]]   # one connect every INTERVAL s (0.5), for SECONDS (120)

It listens on 127.0.0.1 (a free port), connects to itself every INTERVAL
seconds, accepts and closes, until SECONDS have passed or it is signalled.
``scripts/example.sh`` runs it beside tcpconnlat.
"""

from __future__ import annotations

import signal
import socket
import sys
import time


def main(argv: list[str]) -> int:
    interval = float(argv[0]) if argv else 0.5
    seconds = float(argv[1]) if len(argv) > 1 else 120.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    end = time.monotonic() + seconds
    with socket.create_server(("127.0.0.1", 0)) as listener:
        addr = listener.getsockname()
        while time.monotonic() < end:
            with socket.create_connection(addr, timeout=5):
                conn, _ = listener.accept()
                conn.close()
            time.sleep(interval)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(0)
