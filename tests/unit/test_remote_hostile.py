"""The client against a compile service that lies or misbehaves (tests/fakeservice.py:
a real HTTP server on 127.0.0.1 in this process).

Every lie is refused with an error that says what was wrong, and nothing
reaches the cache (or the kernel: ``ClbcBase`` raises before it opens the
object).  A broken service costs the client a bounded amount of memory and
time.  Escape sequences it sends are shown, not obeyed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fakeservice import (ESCAPES, EVIL, OBJ, FakeService, broken_signature, busy,
                         escapes_in_errors, escapes_in_warnings, foreign_key, honest, huge,
                         replayed, silent, substituted, swapped_btf, trickle, unsigned)
from lcc.compile import build
from lcc.compile.bundle import Bundle
from lcc.compile.cache import ArtifactCache
from lcc.compile.config import ClientConfig
from lcc.errors import CompileError, CompileServiceError, UntrustedArtifact

CONTROLS = [c for c in ESCAPES if not c.isprintable()]
TOOL = "// SPDX-License-Identifier: GPL-2.0\n#include \"lbc.h\"\nint x;\n"
BUNDLE = Bundle("tool.bpf.c", {"tool.bpf.c": TOOL})


@pytest.fixture
def store(tmp_path):
    return ArtifactCache(tmp_path / "cache")


def config(svc: FakeService, tmp_path, **over) -> ClientConfig:
    """A client that trusts ``svc``'s own key (as after ``lcc trust add``), and nothing of
    the environment."""
    return ClientConfig(trusted_keys=svc.key_file(tmp_path), trust_file=tmp_path / "none",
                        **over)


def compile_from(svc: FakeService, tmp_path, store, *, btf: bool = False, **over):
    return build(BUNDLE, server=svc.url, cache=store, btf=btf, kernel="6.18.0", arch="x86_64",
                 config=config(svc, tmp_path, **over))


def assert_nothing_cached(store: ArtifactCache) -> None:
    assert store.entries() == []
    assert not (store.base / "blobs").exists()


def test_an_honest_service_is_believed(tmp_path, store):
    with FakeService(honest) as svc:
        art = compile_from(svc, tmp_path, store)
        again = compile_from(svc, tmp_path, store)

    assert art.object == OBJ and art.key_id == svc.ring.key_id
    assert again.cache_hit and again.object == OBJ
    assert svc.compile_count() == 1


@pytest.mark.parametrize("behaviour,btf,match", [
    (substituted, False, "sent an object that is not the one its signed manifest names"),
    (foreign_key, False, "signed by key SHA256:.*which is not a trusted key"),
    (broken_signature, False, "manifest signature does not verify with key"),
    (unsigned, False, "sent an object without a signed manifest"),
    (replayed, False, r"signed for another request \(bundle"),
    (swapped_btf, True, "sent tailored BTF that is not what its signed manifest names"),
], ids=["substituted", "foreign-key", "broken-signature", "unsigned", "replayed", "btf"])
def test_a_lying_service_is_refused(tmp_path, store, behaviour, btf, match):
    with FakeService(behaviour) as svc:
        with pytest.raises(UntrustedArtifact, match=match) as exc:
            compile_from(svc, tmp_path, store, btf=btf)

    assert svc.url in str(exc.value) and "refused" in str(exc.value)
    assert_nothing_cached(store)


def test_a_refused_object_is_never_opened(tmp_path, monkeypatch):
    from lcc import ClbcBase

    with FakeService(substituted) as svc:
        monkeypatch.setenv("LCC_TRUSTED_KEYS", str(svc.key_file(tmp_path)))
        monkeypatch.setenv("LCC_CACHE_DIR", str(tmp_path / "cache"))
        opened = []
        monkeypatch.setattr(ClbcBase, "open", lambda self: opened.append(self))
        with pytest.raises(UntrustedArtifact):
            ClbcBase("tool", bpf_str=TOOL, server=svc.url, attach=False)

    assert opened == []
    assert ArtifactCache(tmp_path / "cache").entries() == []


def test_a_service_nobody_pinned_is_refused_with_the_way_to_pin_it(tmp_path, store):
    with FakeService(honest) as svc:
        with pytest.raises(UntrustedArtifact) as exc:
            build(BUNDLE, server=svc.url, cache=store,
                  config=ClientConfig(trust_file=tmp_path / "none"))

    text = str(exc.value)
    assert f"signed by key {svc.ring.key_id}" in text
    assert "no compile service key is trusted here" in text
    assert f"lcc trust add {svc.url}" in text and "LCC_TRUSTED_KEYS" in text
    assert "LCC_INSECURE_TRUST_LOOPBACK=1" in text  # the service is on loopback
    assert exc.value.key_id == svc.ring.key_id
    assert_nothing_cached(store)


def test_the_loopback_opt_out_takes_an_unknown_key_but_not_a_lie(tmp_path, store):
    opt_out = ClientConfig(trust_file=tmp_path / "none", trust_loopback=True)
    with FakeService(honest) as svc:
        art = build(BUNDLE, server=svc.url, cache=store, config=opt_out)
        hit = build(BUNDLE, server=svc.url, cache=store, config=opt_out)
        # Without the opt-out, neither the entry it left nor a new answer is good enough.
        with pytest.raises(UntrustedArtifact, match="no compile service key is trusted"):
            build(BUNDLE, server=svc.url, cache=store,
                  config=ClientConfig(trust_file=tmp_path / "none"))
    with FakeService(substituted) as liar:
        with pytest.raises(UntrustedArtifact, match="not the one its signed manifest"):
            build(Bundle("b.bpf.c", {"b.bpf.c": "int y;"}), server=liar.url, cache=store,
                  config=opt_out)

    assert art.object == OBJ and hit.cache_hit
    assert svc.compile_count() == 2
    assert store.entries() == []


# -- a broken service: memory and time stay bounded ----------------------------------------

@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "until-close"])
def test_a_huge_answer_is_cut_off(tmp_path, store, announce):
    with FakeService(huge(announce)) as svc:
        started = time.monotonic()
        with pytest.raises(CompileServiceError, match="sent an answer larger than 1 MiB"):
            compile_from(svc, tmp_path, store, max_reply_bytes=1 << 20)
        elapsed = time.monotonic() - started

    # The client read about 1 MiB and hung up: the service got little of its 400 MB out.
    assert svc.sent < 64 << 20
    assert elapsed < 30
    assert_nothing_cached(store)


@pytest.mark.parametrize("behaviour", [silent, trickle], ids=["silent", "trickle"])
def test_a_service_that_does_not_answer_times_out_as_configured(tmp_path, store, behaviour):
    with FakeService(behaviour) as svc:
        started = time.monotonic()
        with pytest.raises(CompileServiceError) as exc:
            compile_from(svc, tmp_path, store, timeout=1.0)
        elapsed = time.monotonic() - started

    assert "did not answer in time (1 s; POST /v1/compile)" in str(exc.value)
    assert "LCC_TIMEOUT" in str(exc.value)
    assert elapsed < 10  # the old fixed wait was 120 s
    assert svc.compile_count() == 1  # a request the service took is not sent again
    assert_nothing_cached(store)


def test_503_is_retried_after_retry_after(tmp_path, store):
    with FakeService(busy(2, retry_after="0")) as svc:
        art = compile_from(svc, tmp_path, store)

    assert art.object == OBJ and svc.compile_count() == 3


def test_503_for_ever_gives_up(tmp_path, store):
    with FakeService(busy(100, retry_after="0")) as svc:
        with pytest.raises(CompileServiceError, match=r"unavailable: .*asked 5 times") as exc:
            compile_from(svc, tmp_path, store)

    assert exc.value.status == 503 and svc.compile_count() == 5
    assert_nothing_cached(store)


def test_503_asking_for_more_than_the_timeout_is_not_waited_for(tmp_path, store):
    with FakeService(busy(100, retry_after="5")) as svc:
        started = time.monotonic()
        with pytest.raises(CompileServiceError, match="asks to retry after 5 s"):
            compile_from(svc, tmp_path, store, timeout=2.0)

    assert time.monotonic() - started < 2 and svc.compile_count() == 1


def test_503_without_retry_after_backs_off_within_the_timeout(tmp_path, store):
    with FakeService(busy(100, retry_after=None)) as svc:
        started = time.monotonic()
        with pytest.raises(CompileServiceError, match="unavailable"):
            compile_from(svc, tmp_path, store, timeout=2.0)

    # backoff 0.5 s, then 1 s; the next (2 s) would pass the timeout
    assert svc.compile_count() == 3 and time.monotonic() - started < 3


# -- what the service says is shown, not obeyed ----------------------------------------------

@pytest.fixture
def lcc(tmp_path):
    (tmp_path / "tool.bpf.c").write_text(TOOL)

    def run(svc: FakeService, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LCC_")}
        env.update(LCC_TRUSTED_KEYS=str(svc.key_file(tmp_path)),
                   LCC_CACHE_DIR=str(tmp_path / "cache"))
        return subprocess.run([sys.executable, "-m", "lcc.cli", "compile", "tool.bpf.c",
                               "--server", svc.url, *args], cwd=tmp_path, env=env,
                              capture_output=True, timeout=60)
    return run


def test_escape_sequences_in_warnings_are_shown_not_obeyed(lcc):
    with FakeService(escapes_in_warnings) as svc:
        p = lcc(svc)

    assert p.returncode == 0, p.stderr
    err = p.stderr.decode()
    assert "tool.bpf.c:1:1: warning: look" in err
    assert not any(c in err for c in CONTROLS)
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202e" in err


@pytest.mark.parametrize("verbose", [False, True])
def test_escape_sequences_in_errors_are_shown_not_obeyed(lcc, verbose):
    with FakeService(escapes_in_errors) as svc:
        p = lcc(svc, *(["-v"] if verbose else []))

    assert p.returncode == 1
    err = p.stderr.decode()
    assert "boom" in err and ("log" in err or not verbose)
    assert not any(c in err for c in CONTROLS), err
    assert "\\x1b" in err


def test_the_library_error_carries_neutralised_text(tmp_path, store):
    with FakeService(escapes_in_errors) as svc:
        with pytest.raises(CompileError) as exc:
            compile_from(svc, tmp_path, store)

    e = exc.value
    for text in (str(e), e.log, e.diagnostics[0].file, e.diagnostics[0].message):
        assert not any(c in text for c in CONTROLS), repr(text)
        assert "\\x1b]0;owned\\x07" in text


def test_substituted_bytes_are_not_what_the_honest_service_sends():
    assert EVIL != OBJ  # the fixtures' premise
