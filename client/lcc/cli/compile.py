"""``lcc compile``: a ``.bpf.c`` file (and the headers it includes) to a BPF object."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from ..compile.backends import BACKENDS
from ..errors import CompileWarning, LccError
from .common import add_server_option, human_size, warn, write_file

HELP = "compile a .bpf.c program into a CO-RE BPF object"


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "compile", parents=[common], help=HELP, description=HELP + ". The local headers it "
        "includes go with it; the result is cached (LCC_CACHE_DIR).")
    p.add_argument("source", help="the program's main file, e.g. tool.bpf.c")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="object to write (default: the source with .o for .c, beside it)")
    add_backend_options(p)
    p.add_argument("--kernel", metavar="RELEASE", help="target kernel release (default: uname -r)")
    p.add_argument("--arch", metavar="ARCH", help="target machine (default: uname -m)")
    p.add_argument("--btf", action="store_true",
                   help="also write BTF of the target kernel tailored to this object "
                        "(for kernels without /sys/kernel/btf/vmlinux)")
    p.add_argument("--btf-output", metavar="FILE",
                   help="where --btf writes (default: the object's name with .btf)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor fill the cache")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead of text: output, digest, size, origin, "
                        "cached, cache_hit, btf_output, warnings, programs, maps")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="how long to wait for a compile service's answer (default: "
                        "LCC_TIMEOUT, else 120)")
    p.add_argument("--insecure-trust-loopback", action="store_true",
                   help="load what a compile service on a loopback address sends without a "
                        "trusted signature (a development server; as "
                        "LCC_INSECURE_TRUST_LOOPBACK=1)")
    p.set_defaults(func=run)


def default_output(source: str) -> str:
    base = source.removesuffix(".c")
    return base + ".o"


def default_btf_output(output: str) -> str:
    for suffix in (".bpf.o", ".o"):
        if output.endswith(suffix):
            return output[:-len(suffix)] + ".btf"
    return output + ".btf"


def _summary(data: bytes, name: str) -> tuple[list | None, list | None]:
    """Programs (name, section, type) and maps (name, type) of an object, or
    (None, None) when libbpf cannot open it: the summary is a convenience and
    the object was written already."""
    from .inspect import describe
    try:
        info = describe(data, name=name)
    except LccError:
        return None, None
    return ([{"name": p["name"], "section": p["section"], "type": p["type"]}
             for p in info["programs"]],
            [{"name": m["name"], "type": m["type"]} for m in info["maps"]])


def result_json(output: str, art, btf_output: str | None) -> dict:
    """``lcc compile --json``: ``output`` (the object's path), ``digest``
    (sha256), ``size`` (bytes), ``origin`` (``local``, a service URL,
    ``docker:<image>``), ``cached`` (no compiler ran), ``cache_hit`` (this
    client's cache answered), ``btf_output`` (path or null), ``warnings``
    (dicts with file, line, column, severity, message), ``programs`` (name,
    section, type) and ``maps`` (name, type), null if the object cannot be read."""
    name = os.path.basename(output).split(".", 1)[0] or None
    programs, maps = _summary(art.object, name)
    return {"output": output, "digest": art.digest, "size": len(art.object),
            "origin": art.origin, "cached": bool(art.cached), "cache_hit": bool(art.cache_hit),
            "btf_output": btf_output, "warnings": [w.to_dict() for w in art.warnings],
            "programs": programs, "maps": maps}


def add_backend_options(p: argparse.ArgumentParser) -> None:
    """``--server``, ``--backend`` and ``-D``: how a command that compiles picks
    where, and with which macros."""
    add_server_option(p)
    p.add_argument("--backend", choices=BACKENDS,
                   help="where to compile (default: --server/LCC_SERVER, LCC_BACKEND, "
                        "else local clang)")
    p.add_argument("-D", dest="defines", action="append", default=[], metavar="NAME[=VALUE]",
                   help="define a macro (repeatable)")


def build_source(source: str, args: argparse.Namespace, *, btf: bool = False):
    """Compile ``source`` as ``lcc compile`` would, with the options of ``args``
    that the command has (``server``, ``backend``, ``defines``, ``kernel``,
    ``arch``, ``no_cache``, ``timeout``, ``insecure_trust_loopback``); prints
    the compiler's warnings to stderr and returns the
    :class:`~lcc.compile.artifact.Artifact`.  Raises :class:`LccError`."""
    # Lazy: `lcc --help` and the other subcommands need no compile pipeline.
    from ..compile import build
    from ..compile.bundle import Bundle
    from ..compile.config import ClientConfig
    from ..compile.defines import parse_args

    if not os.path.isfile(source):
        raise LccError(f"no such file: {source}")
    config = ClientConfig.from_env()
    timeout = getattr(args, "timeout", None)
    if timeout is not None:
        if not 0 < timeout < float("inf"):
            raise LccError(f"--timeout {timeout:g} is not a positive number of seconds")
        config = dataclasses.replace(config, timeout=timeout)
    if getattr(args, "insecure_trust_loopback", False):
        config = dataclasses.replace(config, trust_loopback=True)
    bundle = Bundle.from_path(source)
    art = build(bundle, defines=parse_args(getattr(args, "defines", None) or []),
                server=getattr(args, "server", None), kernel=getattr(args, "kernel", None),
                arch=getattr(args, "arch", None), btf=btf,
                cache=not getattr(args, "no_cache", False),
                backend=getattr(args, "backend", None), config=config)
    for w in art.warnings:
        warn(str(CompileWarning(w, bundle.files)))
    return art


def run(args: argparse.Namespace) -> int:
    art = build_source(args.source, args, btf=args.btf)
    output = args.output or default_output(args.source)
    write_file(output, art.object)
    btf_out = (args.btf_output or default_btf_output(output)) if args.btf else None
    if btf_out is not None:
        write_file(btf_out, art.btf or b"")
    if args.json:
        print(json.dumps(result_json(output, art, btf_out), indent=2))
        sys.stdout.flush()
        return 0
    how = ("from the cache" if art.cache_hit else
           "compiled locally" if art.origin == "local" else
           f"{'cached' if art.cached else 'compiled'} by {art.origin}")
    print(f"{output}: {human_size(len(art.object))}, sha256 {art.digest[:16]} ({how})")
    if btf_out is not None:
        print(f"{btf_out}: {human_size(len(art.btf or b''))} of tailored BTF")
    sys.stdout.flush()
    return 0
