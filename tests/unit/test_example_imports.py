"""The example tools' start imports only what they use before their ready line.

Each module below costs milliseconds and memory at every start when it is
imported; the tools import them where they are used (JSON output, an error's
did-you-mean, a help screen's width), never on the way to the ready line.
Checked in a fresh interpreter per tool: its module imported, its command
line parsed and its printer made, as ``main`` does before loading.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Not imported by a tool's start (lcc's runtime does not import them either).
HEAVY = ("dataclasses", "inspect", "json", "difflib", "shutil", "ast")
# Not imported by these tools' start either: typing (~3 ms; their records are
# collections.namedtuples), socket.py (~2 ms; lcc.netfmt uses _socket),
# threading (lcc's cache writer imports it only to write).
LEAN = {"offcpu": ("typing", "socket", "threading"),
        "syslat": ("typing", "socket", "threading"),
        "tcpstates": ("typing", "socket", "threading")}

# tool -> Python run after the tool's module is imported as ``t``.
STARTS = {
    "tcpstates": "a = t.parse_args([]); t.Printer(None, json=False, wide=False, "
                 "time_col=False, timestamp=False)",
    "syslat": "t.parse_args(['-c', 'x', 'getppid']); t.syscall_table().number('getppid')",
    "offcpu": "t.parse_args([])",
    "dropwatch": "t.parse_args([]); t.Printer(json=False)",
    "tcpconnlat": "t.parse_args([]); t.Printer(json=False, lport=False, timestamp=False)",
}

PROBE = """
import importlib.util, sys
name, path, code = sys.argv[1:4]
spec = importlib.util.spec_from_file_location(name, path)
t = importlib.util.module_from_spec(spec)
spec.loader.exec_module(t)
exec(code)
print(' '.join(sorted(sys.modules)))
"""


@pytest.mark.parametrize("tool", sorted(STARTS))
def test_start_imports_nothing_heavy(tool):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "client"), str(ROOT / "compile_server"), str(ROOT / "toolchain")]
        + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run(
        [sys.executable, "-c", PROBE, tool, str(ROOT / "examples" / tool / f"{tool}.py"),
         STARTS[tool]],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert "lcc.base" in loaded  # the probe did import the tool
    heavy = set(HEAVY) | set(LEAN.get(tool, ()))
    assert not loaded & heavy, sorted(loaded & heavy)

