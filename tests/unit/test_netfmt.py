"""lcc.netfmt: addresses as the kernel stores them, ports, state and protocol names."""

from __future__ import annotations

import ctypes
import socket
import struct
import sys

import pytest

from lcc import netfmt
from lcc.netfmt import (
    AF_INET,
    AF_INET6,
    addr_to_raw,
    eth_proto_name,
    fmt_addr,
    fmt_endpoint,
    fmt_ipv4,
    fmt_ipv4_host,
    fmt_ipv6,
    htonl,
    htons,
    ip_proto_name,
    ip_proto_number,
    ipv4_raw,
    ntohl,
    ntohs,
    tcp_state_name,
    tcp_state_number,
)


def _as_kernel_u32(text: str) -> int:
    """What a BPF program copying ``__be32 skc_daddr`` hands to Python for *text*."""
    return struct.unpack("=I", socket.inet_aton(text))[0]


def test_family_constants_are_linux_values():
    assert AF_INET == socket.AF_INET == 2
    assert AF_INET6 == socket.AF_INET6 == 10


@pytest.mark.skipif(sys.byteorder != "little", reason="the literal below is little-endian")
def test_ipv4_from_kernel_u32_little_endian():
    assert fmt_ipv4(0x0100007F) == "127.0.0.1"
    assert fmt_ipv4(0x0A0012C6) == "198.18.0.10"


@pytest.mark.parametrize("text", ["127.0.0.1", "198.18.0.1", "10.255.0.254", "0.0.0.0",
                                  "255.255.255.255"])
def test_ipv4_round_trips_through_kernel_representation(text):
    raw = _as_kernel_u32(text)
    assert ipv4_raw(text) == raw
    assert fmt_ipv4(raw) == text
    assert fmt_ipv4(socket.inet_aton(text)) == text
    assert fmt_ipv4(list(socket.inet_aton(text))) == text
    assert fmt_ipv4_host(struct.unpack("!I", socket.inet_aton(text))[0]) == text


def test_ipv4_rejects_what_is_not_an_address():
    with pytest.raises(ValueError):
        fmt_ipv4(1 << 32)
    with pytest.raises(ValueError):
        fmt_ipv4(b"\x01\x02\x03")
    with pytest.raises(ValueError):
        fmt_ipv4([1, 2, 3])  # 3 words cannot make 4 bytes evenly
    with pytest.raises(TypeError):
        fmt_ipv4(True)
    with pytest.raises(ValueError):
        ipv4_raw("::1")


V6 = socket.inet_pton(socket.AF_INET6, "2001:db8::ff00:42:8329")


def _words(data: bytes, size: int) -> list[int]:
    return [int.from_bytes(data[i:i + size], sys.byteorder) for i in range(0, len(data), size)]


@pytest.mark.parametrize("shape", ["bytes", "u8", "u16", "u32", "u64", "int", "ctypes"])
def test_ipv6_from_every_btf_shape(shape):
    raw = {
        "bytes": V6,
        "u8": list(V6),
        "u16": _words(V6, 2),
        "u32": tuple(_words(V6, 4)),
        "u64": _words(V6, 8),
        "int": int.from_bytes(V6, sys.byteorder),
        "ctypes": (ctypes.c_uint32 * 4)(*_words(V6, 4)),
    }[shape]
    assert fmt_ipv6(raw) == "2001:db8::ff00:42:8329"


def test_ipv6_notation_matches_inet_ntop():
    assert fmt_ipv6(bytes(15) + b"\x01") == "::1"
    assert fmt_ipv6(bytes(16)) == "::"
    mapped = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
    assert fmt_ipv6(mapped) == "::ffff:127.0.0.1"
    with pytest.raises(ValueError):
        fmt_ipv6(bytes(4))
    with pytest.raises(ValueError):
        fmt_ipv6([0x1FF] + [0] * 15)  # a u8 word that does not fit in a byte


def test_fmt_addr_dispatches_on_family():
    assert fmt_addr(AF_INET, _as_kernel_u32("198.18.0.2")) == "198.18.0.2"
    assert fmt_addr(AF_INET6, V6) == "2001:db8::ff00:42:8329"
    with pytest.raises(ValueError, match="family"):
        fmt_addr(1, 0)


def test_fmt_endpoint_brackets_ipv6():
    assert fmt_endpoint("127.0.0.1", 80) == "127.0.0.1:80"
    assert fmt_endpoint("::1", 443) == "[::1]:443"


def test_addr_to_raw():
    assert addr_to_raw("198.18.0.1") == (AF_INET, bytes([198, 18, 0, 1]))
    family, raw = addr_to_raw("::1")
    assert family == AF_INET6 and raw == bytes(15) + b"\x01"
    assert fmt_addr(*addr_to_raw("fe80::1")) == "fe80::1"
    with pytest.raises(ValueError):
        addr_to_raw("not-an-address")


def test_byte_order_helpers_match_socket_module():
    for value in (0, 1, 80, 0x1234, 0xFFFF):
        assert ntohs(value) == socket.ntohs(value)
        assert htons(value) == socket.htons(value)
    for value in (0, 0x7F000001, 0xDEADBEEF):
        assert ntohl(value) == socket.ntohl(value)
        assert htonl(value) == socket.htonl(value)
    # a __be16 port as a BPF program reads it, back to the port number
    be_port = struct.unpack("=H", struct.pack("!H", 8080))[0]
    assert ntohs(be_port) == 8080
    with pytest.raises(ValueError):
        ntohs(0x10000)


def test_tcp_state_names_follow_tcp_states_h():
    assert tcp_state_name(1) == "ESTABLISHED"
    assert tcp_state_name(2) == "SYN_SENT"
    assert tcp_state_name(7) == "CLOSE"
    assert tcp_state_name(10) == "LISTEN"
    assert tcp_state_name(12) == "NEW_SYN_RECV"
    assert tcp_state_name(99) == "UNKNOWN(99)"
    assert tcp_state_number("syn_sent") == 2
    assert tcp_state_number("TCP_TIME_WAIT") == 6
    assert all(tcp_state_number(name) == n for n, name in netfmt.TCP_STATES.items())
    with pytest.raises(ValueError):
        tcp_state_number("OPEN")


def test_protocol_names():
    assert ip_proto_name(socket.IPPROTO_TCP) == "TCP"
    assert ip_proto_name(socket.IPPROTO_UDP) == "UDP"
    assert ip_proto_name(socket.IPPROTO_ICMPV6) == "ICMPV6"
    assert ip_proto_name(253) == "253"
    assert ip_proto_number("tcp") == 6
    assert ip_proto_number("IPPROTO_ICMP") == 1
    assert ip_proto_number("17") == 17
    assert ip_proto_number(132) == 132
    with pytest.raises(ValueError):
        ip_proto_number("tcpp")
    assert eth_proto_name(0x0800) == "IP"
    assert eth_proto_name(0x86DD) == "IPV6"
    assert eth_proto_name(0x1234) == "0x1234"



@pytest.mark.parametrize("raw, text", [
    ((127, 0, 0, 1), "127.0.0.1"),
    ([127, 0, 0, 1], "127.0.0.1"),
    (bytearray(b"\x7f\x00\x00\x01"), "127.0.0.1"),
    ((1.0 * 127, 0, 0, 1), "127.0.0.1"),  # words that int() takes
])
def test_ipv4_from_the_shapes_events_carry(raw, text):
    assert fmt_ipv4(raw) == text


@pytest.mark.parametrize("raw, exc, words", [
    ((256, 0, 0, 1), ValueError, "fit in 1 bytes"),
    ((1, 2, 3), ValueError, "3 words"),
    ((), ValueError, "0 words"),
    (("a", 0, 0, 1), TypeError, "integers"),
])
def test_ipv4_words_that_cannot_be_an_address(raw, exc, words):
    with pytest.raises(exc, match=words):
        fmt_ipv4(raw)


def test_addr_names_format_once_and_answer_like_fmt_addr():
    names = netfmt.AddrNames(limit=3)
    v4 = (127, 0, 0, 1) + (0,) * 12  # an IPv4 address in a 16-byte field, as lcc decodes it
    v6 = tuple(socket.inet_pton(socket.AF_INET6, "2001:db8::1"))
    assert names(netfmt.AF_INET, v4) == "127.0.0.1"
    assert names(netfmt.AF_INET, v4) == "127.0.0.1"  # from the dict this time
    assert names(netfmt.AF_INET, b"\x0a\x00\x00\x05") == "10.0.0.5"
    assert names(netfmt.AF_INET6, v6) == "2001:db8::1"
    assert names(netfmt.AF_INET6, bytes(v6)) == netfmt.fmt_addr(netfmt.AF_INET6, bytes(v6))
    assert names(0, v4) == "?"  # not an IP family: no exception per event
    assert names(netfmt.AF_INET, [10, 0, 0, 6]) == "10.0.0.6"  # unhashable: formatted each time
    with pytest.raises(ValueError):
        names(netfmt.AF_INET6, (1, 2, 3))  # bad input still says so
    assert len(names._names) <= 3  # bounded
