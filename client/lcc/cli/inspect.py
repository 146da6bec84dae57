"""``lcc inspect``: what a BPF object holds, read from its ELF and BTF.

Programs with their SEC() names, program types and attach points; maps with
type, sizes and key/value (or event) types from BTF; global variables by
section; and the layout of the structs those mention.  Opening an object
with libbpf touches no kernel state, so this needs no privileges.  A
``.c`` source is compiled first (as by ``lcc compile``, through the cache,
with ``--server``/``--backend``/``-D``) and its object inspected.
"""

from __future__ import annotations

import argparse
import json
import os

from ..errors import BtfError, LccError
from .common import read_file

HELP = "list the programs, maps and globals of a BPF object"


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("inspect", parents=[common], help=HELP, description=HELP + ".")
    p.add_argument("object", help="a BPF object file (e.g. from `lcc compile`), or a .bpf.c "
                                  "program to compile first")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    from .compile import add_backend_options
    add_backend_options(p)
    p.set_defaults(func=run)


def _size(t) -> int | None:
    try:
        return int(t.size)
    except (BtfError, AttributeError, TypeError):
        return None


def _type(t) -> dict | None:
    if t is None:
        return None
    return {"name": str(t), "size": _size(t)}


def _structs(types) -> dict[str, dict]:
    """Layouts of the struct/union types among ``types`` (after typedefs)."""
    from ..btf import Struct
    out: dict[str, dict] = {}
    for t in types:
        if t is None:
            continue
        r = t.resolve()
        if isinstance(r, Struct) and r.name and str(r) not in out:
            out[str(r)] = {"size": r.size, "members": [
                {"name": m.name, "type": str(m.type), "offset": m.bit_offset // 8,
                 **({"bits": m.bitfield_size} if m.bitfield_size else {})}
                for m in r.members]}
    return out


def describe(data: bytes, name: str | None = None) -> dict:
    """The object's programs, maps, globals and struct layouts as plain data.

    Raises :class:`BpfError` when libbpf cannot open it.
    """
    from ..spec import ObjectSpec
    with ObjectSpec(data, name=name) as obj:
        programs = [{"name": p.name, "section": p.section, "type": p.prog_type,
                     "kind": p.kind, "target": p.target} for p in obj.programs.values()]
        maps, mentioned = [], []
        for m in obj.map_names():
            spec = obj.map_spec(m)
            if spec.internal:
                continue
            event = obj.btf.map_event_type(m)
            mentioned += [spec.key_type, spec.value_type, event]
            maps.append({"name": m, "type": spec.type_name, "key_size": spec.key_size,
                         "value_size": spec.value_size, "max_entries": spec.max_entries,
                         "flags": spec.flags, "key_type": _type(spec.key_type),
                         "value_type": _type(spec.value_type), "event_type": _type(event)})
        globals_ = []
        for section, var, t in obj.iter_globals():
            mentioned.append(t)
            globals_.append({"section": section, "name": var, "type": str(t), "size": _size(t)})
        return {"programs": programs, "maps": maps, "globals": globals_,
                "types": _structs(mentioned)}


def _text(path: str, info: dict) -> list[str]:
    def n(k: str, word: str) -> str:
        return f"{len(info[k])} {word}{'' if len(info[k]) == 1 else 's'}"

    lines = [f"{path}: {n('programs', 'program')}, {n('maps', 'map')}, "
             f"{n('globals', 'global')}"]
    if info["programs"]:
        lines.append("programs:")
        w = max(len(p["name"]) for p in info["programs"])
        for p in info["programs"]:
            attach = p["target"] or "(attach point given at attach time)"
            lines.append(f"  {p['name']:<{w}}  SEC(\"{p['section']}\")  type {p['type']}, "
                         f"attach {p['kind']} {attach}")
    if info["maps"]:
        lines.append("maps:")
        w = max(len(m["name"]) for m in info["maps"])
        for m in info["maps"]:
            size = f"max_entries {m['max_entries']}"
            if not m["max_entries"] and m["type"] == "perf_event_array":
                size = "one entry per CPU (set at load)"
            lines.append(f"  {m['name']:<{w}}  {m['type']}, {size}")
            pad = " " * (w + 4)
            for role, size_key in (("key", "key_size"), ("value", "value_size")):
                t = m[f"{role}_type"]
                if t is not None:
                    lines.append(f"{pad}{role} {t['name']} ({m[size_key]} bytes)")
                elif m[size_key]:
                    lines.append(f"{pad}{role} {m[size_key]} bytes (no BTF type)")
            if m["event_type"] is not None:
                size = m["event_type"]["size"]
                lines.append(f"{pad}event {m['event_type']['name']}"
                             + (f" ({size} bytes)" if size is not None else ""))
    if info["globals"]:
        lines.append("globals:")
        for g in info["globals"]:
            size = f" ({g['size']} bytes)" if g["size"] is not None else ""
            lines.append(f"  {g['section']:<8} {g['type']} {g['name']}{size}")
    if info["types"]:
        lines.append("types:")
        for tname, t in info["types"].items():
            lines.append(f"  {tname} ({t['size']} bytes)")
            for m in t["members"]:
                bits = f":{m['bits']}" if "bits" in m else ""
                lines.append(f"    +{m['offset']:<4} {m['type']} {m['name']}{bits}".rstrip())
    return lines


def run(args: argparse.Namespace) -> int:
    if args.object.endswith(".c"):
        from .compile import build_source
        data = build_source(args.object, args).object
    else:
        data = read_file(args.object)
        if not data.startswith(b"\x7fELF"):
            raise LccError(f"{args.object} is not an ELF object")
    name = os.path.basename(args.object).split(".", 1)[0] or None
    info = describe(data, name=name)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(_text(args.object, info)))
    return 0
