"""``lcc doctor``: what this machine offers lcc tools, found by looking and probing.

Kernel release and BTF, libbpf's version, the attach kinds that work here
(kprobes, uprobes, tracepoints, raw and BTF tracepoints, fentry, LSM), which
program and map types the kernel accepts (``libbpf_probe_bpf_*``), and how
programs would be compiled (local clang, a compile service, the cache).
Probes load tiny programs, so without root they report "unknown".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

from ..errors import LccError

HELP = "report what this kernel and machine support"

# enum bpf_prog_type / bpf_map_type values probed, with libbpf's names.
PROG_TYPES = {1: "socket_filter", 2: "kprobe", 3: "sched_cls", 5: "tracepoint", 6: "xdp",
              7: "perf_event", 8: "cgroup_skb", 9: "cgroup_sock", 13: "sock_ops",
              17: "raw_tracepoint", 18: "cgroup_sock_addr", 27: "struct_ops", 31: "syscall"}
MAP_TYPES = {1: "hash", 2: "array", 4: "perf_event_array", 5: "percpu_hash",
             6: "percpu_array", 7: "stack_trace", 9: "lru_hash", 27: "ringbuf",
             29: "task_storage"}
_PROG_TYPE_TRACING, _ATTACH_TRACE_RAW_TP = 26, 23


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", parents=[common], help=HELP, description=HELP + ".")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def _probe_types(fn_name: str, table: dict[int, str]) -> dict[str, bool | None]:
    """name -> accepted (None when the probe could not tell, e.g. without privileges)."""
    from .. import _libbpf
    fn = getattr(_libbpf.lib(), fn_name)
    out: dict[str, bool | None] = {}
    for value, name in table.items():
        ret = fn(value, None)
        out[name] = True if ret == 1 else False if ret == 0 and os.geteuid() == 0 else None
    return out


def _tp_btf() -> bool | str:
    from .. import _libbpf
    from ..btf import KIND_TYPEDEF, Btf
    try:
        t = Btf.vmlinux().find("btf_trace_sched_switch", KIND_TYPEDEF)
    except LccError as e:
        return f"no ({e})"
    if t is None:
        return "no (sched_switch is not in the kernel's BTF)"
    err, _log = _libbpf.prog_load_probe(_PROG_TYPE_TRACING,
                                        expected_attach_type=_ATTACH_TRACE_RAW_TP,
                                        attach_btf_id=t.id)
    return True if err == 0 else f"no ({os.strerror(err)})"


def _compile_setup() -> dict[str, object]:
    from ..compile.cache import ArtifactCache, default_dir
    from ..compile.config import ClientConfig
    from ..compile.local import find_tool
    config = ClientConfig.from_env()
    store = ArtifactCache(default_dir(config))
    out: dict[str, object] = {
        "clang": find_tool(config.clang) or "no (local compiles unavailable)",
        "bpftool": find_tool(config.bpftool) or "no",
        "compile service": config.server or "none (LCC_SERVER unset)",
        "cache": f"{store.root} ({len(store.entries())} entries)",
    }
    if config.backend:
        out["backend"] = config.backend
    return out


def report() -> dict[str, object]:
    """Everything `lcc doctor` prints, as plain data."""
    from .. import features
    from ..compile.kernel import this_kernel
    me = this_kernel()
    out: dict[str, object] = {"kernel": f"{me.release} ({me.arch})"}
    base = features.summary()
    out["kernel BTF"] = (f"yes ({me.btf_id})" if me.has_btf else
                         "no (compile with btf='server' / lcc compile --btf)")
    out["libbpf"] = base.get("libbpf")
    if not str(base.get("libbpf", "")).startswith("missing"):
        out["tracepoints"] = (f"yes ({base['tracefs']})" if not str(base["tracefs"])
                              .startswith("missing") else base["tracefs"])
        out["kprobes"] = base.get("kprobes")
        out["uprobes"] = base.get("uprobes")
        if me.has_btf:
            out["raw/BTF tracepoints"] = _tp_btf()
            out["fentry"] = base.get("fentry")
            lsm = features.can_load_tracing("lsm", "file_open")
            out["lsm"] = True if lsm else f"no ({lsm.reason})"
        out["program types"] = _probe_types("libbpf_probe_bpf_prog_type", PROG_TYPES)
        out["map types"] = _probe_types("libbpf_probe_bpf_map_type", MAP_TYPES)
    out.update(_compile_setup())
    if os.geteuid() != 0:
        out["note"] = "not root: probes that load programs report unknown or no"
    return out


def _fmt(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if value is None:
        return "unknown"
    if isinstance(value, str) and value.startswith(("the kernel refuses", "kernel function")):
        return f"no ({value})"
    return str(value)


def run(args: argparse.Namespace) -> int:
    info = report()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    width = max(len(k) for k in info) + 1
    cols = shutil.get_terminal_size((100, 20)).columns
    for key, value in info.items():
        if isinstance(value, dict):
            groups: dict[str, list[str]] = {}
            for name, ok in value.items():
                groups.setdefault(_fmt(ok), []).append(name)
            text = "; ".join(f"{k}: {', '.join(v)}" for k, v in groups.items())
            print(f"{key + ':':<{width}} {text}"[:max(cols, 200)])
        else:
            print(f"{key + ':':<{width}} {_fmt(value)}")
    return 0
