"""``lcc cache``: list or clear the artifact cache (``LCC_CACHE_DIR``)."""

from __future__ import annotations

import argparse
import json
import time

from .common import command_with_actions, human_size

HELP = "list or clear the compiled-object cache"


def register(sub, common: argparse.ArgumentParser) -> None:
    add = command_with_actions(sub, common, "cache", HELP)
    ls = add("ls", run_ls, "list cached objects", "List cached objects, oldest first.")
    ls.add_argument("--json", action="store_true",
                    help="print one JSON object: root, entries (key, digest, source, kernel, "
                         "arch, size, btf, created, origin)")
    clear = add("clear", run_clear, "remove every cached object", "Remove every cached object.")
    clear.add_argument("--all", action="store_true",
                       help="also remove the local toolchain's vmlinux.h and header caches")
    add("dir", run_dir, "print the cache directory", "Print the cache directory.")


def _age(created: float) -> str:
    secs = max(0, time.time() - created)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n:
            return f"{int(secs // n)}{unit}"
    return f"{int(secs)}s"


def ls_json(root: str, entries) -> dict:
    """``lcc cache ls --json``: ``{"root", "entries": [...]}``, each entry with the
    keys ``key``, ``digest`` (the object's sha256), ``source``, ``kernel``,
    ``arch``, ``size`` (bytes on disk), ``btf`` (bool), ``created`` (Unix
    time) and ``origin``; unknown values are null."""
    return {"root": root, "entries": [
        {"key": e.key, "digest": e.meta.get("object"), "source": e.meta.get("main"),
         "kernel": e.meta.get("kernel"), "arch": e.meta.get("arch"), "size": e.size,
         "btf": bool(e.meta.get("btf")), "created": e.created, "origin": e.meta.get("origin")}
        for e in entries]}


def run_ls(args: argparse.Namespace) -> int:
    from ..compile.cache import ArtifactCache
    store = ArtifactCache()
    entries = store.entries()
    if args.json:
        print(json.dumps(ls_json(str(store.root), entries), indent=2))
        return 0
    print(f"# {store.root}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, "
          f"{human_size(sum(e.size for e in entries))}")
    if entries:
        print(f"{'KEY':<12}  {'SOURCE':<20}  {'KERNEL':<24}  {'ARCH':<7}  {'SIZE':>9}  "
              f"{'BTF':<3}  {'AGE':>4}  ORIGIN")
    for e in entries:
        m = e.meta
        print(f"{e.key[:12]}  {str(m.get('main', '?'))[:20]:<20}  "
              f"{str(m.get('kernel', '?'))[:24]:<24}  {str(m.get('arch', '?')):<7}  "
              f"{human_size(e.size):>9}  {'yes' if m.get('btf') else 'no':<3}  "
              f"{_age(e.created):>4}  {m.get('origin', '?')}")
    return 0


def run_clear(args: argparse.Namespace) -> int:
    from ..compile.cache import ArtifactCache
    store = ArtifactCache()
    n, freed = store.clear(toolchain=args.all)
    print(f"removed {n} entr{'y' if n == 1 else 'ies'} ({human_size(freed)}) from {store.root}")
    return 0


def run_dir(args: argparse.Namespace) -> int:
    from ..compile.cache import ArtifactCache
    print(ArtifactCache().root)
    return 0
