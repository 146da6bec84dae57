"""Hostile inputs against the real compile service: each gets a clear 4xx
(the new cases an exact status and error code), no reply contains a file the
request tried to read, the token or a server path, nothing stored is lost,
and the service keeps answering /healthz (checked by the ``api`` fixture
after every case).  The cases are data in tests/hostile_cases.py, which the
container tier sends to the packaged image too.
"""

from __future__ import annotations

import threading

import pytest
from hostile_cases import (CASES, INT_BTF, OCTETS, RAW_CASES, TINY_BTF, assert_nothing_lost,
                           check_case, check_raw, src, store_snapshot)

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def stored(lcc_service, hello_source):
    """The digest of an artifact the service stores, compiled before the cases."""
    with lcc_service.client() as c:
        r = c.post("/v1/compile", json=src(hello_source)["json"])
    assert r.status_code == 200, r.text[:2000]
    return r.json()["digest"]


@pytest.mark.parametrize("method,path,kwargs,statuses,error",
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_hostile_input_gets_clear_4xx(lcc_service, api, stored, method, path, kwargs,
                                      statuses, error):
    before = store_snapshot(api, stored)
    check_case(lcc_service, api, method, path, kwargs, statuses, error)
    assert_nothing_lost(before, store_snapshot(api, stored))


@pytest.mark.parametrize("request_,status,error",
                         [pytest.param(*c[1:], id=c[0]) for c in RAW_CASES])
def test_malformed_http_is_refused(lcc_service, api, stored, request_, status, error):
    before = store_snapshot(api, stored)
    check_raw(lcc_service, request_, status, error)
    assert_nothing_lost(before, store_snapshot(api, stored))


def test_concurrent_first_uploads_of_one_release_keep_one_whole(lcc_service, api, stored):
    # Two callers race to upload different BTF for the same new kernel: one wins
    # (201), the other is told (409 conflict), and the stored bytes are the winner's.
    import secrets
    release = f"9.9.9-race-{secrets.token_hex(4)}"
    before = store_snapshot(api, stored)
    bodies = {"tiny": TINY_BTF, "int": INT_BTF}
    replies: dict = {}
    start = threading.Barrier(len(bodies))

    def upload(name: str) -> None:
        with lcc_service.client() as c:
            start.wait()
            replies[name] = c.put(f"/v1/btf/x86_64/{release}", content=bodies[name],
                                  headers={"content-type": OCTETS})
    threads = [threading.Thread(target=upload, args=(n,)) for n in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    statuses = sorted(r.status_code for r in replies.values())
    assert statuses == [201, 409], {n: r.text[:200] for n, r in replies.items()}
    (winner,) = [n for n, r in replies.items() if r.status_code == 201]
    (loser,) = [r for r in replies.values() if r.status_code == 409]
    assert loser.json()["error"] == "conflict"
    got = api.get(f"/v1/btf/x86_64/{release}")
    assert got.status_code == 200 and got.content == bodies[winner]
    after = store_snapshot(api, stored)
    assert_nothing_lost(before, after)
    assert set(after[0]) - set(before[0]) == {("x86_64", release)}


# -- no answer tells whether a path exists on the server ---------------------------------

SAME_LENGTH_PAIRS = [("/etc/passwd", "/etc/passwq"), ("/etc/shadow", "/etc/shadoq"),
                     ("/dev/zero", "/dev/zerq"), ("/root", "/roox"),
                     ("/proc/self/environ", "/proc/self/environq")]


def _answer(client, text: str, path: str):
    r = client.post("/v1/compile", json=src(text.format(path))["json"])
    return r.status_code, str(r.json()).replace(path, "P")


@pytest.mark.parametrize("existing,missing", SAME_LENGTH_PAIRS)
@pytest.mark.parametrize("text", ['#include "{}"\n', "#include <{}>\n",
                                  'int a;\n#include "{}"\nint b;\n'])
def test_existing_and_missing_forbidden_paths_get_the_same_answer(api, existing, missing, text):
    assert _answer(api, text, existing) == _answer(api, text, missing)


HAS_INCLUDE = '#if __has_include("{}")\n#error present\n#else\n#error absent\n#endif\n'


@pytest.mark.parametrize("existing,missing", SAME_LENGTH_PAIRS)
def test_has_include_does_not_tell_whether_a_path_exists(lcc_service_as_nobody, existing,
                                                         missing):
    with lcc_service_as_nobody.client() as c:
        seen = _answer(c, HAS_INCLUDE, existing)
        assert seen == _answer(c, HAS_INCLUDE, missing)
        assert seen[0] == 422 and "absent" in seen[1]
    assert lcc_service_as_nobody.healthy()
