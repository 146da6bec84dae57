"""``lcc trust``: the signing keys of the compile services whose objects lcc loads.

``add URL`` fetches the service's current key (``GET /v1/keys``) and shows
its fingerprint, as ssh does on first contact; the key is pinned when it
matches ``--fingerprint`` (what the service's operator gives you), when you
confirm at a terminal, or with ``--yes``.  ``add FILE`` pins the keys of a
key file (the service's ``keys/signing.pub``).  ``ls`` lists the pinned
keys and those of ``LCC_TRUSTED_KEYS``; ``rm FINGERPRINT`` unpins one.
See :mod:`lcc.compile.trust`.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import LccError
from .common import command_with_actions

HELP = "pin, list or remove compile service signing keys"


def register(sub, common: argparse.ArgumentParser) -> None:
    add = command_with_actions(sub, common, "trust", HELP)
    p = add("add", run_add, "pin a compile service's signing key",
            "Pin the signing key of the compile service at URL (shown before it is "
            "pinned), or the keys in FILE.")
    p.add_argument("target", metavar="URL|FILE",
                   help="a compile service URL, or a key file ('ed25519 <base64> ...' "
                        "lines or a PEM public key)")
    p.add_argument("--fingerprint", metavar="SHA256:...",
                   help="pin the service's key only if it has this fingerprint")
    p.add_argument("-y", "--yes", action="store_true",
                   help="pin the service's key without asking (trust on first use)")
    add("ls", run_ls, "list trusted keys",
        "List the pinned keys and those of LCC_TRUSTED_KEYS.")
    rm = add("rm", run_rm, "unpin a key", "Unpin the key with this fingerprint (or prefix).")
    rm.add_argument("fingerprint", metavar="FINGERPRINT")


def _config():
    from ..compile.config import ClientConfig
    return ClientConfig.from_env()


def _store(config):
    from ..compile.trust import TrustStore, default_trust_file
    return TrustStore(default_trust_file(config))


def run_add(args: argparse.Namespace) -> int:
    from ..compile.trust import pin_comment, read_key_file
    config = _config()
    store = _store(config)
    if os.path.exists(args.target):
        if args.fingerprint or args.yes:
            raise LccError("--fingerprint and --yes apply to a URL, not a key file")
        keys = read_key_file(args.target)
        if not keys:
            raise LccError(f"{args.target} holds no key")
        for key in keys:
            added = store.add(key)
            print(f"{'pinned' if added else 'already pinned:'} {key.fingerprint}"
                  f"{' (' + key.comment + ')' if key.comment else ''}")
        return 0

    key, retired, url = _fetch(args.target, config)
    print(f"The compile service at {url} signs with the ED25519 key\n  {key.fingerprint}")
    if retired:
        print(f"(and lists {retired} retired key{'s' if retired > 1 else ''})")
    if any(k.raw == key.raw for k in store.keys()):
        print(f"already pinned in {store.path}")
        return 0
    if args.fingerprint:
        want = args.fingerprint if args.fingerprint.startswith("SHA256:") \
            else "SHA256:" + args.fingerprint
        if want != key.fingerprint:
            raise LccError(f"the service at {url} presents {key.fingerprint}, not {want}; "
                           "nothing pinned",
                           hint="someone may be in between, or the key was rotated: ask the "
                                "service's operator")
    elif not args.yes and not _confirm():
        raise LccError("not pinned",
                       hint="compare the fingerprint with the one the service's operator "
                            "gives you (`python -m lcc_server.signing show` on its host), then "
                            "pass --fingerprint SHA256:..., or --yes to pin it unchecked")
    from ..compile.trust import TrustedKey
    store.add(TrustedKey(key.raw, pin_comment(url)))
    print(f"pinned {key.fingerprint} in {store.path}")
    return 0


def _fetch(target: str, config):
    """The service's current key, how many retired keys it lists, and its URL."""
    from ..compile.service import DEFAULT_TIMEOUT, ServiceClient, normalize_url
    try:
        url = normalize_url(target)
    except LccError:
        raise LccError(f"{target} is neither a key file nor a compile service URL") from None
    with ServiceClient(url, token=config.token or "", timeout=config.timeout or DEFAULT_TIMEOUT,
                       max_reply=1 << 20) as client:
        keys = client.keys()
    current = [k for k in keys if k.comment == "current"] or keys[:1]
    return current[0], len(keys) - 1, url


def _confirm() -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        answer = input("Is this the service's key (compare with what its operator gives "
                       "you)? Pin it? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def run_ls(args: argparse.Namespace) -> int:
    from ..compile.trust import read_key_file
    config = _config()
    store = _store(config)
    rows = [(k, "pinned") for k in store.keys()]
    if config.trusted_keys is not None:
        rows += [(k, "LCC_TRUSTED_KEYS") for k in read_key_file(config.trusted_keys)]
    print(f"# {store.path}: {len(rows)} trusted key{'' if len(rows) == 1 else 's'}"
          + (f" (with LCC_TRUSTED_KEYS={config.trusted_keys})" if config.trusted_keys else ""))
    if config.trust_loopback:
        print("# LCC_INSECURE_TRUST_LOOPBACK is set: a service on a loopback address needs "
              "no trusted key")
    if rows:
        print(f"{'FINGERPRINT':<50}  {'SOURCE':<16}  COMMENT")
    for key, source in rows:
        print(f"{key.fingerprint:<50}  {source:<16}  {key.comment}")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    from ..compile.trust import read_key_file
    config = _config()
    store = _store(config)
    gone = store.remove(args.fingerprint)
    if not gone:
        want = args.fingerprint if args.fingerprint.startswith("SHA256:") \
            else "SHA256:" + args.fingerprint
        fleet = read_key_file(config.trusted_keys) if config.trusted_keys else []
        if any(k.fingerprint.startswith(want) for k in fleet):
            raise LccError(f"{args.fingerprint} comes from LCC_TRUSTED_KEYS="
                           f"{config.trusted_keys}", hint="edit that file, or unset it")
        raise LccError(f"no pinned key has the fingerprint {args.fingerprint}",
                       hint="`lcc trust ls` lists them")
    for key in gone:
        print(f"unpinned {key.fingerprint}{' (' + key.comment + ')' if key.comment else ''}")
    return 0
