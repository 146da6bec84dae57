"""What compiling BPF C needs, on whichever side compiles: the lcc client's
local backend and the compile service (``lcc_server``) both depend on it, and
it depends on neither.

Before this package the service imported ``lcc.errors``, whose package
imports lcc's libbpf runtime, so the service loaded ctypes and a dozen client
modules it never used; and the client reached into the server for its
embedded toolchain.  Now each side imports this package and maps its errors
(``lcc_toolchain.errors``) to its own: HTTP replies in ``lcc_server.app``,
``lcc.errors`` in the client.  Nothing here imports ``lcc`` or ``lcc_server``.

Modules, one concept each:

- ``toolchain``: ``Toolchain`` (clang/bpftool, vmlinux.h and PCH caches, the
  cut vmlinux.h);
- ``headers``: ``include_dir`` (where lbc.h and the libbpf compat headers
  are), the multiarch UAPI directory, the flags version; light enough for a
  tool start;
- ``digest``: ``bundle_digest``, the one hash of a bundle on both sides;
- ``identity``: the toolchain identity remembered on disk against the stats
  of what it is computed from (``identity_cached``, for a cache-hit path);
- ``vmlinux``, ``kfuncs``, ``prune``, ``pch``: vmlinux.h per BTF with the
  kernel's kfunc declarations, cut down to a program's types, precompiled
  lbc.h; ``index_file``: vmlinux.h's index saved as a mapped binary file;
- ``sandbox`` + ``sandbox_exec`` + ``landlock`` + ``_syscalls``: how clang
  and bpftool are confined (``_syscalls`` is the only ctypes user);
  ``spawner`` + ``spawner_main``: the single-threaded process a
  multi-threaded caller (the service) has fork each confined run;
- ``validation``: what a bundle, define, arch, release or digest may be;
- ``diagnostics``: clang's output into ``Diagnostic`` records, server paths
  scrubbed; ``objinfo``: programs and maps of a compiled object;
- ``errors``: the error types and ``Diagnostic``;
- ``atomic``, ``locks``: small file and lock helpers.

What only a service needs (HTTP app, stores, settings, metrics,
single-flight) stays in ``lcc_server``.

Importing this package imports none of its modules: the sandbox trampoline
imports it before every compile and ``lcc.errors`` imports ``errors`` when a
tool starts.  The names below are loaded on first use.
"""

__all__ = ["CompileResult", "Toolchain", "bundle_digest", "include_dir"]


def __getattr__(name: str):
    if name == "bundle_digest":
        from lcc_toolchain.digest import bundle_digest
        return bundle_digest
    if name == "include_dir":
        from lcc_toolchain.headers import include_dir
        return include_dir
    if name in __all__:
        from lcc_toolchain import toolchain
        return getattr(toolchain, name)
    raise AttributeError(f"module 'lcc_toolchain' has no attribute {name!r}")
