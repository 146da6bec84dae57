"""The import structure of the client: one way, from the edge down, no circles.

Module-level imports only (not inside functions, not under ``if
TYPE_CHECKING``): those are what run when a module loads.  A cycle among
them, or a low layer importing a high one, is a design error the code review
should have caught; this test catches it instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lcc

LCC = Path(lcc.__file__).resolve().parent

# Layers, lowest first: a module may import only from its own layer or lower.
LAYERS = [
    {"lcc._lazy", "lcc._files", "lcc._record", "lcc.errors", "lcc.hist", "lcc.netfmt", "lcc.flame",
     "lcc.kernelcache"},
    {"lcc._libbpf_abi", "lcc._libbpf", "lcc._btf_raw", "lcc.symbols", "lcc.procsyms",
     "lcc.syscalls", "lcc.tracepipe"},
    {"lcc.btf", "lcc.codecs", "lcc.features", "lcc.ringbuf_mmap"},
    {"lcc.globalvars", "lcc.object", "lcc.spec", "lcc.buffers", "lcc.links", "lcc.loop"},
    {"lcc.maps"},
    {"lcc.compat", "lcc.base"},
    {"lcc.show", "lcc.export"},
    {"lcc.cli"},
]


def module_imports(path: Path, package: str) -> set[str]:
    """Modules ``path`` imports at module level (not inside functions, not for typing)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # if TYPE_CHECKING: ...
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                if node.module:
                    out.add(f"{base}.{node.module}")
                else:  # from . import x: the package itself is loaded as x's parent
                    out.update(f"{base}.{a.name}" for a in node.names)
            else:
                out.add(node.module or "")
    return out


def lcc_modules() -> dict[str, Path]:
    mods = {}
    for p in LCC.rglob("*.py"):
        rel = p.relative_to(LCC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = p
    return mods


def _graph() -> dict[str, set[str]]:
    mods = lcc_modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = {m for m in module_imports(path, package) if m in mods}
    return graph


def test_no_import_cycle_in_the_client():
    graph = _graph()
    done: set[str] = set()

    def visit(n: str, stack: list[str]) -> None:
        assert n not in stack, "import cycle: " + " -> ".join(stack[stack.index(n):] + [n])
        if n in done:
            return
        for m in sorted(graph[n]):
            visit(m, stack + [n])
        done.add(n)

    for n in sorted(graph):
        visit(n, [])


def _layer(name: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(name == top or name.startswith(top + ".") for top in layer):
            return i
    return None


def test_imports_run_from_the_edge_down():
    """Every module is in a layer (a new one must be placed), and none imports upward.
    The compile pipeline (lcc.compile) sits beside the runtime: the runtime reaches
    it only inside functions, when a tool must be compiled."""
    graph = _graph()
    unplaced = [n for n in graph if n != "lcc" and not n.startswith("lcc.compile")
                and _layer(n) is None]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"
    upward = [(n, m) for n, deps in graph.items() for m in deps
              if _layer(n) is not None and _layer(m) is not None and _layer(m) > _layer(n)]
    assert not upward, upward
    runtime_to_compile = [(n, m) for n, deps in graph.items() for m in deps
                          if not n.startswith(("lcc.compile", "lcc.cli"))
                          and m.startswith("lcc.compile")]
    assert not runtime_to_compile, runtime_to_compile
