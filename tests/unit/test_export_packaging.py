"""Packaging: ``lcc --version``, and an sdist that carries the examples and the licence.

The sdist is built with ``python -m build --sdist`` when ``build`` is
installed (without isolation when hatchling is importable, so no network is
needed), else with hatchling's builder API; without either the test skips.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import lcc
from lcc import cli

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_the_distributions_or_the_packages(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"lcc {cli.version()}"
    from importlib import metadata
    try:
        assert cli.version() == metadata.version("lcc")
    except metadata.PackageNotFoundError:
        assert cli.version() == lcc.__version__


def test_version_falls_back_to_the_package_when_not_installed(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(metadata, "version", missing)
    assert cli.version() == lcc.__version__


def test_the_package_is_typed_and_licensed():
    assert (Path(lcc.__file__).parent / "py.typed").exists()
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()


def _build_sdist(out: Path) -> Path:
    has_hatchling = importlib.util.find_spec("hatchling") is not None
    if importlib.util.find_spec("build") is not None:
        cmd = [sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)]
        if has_hatchling:
            cmd.insert(3, "--no-isolation")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 and not has_hatchling:
            pytest.skip(f"python -m build could not fetch hatchling: {r.stderr[-300:]}")
        assert r.returncode == 0, r.stdout + r.stderr
        return next(out.glob("*.tar.gz"))
    if has_hatchling:
        from hatchling.builders.sdist import SdistBuilder
        return Path(next(iter(SdistBuilder(str(ROOT)).build(directory=str(out)))))
    pytest.skip("neither build nor hatchling is installed (pip install 'lcc[dev]')")


def test_the_sdist_holds_the_examples_and_the_licence(tmp_path):
    sdist = _build_sdist(tmp_path)
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for want in ("LICENSE", "README.md", "pyproject.toml", "examples/tcpconnlat/tcpconnlat.py",
                 "examples/tcpconnlat/tcpconnlat.bpf.c", "client/lcc/py.typed",
                 "client/lcc/export.py", "deploy/grafana/lcc-tool.json"):
        assert want in names, want
