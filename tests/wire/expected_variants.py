"""Expected objects for the per-variant golden vectors (tests/wire/vectors/v*.hex)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.wire import (
    NO_ADDRESS,
    Action,
    AfiList,
    ControlMessage,
    DistinguishedName,
    EncapsulatedControlMessage,
    InstanceId,
    Locator,
    MapNotify,
    MapNotifyAck,
    MapRecord,
    MapReferral,
    MapRegister,
    MapReply,
    MapRequest,
    MulticastInfo,
    ReferralAction,
    ReferralRecord,
    ReferralSignature,
    RequestRecord,
    Rle,
    RleEntry,
    UnknownLcaf,
)
from decent.wire.data import DataHeader

V4 = IPv4Address
V6 = IPv6Address

#: Nonce of vector vNN: 0x11223344556677NN, NN the vector number in hex digits.
NONCE_BASE: Final = 0x1122334455667700
XTR_ID: Final = 0x000102030405060708090A0B0C0D0E0F
SITE_ID: Final = 1
#: Key of every authenticated vector (Key ID 0 unless the vector says not).
KEY: Final = b"password"
ALG_SHA256: Final = 2

RLOC1 = V4("192.0.2.1")
RLOC2 = V4("192.0.2.2")
RLOC3 = V4("192.0.2.3")
RLOC6 = V6("2001:db8:ff::1")
GROUP = V4("233.252.0.1")
ANY4 = V4("0.0.0.0")


def _nonce(n: int) -> int:
    return NONCE_BASE + int(str(n), 16)


def _mac(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


def _membership(
    locator: Locator, *, ttl: int = 1440, authoritative: bool = True
) -> MapRecord:
    """[0](0.0.0.0/0, 233.252.0.1/32) -> locator."""
    return MapRecord(
        MulticastInfo(0, ANY4, 0, GROUP, 32),
        0,
        (locator,),
        ttl=ttl,
        authoritative=authoritative,
    )


def _rle_locator(*members: IPv4Address, local: bool) -> Locator:
    """The RLOC-record of a membership: pri 255 w 0 mpri 1 mw 100."""
    return Locator(
        Rle(tuple(RleEntry(m, 128) for m in members)), 255, 0, 1, 100, local=local
    )


def _own(prefix: IPv4Address, mask_len: int, rloc: IPv4Address = RLOC1) -> MapRecord:
    """A registered EID-prefix: one local RLOC, pri 1 w 100, TTL 1440, A=1."""
    return MapRecord(
        prefix,
        mask_len,
        (Locator(rloc, 1, 100, 255, 0, local=True),),
        authoritative=True,
    )


def _reply_record(prefix: IPv4Address, mask_len: int, rloc: Locator) -> MapRecord:
    return MapRecord(prefix, mask_len, (rloc,), authoritative=True)


def _negative(
    prefix: IPv4Address | IPv6Address, mask_len: int, ttl: int, action: Action
) -> MapRecord:
    return MapRecord(prefix, mask_len, (), ttl=ttl, action=action)


NET_V4 = V4("198.51.100.0")
NET_V4B = V4("203.0.113.0")
NET_V6 = V6("2001:db8:1::")
R1 = Locator(RLOC1, 1, 100, 255, 0)

REGISTERED_V4 = _own(NET_V4, 24)
REGISTERED_V6 = MapRecord(
    NET_V6,
    48,
    (Locator(RLOC6, 1, 100, 255, 0, local=True),),
    authoritative=True,
)
MERGED_MEMBERSHIP = _membership(_rle_locator(RLOC1, RLOC2, RLOC3, local=False))

V26_MAC = _mac("2278c5fc3eca37bed3b9886001fe8f7050f48c7ec87c7dce6313b53efb68747b")
V27_MAC = _mac("870340c5613978a1397eaebf4f7f28de483290cbcdf995723c9c46d2ff785c73")

#: Port-4342 vectors: the message decode() returns.
CONTROL: dict[str, ControlMessage] = {
    # ---------------------------------------------------------- Map-Request
    "v01_map_request_smr": MapRequest(
        _nonce(1),
        (RequestRecord(NET_V4, 24),),
        (RLOC1,),
        source_eid=V4("198.51.100.1"),
        smr=True,
    ),
    "v02_map_request_smr_invoked": MapRequest(
        _nonce(2),
        (RequestRecord(NET_V4, 24),),
        (RLOC2,),
        source_eid=V4("203.0.113.9"),
        smr_invoked=True,
    ),
    "v03_map_request_rloc_probe_map_data": MapRequest(
        _nonce(3),
        (RequestRecord(NET_V4, 24),),
        (RLOC1,),
        source_eid=NO_ADDRESS,
        map_reply=_own(NET_V4B, 24),
        probe=True,
    ),
    "v04_map_request_three_itr_rlocs": MapRequest(
        _nonce(4),
        (RequestRecord(V4("198.51.100.7"), 32),),
        (RLOC1, RLOC6, V4("192.0.2.129")),
        source_eid=V4("203.0.113.9"),
    ),
    "v05_map_request_pubsub": MapRequest(
        _nonce(5),
        (RequestRecord(NET_V4, 24, notify=True),),
        (RLOC1,),
        source_eid=V4("203.0.113.9"),
        xtr_id=XTR_ID,
        site_id=SITE_ID,
    ),
    "v06_map_request_iid_lcaf_eid": MapRequest(
        _nonce(6),
        (RequestRecord(InstanceId(1000, NET_V6), 48),),
        (RLOC6,),
        source_eid=InstanceId(1000, V6("2001:db8:2::5")),
    ),
    "v07_map_request_distinguished_name_eid": MapRequest(
        _nonce(7),
        (RequestRecord(DistinguishedName("xtr1.example"), 96),),
        (RLOC1,),
    ),
    # ------------------------------------------------------------ Map-Reply
    "v08_map_reply_rloc_probe": MapReply(
        _nonce(3),
        (
            MapRecord(
                NET_V4,
                24,
                (
                    Locator(RLOC1, 1, 50, 255, 0),
                    Locator(RLOC2, 1, 50, 255, 0, local=True, probed=True),
                ),
                authoritative=True,
            ),
        ),
        probe=True,
    ),
    "v09_map_reply_echo_nonce": MapReply(
        _nonce(9), (_reply_record(NET_V4B, 24, R1),), echo_nonce=True
    ),
    "v10_negative_map_reply_send_map_request": MapReply(
        _nonce(10), (_negative(NET_V4B, 24, 1, Action.SEND_MAP_REQUEST),)
    ),
    "v11_negative_map_reply_drop_no_reason": MapReply(
        _nonce(11),
        (_negative(V4("203.0.113.128"), 25, 15, Action.DROP_NO_REASON),),
    ),
    "v12_negative_map_reply_drop_policy_denied": MapReply(
        _nonce(12), (_negative(NET_V4, 24, 15, Action.DROP_POLICY_DENIED),)
    ),
    "v13_negative_map_reply_drop_auth_failure": MapReply(
        _nonce(13),
        (_negative(V6("2001:db8:3::"), 48, 1, Action.DROP_AUTH_FAILURE),),
    ),
    "v14_map_reply_two_records": MapReply(
        _nonce(14),
        (
            _reply_record(NET_V4, 25, R1),
            _reply_record(V4("198.51.100.128"), 25, Locator(RLOC2, 1, 100, 255, 0)),
        ),
    ),
    "v15_map_reply_ipv6_two_families": MapReply(
        _nonce(15),
        (
            MapRecord(
                NET_V6,
                48,
                (Locator(RLOC1, 1, 70, 10, 30), Locator(RLOC6, 2, 30, 20, 70)),
                authoritative=True,
            ),
        ),
    ),
    "v16_map_reply_membership_rle3": MapReply(
        _nonce(16),
        (
            _membership(
                _rle_locator(RLOC1, RLOC2, RLOC3, local=False), authoritative=False
            ),
        ),
    ),
    # --------------------------------------------------------- Map-Register
    "v17_map_register_ttl_timeout": MapRegister(
        _nonce(17),
        (
            MapRecord(
                NET_V4,
                24,
                (Locator(RLOC1, 1, 100, 255, 0, local=True),),
                ttl=3,
                authoritative=True,
            ),
        ),
        alg_id=ALG_SHA256,
        auth_data=_mac(
            "4f928eabadee00c7a23cadef41d47bee74fad5351bc7cf86ce55fe6fa0d7f04f"
        ),
        ttl_timeout=True,
        want_map_notify=True,
    ),
    "v18_map_register_merge_without_xtr_id": MapRegister(
        _nonce(18),
        (_membership(_rle_locator(RLOC2, local=True)),),
        alg_id=ALG_SHA256,
        auth_data=_mac(
            "3e7887e9f5cb9461a38ebf67f79e6288350e6c0defd11252aafb14868e6dbfa1"
        ),
        merge=True,
    ),
    "v19_map_register_eid_notify": MapRegister(
        _nonce(19),
        (_own(V4("198.51.100.10"), 32),),
        alg_id=ALG_SHA256,
        auth_data=_mac(
            "efcc100646c3a476938f545029159aa929a5b7c9796448542558312c85dcfb74"
        ),
        eid_notify=True,
    ),
    "v20_map_register_security_capable": MapRegister(
        _nonce(20),
        (_own(NET_V4B, 24),),
        alg_id=ALG_SHA256,
        auth_data=_mac(
            "2fc8db661b8447d4be95749703650265f34d9bc3a458a4ea64a77782191bf2bf"
        ),
        security_capable=True,
        want_map_notify=True,
    ),
    "v21_map_register_no_auth": MapRegister(
        _nonce(21), (REGISTERED_V4,), want_map_notify=True
    ),
    "v22_map_register_two_records": MapRegister(
        _nonce(22),
        (REGISTERED_V4, REGISTERED_V6),
        alg_id=ALG_SHA256,
        auth_data=_mac(
            "1da9b62112042276920ac12069df850fc5441922119b16401274534b65115941"
        ),
        proxy_reply=True,
        want_map_notify=True,
        xtr_id=XTR_ID,
        site_id=SITE_ID,
    ),
    "v23_map_register_key_id_1": MapRegister(
        _nonce(23),
        (REGISTERED_V4,),
        key_id=1,
        alg_id=ALG_SHA256,
        auth_data=_mac(
            "a9c5eaae3cd78148d074de263e2e55f2a3d860502d5af1d9e3b397d5413982a0"
        ),
        want_map_notify=True,
    ),
    "v24_map_register_membership_deregistration": MapRegister(
        _nonce(24),
        (_membership(_rle_locator(RLOC1, local=True), ttl=0),),
        alg_id=ALG_SHA256,
        auth_data=_mac(
            "ee5941310c46de530d0f693da6c1c0750a401cf6cd76c8a6a36b7e23235b46ed"
        ),
        proxy_reply=True,
        merge=True,
        xtr_id=XTR_ID,
        site_id=SITE_ID,
    ),
    # ------------------------------------------ Map-Notify / Map-Notify-Ack
    "v25_map_notify_two_records": MapNotify(
        _nonce(22),
        (REGISTERED_V4, REGISTERED_V6),
        alg_id=ALG_SHA256,
        auth_data=_mac(
            "6ca81b9f66c0596882c63bb2e39b87b56d1c92700e15d34499680bea596754ba"
        ),
    ),
    "v26_map_notify_membership_rle3": MapNotify(
        _nonce(26), (MERGED_MEMBERSHIP,), alg_id=ALG_SHA256, auth_data=V26_MAC
    ),
    "v27_map_notify_ack_membership_rle3": MapNotifyAck(
        _nonce(26), (MERGED_MEMBERSHIP,), alg_id=ALG_SHA256, auth_data=V27_MAC
    ),
    # ------------------------------------------------------------------ ECM
    "v28_ecm_ipv6_map_request": EncapsulatedControlMessage(
        MapRequest(
            _nonce(28),
            (RequestRecord(V6("2001:db8:1::9"), 128),),
            (V6("2001:db8:ff::2"),),
            source_eid=V6("2001:db8:2::5"),
        ),
        inner_src=V6("2001:db8:2::5"),
        inner_dst=V6("2001:db8:1::9"),
        inner_sport=61000,
        inner_dport=4342,
    ),
    "v29_ecm_ddt": EncapsulatedControlMessage(
        MapRequest(
            _nonce(29),
            (RequestRecord(V4("198.51.100.7"), 32),),
            (RLOC1,),
            source_eid=V4("203.0.113.9"),
        ),
        inner_src=V4("203.0.113.9"),
        inner_dst=V4("198.51.100.7"),
        inner_sport=61002,
        inner_dport=4342,
        ddt=True,
    ),
    # --------------------------------------------------------- Map-Referral
    "v30_map_referral_signature": MapReferral(
        _nonce(30),
        (
            ReferralRecord(
                NET_V4,
                24,
                (Locator(V4("192.0.2.9"), 0, 0, 0, 0),),
                ttl=1440,
                action=ReferralAction.NODE_REFERRAL,
                authoritative=True,
                signatures=(
                    ReferralSignature(
                        original_ttl=1440,
                        expiration=0x68000000,
                        inception=0x67000000,
                        key_tag=0x1234,
                        algorithm=2,
                        signature=bytes(range(0xA0, 0xB0)),
                    ),
                ),
            ),
        ),
    ),
    # ---------------------------------------------------------- LCAF forms
    "v31_map_reply_multicast_info_ipv6": MapReply(
        _nonce(31),
        (
            MapRecord(
                MulticastInfo(7, V6("::"), 0, V6("ff05::1"), 128),
                0,
                (Locator(Rle((RleEntry(RLOC6, 128),)), 255, 0, 1, 100),),
            ),
        ),
    ),
    "v32_map_register_multicast_info_padded": MapRegister(
        _nonce(32),
        (
            MapRecord(
                MulticastInfo(0, ANY4, 0, GROUP, 32, padded=True),
                0,
                (_rle_locator(RLOC1, local=True),),
                ttl=3,
                authoritative=True,
            ),
        ),
        proxy_reply=True,
        merge=True,
        xtr_id=XTR_ID,
        site_id=SITE_ID,
    ),
    "v33_map_reply_rle_with_names": MapReply(
        _nonce(33),
        (
            _membership(
                Locator(
                    Rle(
                        (
                            RleEntry(RLOC1, 128, DistinguishedName("node-a")),
                            RleEntry(RLOC2, 128, DistinguishedName("node-b")),
                            RleEntry(RLOC3, 128),
                        )
                    ),
                    255,
                    0,
                    1,
                    100,
                ),
                authoritative=False,
            ),
        ),
    ),
    "v34_map_reply_afi_list_nested_iid": MapReply(
        _nonce(34),
        (
            _reply_record(
                NET_V4,
                24,
                Locator(AfiList((RLOC1, InstanceId(1000, RLOC6))), 1, 100, 255, 0),
            ),
        ),
    ),
    "v35_map_reply_unknown_lcaf_geo": MapReply(
        _nonce(35),
        (
            _reply_record(
                NET_V4,
                24,
                Locator(
                    UnknownLcaf(
                        5, bytes.fromhex("8025191e007a050a7fffffff0001c0000201")
                    ),
                    1,
                    100,
                    255,
                    0,
                ),
            ),
        ),
    ),
    "v36_map_reply_distinguished_name_locator": MapReply(
        _nonce(36),
        (
            _reply_record(
                NET_V4, 24, Locator(DistinguishedName("etr1.example"), 1, 100, 255, 0)
            ),
        ),
    ),
}

#: IPv4 198.51.100.10 -> 203.0.113.9, ICMP echo request id 0x1234 seq 1 'abcdefgh'.
ICMP_ECHO_V4: Final = bytes.fromhex(
    "45000024000140004001d490c633640acb007109"  # IPv4 header
    "08005435123400016162636465666768"  # ICMP
)
#: IPv6 2001:db8:1::5 -> 2001:db8:2::9, ICMPv6 echo request id 0x1234 seq 1 'abcd'.
ICMP_ECHO_V6: Final = bytes.fromhex(
    "60000000000c3a40"
    "20010db8000100000000000000000005"
    "20010db8000200000000000000000009"
    "80004d3a1234000161626364"  # ICMPv6
)
#: IPv4 203.0.113.9 -> 198.51.100.10, ICMP echo reply id 0x1234 seq 1 'abcdefgh'.
ICMP_REPLY_V4: Final = bytes.fromhex(
    "45000024000240004001d48fcb007109c633640a"  # IPv4 header
    "00005c35123400016162636465666768"  # ICMP
)

#: Port-4341 vectors: the header and inner packet decapsulate() returns.
DATA: dict[str, tuple[DataHeader, bytes]] = {
    "v37_data_nonce_lsbs_ipv4": (DataHeader(nonce=0x123456, lsbs=3), ICMP_ECHO_V4),
    "v38_data_instance_id_ipv6": (DataHeader(instance_id=1000), ICMP_ECHO_V6),
    "v39_data_map_version": (
        DataHeader(source_map_version=0x123, dest_map_version=0x456),
        ICMP_REPLY_V4,
    ),
}

#: Every v*.hex vector by file stem: a control message (port 4342) or, for
#: port 4341, the (DataHeader, inner packet) pair decapsulate() returns.
VARIANTS: dict[str, object] = {**CONTROL, **DATA}
