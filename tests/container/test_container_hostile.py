"""The hostile suite against the packaged service: a quick subset of
tests/hostile_cases.py (``CONTAINER_CASES``) sent to the ``lcc-compiler``
image that test_container.py builds and starts, with the same checks as
against the service the server tests run (exact status and error code, no
secret, token or server path in the answer, nothing stored lost, still
healthy).  Skips like the rest of the container tier when no Docker engine
can be started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile_cases import (CASES, CONTAINER_CASES, RAW_CASES, assert_nothing_lost, check_case,
                           check_raw, src, store_snapshot)
from servertools import HELLO
from test_container import engine, image, service  # noqa: F401  (fixtures)

httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.docker


@dataclass
class ContainerTarget:
    """The service in the container, seen as the hostile cases see a target."""

    url: str
    token: str
    state_dir: Path = Path("/var/lib/lcc")  # the image's LCC_STATE_DIR

    def client(self, *, token: str | None = "default", timeout: float = 120) -> httpx.Client:
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def healthy(self) -> bool:
        try:
            with self.client(token=None, timeout=10) as c:
                return c.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="module")
def target(service):  # noqa: F811
    return ContainerTarget(url=service.endpoint(), token=service.token)


@pytest.fixture(scope="module")
def stored(target):
    with target.client() as c:
        r = c.post("/v1/compile", json=src(HELLO)["json"])
    assert r.status_code == 200, r.text[:2000]
    return r.json()["digest"]


@pytest.fixture
def api(target):
    with target.client() as c:
        yield c
    assert target.healthy(), "the container's service stopped answering /healthz"


@pytest.mark.parametrize("method,path,kwargs,statuses,error",
                         [pytest.param(*c[1:], id=c[0]) for c in CASES
                          if c[0] in CONTAINER_CASES])
def test_hostile_input_to_the_image(target, api, stored, method, path, kwargs, statuses,
                                    error):
    before = store_snapshot(api, stored)
    check_case(target, api, method, path, kwargs, statuses, error)
    assert_nothing_lost(before, store_snapshot(api, stored))


@pytest.mark.parametrize("request_,status,error",
                         [pytest.param(*c[1:], id=c[0]) for c in RAW_CASES
                          if c[0] in CONTAINER_CASES])
def test_malformed_http_to_the_image(target, api, stored, request_, status, error):
    before = store_snapshot(api, stored)
    check_raw(target, request_, status, error)
    assert_nothing_lost(before, store_snapshot(api, stored))


def test_every_selected_case_exists():
    known = {c[0] for c in CASES} | {c[0] for c in RAW_CASES}
    assert CONTAINER_CASES <= known, CONTAINER_CASES - known


def test_image_serves_the_docs_assets_itself(api):
    # The packaged service has the assets too (fastapi-offline in the server extra).
    import re
    page = api.get("/docs")
    assert page.status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(u.startswith("/docs-assets/") for u in refs), refs
    for ref in refs:
        r = api.get(ref)
        assert r.status_code == 200 and len(r.content) > 100, ref
