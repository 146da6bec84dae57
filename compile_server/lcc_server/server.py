"""Start the compile service with uvicorn: what ``lcc server`` calls.

TLS: pass ``ssl_certfile``/``ssl_keyfile`` (uvicorn's options), or put the
service behind a reverse proxy that terminates TLS.  With a token set
(``Settings.token`` / ``LCC_TOKEN``) every route but /healthz and the API
docs needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import os

from lcc_server.settings import DEFAULT_PORT, Settings

__all__ = ["serve"]


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, workers: int = 1,
          settings: Settings | None = None, *, ssl_certfile: str | None = None,
          ssl_keyfile: str | None = None, log_level: str = "info") -> None:
    """Run the service until interrupted.

    ``workers > 1`` starts that many processes; they share the state
    directory (its caches are safe for that) and each takes ``settings``
    through the environment.  Raises ``ValueError`` on malformed settings.
    """
    import uvicorn

    settings = settings or Settings.from_env()
    common = dict(host=host, port=port, log_level=log_level, ssl_certfile=ssl_certfile,
                  ssl_keyfile=ssl_keyfile)
    if workers <= 1:
        from lcc_server.app import create_app
        uvicorn.run(create_app(settings), **common)
        return
    os.environ.update(settings.to_env())
    uvicorn.run("lcc_server.app:create_app", factory=True, workers=workers, **common)
