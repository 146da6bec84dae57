"""The quick index: a tool's cached object found again without the compile side.

A cache hit through :func:`lcc.compile.build` must compute the full cache
key (:mod:`lcc.compile.cache`): gather the bundle, hash it, and name the
local toolchain (clang and bpftool versions, header hashes), which means
importing the toolchain package.  That costs tens of milliseconds on every
start.  This index answers the common case, a tool compiled by the local
toolchain for the running kernel, from one small file and a few ``stat``
calls, importing nothing beyond ``os``.

An entry is keyed by what the tool asked for: its main source text and
where it lives, the defines and kept types, the running kernel (release,
machine, BTF identity), the cache root and the ``LCC_CLANG``,
``LCC_BPFTOOL``, ``LCC_SANDBOX`` settings.  It records what the full path
decided, with what that decision rested on::

    <root>/artifacts/v1/quick/<kk>/<key>

    lcc-quick 1
    key <artifact key>            the full cache key, whose entry must still exist
    object <sha256>               the object blob, verified on every read
    file <relpath> <sha256>       each local header of the bundle (content)
    dir <path> <mtime_ns>         the tool's directory (a header added or removed)
    which <tool> <path>           where clang and bpftool resolve on PATH
    stat <path> <size> <mtime_ns> <inode>
                                  the toolchain's binaries, headers and code

Any difference is a miss: the caller takes the full path
(:func:`lcc.compile.build`), which compiles or finds the object by its full
key and then :func:`remember` writes the entry again.  Entries are written
only for local compiles without warnings (a compile service's objects are
checked against their signed manifest on every read, which this index does
not do; warnings must be shown again).  A damaged entry is a miss.
"""

from __future__ import annotations

import os

from .. import kernelcache

__all__ = ["QuickHit", "lookup", "quick_key", "remember"]

_MAGIC = "lcc-quick 1"
_FORMAT = "v1"  # the artifact cache's layout (lcc.compile.cache.FORMAT)


class QuickHit:
    """What a quick lookup found: the verified object and where its blob lives."""

    __slots__ = ("object", "digest", "key", "object_path")

    def __init__(self, object: bytes, digest: str, key: str, object_path: str) -> None:
        self.object = object
        self.digest = digest
        self.key = key
        self.object_path = object_path


def _base(root: str) -> str:
    return os.path.join(root, "artifacts", _FORMAT)


def quick_key(*, main: str, text: str, base_dir: str, defines: dict[str, str | None],
              keep_types: tuple[str, ...], root: str, environ: dict | None = None) -> str | None:
    """The index key of a request, or None when the index cannot answer it (not the
    local toolchain, or the kernel has no identity)."""
    env = os.environ if environ is None else environ
    # The backend choice of lcc.compile.pipeline.choose_backend, for a tool
    # that names no server: local unless the environment says otherwise.
    backend = env.get("LCC_BACKEND") or ""
    if backend not in ("", "local") or (not backend and env.get("LCC_SERVER")):
        return None
    from .kernel import this_kernel
    me = this_kernel()
    if me.btf_id is None:
        return None
    parts = [_MAGIC, main, base_dir, me.release, me.arch, me.btf_id, root,
             env.get("LCC_CLANG") or "clang", env.get("LCC_BPFTOOL") or "bpftool",
             env.get("LCC_SANDBOX") or "", repr(sorted(defines.items())), repr(keep_types)]
    h = kernelcache.sha256("\0".join(parts).encode())
    h.update(b"\0")
    h.update(text.encode())
    return h.hexdigest()


def _path(root: str, key: str) -> str:
    return os.path.join(_base(root), "quick", key[:2], key)


def _which(name: str) -> str:
    """shutil.which, without importing shutil (the same PATH, then the sbin directories)."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else "-"
    dirs = os.environ.get("PATH", os.defpath).split(os.pathsep) + ["/usr/sbin", "/sbin"]
    for d in dirs:
        p = os.path.join(d or ".", name)
        if os.access(p, os.X_OK) and not os.path.isdir(p):
            return p
    return "-"


def _stat_line(path: str) -> str:
    st = os.stat(path)
    return f"stat\t{path}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ino}"


def _sha_file(path: str) -> str:
    with open(path, "rb") as f:
        return kernelcache.sha256(f.read()).hexdigest()


def lookup(root: str, key: str | None) -> QuickHit | None:
    """The object the index holds for ``key`` once every recorded fact still holds,
    else None.  Never raises for a missing or damaged entry."""
    if key is None:
        return None
    try:
        with open(_path(root, key), encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or lines[0] != _MAGIC:
        return None
    art_key = obj_sha = None
    try:
        for line in lines[1:]:
            if not line:
                continue
            kind, *rest = line.split("\t")
            if kind == "key":
                art_key = rest[0]
            elif kind == "object":
                obj_sha = rest[0]
            elif kind == "file":
                if _sha_file(rest[0]) != rest[1]:
                    return None
            elif kind == "dir":
                if str(os.stat(rest[0]).st_mtime_ns) != rest[1]:
                    return None
            elif kind == "which":
                if _which(rest[0]) != rest[1]:
                    return None
            elif kind == "stat":
                if _stat_line(rest[0]) != line:
                    return None
            else:
                return None
    except (OSError, IndexError, ValueError):
        return None
    if not (art_key and obj_sha and len(obj_sha) == 64 and len(art_key) == 64):
        return None
    base = _base(root)
    if not os.path.exists(os.path.join(base, "keys", art_key[:2], f"{art_key}.json")):
        return None  # the entry was removed (lcc cache rm): so is this shortcut
    obj_path = os.path.join(base, "blobs", obj_sha[:2], f"{obj_sha}.o")
    try:
        with open(obj_path, "rb") as f:
            obj = f.read()
    except OSError:
        return None
    if kernelcache.sha256(obj).hexdigest() != obj_sha:
        return None
    return QuickHit(obj, obj_sha, art_key, obj_path)


def remember(root: str, key: str | None, *, art_key: str, digest: str,
             files: dict[str, str], main: str, base_dir: str,
             environ: dict | None = None) -> str | None:
    """Write the index entry of ``key`` after the full path found or compiled the
    object ``digest`` under ``art_key``; ``files`` is the bundle (relative path ->
    text), ``main`` its main file, ``base_dir`` the directory it was gathered from.
    Returns the entry's path, or None when nothing was written (no key, or the
    facts cannot be recorded).  Never raises for an unwritable cache."""
    if key is None:
        return None
    env = os.environ if environ is None else environ
    lines = [_MAGIC, f"key\t{art_key}", f"object\t{digest}"]
    try:
        for rel, text in sorted(files.items()):
            if rel == main:
                continue  # its text is in the key
            full = os.path.join(base_dir, *rel.split("/"))
            lines.append(f"file\t{full}\t{kernelcache.sha256(text.encode()).hexdigest()}")
        lines.append(f"dir\t{base_dir}\t{os.stat(base_dir).st_mtime_ns}")
        for line in _toolchain_facts(env.get("LCC_CLANG") or "clang",
                                     env.get("LCC_BPFTOOL") or "bpftool"):
            lines.append(line)
    except (OSError, ImportError):
        return None
    if any("\n" in ln or ln.count("\t") > 5 for ln in lines):
        return None  # a path this format cannot hold: no shortcut for it
    path = _path(root, key)
    from .._files import write_atomic  # (it imports threading: not on a hit)
    try:
        write_atomic(path, ("\n".join(lines) + "\n").encode())
    except OSError:
        return None
    return path


def _toolchain_facts(clang: str, bpftool: str) -> list[str]:
    """The lines that name the local toolchain: where its programs resolve, and
    the stats of those programs, of lcc's and libbpf's headers (and their
    directories) and of the toolchain code that sets the compile flags."""
    from lcc_toolchain import headers  # the full path imported it already
    out = [f"which\t{clang}\t{_which(clang)}", f"which\t{bpftool}\t{_which(bpftool)}"]
    paths = [os.path.realpath(p) for p in (_which(clang), _which(bpftool)) if p != "-"]
    hdrs = [str(p) for p in headers.header_files()]
    usr_bpf = "/usr/include/bpf"
    if os.path.isdir(usr_bpf):
        hdrs += sorted(os.path.join(usr_bpf, n) for n in os.listdir(usr_bpf) if n.endswith(".h"))
    dirs = sorted({os.path.dirname(p) for p in hdrs})
    paths += hdrs + dirs + [os.path.realpath(headers.__file__)]
    return out + [_stat_line(p) for p in paths]
