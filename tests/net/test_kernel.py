"""The kernel as the shell reads it: interface addresses, indexes, link state."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

import pytest

from decent.net import kernel
from decent.net.kernel import (
    RTMGRP_LINK,
    interface_addresses,
    interface_index,
    rloc_states,
    subscribe,
)
from decent.wire.netlink import Parsed


def _netlink_works() -> bool:
    try:
        kernel.dump()
    except OSError:  # pragma: no cover - a sandbox without netlink
        return False
    return True


needs_netlink = pytest.mark.skipif(not _netlink_works(), reason="no netlink here")


@needs_netlink
def test_the_kernel_dump_of_loopback_has_its_address():
    addrs = interface_addresses("lo")
    assert IPv4Address("127.0.0.1") in addrs
    assert interface_addresses("no-such-if0") == []


@needs_netlink
def test_an_address_has_the_index_of_its_interface():
    assert interface_index(IPv4Address("127.0.0.1")) == socket.if_nametoindex("lo")
    with pytest.raises(OSError, match=r"no interface has 192\.0\.2\.77"):
        interface_index(IPv4Address("192.0.2.77"))


@needs_netlink
def test_an_rloc_is_up_on_an_up_link_and_down_off_this_host():
    assert rloc_states([IPv4Address("127.0.0.1"), IPv6Address("2001:db8::77")]) == [
        True,
        False,
    ]


def test_when_netlink_cannot_tell_every_rloc_stays_up(
    monkeypatch: pytest.MonkeyPatch,
):
    def refused(kind: int = 0) -> Parsed:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(kernel, "dump", refused)
    assert rloc_states([IPv4Address("192.0.2.1")] * 2) == [True, True]
    assert interface_addresses("lo") == []


@needs_netlink
def test_a_subscription_is_non_blocking():
    with subscribe(RTMGRP_LINK) as sock, pytest.raises(BlockingIOError):
        sock.recv(1)
