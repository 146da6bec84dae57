"""Prometheus metrics of one service instance (its own registry, no globals).

=====================================  =========  ===============================
metric                                 type       labels
=====================================  =========  ===============================
lcc_requests_total                     counter    endpoint (route template), status
lcc_cache_hits_total                   counter    kind: artifact | shared | btf;
                                                  tier: memory (this process) | disk
                                                  (this host) | store (the shared store)
lcc_compiles_total                     counter    result: ok | error; pch: yes | no
lcc_compile_seconds                    histogram  (clang runs only)
lcc_compile_queue_depth                gauge      compiles waiting for a slot
lcc_compiles_in_progress               gauge
lcc_compiles_cancelled_total           counter    compile requests given up by their client
lcc_artifact_disk_bytes                gauge      objects kept on disk (see LCC_MAX_ARTIFACT_MB)
lcc_artifacts_evicted                  gauge      entries evicted since start
lcc_state_disk_bytes                   gauge      part: artifacts | btf_uploads | derived
                                                  (vmlinux.h, PCH), all under one budget
lcc_state_disk_budget_bytes            gauge      that budget (LCC_MAX_ARTIFACT_MB)
lcc_derived_evicted                    gauge      kernels' derived file sets evicted since start
lcc_btf_uploads                        gauge      uploaded kernel releases (LCC_MAX_BTF_RELEASES)
lcc_singleflight_waits_total           counter    scope: local (a compile running in this
                                                  process) | fleet (another replica's lease)
lcc_lease_takeovers_total              counter    leases taken after their holder went away
lcc_fleet_notices_total                counter    fleet waits woken by the holder's notice
                                                  (pub/sub) rather than by polling
lcc_store_errors_total                 counter    failed operations on the shared store
lcc_store_degraded                     gauge      1 while the shared store is unreachable
lcc_btf_synced_total                   counter    result: pushed (an upload made while the
                                                  shared store was down, stored there since)
                                                  | conflict (a different BTF was uploaded
                                                  elsewhere meanwhile; this one set aside)
=====================================  =========  ===============================

Every counter is this replica's own: summed over the replicas of a fleet
they count the fleet's work (``lcc_compiles_total`` = clang runs fleet-wide).
"""

from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest)

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lcc_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.cache_hits = Counter("lcc_cache_hits", "Requests answered without compiling",
                                  ["kind", "tier"], registry=r)
        self.compiles = Counter("lcc_compiles", "clang runs", ["result", "pch"], registry=r)
        self.compile_seconds = Histogram(
            "lcc_compile_seconds", "Time of one compile (clang in its sandbox)",
            buckets=(0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.queue_depth = Gauge("lcc_compile_queue_depth", "Compiles waiting for a slot",
                                 registry=r)
        self.cancelled = Counter("lcc_compiles_cancelled",
                                 "Compile requests given up by their client", registry=r)
        self.in_progress = Gauge("lcc_compiles_in_progress", "Compiles running", registry=r)
        self.singleflight_waits = Counter(
            "lcc_singleflight_waits", "Requests that waited for a compile already running",
            ["scope"], registry=r)
        self.lease_takeovers = Counter(
            "lcc_lease_takeovers", "Fleet leases taken after their holder went away",
            registry=r)
        self.fleet_notices = Counter(
            "lcc_fleet_notices", "Fleet waits woken by the lease holder's notice", registry=r)
        self.store_errors = Counter("lcc_store_errors", "Failed shared-store operations",
                                    registry=r)
        self.store_degraded = Gauge("lcc_store_degraded",
                                    "1 while the shared store is unreachable", registry=r)
        self.btf_synced = Counter("lcc_btf_synced",
                                  "Uploads made while the shared store was down, by outcome",
                                  ["result"], registry=r)

    def watch_artifacts(self, store) -> None:
        """Report ``store``'s (an ``ArtifactStore``) disk use and evictions."""
        Gauge("lcc_artifact_disk_bytes", "Bytes of compiled objects kept on disk",
              registry=self.registry).set_function(store.disk_usage)
        Gauge("lcc_artifacts_evicted", "Artifacts evicted to stay under the disk budget",
              registry=self.registry).set_function(lambda: store.evicted)

    def watch_state(self, artifacts, usage, budget: int, uploads) -> None:
        """Report the one disk budget: ``artifacts`` (an ``ArtifactStore``), the
        other parts of the state directory (``usage``, a ``StateUsage``), and
        ``uploads()``, the number of uploaded releases."""
        g = Gauge("lcc_state_disk_bytes", "Bytes of the state directory by part",
                  ["part"], registry=self.registry)
        g.labels("artifacts").set_function(artifacts.disk_usage)
        g.labels("btf_uploads").set_function(lambda: usage.parts()["btf_uploads"])
        # the derived sets as the ledger counts them (the budget evicts by that)
        derived = getattr(getattr(artifacts, "local", artifacts), "derived_usage", None)
        g.labels("derived").set_function(derived or (lambda: usage.parts()["derived"]))
        Gauge("lcc_state_disk_budget_bytes", "The state directory's disk budget",
              registry=self.registry).set(budget)
        Gauge("lcc_btf_uploads", "Uploaded kernel releases",
              registry=self.registry).set_function(uploads)

    def watch_derived(self, derived) -> None:
        """Report the derived per-kernel file sets ``derived`` (a ``DerivedFiles``) evicted."""
        Gauge("lcc_derived_evicted", "Derived per-kernel file sets this process evicted "
              "for the disk budget", registry=self.registry).set_function(
                  lambda: derived.evicted)

    def render(self) -> bytes:
        return generate_latest(self.registry)
