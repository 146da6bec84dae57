"""The one parser of macro definitions (lcc.compile.defines), as every caller uses it."""

from __future__ import annotations

import argparse

import pytest

from lcc.cli import run as run_cli
from lcc.compile.defines import is_name, normalize, parse_args, parse_define, parse_env
from lcc.errors import LccError


@pytest.mark.parametrize("text,expected", [
    ("DEBUG", ("DEBUG", None)),
    ("N=8", ("N", "8")),
    ("EMPTY=", ("EMPTY", "")),
    ("_x9=a=b", ("_x9", "a=b")),
    ("S=a b", ("S", "a b")),
])
def test_parse_define(text, expected):
    assert parse_define(text) == expected


@pytest.mark.parametrize("text,message", [
    ("", "has no macro name"),
    ("=1", "has no macro name"),
    ("1X=2", "define name '1X' is not a C identifier"),
    ("A-B", "is not a C identifier"),
    ("X -fplugin=/tmp/x.so", "is not a C identifier"),
    ("A=1\n#include \"/etc/passwd\"", "define A must be one line"),
    ("A=1\r", "must be one line"),
    ("A=1\0", "must be one line"),
])
def test_parse_define_refuses(text, message):
    with pytest.raises(LccError, match=message):
        parse_define(text)


def test_parse_args_later_definition_wins():
    assert parse_args(["A=1", "B", "A=2"]) == {"A": "2", "B": None}
    assert parse_args([]) == {}


def test_env_as_pylcc_writes_it():
    assert parse_env("-DPID=5 -DDEBUG") == {"PID": "5", "DEBUG": None}
    assert parse_env('-DNAME="a b" -DEMPTY=') == {"NAME": "a b", "EMPTY": ""}
    assert parse_env("") == {} and parse_env(None) == {}
    with pytest.raises(LccError, match="-I/tmp"):
        parse_env("-DOK=1 -I/tmp")
    with pytest.raises(LccError, match="only -DNAME"):
        parse_env("-D")
    with pytest.raises(LccError, match="not a C identifier"):
        parse_env("-D1X")


def test_normalize_makes_values_strings():
    assert normalize({"N": 3, "B": None, "S": "x"}) == {"N": "3", "B": None, "S": "x"}
    assert normalize(None) == {}
    with pytest.raises(LccError, match="not a C identifier"):
        normalize({1: "x"})
    with pytest.raises(LccError, match="one line"):
        normalize({"OK": "a\nb"})


def test_is_name():
    assert is_name("_A1") and not is_name("1A") and not is_name("") and not is_name(None)


def test_lcc_run_uses_the_same_parser():
    p = run_cli.configure_parser(argparse.ArgumentParser(exit_on_error=False))
    assert dict(p.parse_args(["x.bpf.c", "-D", "A=1", "-DB"]).defines) == {"A": "1", "B": None}
    with pytest.raises(argparse.ArgumentError, match="not a C identifier"):
        p.parse_args(["x.bpf.c", "-D", "1X"])


@pytest.mark.parametrize("name", [
    "A", "_", "_a1", "DEBUG", "a" * 64, "a" * 65, "", "1A", "A-B", "A B", "A\n", "\nA",
    "é", "Aé", "ＡＢ", "A.B", "if", "None", "A\x00", "\u0660", "a\u0301",
])
def test_name_rule_is_the_services(name):
    """The client refuses exactly the names the compile service refuses."""
    from lcc_toolchain.validation import DEFINE_NAME_RE
    assert is_name(name) == (DEFINE_NAME_RE.fullmatch(name) is not None)
