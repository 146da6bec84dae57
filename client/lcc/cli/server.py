"""``lcc server``: run the compile service (``lcc_server``) with uvicorn.

Needs the ``server`` extra (``pip install 'lcc[server]'``).  Settings other
than the options come from the environment (``LCC_TOKEN``, ``LCC_STATE_DIR``,
... see ``lcc_server.settings``).  TLS: ``--ssl-certfile``/``--ssl-keyfile``,
or a reverse proxy in front.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from pathlib import Path

from ..errors import LccError

HELP = "run the compile service"
DEFAULT_PORT = 7655


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("server", parents=[common], help=HELP,
                       description=HELP + " (settings from LCC_* variables; LCC_TOKEN "
                       "requires a bearer token on every API call).")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="BTF store, artifacts and header caches (default: LCC_STATE_DIR, "
                        "else the user's state directory)")
    p.add_argument("--store", metavar="URL",
                   help="where artifacts and BTF are shared: disk (default: LCC_STORE, else "
                        "disk), redis://host:6379/0 or redis+cluster://host:port[,host:port]")
    p.add_argument("--ssl-certfile", metavar="FILE", help="serve HTTPS with this certificate")
    p.add_argument("--ssl-keyfile", metavar="FILE", help="... and this key")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise LccError(f"the compile service is not installed here ({missing[0]} is missing)",
                       hint="pip install 'lcc[server]'")
    try:
        from lcc_server.server import serve
        from lcc_server.settings import Settings
    except ImportError as e:
        raise LccError(f"the compile service is not installed here ({e.name} is missing)",
                       hint="pip install 'lcc[server]'") from e
    try:
        settings = Settings.from_env()
    except ValueError as e:
        raise LccError(f"bad compile service setting: {e}") from None
    if args.state_dir:
        settings = dataclasses.replace(settings, state_dir=Path(args.state_dir))
    if args.store:
        from lcc_server.settings import check_store
        try:
            settings = dataclasses.replace(settings, store=check_store(args.store))
        except ValueError as e:
            raise LccError(f"bad --store: {e}",
                           hint="e.g. --store redis://127.0.0.1:6379/0") from None
    if args.workers < 1:
        raise LccError("--workers must be at least 1")
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise LccError("--ssl-certfile and --ssl-keyfile go together")
    serve(host=args.host, port=args.port, workers=args.workers, settings=settings,
          ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
          log_level=args.log_level)
    return 0
