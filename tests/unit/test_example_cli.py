"""examples/_common/cli.py: the options every tool shares (no kernel needed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from _common import cli  # noqa: E402


@pytest.mark.parametrize("text,mib", [("1", 1), ("2", 2), ("64", 64), ("1024", 1024)])
def test_ring_mib_takes_powers_of_two(text, mib):
    assert cli.ring_mib(text) == mib


@pytest.mark.parametrize("text", ["0", "3", "6", "2048", "-4", "1.5", "x"])
def test_ring_mib_refuses_what_a_ring_cannot_be(text):
    with pytest.raises(argparse.ArgumentTypeError):
        cli.ring_mib(text)


def test_ring_arg_gives_the_events_map_size():
    p = argparse.ArgumentParser()
    cli.add_ring_arg(p, 4)
    assert cli.ring_sizes(p.parse_args([])) == {"events": 4 << 20}
    assert cli.ring_sizes(p.parse_args(["--ring-mib", "16"])) == {"events": 16 << 20}
    with pytest.raises(SystemExit):
        p.parse_args(["--ring-mib", "3"])


def test_formatter_sets_the_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    p = argparse.ArgumentParser(prog="t", formatter_class=cli.formatter(),
                                description="word " * 40)
    lines = p.format_help().splitlines()
    assert max(len(x) for x in lines) <= 58
    assert len(lines) > 3
