"""The service signs what it hands out (lcc_server.signing): its keys, GET /v1/keys, the
manifest of every reply, and the sealed records beside stored objects, which are not
served once edited.  The toolchain is a fake (no clang needed)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from lcc_server.app import create_app  # noqa: E402
from lcc_server.btf_store import BtfStore  # noqa: E402
from lcc_server.settings import Settings  # noqa: E402
from lcc_server.signing import KeyRing, PublicKey, canonical, rotate  # noqa: E402
from lcc_toolchain.digest import bundle_digest  # noqa: E402
from lcc_toolchain.errors import Diagnostic  # noqa: E402
from lcc_toolchain.toolchain import CompileResult  # noqa: E402

import faketoolchain  # noqa: E402
from faketoolchain import FAKE_BTF  # noqa: E402

TAILORED = FAKE_BTF + b"tailored"


class FakeToolchain(faketoolchain.FakeToolchain):
    """Compiles by hashing the source; 'WARN' in it gives a warning."""

    def __init__(self) -> None:
        super().__init__()
        self.tailored = 0

    def compile(self, bundle, *, arch, defines, btf_path, cancel=None) -> CompileResult:
        with self._lock:
            self.calls += 1
        text = bundle.files[bundle.main]
        warnings = [Diagnostic(bundle.main, 1, 1, "warning", "WARN seen")] \
            if "WARN" in text else []
        return self.result(text, defines, arch, warnings=warnings)

    def min_core_btf(self, obj: bytes, btf_path: Path) -> bytes:
        with self._lock:
            self.tailored += 1
        return TAILORED


@pytest.fixture
def state(tmp_path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def make_app(tmp_path, state):
    """``make_app(**settings)``: an application on ``state`` (a new one is a restarted
    service: it knows only the disk) and its fake toolchain."""
    host = tmp_path / "vmlinux"
    host.write_bytes(FAKE_BTF)

    def make(**settings):
        fake = FakeToolchain()
        s = Settings(state_dir=state, warm=False, host_btf=host, max_concurrency=2, **settings)
        store = BtfStore(state / "btf", host_btf=host, host_arch="x86_64",
                         host_release="6.0-test")
        return create_app(s, toolchain=fake, btf_store=store), fake
    return make


def run(app, *requests):
    """Send ``requests`` [(method, path, kwargs)] in turn; return the responses."""
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return [await c.request(m, p, **kw) for m, p, kw in requests]
    return asyncio.run(main())


def compile_(text="int x;", **extra):
    return ("POST", "/v1/compile",
            {"json": {"bundle": {"main": "a.bpf.c", "files": {"a.bpf.c": text}},
                      "arch": "x86_64", "kernel": "6.0-test", **extra}})


def verify(reply: dict, key: PublicKey) -> dict:
    """The manifest of a compile reply, once its signature verified with ``key``."""
    assert reply["key_id"] == key.fingerprint
    assert key.verify(reply["manifest"].encode(), base64.b64decode(reply["signature"]))
    return json.loads(reply["manifest"])


def current_key(state: Path) -> PublicKey:
    return PublicKey.from_line((state / "keys" / "signing.pub").read_text())


# -- keys ----------------------------------------------------------------------------------

def test_the_key_is_made_on_first_start_private_and_published(make_app, state):
    app, _ = make_app(token="secret")
    key = current_key(state)
    (keys,) = run(app, ("GET", "/v1/keys", {}))  # no token: public keys are public

    assert stat.S_IMODE((state / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "keys" / "signing.pem").stat().st_mode) == 0o600
    assert keys.status_code == 200
    assert keys.json() == {"keys": [{"id": key.fingerprint, "algorithm": "ed25519",
                                     "public_key": base64.b64encode(key.raw).decode(),
                                     "status": "current"}]}
    again, _ = make_app()
    assert current_key(state) == key  # kept across restarts
    assert run(again, ("GET", "/v1/keys", {}))[0].json() == keys.json()


def test_worker_processes_starting_together_make_one_key(state):
    with ThreadPoolExecutor(8) as pool:
        rings = list(pool.map(lambda _: KeyRing.load(state / "keys"), range(8)))
    assert len({r.key_id for r in rings}) == 1


def test_lcc_signing_key_names_the_key(make_app, state, tmp_path):
    own = KeyRing.generate()
    pem = tmp_path / "secret" / "lcc.pem"
    pem.parent.mkdir()
    pem.write_bytes(own._private.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    pem.chmod(0o600)

    app, _ = make_app(signing_key=pem)
    (reply,) = run(app, compile_())

    verify(reply.json(), own.current)
    assert not (state / "keys" / "signing.pem").exists()
    assert current_key(state) == own.current
    env = Settings(signing_key=pem).to_env()
    assert env["LCC_SIGNING_KEY"] == str(pem)
    assert Settings.from_env(env).signing_key == pem


def test_a_signing_key_that_is_not_ed25519_stops_the_start(make_app, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match="bad.pem"):
        make_app(signing_key=bad)


# -- the manifest of a reply ---------------------------------------------------------------

def test_a_compile_reply_carries_a_manifest_signed_by_the_published_key(make_app, state):
    app, _ = make_app()
    (reply,) = run(app, compile_("WARN int x;", defines={"N": "2", "X": None}, btf=True))
    body = reply.json()
    m = verify(body, current_key(state))

    obj, btf = base64.b64decode(body["object"]), base64.b64decode(body["btf"])
    assert reply.json()["manifest"].encode() == canonical(m)  # the exact signed text
    assert m["format"] == "lcc-manifest/1"
    assert m["object"] == {"sha256": hashlib.sha256(obj).hexdigest(), "size": len(obj)}
    assert m["btf"] == {"sha256": hashlib.sha256(btf).hexdigest(), "size": len(btf)}
    assert m["request"] == {
        "bundle": bundle_digest("a.bpf.c", {"a.bpf.c": "WARN int x;"}),
        "defines": {"N": "2", "X": None}, "arch": "x86_64", "kernel": "6.0-test",
        "kernel_btf": "sha256:" + hashlib.sha256(FAKE_BTF).hexdigest()}
    assert m["toolchain"] == {"clang": "fake 1.0"}
    assert m["warnings"] == body["warnings"] and m["warnings"][0]["message"] == "WARN seen"
    assert (m["programs"], m["maps"]) == (body["programs"], body["maps"])


def test_an_artifact_by_digest_has_a_manifest_without_request(make_app, state):
    app, _ = make_app()
    (compiled,) = run(app, compile_())
    (art,) = run(app, ("GET", f"/v1/artifacts/{compiled.json()['digest']}", {}))

    m = verify(art.json(), current_key(state))
    assert m["request"] is None and m["object"]["sha256"] == compiled.json()["digest"]


# -- stored records: edited on disk, never served ------------------------------------------

def _meta_path(state: Path, digest: str) -> Path:
    return state / "artifacts" / "objects" / f"{digest}.json"


@pytest.mark.parametrize("field,value", [
    ("warnings", []),
    ("warnings", [{"file": "a.bpf.c", "line": 1, "column": 1, "severity": "warning",
                   "message": "something else"}]),
    ("maps", [{"name": "forged", "section": ".maps"}]),
    ("programs", [{"name": "forged", "section": "kprobe/x"}]),
    ("toolchain", {"clang": "forged"}),
])
def test_edited_metadata_is_not_served_but_compiled_again(make_app, state, caplog, field,
                                                          value):
    app, _ = make_app()
    (first,) = run(app, compile_("WARN int x;"))
    digest = first.json()["digest"]
    path = _meta_path(state, digest)
    meta = json.loads(path.read_text())
    meta[field] = value
    path.write_text(json.dumps(meta))

    restarted, fake = make_app()
    with caplog.at_level(logging.WARNING, logger="lcc_server.artifacts"):
        (by_digest,) = run(restarted, ("GET", f"/v1/artifacts/{digest}", {}))
    refused = caplog.text
    (again,) = run(restarted, compile_("WARN int x;"))

    assert by_digest.status_code == 404  # dropped, not served
    assert f"artifact {digest[:16]}: its metadata" in refused and "refused" in refused
    assert "compiled again" in refused
    assert fake.calls == 1 and again.json()["cached"] is False
    assert again.json()["warnings"] == first.json()["warnings"]
    m = verify(again.json(), current_key(state))
    assert m[field] == json.loads(first.json()["manifest"])[field]


def test_metadata_moved_to_another_object_is_not_served(make_app, state):
    app, _ = make_app()
    a, b = run(app, compile_("WARN int a;"), compile_("int b;"))
    da, db = a.json()["digest"], b.json()["digest"]
    _meta_path(state, db).write_bytes(_meta_path(state, da).read_bytes())  # a's warnings on b

    restarted, fake = make_app()
    (again,) = run(restarted, compile_("int b;"))

    assert fake.calls == 1 and again.json()["warnings"] == []


def test_a_request_key_pointed_at_another_object_is_not_followed(make_app, state, caplog):
    app, _ = make_app()
    a, b = run(app, compile_("int a;"), compile_("int b;"))
    keys = state / "artifacts" / "keys"
    by_digest = {p.read_text().split("\n")[0]: p for p in keys.iterdir()}
    key_a, key_b = by_digest[a.json()["digest"]], by_digest[b.json()["digest"]]
    key_a.write_bytes(key_b.read_bytes())  # a's request now names b's object

    restarted, fake = make_app()
    with caplog.at_level(logging.WARNING, logger="lcc_server.artifacts"):
        (again,) = run(restarted, compile_("int a;"))

    assert "request key" in caplog.text and "refused" in caplog.text
    assert again.json()["object"] == a.json()["object"] and fake.calls == 1


def test_swapped_tailored_btf_is_made_again(make_app, state):
    app, _ = make_app()
    (first,) = run(app, compile_(btf=True))
    (btf_file,) = [p for p in (state / "artifacts" / "btf").iterdir()
                   if not p.name.endswith(".seal")]
    btf_file.write_bytes(FAKE_BTF + b"swapped")

    restarted, fake = make_app()
    (again,) = run(restarted, compile_(btf=True))

    assert base64.b64decode(again.json()["btf"]) == TAILORED
    assert fake.tailored == 1 and fake.calls == 0  # the object was fine; only BTF redone


# -- rotation ------------------------------------------------------------------------------

def test_after_rotation_old_records_still_serve_and_replies_use_the_new_key(make_app, state):
    app, _ = make_app()
    (first,) = run(app, compile_("WARN int x;", btf=True))
    old = current_key(state)

    retired, new = rotate(state / "keys")
    restarted, fake = make_app()
    (keys,) = run(restarted, ("GET", "/v1/keys", {}))
    (again,) = run(restarted, compile_("WARN int x;", btf=True))

    assert retired == old and new == current_key(state) and new != old
    assert [(k["id"], k["status"]) for k in keys.json()["keys"]] == [
        (new.fingerprint, "current"), (old.fingerprint, "retired")]
    assert (fake.calls, fake.tailored) == (0, 0)  # the old key's seals still hold
    assert again.json()["cached"] is True
    assert json.loads(again.json()["manifest"]) == json.loads(first.json()["manifest"])
    verify(again.json(), new)
    assert stat.S_IMODE((state / "keys" / "signing.pem").stat().st_mode) == 0o600


def test_records_of_a_key_no_longer_held_are_compiled_again(make_app, state):
    app, _ = make_app()
    run(app, compile_())
    rotate(state / "keys")
    for p in (state / "keys" / "retired").iterdir():
        p.unlink()  # revoked: its records mean nothing now

    restarted, fake = make_app()
    (again,) = run(restarted, compile_())

    assert fake.calls == 1 and again.json()["cached"] is False


def test_signing_command_shows_and_rotates(state):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("LCC_SIGNING_KEY", None)

    def signing(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "lcc_server.signing", *args,
                               "--state-dir", str(state)], env=env, capture_output=True,
                              text=True, check=True, timeout=60).stdout

    shown = signing("show")
    first = current_key(state)
    rotated = signing("rotate")
    after = signing("show")

    assert shown.startswith(f"current  {first.fingerprint}  ed25519 ")
    assert f"retired {first.fingerprint}" in rotated and "restart the service" in rotated
    assert after.splitlines()[1].startswith(f"retired  {first.fingerprint}")
    assert after.startswith(f"current  {current_key(state).fingerprint}")
