"""rtnetlink address and link messages: decoding, dump requests, dump reading."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decent.wire.netlink import (
    IFF_LOWER_UP,
    IFF_UP,
    dump_request,
    parse,
    read_dump,
    usable_addresses,
)

IP = IPv4Address | IPv6Address
A = IPv4Address("198.18.42.13")
B = IPv4Address("198.18.42.33")
V6 = IPv6Address("2001:db8::3")
LINK_LOCAL = IPv6Address("fe80::3")
NEW, DEL = 20, 21
NEWLINK, DELLINK = 16, 17


def attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    head: bytes = struct.pack("=HH", length, kind)
    return head + data + bytes(-length % 4)


def ifaddr(
    address: IP,
    index: int = 1,
    flags: int = 0,
    *,
    local: bool = True,
    extra: bytes = b"",
) -> bytes:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    body: bytes = struct.pack("=BBBBI", family, 24, flags & 0xFF, 0, index)
    body += attr(2 if local else 1, address.packed) + extra
    return body


def nlmsg(kind: int, body: bytes, length: int | None = None) -> bytes:
    n = 16 + len(body)
    head = struct.pack("=IHHII", n if length is None else length, kind, 0, 0, 0)
    return head + body + bytes(-n % 4)


def test_address_messages_are_decoded_with_their_flags():
    data = (
        nlmsg(NEW, ifaddr(A))
        + nlmsg(DEL, ifaddr(V6, 2, local=False))
        + nlmsg(NEW, ifaddr(B, flags=0x40))  # tentative
        + nlmsg(NEW, ifaddr(V6, extra=attr(8, struct.pack("=I", 0x08))))  # DAD fail
        + nlmsg(NEW, ifaddr(LINK_LOCAL))
        + nlmsg(16, b"link message, not ours")
    )
    parsed = parse(data)
    assert parsed.errors == 0
    assert not parsed.done
    got = [(m.new, m.index, m.address, m.usable) for m in parsed.messages]
    assert got == [
        (True, 1, A, True),
        (False, 2, V6, True),
        (True, 1, B, False),
        (True, 1, V6, False),
        (True, 1, LINK_LOCAL, False),
    ]


def test_the_end_of_a_dump_and_an_error_answer_end_it():
    assert parse(nlmsg(3, bytes(4))).done
    assert parse(nlmsg(2, bytes(20))).done


@pytest.mark.parametrize(
    "data",
    [
        nlmsg(NEW, ifaddr(A), length=8),  # shorter than its own header
        nlmsg(NEW, ifaddr(A), length=400),  # longer than the datagram
        nlmsg(NEW, b"\x02\x18"),  # no room for an ifaddrmsg
        nlmsg(NEW, struct.pack("=BBBBI", 99, 0, 0, 0, 1) + attr(2, A.packed)),
        nlmsg(NEW, struct.pack("=BBBBI", 2, 0, 0, 0, 1) + attr(2, b"\x01\x02")),
        nlmsg(NEW, struct.pack("=BBBBI", 2, 0, 0, 0, 1)),  # no address at all
        nlmsg(NEW, struct.pack("=BBBBI", 2, 0, 0, 0, 1) + b"\x02\x00\x02\x00"),
        nlmsg(NEW, struct.pack("=BBBBI", 2, 0, 0, 0, 1) + b"\x40\x00\x02\x00"),
        nlmsg(NEW, ifaddr(A)) + b"\x01\x02",  # trailing bytes
    ],
)
def test_malformed_messages_are_counted_and_never_raise(data: bytes):
    assert parse(data).errors >= 1


def test_a_short_flags_attribute_keeps_the_header_flags():
    [msg] = parse(nlmsg(NEW, ifaddr(A, flags=0x40, extra=attr(8, b"\0")))).messages
    assert not msg.usable


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes):
    parse(data)


def test_the_dump_request_asks_for_every_address():
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", dump_request(7))
    assert (length, kind, flags, seq) == (24, 22, 0x301, 7)


def ifinfo(index: int, flags: int) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 1, index, flags, 0)


def test_link_messages_are_decoded_with_their_state():
    data = (
        nlmsg(NEWLINK, ifinfo(1, IFF_UP | IFF_LOWER_UP))
        + nlmsg(NEWLINK, ifinfo(2, IFF_UP))  # no carrier
        + nlmsg(DELLINK, ifinfo(3, IFF_LOWER_UP))
    )
    parsed = parse(data)
    assert parsed.errors == 0
    assert parsed.messages == []
    assert [(m.new, m.index, m.up) for m in parsed.links] == [
        (True, 1, True),
        (True, 2, False),
        (False, 3, False),
    ]


def test_a_short_link_message_is_counted():
    assert parse(nlmsg(NEWLINK, bytes(8))).errors == 1


def test_the_link_dump_request_asks_for_every_link():
    request = dump_request(3, kind=18)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", request)
    assert (length, kind, flags, seq) == (32, 18, 0x301, 3)
    with pytest.raises(ValueError, match="no dump request"):
        dump_request(kind=NEW)


def test_a_dump_is_read_to_its_end_across_datagrams():
    datagrams = iter(
        [
            nlmsg(NEW, ifaddr(A)) + nlmsg(NEWLINK, ifinfo(1, IFF_UP)),
            nlmsg(NEW, ifaddr(B, 2)),
            nlmsg(3, bytes(4)),
            nlmsg(NEW, ifaddr(V6)),  # after the end: never read
        ]
    )
    dumped = read_dump(lambda: next(datagrams))
    assert dumped.done
    assert [m.address for m in dumped.messages] == [A, B]
    assert [m.index for m in dumped.links] == [1]
    assert next(datagrams)


def test_a_dump_stops_at_a_malformed_datagram():
    datagrams = iter([nlmsg(NEW, ifaddr(A)), b"\xff" * 3, nlmsg(3, bytes(4))])
    dumped = read_dump(lambda: next(datagrams))
    assert (dumped.done, dumped.errors) == (False, 1)
    assert [m.address for m in dumped.messages] == [A]


def test_usable_addresses_are_one_interfaces_in_the_kernels_order():
    messages = parse(
        nlmsg(NEW, ifaddr(B))
        + nlmsg(NEW, ifaddr(A, 2))  # another interface
        + nlmsg(NEW, ifaddr(V6))
        + nlmsg(NEW, ifaddr(LINK_LOCAL))
        + nlmsg(NEW, ifaddr(A, flags=0x40))  # tentative
        + nlmsg(DEL, ifaddr(A))
        + nlmsg(NEW, ifaddr(B))  # twice: once
    ).messages
    assert usable_addresses(messages, 1) == [B, V6]
