"""``lcc btf``: the compile service's store of kernel BTF.

``push`` uploads this kernel's ``/sys/kernel/btf/vmlinux`` (or a file) so that
the service can compile for this release; ``pull`` fetches what the service
holds; ``ls`` lists the kernels it knows.
"""

from __future__ import annotations

import argparse
import json

from .common import (add_server_option, command_with_actions, human_size, read_file,
                     server_client, write_file)

HELP = "upload, fetch or list kernel BTF on a compile service"


def register(sub, common: argparse.ArgumentParser) -> None:
    add = command_with_actions(sub, common, "btf", HELP)

    push = add("push", run_push, "upload a kernel's BTF",
               "Upload this kernel's BTF (or --file) to the service.")
    add_server_option(push)
    _kernel_options(push)
    push.add_argument("--file", metavar="PATH",
                      help="raw BTF to upload (default: /sys/kernel/btf/vmlinux)")
    push.add_argument("--replace", action="store_true",
                      help="overwrite a different BTF stored for that kernel")

    pull = add("pull", run_pull, "download a kernel's BTF",
               "Download the BTF the service holds for a kernel.")
    add_server_option(pull)
    _kernel_options(pull)
    pull.add_argument("-o", "--output", metavar="FILE",
                      help="where to write (default: <release>.btf)")

    ls = add("ls", run_ls, "list the service's kernels",
             "List the kernels whose BTF the service holds.")
    add_server_option(ls)
    ls.add_argument("--json", action="store_true",
                    help="print one JSON object: server, kernels (arch, release, source, "
                         "size, sha256)")


def _kernel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", metavar="RELEASE", help="kernel release (default: uname -r)")
    p.add_argument("--arch", metavar="ARCH", help="machine (default: uname -m)")


def _target(args: argparse.Namespace) -> tuple[str, str]:
    from ..compile.kernel import this_kernel
    me = this_kernel()
    return args.arch or me.arch, args.kernel or me.release


def run_push(args: argparse.Namespace) -> int:
    from ..compile.kernel import read_btf
    arch, release = _target(args)
    data = read_file(args.file) if args.file else read_btf()
    with server_client(args) as client:
        entry, created = client.btf_put(arch, release, data, replace=args.replace)
        verb = "uploaded" if created else "already there:"
        print(f"{verb} {arch}/{release} ({human_size(len(data))}, "
              f"sha256 {str(entry.get('sha256', ''))[:16]}) on {client.url}")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    arch, release = _target(args)
    with server_client(args) as client:
        data = client.btf_get(arch, release)
    out = args.output or f"{release}.btf"
    write_file(out, data)
    print(f"{out}: {human_size(len(data))} of BTF for {arch}/{release}")
    return 0


def ls_json(url: str, entries: list[dict]) -> dict:
    """``lcc btf ls --json``: ``{"server", "kernels": [...]}``, each kernel with
    the keys ``arch``, ``release``, ``source``, ``size`` (int) and ``sha256``
    (full); what the service left out is null."""
    def size(e: dict) -> int | None:
        try:
            return int(e["size"])
        except (KeyError, TypeError, ValueError):
            return None
    return {"server": url, "kernels": [
        {"arch": e.get("arch"), "release": e.get("release"), "source": e.get("source"),
         "size": size(e), "sha256": e.get("sha256")} for e in entries]}


def run_ls(args: argparse.Namespace) -> int:
    with server_client(args) as client:
        entries = client.btf_list()
        url = client.url
    if args.json:
        print(json.dumps(ls_json(url, entries), indent=2))
        return 0
    print(f"{'ARCH':<8}  {'RELEASE':<40}  {'SOURCE':<6}  {'SIZE':>9}  SHA256")
    for e in entries:
        print(f"{str(e.get('arch')):<8}  {str(e.get('release')):<40}  "
              f"{str(e.get('source')):<6}  {human_size(int(e.get('size') or 0)):>9}  "
              f"{str(e.get('sha256', ''))[:16]}")
    return 0
