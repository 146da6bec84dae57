"""``lcc doctor``: what this machine offers lcc tools, found by looking and probing.

Kernel release and BTF, libbpf's version, the attach kinds that work here
(kprobes, uprobes, tracepoints, raw and BTF tracepoints, fentry, LSM), which
program and map types the kernel accepts (``libbpf_probe_bpf_*``), and how
programs would be compiled (local clang, a compile service, the cache).
Probes load tiny programs, so without root (or CAP_BPF+CAP_PERFMON) it
reports what needs no privilege, then says so and exits 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..features import Probes

HELP = "report what this kernel and machine support"


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", parents=[common], help=HELP, description=HELP + ".")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


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


def report(probes: "Probes | None" = None) -> dict[str, object]:
    """Everything `lcc doctor` prints, as plain data (``probes``: the process-wide ones)."""
    from .. import features
    from ..compile.kernel import this_kernel
    p = probes if probes is not None else features.probes()
    me = this_kernel()
    out: dict[str, object] = {"kernel": f"{me.release} ({me.arch})"}
    base = p.summary()
    out["kernel BTF"] = (f"yes ({me.btf_id})" if me.has_btf else
                         "no (compile with btf='server' / lcc compile --btf)")
    out["libbpf"] = base.get("libbpf")
    allowed = features.bpf_privileges()
    out["privileges"] = True if allowed else f"no ({allowed.reason})"
    if allowed and not str(base.get("libbpf", "")).startswith("missing"):
        out["tracepoints"] = (f"yes ({base['tracefs']})" if not str(base["tracefs"])
                              .startswith("missing") else base["tracefs"])
        out["kprobes"] = base.get("kprobes")
        out["uprobes"] = base.get("uprobes")
        if me.has_btf:
            tp_btf = p.can_load_tp_btf()
            out["raw/BTF tracepoints"] = True if tp_btf else f"no ({tp_btf.reason})"
            out["fentry"] = base.get("fentry")
            lsm = p.can_load_tracing("lsm", "file_open")
            out["lsm"] = True if lsm else f"no ({lsm.reason})"
        out["program types"] = p.prog_types()
        out["map types"] = p.map_types()
    out.update(_compile_setup())
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


def _entry(value: object) -> dict[str, object]:
    """One ``--json`` value: ``{"ok": bool, "detail": str}`` or ``{"ok": false, "reason": str}``."""
    if value is True:
        return {"ok": True, "detail": "yes"}
    if value is False:
        return {"ok": False, "reason": "no"}
    if value is None:
        return {"ok": False, "reason": "unknown (a probe could not tell)"}
    text = str(value)
    if text.startswith("no (") and text.endswith(")"):
        return {"ok": False, "reason": text[4:-1]}
    if text.startswith(("no", "none", "missing", "the kernel refuses", "kernel function")):
        return {"ok": False, "reason": text}
    return {"ok": True, "detail": text}


def json_report(info: dict[str, object]) -> dict[str, dict[str, object]]:
    """``lcc doctor --json``: keys without spaces (``kernel_btf``,
    ``program_type.kprobe``), every value ``{"ok": bool, "detail"|"reason": str}``."""
    out: dict[str, dict[str, object]] = {}
    for key, value in info.items():
        name = key.replace("raw/BTF tracepoints", "tp_btf").replace(" ", "_").lower()
        if isinstance(value, dict):
            prefix = name.removesuffix("s")
            for sub, ok in value.items():
                out[f"{prefix}.{sub}"] = _entry(ok)
        else:
            out[name] = _entry(value)
    return out


def run(args: argparse.Namespace) -> int:
    """Print the report; exit 1 when this process lacks the privileges to probe."""
    from .. import features
    from .common import error_report
    from ..errors import LccError
    info = report()
    if args.json:
        print(json.dumps(json_report(info), indent=2))
    else:
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
    allowed = features.bpf_privileges()
    if not allowed:
        sys.stdout.flush()
        sys.stderr.write(error_report("doctor", LccError(allowed.reason)))
        return 1
    return 0
