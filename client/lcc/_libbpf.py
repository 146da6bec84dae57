"""The one place where lcc talks to libbpf through ctypes.

``lib()`` loads ``libbpf.so.1`` on first use (never at import time); each
function's prototype (from ``PROTOTYPES`` in :mod:`lcc._libbpf_abi`, the one
list of them, beside the option structs and callback types) is declared when
the library loads for the functions every start calls (``_START_PATH``),
else the first time lcc calls it.  The rest of lcc calls
the typed functions below (:mod:`lcc._btf_raw` reads BTF records through
them); return codes become exceptions in :func:`check`, NULL pointers in
:func:`check_ptr`.

libbpf 1.1 (Debian bookworm) is the minimum: it returns ``-errno`` from
int-returning calls and sets ``errno`` when a pointer-returning call fails.
Functions added after 1.1 are looked up with :func:`has` and callers degrade
when they are absent.
"""

from __future__ import annotations

import _ctypes
import _thread
import collections
import ctypes as ct
import mmap
import os
import sys

# The buffer callback types are used through this module (_libbpf.RINGBUF_SAMPLE_FN).
from ._libbpf_abi import (PERF_LOST_FN, PERF_SAMPLE_FN, PRINT_FN,  # noqa: F401
                          PROTOTYPES, RINGBUF_SAMPLE_FN, bpf_map_batch_opts,
                          bpf_object_open_opts, bpf_prog_load_opts, bpf_uprobe_opts,
                          bpf_usdt_opts)
from .errors import NotSupported, from_errno

# What every tool's start calls (open, configure, load, attach, map specs,
# globals): declared together when the library loads, which costs about half
# of declaring them one at a time through Library.__getattr__.
_START_PATH = (
    "bpf_object__open_mem", "bpf_object__load", "bpf_object__name", "bpf_object__btf",
    "bpf_object__next_program", "bpf_object__next_map",
    "bpf_program__name", "bpf_program__section_name", "bpf_program__fd", "bpf_program__attach",
    "bpf_map__name", "bpf_map__type", "bpf_map__fd", "bpf_map__key_size",
    "bpf_map__value_size", "bpf_map__max_entries", "bpf_map__map_flags",
    "bpf_map__btf_key_type_id", "bpf_map__btf_value_type_id", "bpf_map__is_internal",
    "bpf_map__initial_value", "btf__type_by_id", "btf__name_by_offset", "btf__resolve_type",
    "libbpf_set_print",
)


class Library:
    """libbpf's shared library; each function gets its prototype on first use.

    Declaring all of ``PROTOTYPES`` up front would cost half a millisecond of
    every tool's start for functions most tools never call; those of
    ``_START_PATH`` are declared at once.  A function libbpf lacks raises
    AttributeError (see :func:`has`).

    ``handle`` is the dlopen() handle.  Functions are made by the function
    type of :data:`_libc` (C calling convention, errno kept for
    ``ctypes.get_errno``), which is what a ``ctypes.CDLL(path,
    use_errno=True)`` would make; a CDLL of its own would build that class
    again, a noticeable part of a start.
    """

    def __init__(self, handle: int) -> None:
        self._handle = handle  # never closed: the functions stay valid
        declare = self._declare
        for name in _START_PATH:
            declare(name)

    def _declare(self, name: str):
        try:
            # Made from the address: half the cost of letting ctypes look the name up
            fn = _libc._FuncPtr(_ctypes.dlsym(self._handle, name))
        except OSError:
            raise AttributeError(f"libbpf has no function {name}") from None
        proto = PROTOTYPES.get(name)
        if proto is not None:
            restype, fn.argtypes = proto
            if restype is not ct.c_int:  # int is ctypes' default; setting it costs as much as another
                fn.restype = restype
        self.__dict__[name] = fn  # later calls find it without __getattr__
        return fn

    def __getattr__(self, name: str):
        if name.startswith("_"):  # not a libbpf function (copy, pickle, _handle itself)
            raise AttributeError(name)
        return self._declare(name)


_lock = _thread.allocate_lock()  # threading.Lock(), without importing threading (~0.7 ms)
_lib: Library | None = None


def _dlopen(path: str) -> int:
    return _ctypes.dlopen(path, ct.DEFAULT_MODE)  # ctypes adds RTLD_NOW; OSError if absent


def lib() -> Library:
    """Load libbpf.so.1 once; raises NotSupported if it is absent or older than 1.0."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        path = os.environ.get("LCC_LIBBPF") or "libbpf.so.1"
        try:
            handle = _dlopen(path)
        except OSError as e:
            import ctypes.util
            found = ctypes.util.find_library("bpf")
            if not found:  # the dlopen error (wrong ELF class, say) is the cause
                raise NotSupported(
                    "libbpf", "libbpf.so.1 (libbpf 1.1 or newer) is not installed",
                    hint="install it (Debian/Ubuntu: apt-get install libbpf1; "
                         "Fedora: dnf install libbpf) or set LCC_LIBBPF to its path") from e
            handle = _dlopen(found)
        try:
            _ctypes.dlsym(handle, "libbpf_major_version")
            library = Library(handle)
        except (OSError, AttributeError) as e:
            raise NotSupported("libbpf", "the libbpf found here is older than 1.0",
                               hint="lcc needs libbpf 1.1 or newer") from e
        _install_print(library)
        _lib = library
        return library


def has(name: str) -> bool:
    """Whether the loaded libbpf exports ``name`` (for features newer than 1.1)."""
    return hasattr(lib(), name)


def version() -> tuple[int, int]:
    lb = lib()
    return int(lb.libbpf_major_version()), int(lb.libbpf_minor_version())


# -- libbpf's own messages ----------------------------------------------------

_libc = ct.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_void_p, ct.c_void_p]
_libc.vsnprintf.restype = ct.c_int
_recent: collections.deque[str] = collections.deque(maxlen=200)
_LEVELS = {0: 30, 1: 20, 2: 10}  # libbpf's warn/info/debug -> logging.WARNING/INFO/DEBUG
_verbose = False
_log = None  # the "lcc.libbpf" logger; made when libbpf first has something to say


def _logger():
    """The ``lcc.libbpf`` logger, quiet (ERROR) unless configured otherwise.

    Made on first use, not at import: libbpf says nothing while all goes
    well, and importing logging is a noticeable part of a tool's start.
    """
    global _log
    if _log is None:
        import logging
        log = logging.getLogger("lcc.libbpf")
        if log.level == logging.NOTSET:
            log.setLevel(logging.ERROR)  # lcc -v / set_verbose() lowers it
        _log = log
    return _log


class LogBuffer:
    """A zeroed char buffer for C to write a NUL-terminated log into.

    Its pages are allocated only once written to, and logs are rarely
    written: an anonymous mapping costs one system call, where zeroing a
    malloc'ed buffer costs ~0.15 ms per 256 KiB (and a ctypes array type
    of a new size another ~15 us).  ``address`` is what C gets.
    """

    __slots__ = ("_mem", "address")

    def __init__(self, size: int) -> None:
        self._mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.address: int = ct.addressof(ct.c_char.from_buffer(self._mem))

    def __len__(self) -> int:
        return len(self._mem)

    @property
    def value(self) -> bytes:
        """The text up to the first NUL."""
        end = self._mem.find(b"\0")
        return self._mem[:end] if end >= 0 else self._mem[:]


def log_buffer(size: int) -> LogBuffer:
    """A :class:`LogBuffer` of ``size`` bytes (the verifier's log, libbpf's messages)."""
    return LogBuffer(size)


_print_buf = log_buffer(64 << 10)


def _on_print(level: int, fmt: int, va_list: int) -> int:
    if level >= 2 and not _verbose:
        return 0
    _libc.vsnprintf(_print_buf.address, len(_print_buf), fmt, va_list)
    text = _print_buf.value.decode("utf-8", "replace").rstrip("\n")
    if level < 2:
        _recent.append(text)
    _logger().log(_LEVELS.get(level, 10), "%s", text)
    return 0


_print_cb = PRINT_FN(_on_print)
_no_print = PRINT_FN()  # NULL: libbpf formats nothing and calls nobody


def _messages_wanted() -> bool:
    """Whether anyone would see libbpf's messages of a call that succeeds: in
    verbose mode, or when the ``lcc.libbpf`` logger passes warnings."""
    if _verbose:
        return True
    if _log is None and "logging" not in sys.modules:
        return False  # the logger does not exist; lcc makes it at ERROR
    return _logger().isEnabledFor(30)  # logging.WARNING


def _install_print(library: Library) -> None:
    library.libbpf_set_print(_print_cb)


def set_verbose(on: bool = True) -> None:
    """Forward all of libbpf's messages (debug included) to the ``lcc.libbpf`` logger."""
    import logging
    global _verbose
    _verbose = on
    _logger().setLevel(logging.DEBUG if on else logging.ERROR)


def recent_messages(clear: bool = False) -> list[str]:
    """libbpf's warnings since the last clear, newest last (for error context)."""
    out = list(_recent)
    if clear:
        _recent.clear()
    return out


def clear_messages() -> None:
    _recent.clear()


# -- return-code helpers ------------------------------------------------------

def check(ret: int, what: str, hint: str | None = None) -> int:
    """Return ``ret`` if it is >= 0, else raise the BpfError for ``-ret``."""
    if ret < 0:
        raise from_errno(-ret, what, hint)
    return ret


def check_ptr(ptr: int | None, what: str, hint: str | None = None) -> int:
    """Return a non-NULL pointer, else raise the BpfError for errno."""
    if not ptr:
        err = ct.get_errno() or 22
        raise from_errno(err, what, hint)
    return ptr


def cstr(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


# -- typed wrappers used by the rest of lcc -----------------------------------

def open_object(data: bytes, *, name: str | None, btf_custom_path: str | None,
                log_buf: LogBuffer | None) -> int:
    """bpf_object__open_mem with relaxed maps; returns the object pointer."""
    lb = lib()
    opts = bpf_object_open_opts()
    opts.sz = ct.sizeof(opts)
    opts.relaxed_maps = True
    if name:
        opts.object_name = name.encode()
    if btf_custom_path:
        opts.btf_custom_path = os.fsencode(btf_custom_path)
    if log_buf is not None:
        opts.kernel_log_buf = log_buf.address
        opts.kernel_log_size = len(log_buf)
    if _messages_wanted():
        ct.set_errno(0)
        return check_ptr(lb.bpf_object__open_mem(data, len(data), ct.byref(opts)),
                         "opening the BPF object")
    # Parsing an object makes libbpf say some forty debug lines that nobody
    # will see, each a call into Python: open with libbpf quiet, and only if
    # that fails, again with its messages kept for the error.  (libbpf's
    # printer is process-wide, as recent_messages() is.)
    lb.libbpf_set_print(_no_print)
    try:
        ptr = lb.bpf_object__open_mem(data, len(data), ct.byref(opts))
    finally:
        lb.libbpf_set_print(_print_cb)
    if not ptr:
        ct.set_errno(0)
        ptr = lb.bpf_object__open_mem(data, len(data), ct.byref(opts))
    return check_ptr(ptr, "opening the BPF object")


def iter_programs(obj: int):
    lb = lib()
    prog = lb.bpf_object__next_program(obj, None)
    while prog:
        yield prog
        prog = lb.bpf_object__next_program(obj, prog)


def iter_maps(obj: int):
    lb = lib()
    m = lb.bpf_object__next_map(obj, None)
    while m:
        yield m
        m = lb.bpf_object__next_map(obj, m)


def map_initial_value(m: int) -> tuple[int, int]:
    """(address, size) of a global-data map's local image; (0, 0) if none."""
    size = ct.c_size_t(0)
    addr = lib().bpf_map__initial_value(m, ct.byref(size))
    return (addr or 0), size.value


def write_memory(addr: int, data: bytes) -> None:
    """Copy ``data`` to an address libbpf handed over (a global-data map's image)."""
    ct.memmove(addr, data, len(data))


def memory_view(addr: int, size: int) -> memoryview:
    """A writable memoryview on memory owned by libbpf (valid while the owner lives)."""
    return memoryview((ct.c_char * size).from_address(addr)).cast("B")


# read_memory(addr, size) -> bytes: copy ``size`` bytes from an address libbpf
# handed over (BTF records, callbacks' data); ctypes' own function, not a
# wrapper, as BTF reading calls it for every record.
read_memory = ct.string_at


def map_lookup(fd: int, key: bytes, value_size: int) -> bytearray | None:
    """Look ``key`` up; None if absent. Other failures raise BpfError."""
    val = bytearray(value_size)
    cval = (ct.c_char * value_size).from_buffer(val)
    ret = lib().bpf_map_lookup_elem(fd, key, cval)
    if ret == -2:  # ENOENT
        return None
    check(ret, "map lookup")
    return val


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    check(lib().bpf_map_update_elem(fd, key, value, flags), "map update")


def map_delete(fd: int, key: bytes) -> bool:
    """Delete ``key``; False if it was absent."""
    ret = lib().bpf_map_delete_elem(fd, key)
    if ret == -2:
        return False
    check(ret, "map delete")
    return True


def map_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """The key after ``key`` (the first when None); None at the end."""
    nxt = ct.create_string_buffer(key_size)
    ret = lib().bpf_map_get_next_key(fd, key, nxt)
    if ret == -2:
        return None
    check(ret, "map iteration")
    return nxt.raw


def map_lookup_and_delete(fd: int, key: bytes | None, value_size: int) -> bytes | None:
    """Pop for queue/stack maps (key None) or lookup-and-delete; None if empty."""
    val = ct.create_string_buffer(value_size)
    ret = lib().bpf_map_lookup_and_delete_elem(fd, key, val)
    if ret == -2:
        return None
    check(ret, "map pop")
    return val.raw


def map_lookup_batch(fd: int, key_size: int, value_size: int, count: int,
                     token: ct.Array | None) -> tuple[bytes, bytes, int, ct.Array | None]:
    """One BPF_MAP_LOOKUP_BATCH step.

    Returns (keys, values, n, next_token); next_token is None when the map is
    exhausted.  Raises NotSupported when the kernel or map lacks batch ops.
    """
    lb = lib()
    keys = ct.create_string_buffer(key_size * count)
    vals = ct.create_string_buffer(value_size * count)
    out_batch = ct.create_string_buffer(max(key_size, 8))
    n = ct.c_uint32(count)
    opts = bpf_map_batch_opts()
    opts.sz = ct.sizeof(opts)
    ret = lb.bpf_map_lookup_batch(fd, token, out_batch, keys, vals, ct.byref(n), ct.byref(opts))
    if ret == -2:  # ENOENT: this was the last batch
        return keys.raw[: n.value * key_size], vals.raw[: n.value * value_size], n.value, None
    if ret in (-22, -95, -524):  # EINVAL/EOPNOTSUPP/ENOTSUPP: no batch support here
        raise NotSupported("map batch lookup", "batch lookup is not supported for this map")
    check(ret, "map batch lookup")
    return keys.raw[: n.value * key_size], vals.raw[: n.value * value_size], n.value, out_batch


def prog_exists(prog_id: int) -> bool:
    """Whether a program with this id is loaded in the kernel (needs CAP_SYS_ADMIN)."""
    fd = lib().bpf_prog_get_fd_by_id(prog_id)
    if fd >= 0:
        os.close(fd)
        return True
    if fd == -2:  # ENOENT
        return False
    check(fd, f"looking up program id {prog_id}")
    return False


def fd_info(fd: int) -> dict[str, str]:
    """The kernel's /proc/self/fdinfo for a BPF fd (``prog_id``, ``map_id``, ``map_type``...)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return dict(ln.rstrip("\n").split(":\t", 1) for ln in f if ":\t" in ln)


def num_possible_cpus() -> int:
    return check(lib().libbpf_num_possible_cpus(), "counting possible CPUs")


def prog_load_probe(prog_type: int, *, expected_attach_type: int = 0, attach_btf_id: int = 0,
                    license: bytes = b"GPL") -> tuple[int, str]:
    """Load ``r0 = 0; exit`` as a program of ``prog_type``; returns (errno or 0, log).

    Used by feature probes: 0 means the kernel accepted the program.
    """
    insns = (ct.c_uint64 * 2)(0x00000000000000B7, 0x0000000000000095)  # mov r0,0 ; exit
    logbuf = ct.create_string_buffer(4096)
    opts = bpf_prog_load_opts()
    opts.sz = ct.sizeof(opts)
    opts.expected_attach_type = expected_attach_type
    opts.attach_btf_id = attach_btf_id
    opts.log_level = 1
    opts.log_size = len(logbuf)
    opts.log_buf = ct.cast(logbuf, ct.c_char_p)
    fd = lib().bpf_prog_load(prog_type, None, license, insns, 2, ct.byref(opts))
    if fd >= 0:
        os.close(fd)
        return 0, ""
    return -fd, logbuf.value.decode("utf-8", "replace")


def attach_uprobe(prog: int, pid: int, path: str, offset: int, retprobe: bool) -> int | None:
    """bpf_program__attach_uprobe_opts; returns the link pointer or None (errno set)."""
    opts = bpf_uprobe_opts()
    opts.sz = ct.sizeof(opts)
    opts.retprobe = retprobe
    return lib().bpf_program__attach_uprobe_opts(prog, pid, os.fsencode(path), offset,
                                                 ct.byref(opts))


def attach_usdt(prog: int, pid: int, path: str, provider: str, name: str,
                cookie: int = 0) -> int | None:
    """bpf_program__attach_usdt; returns the link pointer or None (errno set)."""
    opts = bpf_usdt_opts()
    opts.sz = ct.sizeof(opts)
    opts.usdt_cookie = cookie
    return lib().bpf_program__attach_usdt(prog, pid, os.fsencode(path), provider.encode(),
                                          name.encode(), ct.byref(opts))


def errno_or(default: int) -> int:
    return ct.get_errno() or default


def btf_find(btf: int, name: str, kind: int) -> int:
    """Type id of ``name`` of ``kind``, or -1 if absent."""
    ret = lib().btf__find_by_name_kind(btf, name.encode(), kind)
    return ret if ret > 0 else -1


def btf_type_count(btf: int) -> int:
    return int(lib().btf__type_cnt(btf))


def btf_load_vmlinux() -> int:
    ct.set_errno(0)
    return check_ptr(lib().btf__load_vmlinux_btf(), "loading the kernel's BTF",
                     hint="this kernel has no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF); "
                          "use btf='server' to fetch BTF from a compile service")


def btf_parse(path: str) -> int:
    ct.set_errno(0)
    return check_ptr(lib().btf__parse(os.fsencode(path), None), f"parsing BTF from {path}")


def btf_free(btf: int) -> None:
    lib().btf__free(btf)
