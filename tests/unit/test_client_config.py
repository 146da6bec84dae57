"""ClientConfig.from_env: the one reader of the compile side's LCC_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from lcc.compile.config import ClientConfig
from lcc.errors import LccError

EVERY = {
    "LCC_SERVER": "http://build:7655",
    "LCC_TOKEN": "tok",
    "LCC_BACKEND": "docker",
    "LCC_CACHE_DIR": "/var/cache/x",
    "LCC_PUSH_BTF": "0",
    "LCC_DOCKER_IMAGE": "lcc-compiler:test",
    "LCC_DOCKER_CONTAINER": "c1",
    "LCC_DOCKER_PORT": "7700",
    "LCC_CLANG": "clang-17",
    "LCC_BPFTOOL": "/opt/bpftool",
    "LCC_SANDBOX": "off",
}


def test_defaults_without_variables():
    assert ClientConfig.from_env({}) == ClientConfig()
    c = ClientConfig()
    assert (c.server, c.token, c.backend, c.cache_dir, c.docker_port) == (None,) * 5
    assert (c.push_btf, c.sandbox, c.clang, c.bpftool) == (True, True, "clang", "bpftool")
    assert (c.docker_image, c.docker_container) == ("lcc-compiler:latest", "lcc-compiler")


def test_reads_every_variable():
    assert ClientConfig.from_env(EVERY) == ClientConfig(
        server="http://build:7655", token="tok", backend="docker",
        cache_dir=Path("/var/cache/x"), push_btf=False, docker_image="lcc-compiler:test",
        docker_container="c1", docker_port=7700, clang="clang-17", bpftool="/opt/bpftool",
        sandbox=False)


@pytest.mark.parametrize("var", sorted(EVERY))
def test_each_variable_changes_the_config(var):
    assert ClientConfig.from_env({var: EVERY[var]}) != ClientConfig()


def test_empty_variables_count_as_unset():
    assert ClientConfig.from_env({name: "" for name in EVERY}) == ClientConfig()


@pytest.mark.parametrize("value,on", [("0", False), ("false", False), ("No", False),
                                      ("OFF", False), ("1", True), ("yes", True)])
def test_flags(value, on):
    c = ClientConfig.from_env({"LCC_PUSH_BTF": value, "LCC_SANDBOX": value})
    assert (c.push_btf, c.sandbox) == (on, on)


def test_cache_dir_expands_the_home_directory():
    assert ClientConfig.from_env({"LCC_CACHE_DIR": "~/c"}).cache_dir == Path.home() / "c"


@pytest.mark.parametrize("value", ["x", "0", "70000", "-1"])
def test_bad_docker_port(value):
    with pytest.raises(LccError, match="LCC_DOCKER_PORT"):
        ClientConfig.from_env({"LCC_DOCKER_PORT": value})


def test_reads_os_environ_by_default(monkeypatch):
    for name in EVERY:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LCC_SERVER", "http://env:1")
    assert ClientConfig.from_env().server == "http://env:1"
