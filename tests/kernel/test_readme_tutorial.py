"""The README's "Your first tool" runs exactly as printed there.

Its two code blocks are written to a fresh directory and the script is run
as a user would run it, filtered to this test's pid, stopped with Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from kutil import wait_for

pytestmark = pytest.mark.bpf

README = Path(__file__).resolve().parents[2] / "README.md"


def tutorial_files() -> dict[str, str]:
    """{"opens.bpf.c": C source, "opens.py": Python source} from the README section."""
    text = README.read_text()
    section = text.split("## Your first tool", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"`([\w.]+)`:\n\n```\w+\n(.*?)\n```", section, re.S)
    return {name: body + "\n" for name, body in blocks}


def test_the_readme_has_both_files():
    assert set(tutorial_files()) == {"opens.bpf.c", "opens.py"}


def test_the_tutorial_tool_runs_as_printed(tmp_path, lcc_cache):
    for name, body in tutorial_files().items():
        (tmp_path / name).write_text(body)
    # Short paths: the tool keeps the first 63 bytes of a file name.
    short = Path(tempfile.mkdtemp(prefix="lcct-"))
    target, missing = short / "hello.txt", short / "missing.txt"
    target.write_text("hi")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONUNBUFFERED"] = "1"  # line by line, as on a terminal
    proc = subprocess.Popen([sys.executable, "opens.py", "-p", str(os.getpid())],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        # The header is printed once the programs are attached.
        wait_for(lambda: lines, "the header line", timeout=60)
        assert lines[0].split() == ["PID", "COMM", "FD", "LATENCY", "FILE"], lines
        for _ in range(3):
            with open(target) as f:
                f.read()
        with pytest.raises(FileNotFoundError):
            open(missing)
        wait_for(lambda: sum(str(short) in ln for ln in lines) >= 4, "four opens printed")
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the loop stops, the summary prints
        proc.wait(timeout=60)
        reader.join(timeout=10)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(short, ignore_errors=True)
    rest = "".join(lines)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    mine = [ln.split() for ln in lines if str(target) in ln]
    assert len(mine) == 3
    for pid, _comm, fd, latency, unit, name in mine:
        assert (int(pid), name, unit) == (os.getpid(), str(target), "us")
        assert int(fd) >= 0 and float(latency) > 0
    failed = [ln.split() for ln in lines if str(missing) in ln]
    assert len(failed) == 1 and failed[0][2] == "-2"  # -ENOENT
    counts = {ln.split()[0]: int(ln.split()[1]) for ln in rest.splitlines()
              if ln.endswith(" opens")}
    comm = Path(sys.executable).name[:15]
    assert counts.get(comm, 0) >= 4
    assert "usecs" in rest and "distribution" in rest
