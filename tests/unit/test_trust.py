"""Trusted keys on the client (lcc.compile.trust): key files, the pinned-key store, the
policy a service backend gets from its config, and the settings that choose it."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from lcc.compile.config import ClientConfig
from lcc.compile.service import ServiceBackend
from lcc.compile.trust import (TrustedKey, TrustPolicy, TrustStore, check_manifest,
                               fingerprint, parse_keys, printable, read_key_file)
from lcc.errors import LccError, UntrustedArtifact
from lcc_server.signing import KeyRing, PublicKey
from lcc_server.signing import fingerprint as server_fingerprint

RING = KeyRing.generate()
LINE = RING.current.line("build host")


def test_client_and_service_agree_on_fingerprints():
    raw = RING.current.raw
    assert fingerprint(raw) == server_fingerprint(raw) == RING.key_id
    want = "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
    assert fingerprint(raw) == want and len(want) == 50


def test_key_lines_and_pem_parse_to_the_same_key(tmp_path):
    pem = RING._private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    (from_line,) = parse_keys(f"# comment\n\n{LINE}\n")
    (from_pem,) = parse_keys(pem)

    assert from_line.raw == from_pem.raw == RING.current.raw
    assert from_line.comment == "build host"
    assert PublicKey.from_line(from_line.line()).raw == RING.current.raw  # and back


@pytest.mark.parametrize("text,match", [
    ("rsa AAAA", "line 1: expected 'ed25519"),
    ("ed25519 %%%", "line 1: .*not a base64"),
    ("ed25519 " + base64.b64encode(b"short").decode(), "32 bytes, not 5"),
    ("# fine\ned25519", "line 2"),
])
def test_malformed_key_files_name_the_line(text, match):
    with pytest.raises(LccError, match=match):
        parse_keys(text)


def test_a_private_key_file_is_refused(tmp_path):
    path = tmp_path / "signing.pem"
    path.write_bytes(RING._private.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    with pytest.raises(LccError, match="holds a private key"):
        read_key_file(path)


def test_store_pins_lists_and_unpins(tmp_path):
    store = TrustStore(tmp_path / "cfg" / "trusted_keys")
    other = KeyRing.generate().current
    a, b = TrustedKey(RING.current.raw, "a"), TrustedKey(other.raw, "b")

    assert store.keys() == []
    assert store.add(a) and store.add(b) and not store.add(TrustedKey(a.raw, "again"))
    assert [k.fingerprint for k in store.keys()] == [a.fingerprint, b.fingerprint]
    assert oct(store.path.stat().st_mode & 0o777) == "0o644"
    assert store.remove(a.fingerprint[7:20]) == [TrustedKey(a.raw, "a", str(store.path))]
    assert [k.comment for k in TrustStore(store.path).keys()] == ["b"]
    assert store.remove("SHA256:nothing-like-it") == []


def test_an_ambiguous_prefix_removes_nothing(tmp_path):
    store = TrustStore(tmp_path / "trusted_keys")
    store.add(TrustedKey(RING.current.raw))
    store.add(TrustedKey(KeyRing.generate().current.raw))
    with pytest.raises(LccError, match="names 2 keys"):
        store.remove("SHA256:")
    assert len(store.keys()) == 2


def test_the_policy_reads_pinned_keys_and_lcc_trusted_keys(tmp_path):
    store = tmp_path / "trusted_keys"
    TrustStore(store).add(TrustedKey(RING.current.raw, "pinned"))
    fleet_ring = KeyRing.generate()
    fleet = tmp_path / "fleet.pub"
    fleet.write_text(fleet_ring.current.line("fleet") + "\n")

    policy = TrustPolicy.for_service(ClientConfig(trust_file=store, trusted_keys=fleet),
                                     "http://build.example:7655")

    assert {k.fingerprint for k in policy.keys()} == {RING.key_id, fleet_ring.key_id}
    assert policy.find(fleet_ring.key_id).comment == "fleet"


def test_an_unreadable_lcc_trusted_keys_is_an_error_not_an_empty_list(tmp_path):
    policy = TrustPolicy.for_service(ClientConfig(trust_file=tmp_path / "none",
                                                  trusted_keys=tmp_path / "missing"))
    with pytest.raises(LccError, match="LCC_TRUSTED_KEYS: cannot read the key file"):
        policy.keys()


@pytest.mark.parametrize("url,insecure", [
    ("http://127.0.0.1:7655", True), ("http://localhost:7655", True),
    ("http://[::1]:7655", True), ("http://build.example:7655", False),
    ("http://10.0.0.1:7655", False),
])
def test_the_loopback_opt_out_applies_to_loopback_only(url, insecure, tmp_path):
    on = ClientConfig(trust_file=tmp_path / "none", trust_loopback=True)
    off = ClientConfig(trust_file=tmp_path / "none")

    assert TrustPolicy.for_service(on, url).insecure is insecure
    assert TrustPolicy.for_service(on, url).opt_out_ignored is not insecure
    assert TrustPolicy.for_service(off, url).insecure is False
    assert ServiceBackend.from_config(on, url).trust.insecure is insecure


def test_a_refusal_says_when_the_opt_out_does_not_apply(tmp_path):
    policy = TrustPolicy.for_service(ClientConfig(trust_file=tmp_path / "none",
                                                  trust_loopback=True),
                                     "http://build.example:7655")
    sealed = RING.seal({"format": "lcc-manifest/1"})

    with pytest.raises(UntrustedArtifact, match="applies to loopback addresses only"):
        policy.open("http://build.example:7655", sealed.statement, sealed.signature,
                    sealed.key_id)


def test_a_manifest_of_another_format_is_refused():
    sealed = RING.seal({"format": "lcc-manifest/99", "object": {}})
    policy = TrustPolicy([TrustedKey(RING.current.raw)])
    with pytest.raises(UntrustedArtifact, match="does not understand"):
        policy.open("http://h:1", sealed.statement, sealed.signature, sealed.key_id)


def test_check_manifest_wants_every_reported_field():
    obj = b"object"
    manifest = {"format": "lcc-manifest/1",
                "object": {"sha256": hashlib.sha256(obj).hexdigest(), "size": len(obj)},
                "btf": None, "request": None, "toolchain": {}, "programs": [], "maps": [],
                "warnings": "not a list"}
    with pytest.raises(UntrustedArtifact, match="without a valid 'warnings'"):
        check_manifest(manifest, origin="http://h:1", obj=obj, btf=None, request=None)
    with pytest.raises(UntrustedArtifact, match="not the one its signed manifest names"):
        check_manifest({**manifest, "object": {**manifest["object"], "size": 7}},
                       origin="http://h:1", obj=obj, btf=None, request=None)


def test_printable_shows_control_characters_and_keeps_the_rest():
    assert printable("plain text, ünïcode\tand\nlines") == "plain text, ünïcode\tand\nlines"
    assert printable("a\x1b[2Jb\rc\x00\x7f\x9b\u202e") == "a\\x1b[2Jb\\x0dc\\x00\\x7f\\x9b\\u202e"
    assert printable("a\nb", newlines=False) == "a\\nb"


# -- settings -----------------------------------------------------------------------------

def test_config_reads_the_trust_and_robustness_variables(tmp_path):
    c = ClientConfig.from_env({"LCC_TRUSTED_KEYS": "~/keys.pub",
                               "LCC_INSECURE_TRUST_LOOPBACK": "1", "LCC_TIMEOUT": "7.5",
                               "LCC_MAX_REPLY_MB": "2"})

    assert c.trusted_keys == Path.home() / "keys.pub"
    assert (c.trust_loopback, c.timeout, c.max_reply_bytes) == (True, 7.5, 2 << 20)
    assert ClientConfig.from_env({}).trust_loopback is False
    assert ClientConfig.from_env({"LCC_INSECURE_TRUST_LOOPBACK": "0"}).trust_loopback is False


@pytest.mark.parametrize("var", ["LCC_TIMEOUT", "LCC_MAX_REPLY_MB"])
@pytest.mark.parametrize("value", ["x", "0", "-1", "inf", "nan"])
def test_bad_numbers_are_refused(var, value):
    with pytest.raises(LccError, match=var):
        ClientConfig.from_env({var: value})


def test_the_service_backend_takes_timeout_and_cap_from_the_config(tmp_path):
    b = ServiceBackend.from_config(ClientConfig(timeout=3.0, max_reply_bytes=1000),
                                   "http://build.example:7655")
    assert (b.timeout, b.max_reply) == (3.0, 1000)


def test_the_opt_out_does_not_excuse_a_broken_signature_of_a_trusted_key(tmp_path):
    policy = TrustPolicy([TrustedKey(RING.current.raw)], insecure=True)
    sealed = RING.seal({"format": "lcc-manifest/1"})
    other = RING.seal({"format": "lcc-manifest/1", "x": 1})

    assert policy.open("http://127.0.0.1:1", sealed.statement, sealed.signature,
                       sealed.key_id) == {"format": "lcc-manifest/1"}
    with pytest.raises(UntrustedArtifact, match="does not verify"):
        policy.open("http://127.0.0.1:1", other.statement, sealed.signature, sealed.key_id)
    unknown = KeyRing.generate().seal({"format": "lcc-manifest/1"})
    assert policy.open("http://127.0.0.1:1", unknown.statement, unknown.signature,
                       unknown.key_id) == {"format": "lcc-manifest/1"}  # what the opt-out is for
