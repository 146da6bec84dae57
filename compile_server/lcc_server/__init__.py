"""lcc compile service: compiles BPF C bundles into CO-RE objects over HTTP.

Compiling itself (clang, bpftool, the sandbox, vmlinux.h and PCH caches,
request validation) is ``lcc_toolchain``, shared with the lcc client's local
backend; this package imports it and never ``lcc``.  Modules, one concept each:

- ``app``: ``create_app(settings)``, the FastAPI application, which maps
  ``lcc_toolchain.errors`` to HTTP replies; ``service``: caching,
  single-flight, concurrency; ``stores``: the storage seam (protocols, the
  Redis stores of a fleet, leases); ``btf_store``, ``artifacts``: the disk
  stores, with ``ledger``, their disk accounting shared by worker processes;
  ``signing``: the Ed25519 keys and the signed manifests of replies;
  ``models``: request and reply bodies; ``guard``: token and size checks;
  ``metrics``; ``settings``; ``singleflight``; ``server.serve()``: run with
  uvicorn.

Importing this package is cheap and imports no web framework.
"""

__all__ = ["create_app", "serve"]


def __getattr__(name: str):
    if name == "create_app":
        from lcc_server.app import create_app
        return create_app
    if name == "serve":
        from lcc_server.server import serve
        return serve
    raise AttributeError(f"module 'lcc_server' has no attribute {name!r}")
