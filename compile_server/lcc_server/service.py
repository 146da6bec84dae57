"""The compile service's logic, without HTTP: caching, single-flight, concurrency.

``CompileService.compile(request)`` answers a validated ``CompileRequest``:

1. find the kernel's BTF in the ``BtfStore`` (``BtfMissing`` if unknown) and
   have ``BtfFiles.materialise`` give the tools a local, sha256-checked file;
2. key = sha256(bundle, defines, arch, BTF sha256, toolchain identity);
3. a stored artifact for the key answers at once (``cached``);
4. else one compile per key runs (``SingleFlight``: identical concurrent
   requests share it), in a thread pool, after taking one of
   ``max_concurrency`` slots (``Busy`` when ``max_queue`` already wait);
   with a fleet store, one compile per key runs fleet-wide: the replica
   holding the key's lease (``lcc_server.stores.lease``) compiles, the others
   wait for its notice (``lcc_server.stores.notices``, pub/sub; polling the
   store when notices are not listening) until its artifact appears, or take the lease over when
   its holder went away (``lcc_lease_takeovers_total``);
5. with ``btf=True``, BTF tailored to the object, cached per (object, BTF).

The stores are reached through their protocols (``lcc_server.stores.base``).
Blocking work (clang, bpftool, hashing a new BTF, store I/O) runs in the
pools, never on the event loop; nothing holds a global lock.  A shared store
that fails never fails a request: the replica compiles and serves on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lcc_server.artifacts import Artifact
from lcc_server.btf_store import BtfEntry
from lcc_server.derived import DerivedFiles
from lcc_server.metrics import Metrics
from lcc_server.models import CompileRequest
from lcc_server.settings import Settings
from lcc_server.singleflight import SingleFlight
from lcc_server.stores.base import ArtifactStore, BtfFiles, BtfStore, StoreUnavailable
from lcc_server.tokens import Caller
from lcc_toolchain import objinfo
from lcc_toolchain.digest import bundle_digest
from lcc_toolchain.errors import BtfUnavailable, CompileFailed, ToolchainError
from lcc_toolchain.toolchain import Toolchain
from lcc_toolchain.validation import ARCHES, check_bundle

__all__ = ["BtfMissing", "Busy", "CompileService", "ObjectTooLarge", "Outcome",
           "SandboxUnavailable", "check_object_size"]

log = logging.getLogger("lcc_server")

# How often a replica waiting for another's compile looks at the store: without
# notices (pub/sub), and with them (they wake it at once; this is the fallback).
_FLEET_POLL_SECONDS = 0.1
_FLEET_NOTICE_SECONDS = 0.5


class Busy(Exception):
    """Too many compiles are already waiting."""


class SandboxUnavailable(Exception):
    """Compilers cannot be confined here, and the service was not told to run
    them anyway (``LCC_INSECURE_NO_SANDBOX=1``)."""


class ObjectTooLarge(Exception):
    """A compiled object is larger than the service hands out (``LCC_MAX_OBJECT_MB``)."""


def check_object_size(size: int, cap: int) -> None:
    """Raises ``ObjectTooLarge`` when an object of ``size`` bytes exceeds ``cap``."""
    if size > cap:
        raise ObjectTooLarge(f"the compiled object is {size} bytes, more than this service's "
                             f"limit of {cap} bytes (LCC_MAX_OBJECT_MB); make its maps or "
                             "global arrays smaller, or size them at load time")


class BtfMissing(LookupError):
    """The server has no BTF for the requested kernel."""

    def __init__(self, arch: str, release: str) -> None:
        super().__init__(f"no BTF for kernel {release} ({arch}) on this server; upload the "
                         f"kernel's /sys/kernel/btf/vmlinux with `lcc btf push` (PUT "
                         f"/v1/btf/{arch}/{release}) and retry")


@dataclass
class Outcome:
    """What a compile request got: the artifact, tailored BTF if asked, whether
    the compiler ran, and the request's identity (the manifest's ``request``)."""

    artifact: Artifact
    btf: bytes | None
    cached: bool
    request: dict | None = None


class CompileService:
    """Owns the thread pools; ``close()`` shuts them down."""

    def __init__(self, settings: Settings, toolchain: Toolchain, btf_store: BtfStore,
                 artifacts: ArtifactStore, metrics: Metrics, *, leases=None,
                 notices=None, btf_files: BtfFiles | None = None,
                 derived: DerivedFiles | None = None) -> None:
        self.settings = settings
        self.toolchain = toolchain
        self.btf_store = btf_store
        #: where the tools get a local BTF file (default: ``btf_store`` itself)
        self.btf_files: BtfFiles = btf_files or btf_store
        self.artifacts = artifacts
        #: the derived per-kernel files in the disk budget (``lcc_server.derived``)
        self.derived = derived
        self.metrics = metrics
        #: ``lcc_server.stores.lease.Leases`` of a fleet store, else None.
        self.leases = leases
        #: ``lcc_server.stores.notices.Notices`` of a fleet store, else None.
        self.notices = notices
        self._slots_by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # Compiles (and the start-up warm-up) get their own threads, so that
        # short blocking work on the cache-hit path never waits behind clang.
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrency + 1,
                                        thread_name_prefix="lcc-compile")
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lcc-io")
        self._flight = SingleFlight()
        self._waiting = 0
        host = os.uname().machine
        self.default_arch = host if host in ARCHES else "x86_64"
        self.default_release = btf_store.host_release
        #: Why tools must not run here (no Landlock and no opt-out), else None.
        self.refusal: str | None = None
        unconfined = toolchain.sandbox.unconfined
        if unconfined is not None and not settings.insecure_no_sandbox:
            self.refusal = (f"the service refuses to compile: {unconfined}, so clang could "
                            "read any file of this host; run it on a kernel with Landlock, or "
                            "set LCC_INSECURE_NO_SANDBOX=1 on a host that only trusted users "
                            "can reach")

    def _check_sandbox(self) -> None:
        if self.refusal is not None:
            raise SandboxUnavailable(self.refusal)

    @property
    def _slots(self) -> asyncio.Semaphore:
        # One semaphore per event loop: asyncio primitives belong to a loop.
        loop = asyncio.get_running_loop()
        sem = self._slots_by_loop.get(loop)
        if sem is None:
            sem = self._slots_by_loop[loop] = asyncio.Semaphore(self.settings.max_concurrency)
        return sem

    def close(self) -> None:
        """Shut the pools down and stop the toolchain's sandbox spawner (its
        running tools are killed with it), so that a closed service leaves no
        process behind."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._io.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.toolchain, "close", None)  # injected fakes may have none
        if close is not None:
            close()

    # -- running blocking work ---------------------------------------------

    async def _in_slot(self, fn, *args, **kwargs):
        """Run ``fn`` in the pool once a compile slot is free; raises
        ``SandboxUnavailable`` when tools must not run, ``Busy``.

        Cancelled while waiting, it leaves the queue; while running, it sets
        the ``cancel`` event given in ``kwargs`` (which kills the tool) and
        frees the slot once ``fn`` has returned."""
        self._check_sandbox()
        if self._waiting >= self.settings.max_queue:
            raise Busy(f"{self._waiting} compiles are waiting; retry later")
        self._waiting += 1
        self.metrics.queue_depth.inc()
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            self.metrics.queue_depth.dec()
        try:
            self.metrics.in_progress.inc()
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
            try:
                return await asyncio.shield(fut)
            except asyncio.CancelledError:
                if (cancel := kwargs.get("cancel")) is not None:
                    cancel.set()
                    await asyncio.wait({fut})  # the slot is free once the tool is dead
                    if not fut.cancelled():
                        fut.exception()  # Cancelled: nobody else wants it
                raise
        finally:
            self.metrics.in_progress.dec()
            self._slots.release()

    async def _blocking(self, fn, *args):
        """Run short blocking work (hashing, file writes) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def warm(self) -> asyncio.Future | None:
        """Start building vmlinux.h and the PCH of the host kernel in the background."""
        if self._host_entry() is None or self.refusal is not None:
            return None

        def prepare():
            path = self.btf_files.materialise(self.default_arch, self.default_release)
            with self._derived_in_use(self.toolchain.btf_sha256(path)):
                return self.toolchain.prepare(path, self.default_arch)
        fut = asyncio.get_running_loop().run_in_executor(self._pool, prepare)
        fut.add_done_callback(_log_warm_result)
        return fut

    def _host_entry(self) -> BtfEntry | None:
        try:
            return self.btf_store.find(self.default_arch, self.default_release)
        except ValueError:
            return None

    # -- BTF ----------------------------------------------------------------

    def btf_entry(self, arch: str, release: str) -> BtfEntry:
        """Raises ``InvalidRequest`` or ``BtfMissing``."""
        entry = self.btf_store.find(arch, release)
        if entry is None:
            raise BtfMissing(arch, release)
        return entry

    async def btf_bytes(self, arch: str, release: str) -> bytes:
        """The raw BTF of a known kernel; raises ``InvalidRequest``, ``BtfMissing``."""
        data = await self._blocking(self.btf_store.read, arch, release)
        if data is None:
            raise BtfMissing(arch, release)
        return data

    async def put_btf(self, arch: str, release: str, data: bytes,
                      replace: bool, caller: Caller | None = None) -> tuple[dict, bool]:
        """Store an upload once bpftool has read it; returns (listing entry, created).

        ``caller`` becomes the upload's owner (``BtfStore.put``).
        Raises ``InvalidRequest``, ``BtfConflict``, ``BtfForbidden``, ``BtfUnavailable`` (bpftool
        could not read it; nothing is kept), ``SandboxUnavailable``.
        """
        self._check_sandbox()
        entry, created = await self._blocking(
            lambda: self.btf_store.put(arch, release, data, replace=replace, caller=caller))
        try:
            path = await self._blocking(self.btf_files.materialise, arch, release)
            await self._in_slot(self._vmlinux_h, path)
        except BtfUnavailable:
            if created:
                await self._blocking(self.btf_store.remove, arch, release)
            raise
        return entry.to_dict(), created

    async def list_btf(self) -> list[dict]:
        return await self._blocking(lambda: [e.to_dict() for e in self.btf_store.entries()])

    # -- compiling ----------------------------------------------------------

    async def compile(self, req: CompileRequest) -> Outcome:
        """Raises ``InvalidRequest``, ``BtfMissing``, ``Busy``, ``CompileFailed``,
        ``BtfUnavailable``, ``ToolMissing``, ``ToolchainError``
        (``lcc_toolchain.errors``), ``SandboxUnavailable``."""
        self._check_sandbox()
        bundle = req.bundle
        check_bundle(bundle.main, bundle.files, self.settings.caps)
        arch = req.arch or self.default_arch
        release = req.kernel or self.default_release
        await self._blocking(self.btf_entry, arch, release)
        btf_path = await self._blocking(self.btf_files.materialise, arch, release)
        btf_sha = await self._blocking(self.toolchain.btf_sha256, btf_path)
        identity = await self._blocking(self.toolchain.identity)  # runs clang --version once
        bdigest = bundle_digest(bundle.main, bundle.files)
        key = hashlib.sha256(json.dumps({
            "bundle": bdigest,
            "defines": sorted(req.defines.items(), key=lambda kv: kv[0]),
            "arch": arch, "btf": btf_sha, "toolchain": identity,
        }, sort_keys=True).encode()).hexdigest()

        hit = await self._blocking(self.artifacts.find, key)
        if hit is not None:
            self.metrics.cache_hits.labels("artifact", hit.tier).inc()
            art, cached = hit.artifact, True
        else:
            (art, compiled), shared = await self._flight.do(key, lambda: self._fleet_compile(
                key, lambda: self._compile_job(key, bundle, arch, req.defines, btf_path,
                                               btf_sha)))
            cached = shared or not compiled
            if shared:
                self.metrics.singleflight_waits.labels("local").inc()
                self.metrics.cache_hits.labels("shared", "memory").inc()
            elif not compiled:
                self.metrics.cache_hits.labels("shared", "store").inc()
        btf = await self._tailored_btf(art, btf_path, btf_sha) if req.btf else None
        request = {"bundle": bdigest, "defines": dict(req.defines), "arch": arch,
                   "kernel": release, "kernel_btf": f"sha256:{btf_sha}"}
        return Outcome(artifact=art, btf=btf, cached=cached, request=request)

    async def _fleet_compile(self, key: str, compile_job) -> tuple[Artifact, bool]:
        """``(artifact, compiled here)``: ``compile_job()``'s artifact when this
        replica holds (or takes over) the key's lease, or when there are no
        leases or the store is unreachable; else the artifact another replica
        compiled, read from the store once it appears."""
        if self.leases is None:
            return await compile_job(), True
        waited = False
        while True:
            try:
                lease = await self._acquire(key)
            except StoreUnavailable:
                return await compile_job(), True
            if lease is not None:
                if lease.took_over:
                    log.warning("took over the lease on %s from %s, which went away",
                                key[:16], lease.took_over.rsplit(":", 1)[0])
                    self.metrics.lease_takeovers.inc()
                try:
                    # the holder may have finished between our miss and the lease
                    hit = await self._blocking(self.artifacts.find, key)
                    if hit is not None:
                        return hit.artifact, False
                    return await compile_job(), True
                finally:
                    with contextlib.suppress(StoreUnavailable):
                        await self._blocking(lease.release)
            if not waited:
                waited = True
                self.metrics.singleflight_waits.labels("fleet").inc()
            while True:
                if self.notices is not None and self.notices.listening:
                    # woken by the holder's notice; the store is still looked at
                    # now and then (a notice may come before we listen, or be lost)
                    if await self.notices.wait(key, _FLEET_NOTICE_SECONDS):
                        self.metrics.fleet_notices.inc()
                else:
                    await asyncio.sleep(_FLEET_POLL_SECONDS)
                hit = await self._blocking(self.artifacts.find, key)
                if hit is not None:
                    return hit.artifact, False
                try:
                    if await self._blocking(self.leases.holder_of, key) is None:
                        break  # released without an artifact, or expired: take it over
                except StoreUnavailable:
                    return await compile_job(), True

    async def _acquire(self, key: str):
        """``leases.acquire(key)`` in a thread.  Cancelled meanwhile (the last
        client waiting for the compile went away), the thread may still take
        the lease: it is then released as soon as it is taken, rather than
        renewed for ever by a holder nobody will release (the replicas waiting
        for it would wait for ever)."""
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._io, self.leases.acquire, key)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(self._release_abandoned)
            raise

    def _release_abandoned(self, fut: asyncio.Future) -> None:
        if fut.cancelled() or fut.exception() is not None or fut.result() is None:
            return

        def release(lease) -> None:
            with contextlib.suppress(StoreUnavailable):
                lease.release()
        try:
            fut.get_loop().run_in_executor(self._io, release, fut.result())
        except RuntimeError:  # the pool was shut down (the service is closing)
            threading.Thread(target=release, args=(fut.result(),), daemon=True).start()

    async def _compile_job(self, key: str, bundle, arch: str, defines: dict,
                           btf_path: Path, btf_sha: str) -> Artifact:
        def run(cancel: threading.Event):
            started = time.perf_counter()
            try:
                # the kernel's derived files stay while clang reads them
                with self._derived_in_use(btf_sha):
                    result = self.toolchain.compile(bundle, arch=arch, defines=defines,
                                                    btf_path=btf_path, cancel=cancel)
            except CompileFailed:
                self.metrics.compiles.labels("error", "-").inc()
                raise
            self.metrics.compile_seconds.observe(time.perf_counter() - started)
            self.metrics.compiles.labels("ok", "yes" if result.pch else "no").inc()
            return result

        result = await self._in_slot(run, cancel=threading.Event())
        check_object_size(len(result.object), self.settings.max_object_bytes)
        summary = objinfo.summarize(result.object)
        art = Artifact(digest=result.digest, object=result.object, toolchain=result.toolchain,
                       warnings=result.warnings, programs=summary["programs"],
                       maps=summary["maps"])

        def store():
            self.artifacts.put(art)
            self.artifacts.remember(key, art.digest)
        await self._blocking(store)
        return art

    def _derived_in_use(self, btf_sha: str):
        """Pin the derived files of ``btf_sha`` (no-op without ``derived``)."""
        return contextlib.nullcontext() if self.derived is None else \
            self.derived.in_use(btf_sha)

    def _vmlinux_h(self, btf_path: Path) -> Path:
        with self._derived_in_use(self.toolchain.btf_sha256(btf_path)):
            return self.toolchain.vmlinux_h(btf_path)

    async def _tailored_btf(self, art: Artifact, btf_path: Path, btf_sha: str) -> bytes:
        data = await self._blocking(self.artifacts.get_btf, art.digest, btf_sha)
        if data is not None:
            self.metrics.cache_hits.labels("btf", "disk").inc()
            return data

        async def job() -> bytes:
            out = await self._in_slot(self.toolchain.min_core_btf, art.object, btf_path)
            await self._blocking(self.artifacts.put_btf, art.digest, btf_sha, out)
            return out
        data, _ = await self._flight.do(f"btf:{art.digest}:{btf_sha}", job)
        return data

    def artifact(self, digest: str) -> Artifact | None:
        """Blocking (store I/O); see :meth:`get_artifact`."""
        return self.artifacts.get(digest)

    async def get_artifact(self, digest: str) -> Artifact | None:
        return await self._blocking(self.artifacts.get, digest)


def _log_warm_result(fut: asyncio.Future) -> None:
    if fut.cancelled():
        return
    exc = fut.exception()
    if isinstance(exc, ToolchainError):
        log.warning("could not prepare headers for the host kernel: %s", exc)
    elif exc is not None:
        log.error("preparing headers for the host kernel failed", exc_info=exc)
