"""Network value formatting: addresses, ports, TCP states, protocol names.

BPF programs copy addresses out of kernel structures as they are stored
there, in network byte order.  Once decoded from BTF they arrive in Python as:

- an IPv4 address (``__be32``): an ``int`` read from those four bytes in host
  byte order (on x86 a little-endian u32: 127.0.0.1 arrives as 0x0100007f),
  or 4 bytes, or a sequence of 4 byte values (``u8[4]``);
- an IPv6 address (``struct in6_addr``, ``u8[16]``, ``__be32[4]``, ``u64[2]``):
  16 bytes, a sequence of 16 byte values, of 8 u16 / 4 u32 / 2 u64 words (each
  read from memory in host byte order), or one 128-bit int read the same way.

The functions here turn those back into text (``inet_ntop`` notation, the
same as BCC tools print) and back again for filters.  Nothing here prints.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence

try:  # inet_ntop/inet_pton without socket.py, which builds IntEnums and imports
    import _socket as socket  # selectors at import: about 2 ms of a tool's start
except ImportError:  # pragma: no cover - an interpreter without CPython's _socket
    import socket  # type: ignore[no-redef]

__all__ = [
    "AF_INET",
    "AF_INET6",
    "AddrNames",
    "ETH_P_NAMES",
    "IPPROTO_NAMES",
    "TCP_STATES",
    "RawAddr",
    "addr_to_raw",
    "eth_proto_name",
    "fmt_addr",
    "fmt_endpoint",
    "fmt_ipv4",
    "fmt_ipv4_host",
    "fmt_ipv6",
    "htonl",
    "htons",
    "ip_proto_name",
    "ip_proto_number",
    "ipv4_raw",
    "ntohl",
    "ntohs",
    "tcp_state_name",
    "tcp_state_number",
]

#: Linux address family numbers (``sk->__sk_common.skc_family``).
AF_INET = 2
AF_INET6 = 10

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (3 ms) at start
if TYPE_CHECKING:
    from typing import SupportsBytes, Union

    #: What the address functions accept; see the module docstring.
    RawAddr = Union[int, bytes, bytearray, memoryview, Sequence[int], SupportsBytes]


def __getattr__(name: str) -> object:
    """``RawAddr``, made on first use: it needs ``typing``, which a tool's start does without."""
    if name == "RawAddr":
        from typing import SupportsBytes, Union
        value = Union[int, bytes, bytearray, memoryview, Sequence[int], SupportsBytes]
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: ``include/net/tcp_states.h`` numbers -> names as BCC's tcpstates prints them.
TCP_STATES: dict[int, str] = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
    13: "BOUND_INACTIVE",
}

#: IP protocol numbers (``IPPROTO_*``, iphdr.protocol / sk->sk_protocol) -> names.
IPPROTO_NAMES: dict[int, str] = {
    0: "IP",
    1: "ICMP",
    2: "IGMP",
    4: "IPIP",
    6: "TCP",
    8: "EGP",
    12: "PUP",
    17: "UDP",
    22: "IDP",
    29: "TP",
    33: "DCCP",
    41: "IPV6",
    46: "RSVP",
    47: "GRE",
    50: "ESP",
    51: "AH",
    58: "ICMPV6",
    92: "MTP",
    94: "BEETPH",
    98: "ENCAP",
    103: "PIM",
    108: "COMP",
    115: "L2TP",
    132: "SCTP",
    136: "UDPLITE",
    137: "MPLS",
    143: "ETHERNET",
    255: "RAW",
    262: "MPTCP",
}

#: Ethernet protocol numbers (``ETH_P_*``, host order as the skb tracepoints report) -> names.
ETH_P_NAMES: dict[int, str] = {
    0x0800: "IP",
    0x0806: "ARP",
    0x8035: "RARP",
    0x8100: "8021Q",
    0x86DD: "IPV6",
    0x8847: "MPLS_UC",
    0x8848: "MPLS_MC",
    0x8863: "PPP_DISC",
    0x8864: "PPP_SES",
    0x88A8: "8021AD",
    0x88CC: "LLDP",
    0x88F7: "1588",
    0x0003: "ALL",
}


def _swap(value: int, size: int) -> int:
    """Reverse the byte order of an unsigned *size*-byte value on little-endian hosts."""
    value = int(value)
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{value} does not fit in {size} bytes")
    return int.from_bytes(value.to_bytes(size, sys.byteorder), "big")


def ntohs(value: int) -> int:
    """Convert a 16-bit value from network to host byte order (``__be16`` -> port)."""
    return _swap(value, 2)


def htons(value: int) -> int:
    """Convert a 16-bit value from host to network byte order (port -> ``__be16``)."""
    return _swap(value, 2)


def ntohl(value: int) -> int:
    """Convert a 32-bit value from network to host byte order."""
    return _swap(value, 4)


def htonl(value: int) -> int:
    """Convert a 32-bit value from host to network byte order."""
    return _swap(value, 4)


def _addr_bytes(raw: RawAddr, size: int, what: str) -> bytes:
    """Return the *size* bytes of an address as it sat in kernel memory.

    Raises ValueError when *raw* cannot be an address of that size, TypeError
    for an unsupported type.
    """
    # Once or twice per event in the network tools: the common shapes (an int,
    # a tuple of bytes or of u32 words as lcc decodes arrays, bytes) come first
    # and cost a single C call each.
    kind = type(raw)
    if kind is int:
        if not 0 <= raw < 1 << (8 * size):  # type: ignore[operator]
            raise ValueError(f"{what} address {raw:#x} does not fit in {size} bytes")
        return raw.to_bytes(size, sys.byteorder)  # type: ignore[union-attr]
    if kind is tuple or kind is list:
        data = _words_to_bytes(raw, size, what)  # type: ignore[arg-type]
    elif kind is bytes:
        data = raw  # type: ignore[assignment]
    elif isinstance(raw, bool):
        raise TypeError(f"{what} address cannot be a bool")
    elif isinstance(raw, int):
        return _addr_bytes(int(raw), size, what)
    elif isinstance(raw, (bytearray, memoryview)):
        data = bytes(raw)
    elif isinstance(raw, Sequence) and not isinstance(raw, str):
        data = _words_to_bytes(list(raw), size, what)
    elif hasattr(raw, "__bytes__"):
        data = bytes(raw)
    else:
        try:
            # ctypes arrays and other buffers hold the address as it was in memory
            data = memoryview(raw).tobytes()  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"cannot read an {what} address from {type(raw).__name__}") from None
    if len(data) != size:
        raise ValueError(f"{what} address must be {size} bytes, got {len(data)}")
    return data


_WORD_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _words_to_bytes(words: list | tuple, size: int, what: str) -> bytes:
    """The bytes of an address given as ``len(words)`` equal words in host byte order."""
    count = len(words)
    if count == 0 or size % count or size // count not in _WORD_FORMATS:
        raise ValueError(f"{what} address cannot be made of {count} words")
    word = size // count
    try:
        if word == 1:
            return bytes(words)
        return struct.pack(f"={count}{_WORD_FORMATS[word]}", *words)
    except (ValueError, OverflowError, struct.error):
        raise ValueError(f"{what} address words must each fit in {word} bytes") from None
    except TypeError:
        try:
            ints = [int(w) for w in words]
        except (TypeError, ValueError):
            raise TypeError(f"{what} address words must be integers") from None
        return _words_to_bytes(ints, size, what)


def fmt_ipv4(raw: RawAddr) -> str:
    """Format an IPv4 address as stored by the kernel (``__be32``) as dotted quad.

    *raw* is the u32 read in host byte order, 4 bytes, or 4 byte values.
    Raises ValueError/TypeError when *raw* cannot be an IPv4 address.
    """
    return socket.inet_ntop(socket.AF_INET, _addr_bytes(raw, 4, "IPv4"))


def fmt_ipv4_host(value: int) -> str:
    """Format an IPv4 address already in host byte order (after ``ntohl``)."""
    return fmt_ipv4(htonl(value))


def fmt_ipv6(raw: RawAddr) -> str:
    """Format an IPv6 address as ``inet_ntop`` does (``::1``, ``::ffff:127.0.0.1``).

    *raw* is 16 bytes, 16/8/4/2 words each read in host byte order, or a
    128-bit int.  Raises ValueError/TypeError when it cannot be an IPv6 address.
    """
    return socket.inet_ntop(socket.AF_INET6, _addr_bytes(raw, 16, "IPv6"))


def fmt_addr(family: int, raw: RawAddr) -> str:
    """Format an address of *family* (``AF_INET`` or ``AF_INET6``).

    Raises ValueError for any other family, or when *raw* does not fit it.
    """
    if family == AF_INET:
        return fmt_ipv4(raw)
    if family == AF_INET6:
        return fmt_ipv6(raw)
    raise ValueError(f"unsupported address family {family} (expected AF_INET or AF_INET6)")


class AddrNames:
    """:func:`fmt_addr` with a memory: ``names(family, raw)``, for per-event use.

    A tool sees the same few addresses over and over; this formats each
    ``(family, raw)`` once and then answers from a dict (a tenth of the
    cost).  ``raw`` must be hashable (bytes, an int, or the tuple lcc
    decodes an address array into); other forms are formatted every time.
    An IPv4 address may sit in the first 4 bytes of a longer field (the
    16-byte address fields that hold either family).  Families other than
    AF_INET/AF_INET6 give ``unknown`` instead of raising.  Holds at most ``limit`` addresses (then it starts afresh).
    """

    __slots__ = ("_names", "_limit", "unknown")

    def __init__(self, limit: int = 65536, unknown: str = "?") -> None:
        self._names: dict[tuple[int, object], str] = {}
        self._limit = limit
        self.unknown = unknown

    def __call__(self, family: int, raw: RawAddr) -> str:
        key = (family, raw)
        try:
            return self._names[key]
        except KeyError:
            pass
        except TypeError:  # unhashable (a list, a bytearray)
            return fmt_addr(family, raw) if family in (AF_INET, AF_INET6) else self.unknown
        if family == AF_INET:
            # The first 4 bytes of a longer field (the 16-byte address fields
            # that hold either family).
            name = fmt_ipv4(raw[:4] if isinstance(raw, (tuple, bytes)) and len(raw) > 4 else raw)
        elif family == AF_INET6:
            name = fmt_ipv6(raw)
        else:
            name = self.unknown
        if len(self._names) >= self._limit:
            self._names.clear()
        self._names[key] = name
        return name


def fmt_endpoint(addr: str, port: int) -> str:
    """Join a formatted address and a port: ``1.2.3.4:80`` or ``[::1]:80``."""
    if ":" in addr:
        return f"[{addr}]:{port}"
    return f"{addr}:{port}"


def addr_to_raw(text: str) -> tuple[int, bytes]:
    """Parse an IPv4 or IPv6 address into ``(family, bytes in network order)``.

    The bytes are what the kernel stores (4 or 16 of them), ready to compare
    with ``skc_daddr`` / ``skc_v6_daddr`` in a filter.  Raises ValueError for
    text that is neither.
    """
    for family, af in ((AF_INET, socket.AF_INET), (AF_INET6, socket.AF_INET6)):
        try:
            return family, socket.inet_pton(af, text)
        except OSError:
            continue
    raise ValueError(f"not an IPv4 or IPv6 address: {text!r}")


def ipv4_raw(text: str) -> int:
    """Return the u32 the kernel holds for IPv4 *text* (the inverse of :func:`fmt_ipv4`).

    E.g. ``ipv4_raw("127.0.0.1") == 0x0100007f`` on x86.  Raises ValueError
    for text that is not an IPv4 address.
    """
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except OSError:
        raise ValueError(f"not an IPv4 address: {text!r}") from None
    return int.from_bytes(packed, sys.byteorder)


def tcp_state_name(state: int) -> str:
    """Return the name of TCP state number *state* (``2 -> "SYN_SENT"``).

    Unknown numbers give ``"UNKNOWN(n)"`` rather than raising, so an event
    from a newer kernel still prints.
    """
    return TCP_STATES.get(int(state), f"UNKNOWN({int(state)})")


def tcp_state_number(name: str) -> int:
    """Return the number of TCP state *name* (case-insensitive, ``TCP_`` prefix optional).

    Raises ValueError for an unknown name.
    """
    key = name.upper().removeprefix("TCP_")
    for number, state in TCP_STATES.items():
        if state == key:
            return number
    raise ValueError(f"unknown TCP state {name!r} (known: {', '.join(TCP_STATES.values())})")


def ip_proto_name(proto: int) -> str:
    """Return the name of IP protocol *proto* (``6 -> "TCP"``); unknown numbers as decimal text."""
    return IPPROTO_NAMES.get(int(proto), str(int(proto)))


def ip_proto_number(name: str | int) -> int:
    """Return the IP protocol number for *name* (``"tcp"``, ``"TCP"``, ``"6"`` or 6).

    Raises ValueError for an unknown name or a number outside 0..65535.
    """
    if isinstance(name, int) or name.strip().isdigit():
        number = int(name)
        if not 0 <= number <= 0xFFFF:
            raise ValueError(f"IP protocol number out of range: {number}")
        return number
    key = name.strip().upper().removeprefix("IPPROTO_")
    for number, proto in IPPROTO_NAMES.items():
        if proto == key:
            return number
    raise ValueError(f"unknown IP protocol {name!r}")


def eth_proto_name(proto: int) -> str:
    """Return the name of Ethernet protocol *proto* in host order (``0x0800 -> "IP"``).

    Unknown numbers are returned as ``0x%04x`` text.
    """
    return ETH_P_NAMES.get(int(proto), f"0x{int(proto):04x}")
