"""A client given several compile services (``LCC_SERVER=a,b``) fails over from one
to the next: a dead, busy (503) or failing (5xx) endpoint costs a retry, not a
failure; an answer that is wrong, not just absent, is raised at once.

The services are real HTTP servers on 127.0.0.1 (tests/fakeservice.py); the
replicas of one fleet share one signing key, as ``LCC_SIGNING_KEY`` makes them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from fakeservice import OBJ, FakeService, busy, foreign_key, honest, silent
from lcc.compile import build
from lcc.compile.bundle import Bundle
from lcc.compile.cache import ArtifactCache
from lcc.compile.config import ClientConfig
from lcc.compile.endpoints import Endpoints, normalize_url, parse_endpoints
from lcc.compile.service import ServiceBackend, ServiceClient
from lcc.compile.trust import TrustedKey, TrustPolicy
from lcc.errors import CompileError, CompileServiceError, LccError, UntrustedArtifact

TOOL = "// SPDX-License-Identifier: GPL-2.0\n#include \"lbc.h\"\nint x;\n"
BUNDLE = Bundle("tool.bpf.c", {"tool.bpf.c": TOOL})
KERNEL = {"kernel": "6.18.0", "arch": "x86_64", "defines": {}, "btf": False}


def dead_url() -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def fleet(*behaviours) -> list[FakeService]:
    """Fake replicas that sign with one key (the first one's)."""
    services = [FakeService(b) for b in behaviours]
    for svc in services[1:]:
        svc.ring = svc.keys_ring = services[0].ring
    return services


def backend(urls: list[str], ring, **kw) -> ServiceBackend:
    return ServiceBackend(",".join(urls), token="", push_btf=False,
                          trust=TrustPolicy([TrustedKey(ring.current.raw)]), **kw)


def fails_once(status: int):
    """``status`` for the first compile, then honest."""
    def behave(svc, h, payload):
        if svc.compile_count() == 1:
            h.reply(status, {"error": "internal", "detail": "replica is failing"})
        else:
            honest(svc, h, payload)
    return behave


def hangs_up(svc, h, payload):
    """Reads the request and closes the connection without a word (a replica that died)."""
    h.close_connection = True


def compile_error(svc, h, payload):
    h.reply(422, {"error": "compile", "detail": "tool.bpf.c:1:1: error: nope",
                  "diagnostics": [], "log": ""})


# -- the endpoint list ----------------------------------------------------------------------

def test_parse_endpoints_splits_normalizes_and_drops_duplicates():
    assert parse_endpoints(" http://A:7655/ , b:7000,,http://a:7655") == (
        "http://a:7655", "http://b:7000")
    assert parse_endpoints(["http://x:1", "y:2"]) == ("http://x:1", "http://y:2")
    assert parse_endpoints("http://only:1") == ("http://only:1",)


@pytest.mark.parametrize("value,match", [
    ("http://a:1,ftp://b", "compile service list 'http://a:1,ftp://b': .*'ftp://b' is not an http"),
    ("http://a:1,http://b:x", "compile service list .*has a bad port"),
    (" , ", "no compile service URL in"),
])
def test_a_bad_entry_is_named_with_its_list(value, match):
    with pytest.raises(LccError, match=match) as exc:
        parse_endpoints(value)
    assert exc.value.hint


def test_one_url_may_not_name_several():
    with pytest.raises(LccError, match="names several services") as exc:
        normalize_url("http://a:1,http://b:2")
    assert "comma-separated" in exc.value.hint


def test_config_lists_the_servers():
    assert ClientConfig.from_env({"LCC_SERVER": "http://a:1, http://b:2"}).servers == (
        "http://a:1", "http://b:2")
    assert ClientConfig.from_env({}).servers == ()


def test_endpoints_start_from_the_last_that_answered():
    eps = Endpoints("http://a:1,http://b:2,http://c:3")
    assert eps.order() == ["http://a:1", "http://b:2", "http://c:3"]
    eps.answered("http://b:2")
    assert eps.order() == ["http://b:2", "http://c:3", "http://a:1"]
    assert str(eps) == "http://a:1,http://b:2,http://c:3"


def test_loopback_opt_out_holds_only_when_every_endpoint_is_loopback():
    assert Endpoints("http://127.0.0.1:1,http://localhost:2").loopback
    mixed = Endpoints("http://127.0.0.1:1,http://build:2")
    assert not mixed.loopback and mixed.trust_url == "http://build:2"
    policy = TrustPolicy.for_service(ClientConfig(trust_loopback=True), mixed.trust_url)
    assert not policy.insecure and policy.opt_out_ignored


# -- failover -------------------------------------------------------------------------------

def test_a_dead_first_endpoint_costs_a_retry():
    dead = dead_url()
    (svc,) = fleet(honest)
    with svc:
        be = backend([dead, svc.url], svc.ring)
        art = be.compile(BUNDLE, **KERNEL)
        again = be.compile(BUNDLE, **KERNEL)

    assert art.object == OBJ and again.object == OBJ
    assert art.origin == svc.url  # the endpoint that answered
    assert svc.compile_count() == 2
    assert be.endpoints.order()[0] == svc.url  # the next compile starts there


@pytest.mark.parametrize("behaviour", [busy(10**6, retry_after="30"), fails_once(500),
                                       fails_once(502), hangs_up],
                         ids=["503", "500", "502", "hung-up"])
def test_a_failing_first_endpoint_hands_over_to_the_next(behaviour):
    first, second = fleet(behaviour, honest)
    with first, second:
        be = backend([first.url, second.url], first.ring)
        art = be.compile(BUNDLE, **KERNEL)
        art2 = be.compile(BUNDLE, **KERNEL)

    assert art.object == OBJ == art2.object and art.origin == second.url
    # asked once, then left alone while the second answers
    assert (first.compile_count(), second.compile_count()) == (1, 2)


def test_a_busy_fleet_is_asked_again_in_rounds():
    first, second = fleet(busy(2, retry_after="0"), busy(2, retry_after="0"))
    with first, second:
        art = backend([first.url, second.url], first.ring).compile(BUNDLE, **KERNEL)

    assert art.object == OBJ
    # round 1: both 503; round 2: the first's 2nd compile is 503, the second's too;
    # round 3: the first answers
    assert (first.compile_count(), second.compile_count()) == (3, 2)


def test_every_endpoint_dead_is_one_error_naming_each():
    urls = [dead_url(), dead_url(), dead_url()]
    with pytest.raises(CompileServiceError) as exc:
        ServiceBackend(",".join(urls), token="", push_btf=False,
                       trust=TrustPolicy()).compile(BUNDLE, **KERNEL)

    e = exc.value
    assert e.message.startswith("none of 3 compile services answered: ")
    for url in urls:
        assert f"{url}: is unreachable" in e.message
    assert e.status is None and [d["url"] for d in e.detail] == urls
    assert "LCC_SERVER" in e.hint


def test_every_endpoint_busy_keeps_the_503():
    dead = dead_url()
    first, second = fleet(busy(10**6, retry_after="0"), busy(10**6, retry_after="0"))
    with first, second:
        with pytest.raises(CompileServiceError) as exc:
            backend([first.url, dead, second.url], first.ring).compile(BUNDLE, **KERNEL)

    e = exc.value
    assert first.url in e.message and dead in e.message and second.url in e.message
    assert "all compile slots are taken (asked 5 times)" in e.message
    assert e.status is None and "retry later" in e.hint  # a dead one and busy ones
    assert first.compile_count() == second.compile_count() == 5  # 1 + busy_retries rounds


def test_all_busy_endpoints_answer_503():
    first, second = fleet(busy(10**6, retry_after="0"), busy(10**6, retry_after="0"))
    with first, second:
        with pytest.raises(CompileServiceError) as exc:
            backend([first.url, second.url], first.ring).compile(BUNDLE, **KERNEL)
    assert exc.value.status == 503


@pytest.mark.parametrize("behaviour,error", [
    (compile_error, CompileError), (foreign_key, UntrustedArtifact)],
    ids=["compile-error", "untrusted"])
def test_a_wrong_answer_is_raised_not_failed_over(behaviour, error):
    first, second = fleet(behaviour, honest)
    with first, second:
        with pytest.raises(error):
            backend([first.url, second.url], first.ring).compile(BUNDLE, **KERNEL)
    assert second.compile_count() == 0


def test_a_silent_endpoint_spends_the_time_budget():
    first, second = fleet(silent, honest)
    with first, second:
        with pytest.raises(CompileServiceError, match="did not answer in time"):
            backend([first.url, second.url], first.ring, timeout=(1.0, 1.0)).compile(
                BUNDLE, **KERNEL)
    assert second.compile_count() == 0


def test_other_calls_fail_over_too():
    with FakeService(honest) as svc:
        with ServiceClient([dead_url(), svc.url], token="", trust=TrustPolicy()) as client:
            assert client.health() == {"status": "ok"}
            assert client.url == svc.url
            assert [k.fingerprint for k in client.keys()] == [svc.ring.key_id]


def test_a_single_endpoint_keeps_its_own_error():
    url = dead_url()
    with pytest.raises(CompileServiceError) as exc:
        ServiceBackend(url, token="", trust=TrustPolicy()).compile(BUNDLE, **KERNEL)
    assert exc.value.message.startswith(f"compile service at {url} is unreachable")


def test_build_through_a_list_caches_under_the_list(tmp_path):
    (svc,) = fleet(honest)
    store = ArtifactCache(tmp_path / "cache")
    config = ClientConfig(trusted_keys=svc.key_file(tmp_path), trust_file=tmp_path / "none")
    servers = f"{dead_url()},{svc.url}"
    with svc:
        art = build(BUNDLE, server=servers, cache=store, kernel="6.18.0", arch="x86_64",
                    config=config)
        hit = build(BUNDLE, server=servers, cache=store, kernel="6.18.0", arch="x86_64",
                    config=config)
    assert art.object == OBJ and hit.cache_hit and svc.compile_count() == 1


# -- the command line -----------------------------------------------------------------------

def _lcc(tmp_path, *args, env=None):
    e = {k: v for k, v in os.environ.items()
         if k not in ("LCC_SERVER", "LCC_BACKEND", "LCC_TOKEN", "LCC_TRUSTED_KEYS")}
    e.update(LCC_CACHE_DIR=str(tmp_path / "cache"), XDG_CONFIG_HOME=str(tmp_path / "cfg"),
             **(env or {}))
    return subprocess.run([sys.executable, "-m", "lcc.cli", *args], env=e, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_cli_server_list_fails_over(tmp_path):
    (tmp_path / "tool.bpf.c").write_text(TOOL)
    with FakeService(honest) as svc:
        p = _lcc(tmp_path, "compile", "tool.bpf.c", "-o", "tool.o", "--server",
                 f"{dead_url()},{svc.url}",
                 env={"LCC_TRUSTED_KEYS": str(svc.key_file(tmp_path))})
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "tool.o").read_bytes() == OBJ


def test_cli_all_dead_is_one_line_naming_each(tmp_path):
    (tmp_path / "tool.bpf.c").write_text(TOOL)
    a, b = dead_url(), dead_url()
    p = _lcc(tmp_path, "compile", "tool.bpf.c", env={"LCC_SERVER": f"{a},{b}"})
    lines = p.stderr.splitlines()
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert "none of 2 compile services answered" in lines[0]
    assert f"{a}: is unreachable" in lines[0] and f"{b}: is unreachable" in lines[0]


def btf_missing(svc, h, payload):
    h.reply(404, {"error": "btf_missing", "detail": "no BTF for 6.18.0 (x86_64)"})


def test_a_4xx_answer_keeps_its_endpoint_for_the_next_request():
    """A 404 for missing BTF is followed by an upload, which must reach the endpoint
    that said it."""
    dead = dead_url()
    first, second = fleet(btf_missing, honest)
    with first, second:
        with ServiceClient([dead, first.url, second.url], token="",
                           trust=TrustPolicy([TrustedKey(first.ring.current.raw)])) as client:
            with pytest.raises(CompileServiceError) as exc:
                client.compile(BUNDLE, kernel="6.18.0", arch="x86_64")
            assert exc.value.status == 404
            assert client.endpoints.order()[0] == first.url
    assert second.compile_count() == 0
