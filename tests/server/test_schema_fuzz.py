"""Requests generated from the service's own OpenAPI document, against the real
service (uvicorn on 127.0.0.1), once with a bearer token configured and once
open.  Every reply must be documented: no 5xx, a status code the operation
lists, and a body that matches the schema stated for it.

Bounded for CI: a fixed number of examples per operation and a derandomized
search, so a run is reproducible and takes well under a minute or two.
The document's example request is a program that compiles, so a 200 reply is
checked against CompileResponse too.  Defects found this way are kept as plain
cases (tests/unit/test_server_app.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (response_schema_conformance,  # noqa: E402
                                               status_code_conformance)
from conftest import start_service  # noqa: E402
from servertools import toolchain_missing  # noqa: E402

pytestmark = pytest.mark.server

#: Examples per operation (and per target): enough to reach every validator,
#: few enough that clang runs a bounded number of times.
MAX_EXAMPLES = 40
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def open_service(tmp_path_factory):
    """The service with no token at all (LCC_TOKEN empty)."""
    reason = toolchain_missing()
    if reason:
        pytest.skip(reason)
    svc = start_service(tmp_path_factory.mktemp("lcc-open-service"), LCC_TOKEN="")
    yield svc
    svc.child.stop()


@pytest.fixture(params=["token", "open"])
def target(request, lcc_service):
    """(service, headers) for each way the service is configured."""
    if request.param == "token":
        return lcc_service, {"Authorization": f"Bearer {lcc_service.token}"}
    return request.getfixturevalue("open_service"), {}


def _document() -> dict:
    """The service's OpenAPI document, from an application built in a throwaway
    state directory (the same document every configured service serves at
    /openapi.json; test_document_is_what_the_service_serves checks that)."""
    import shutil
    import tempfile

    from lcc_server.app import create_app
    from lcc_server.settings import Settings
    state = tempfile.mkdtemp(prefix="lcc-openapi-")
    try:
        return create_app(Settings(state_dir=Path(state), warm=False)).openapi()
    finally:
        shutil.rmtree(state, ignore_errors=True)


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_reply_is_documented(case, target):
    svc, headers = target
    case.call_and_validate(base_url=svc.url, headers=headers, checks=CHECKS, timeout=60)


def test_document_is_what_the_service_serves(target):
    svc, headers = target
    with svc.client(token=None) as c:
        r = c.get("/openapi.json", headers=headers)
    assert r.status_code == 200
    assert r.json() == DOCUMENT
