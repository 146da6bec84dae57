"""The API documents' pages (/docs: Swagger UI, /redoc: ReDoc), with their
JavaScript and CSS served by the service itself.

FastAPI's own pages load their assets from a public CDN: a browser opening
/docs of a service on an isolated network gets a blank page, and an operator
who allows it lets a third party run script in a page that holds the
service's token.  ``mount_docs(app)`` serves the pages with the assets that
the ``fastapi-offline`` package ships (Swagger UI's bundle and CSS, ReDoc's
standalone bundle, a favicon) under ``ASSETS_URL``; the pages reference no
other host.  The assets are behind the token like the pages
(``lcc_server.guard``).  The application must be made with
``docs_url=None, redoc_url=None``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "assets_dir", "mount_docs"]

#: Where the pages' scripts, styles and icon are served.
ASSETS_URL = "/docs-assets"


def assets_dir() -> Path:
    """The directory of the vendored assets (from the ``fastapi-offline`` package).
    Raises ``ModuleNotFoundError`` naming the package when it is not installed."""
    try:
        return Path(str(files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the API documents' assets come from the fastapi-offline package: "
            "pip install 'lcc[server]'", name="fastapi_offline") from None


def mount_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` of ``app``,
    their assets under ``ASSETS_URL``."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    title = app.title

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png")

    @app.get(redoc_url, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url, title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False)
