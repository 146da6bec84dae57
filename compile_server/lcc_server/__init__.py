"""lcc compile service: compiles BPF C bundles into CO-RE objects over HTTP.

Modules, one concept each:

- ``toolchain``: clang/bpftool, vmlinux.h and PCH caches (also used embedded
  by the lcc client); ``sandbox`` + ``sandbox_exec`` + ``landlock``: how
  tools are confined; ``validation``: what a request may contain;
- ``app``: ``create_app(settings)``, the FastAPI application; ``service``:
  caching, single-flight, concurrency; ``btf_store``, ``artifacts``: on-disk
  stores; ``metrics``; ``settings``; ``server.serve()``: run with uvicorn.

Importing this package is cheap and imports no web framework: the sandbox
trampoline imports it before every compile.
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
