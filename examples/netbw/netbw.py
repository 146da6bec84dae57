#!/usr/bin/env python3
"""netbw: bytes and packets per second per network device, transmit and receive.

Counts every frame handed to a device driver and every frame a device
receives, in the kernel (netbw.bpf.c), per CPU and per device; every
interval the totals are read and the differences printed in human units.
Devices in other network namespaces are shown as NAME@NAMESPACE.

    netbw                # every second, devices with traffic
    netbw 5 3            # every 5 seconds, 3 times
    netbw -i eth0 -b     # eth0 only, in bits per second
    netbw -a             # every device of this namespace, idle ones too
    netbw -d 10 --json   # 10 seconds, one JSON object per device and interval

Requires root (or CAP_BPF + CAP_PERFMON) and a kernel with BTF.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import cli  # noqa: E402  (also makes a source checkout's lcc importable)

from lcc import ClbcBase, Fallback, LccError, loop  # noqa: E402

# The alternatives, best first (see netbw.bpf.c).
TP_BTF = ("btf_net_dev_xmit", "btf_netif_receive_skb")
TRACEPOINT = ("tp_net_dev_start_xmit", "tp_netif_receive_skb")

NETNS_DIR = "/run/netns"  # where `ip netns add` keeps named namespaces
SYS_NET = "/sys/class/net"  # the devices of the reader's network namespace


def local_devices(sys_net: str = SYS_NET) -> dict[str, int]:
    """name -> ifindex of every device in this network namespace (from /sys/class/net)."""
    out = {}
    try:
        names = os.listdir(sys_net)
    except OSError:
        return out
    for name in names:
        try:
            with open(os.path.join(sys_net, name, "ifindex")) as f:
                out[name] = int(f.read())
        except (OSError, ValueError):
            continue  # gone meanwhile, or not a device
    return out


def check_interfaces(names: Sequence[str]) -> None:
    """Raise LccError for a NAME that is not a device here, or a NAME@NS whose
    namespace ``ip netns`` does not know (a device of another namespace is
    only checked once it has traffic)."""
    here = local_devices()
    for name in names:
        dev, at, ns = name.partition("@")
        if at:
            unnamed = ns.startswith("ns") and ns[2:].isdigit()  # NAME@ns<inode>
            if not unnamed and not os.path.exists(os.path.join(NETNS_DIR, ns)):
                raise LccError(f"no network namespace {ns!r} for device {name!r}",
                               hint=f"named namespaces are in {NETNS_DIR} (ip netns list)")
        elif dev not in here:
            raise LccError(f"no network device {name!r} in this namespace",
                           hint="devices here: " + ", ".join(sorted(here)))


@dataclass(frozen=True)
class Counters:
    """Byte and packet counts of one device (totals or differences)."""

    rx_bytes: int = 0
    rx_packets: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0

    def __sub__(self, other: "Counters") -> "Counters":
        return Counters(self.rx_bytes - other.rx_bytes, self.rx_packets - other.rx_packets,
                        self.tx_bytes - other.tx_bytes, self.tx_packets - other.tx_packets)

    def __bool__(self) -> bool:
        return bool(self.rx_packets or self.tx_packets)


@dataclass(frozen=True)
class Device:
    """A device: ifindex within a network namespace (inode number), and names."""

    ifindex: int
    netns: int
    name: str        # the device's own name
    label: str       # NAME, or NAME@NAMESPACE outside the tool's namespace


def _netns_names() -> dict[int, str]:
    """inode -> name of the namespaces `ip netns` knows."""
    out = {}
    try:
        entries = os.listdir(NETNS_DIR)
    except OSError:
        return out
    for name in entries:
        try:
            out[os.stat(os.path.join(NETNS_DIR, name)).st_ino] = name
        except OSError:
            continue
    return out


class NetBw(ClbcBase):
    """Per-device transmit/receive counters.

    :meth:`totals` reads the counters (since load) of every device that has
    sent or received a frame.  ``prefer`` puts program pairs
    (:data:`TP_BTF`, :data:`TRACEPOINT`) first in the order they are tried.
    Other keyword arguments go to
    :class:`lcc.ClbcBase`.  Requires root (or CAP_BPF + CAP_PERFMON).
    """

    def __init__(self, *, prefer: Sequence[Sequence[str]] = (), **kwargs: Any) -> None:
        # Every pair must be in the Fallback: a program left out would load as well.
        order = [tuple(p) for p in prefer]
        order += [p for p in (TP_BTF, TRACEPOINT) if p not in order]
        self.alternatives = Fallback(*order)
        super().__init__("netbw", fallback=self.alternatives, **kwargs)
        self.own_netns = os.stat("/proc/self/ns/net").st_ino
        self._ns_names: dict[int, str] = {}
        self._devices: dict[tuple[int, int], Device] = {}

    def totals(self) -> dict[Device, Counters]:
        """Counters of every device seen since load, summed over CPUs."""
        out: dict[Device, Counters] = {}
        for key, per_cpu in self.maps["stats"].items():
            name = next((v.name for v in per_cpu if v.name), "")
            dev = self._device(key.ifindex, key.netns, name)
            out[dev] = Counters(sum(v.rx_bytes for v in per_cpu),
                                sum(v.rx_packets for v in per_cpu),
                                sum(v.tx_bytes for v in per_cpu),
                                sum(v.tx_packets for v in per_cpu))
        return out

    @property
    def missed(self) -> int:
        """Frames not counted because the device map was full."""
        return int(self.bss.missed)

    def idle_devices(self, seen: Iterable[Device]) -> list[Device]:
        """The devices of this namespace (/sys/class/net) not among ``seen``."""
        have = {(d.ifindex, d.netns) for d in seen}
        return [self._device(ifindex, self.own_netns, name)
                for name, ifindex in local_devices().items()
                if (ifindex, self.own_netns) not in have]

    def _device(self, ifindex: int, netns: int, name: str) -> Device:
        dev = self._devices.get((ifindex, netns))
        if dev is not None and (dev.name == name or not name):
            return dev
        if netns == self.own_netns:
            try:
                name = socket.if_indextoname(ifindex)  # its current name
            except OSError:
                pass  # gone already: keep the name it had
            label = name or f"if{ifindex}"
        else:
            if netns not in self._ns_names:
                self._ns_names = _netns_names()
            ns = self._ns_names.get(netns, f"ns{netns}")
            label = f"{name or f'if{ifindex}'}@{ns}"
        dev = Device(ifindex, netns, name, label)
        self._devices[(ifindex, netns)] = dev
        return dev


class Sampler:
    """Differences of :meth:`NetBw.totals` between calls."""

    def __init__(self, tool: NetBw) -> None:
        self.tool = tool
        self.start_time = self.last_time = time.monotonic()
        first = tool.totals()
        self.first = {(d.ifindex, d.netns): c for d, c in first.items()}
        self.last = dict(self.first)

    def since_start(self) -> tuple[float, dict[Device, Counters]]:
        """(seconds since this sampler began, per-device counts since then)."""
        totals = self.tool.totals()
        return (time.monotonic() - self.start_time,
                {d: c - self.first.get((d.ifindex, d.netns), Counters())
                 for d, c in totals.items()})

    def sample(self) -> tuple[float, dict[Device, Counters]]:
        """(seconds since the previous sample, per-device differences)."""
        now = time.monotonic()
        totals = self.tool.totals()
        out = {}
        for dev, c in totals.items():
            k = (dev.ifindex, dev.netns)
            out[dev] = c - self.last.get(k, Counters())
            self.last[k] = c
        elapsed, self.last_time = now - self.last_time, now
        return elapsed, out


def human_rate(bytes_per_s: float, bits: bool) -> str:
    """``12.3 KiB/s`` (powers of 1024) or, with ``bits``, ``101 kbit/s`` (powers of 1000)."""
    if bits:
        value, base, units = bytes_per_s * 8, 1000.0, ("bit/s", "kbit/s", "Mbit/s", "Gbit/s",
                                                       "Tbit/s")
    else:
        value, base, units = bytes_per_s, 1024.0, ("B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s")
    for unit in units:
        if value < base or unit == units[-1]:
            break
        value /= base
    if unit == units[0]:
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def human_count(per_s: float) -> str:
    """``830``, ``12.3k``, ``1.2M`` packets per second."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if per_s >= scale:
            return f"{per_s / scale:.3g}{unit}"
    return f"{per_s:.0f}" if per_s >= 10 or per_s == 0 else f"{per_s:.1f}"


class Printer:
    """A table per interval, or JSON lines."""

    def __init__(self, *, json: bool, bits: bool, show_all: bool,
                 interfaces: Sequence[str], idle: Any = None) -> None:
        self.json, self.bits, self.show_all = json, bits, show_all
        self.interfaces = set(interfaces)
        # With -a: seen devices -> the idle devices to list as well (NetBw.idle_devices).
        self.idle = idle if show_all else None

    def _with_idle(self, counts: dict[Device, Counters]) -> dict[Device, Counters]:
        if self.idle is None:
            return counts
        return {**counts, **{d: Counters() for d in self.idle(counts)}}

    def wanted(self, dev: Device) -> bool:
        return not self.interfaces or dev.name in self.interfaces or dev.label in self.interfaces

    def interval(self, elapsed: float, deltas: dict[Device, Counters]) -> None:
        deltas = self._with_idle(deltas)
        rows = sorted(((d, c) for d, c in deltas.items()
                       if self.wanted(d) and (c or self.show_all)), key=lambda r: r[0].label)
        if self.json:
            now = time.time()
            for d, c in rows:
                cli.print_json({"type": "interval", "time": round(now, 3),
                                "interval_s": round(elapsed, 6), **_device_json(d), **_counts(c),
                                "rx_bytes_per_s": round(c.rx_bytes / elapsed, 1),
                                "tx_bytes_per_s": round(c.tx_bytes / elapsed, 1),
                                "rx_packets_per_s": round(c.rx_packets / elapsed, 1),
                                "tx_packets_per_s": round(c.tx_packets / elapsed, 1)})
            return
        w = _width(d for d, _ in rows)
        print(time.strftime("%H:%M:%S"))
        print(f"{'DEVICE':<{w}} {'RX':>12} {'RX pkt/s':>9} {'TX':>12} {'TX pkt/s':>9}")
        for d, c in rows:
            print(f"{d.label:<{w}} {human_rate(c.rx_bytes / elapsed, self.bits):>12} "
                  f"{human_count(c.rx_packets / elapsed):>9} "
                  f"{human_rate(c.tx_bytes / elapsed, self.bits):>12} "
                  f"{human_count(c.tx_packets / elapsed):>9}")
        if not rows:
            print("(no traffic)")
        print(flush=True)

    def summary(self, seconds: float, totals: dict[Device, Counters], missed: int) -> None:
        totals = self._with_idle(totals)
        rows = sorted(((d, c) for d, c in totals.items() if self.wanted(d)),
                      key=lambda r: r[0].label)
        if self.json:
            cli.print_json({"type": "summary", "seconds": round(seconds, 3), "missed": missed,
                            "devices": [{**_device_json(d), **_counts(c)} for d, c in rows]})
            return
        print(f"Totals over {seconds:.1f}s" + (f" ({missed} frames not counted: map full)"
                                               if missed else ""))
        w = _width(d for d, _ in rows)
        print(f"{'DEVICE':<{w}} {'RX bytes':>14} {'RX pkts':>10} {'TX bytes':>14} {'TX pkts':>10}"
              f" {'RX avg':>12} {'TX avg':>12}")
        for d, c in rows:
            s = max(seconds, 1e-9)
            print(f"{d.label:<{w}} {c.rx_bytes:>14} {c.rx_packets:>10} {c.tx_bytes:>14} "
                  f"{c.tx_packets:>10} {human_rate(c.rx_bytes / s, self.bits):>12} "
                  f"{human_rate(c.tx_bytes / s, self.bits):>12}")
        sys.stdout.flush()


def _width(devices: Iterable[Device]) -> int:
    """The DEVICE column's width: 16, or the longest label."""
    return max([16, *(len(d.label) for d in devices)])


def _device_json(d: Device) -> dict[str, Any]:
    return {"device": d.label, "name": d.name, "ifindex": d.ifindex, "netns": d.netns}


def _counts(c: Counters) -> dict[str, int]:
    return {"rx_bytes": c.rx_bytes, "rx_packets": c.rx_packets,
            "tx_bytes": c.tx_bytes, "tx_packets": c.tx_packets}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(
        prog="netbw", description="Bytes and packets per second per network device.",
        epilog="examples:\n" + doc[2] + "\n", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("interval", nargs="?", type=cli.positive_float, default=1.0,
                        help="seconds between reports (default 1)")
    parser.add_argument("count", nargs="?", type=int, help="number of reports (default: no limit)")
    parser.add_argument("-i", "--interface", action="append", default=[], metavar="DEV",
                        help="only this device (NAME or NAME@NAMESPACE); repeatable")
    parser.add_argument("-a", "--all", action="store_true",
                        help="every device of this namespace (/sys/class/net), also those "
                             "with no traffic; devices of other namespaces once they have had "
                             "traffic")
    parser.add_argument("-b", "--bits", action="store_true", help="rates in bits per second")
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.count is not None and args.count <= 0:
        parser.error("count must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_interfaces(args.interface)  # before the compile: a typo is an error, not "(no traffic)"
    with NetBw() as tool:
        cli.report_fallbacks(tool, args.verbose)
        printer = Printer(json=args.json, bits=args.bits, show_all=args.all,
                          interfaces=args.interface, idle=tool.idle_devices)
        sampler = Sampler(tool)
        reports = 0
        # The ready line comes once Ctrl-C and SIGTERM are caught: a stop may follow it at once.
        with loop.stopping(args.duration) as stop:
            cli.info("Counting network device traffic. Hit Ctrl-C to end.")
            while not stop and (args.count is None or reports < args.count):
                stop.sleep(args.interval)
                elapsed, deltas = sampler.sample()
                if elapsed >= 0.1 or not stop:  # skip a sliver cut by the stop
                    printer.interval(elapsed, deltas)
                    reports += 1
        printer.summary(*sampler.since_start(), tool.missed)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_tool(main))
