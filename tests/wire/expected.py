"""Expected objects for the protocol-notes worked examples (vectors/e*.hex)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from decent.wire import (
    NO_ADDRESS,
    AfiList,
    EncapsulatedControlMessage,
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
    RequestRecord,
    Rle,
    RleEntry,
)
from decent.wire.data import DataHeader
from decent.wire.ip import UdpPacket
from decent.wire.records import Action
from decent.wire.transport import TransportMessage

V4 = IPv4Address
XTR_ID = 0x000102030405060708090A0B0C0D0E0F
RLOC1 = V4("192.0.2.1")
GROUP = V4("233.252.1.1")

E1_RECORD = MapRecord(
    V4("10.1.0.0"),
    16,
    (Locator(RLOC1, 1, 100, 255, 0, local=True, reachable=True),),
    ttl=1440,
    authoritative=True,
)
E1 = MapRegister(
    nonce=0x0102030405060708,
    records=(E1_RECORD,),
    alg_id=2,
    auth_data=bytes.fromhex(
        "5092fe33574b353ff4fc667aa86306f59a6147540c5454a9a1a24db930a3a799"
    ),
    proxy_reply=True,
    want_map_notify=True,
    xtr_id=XTR_ID,
    site_id=1,
)
MEMBERSHIP_RECORD = MapRecord(
    MulticastInfo(0, V4("0.0.0.0"), 0, GROUP, 32),
    0,
    (Locator(Rle((RleEntry(RLOC1, 128),)), 255, 0, 1, 100, local=True),),
    ttl=1440,
    authoritative=True,
)
E6 = MapRegister(
    nonce=0x0102030405060710,
    records=(MEMBERSHIP_RECORD,),
    alg_id=2,
    auth_data=bytes.fromhex(
        "899639f344a2186e0ceff6c90ee23ef139ad06ae742dc1f8191eff4aa7a63e9a"
    ),
    proxy_reply=True,
    merge=True,
    xtr_id=XTR_ID,
    site_id=1,
)
E6B_LOCATOR = Locator(
    AfiList((NO_ADDRESS, Rle((RleEntry(RLOC1, 128),)))), 255, 0, 1, 100, local=True
)

EXPECTED: dict[str, object] = {
    "e01_map_register_sha256": E1,
    "e01s_map_register_sha1": replace(
        E1,
        alg_id=1,
        auth_data=bytes.fromhex("4e7af43c977d0b39708e6c94bf8f6ebcde8c67a1"),
    ),
    "e01t16_map_register_sha256_trunc16": replace(
        E1, auth_data=bytes.fromhex("21cac8774e90fcb6d4174825393457d3")
    ),
    "e01t12_map_register_sha1_trunc12": replace(
        E1, alg_id=1, auth_data=bytes.fromhex("14e891c104b2afe48ba68b17")
    ),
    "e02_map_notify": MapNotify(
        nonce=0x0102030405060708,
        records=(E1_RECORD,),
        alg_id=2,
        auth_data=bytes.fromhex(
            "678f16c56ec63783821be9490f3f1e1f8838288316dc9d55d70174b47f750eda"
        ),
    ),
    "e03_ecm_map_request": EncapsulatedControlMessage(
        MapRequest(
            nonce=0xA1A2A3A4A5A6A7A8,
            records=(RequestRecord(V4("10.2.0.9"), 32),),
            itr_rlocs=(RLOC1,),
            source_eid=V4("10.1.0.5"),
        ),
        inner_src=V4("10.1.0.5"),
        inner_dst=V4("10.2.0.9"),
        inner_sport=61000,
        inner_dport=4342,
        ip_ident=1,
    ),
    "e04_map_reply": MapReply(
        0xA1A2A3A4A5A6A7A8,
        (
            MapRecord(
                V4("10.2.0.0"),
                16,
                (Locator(V4("198.51.100.7"), 1, 100, 255, 0),),
                authoritative=True,
            ),
        ),
    ),
    "e05_negative_map_reply": MapReply(
        0xB1B2B3B4B5B6B7B8,
        (MapRecord(V4("10.3.0.0"), 16, (), ttl=15, action=Action.NATIVELY_FORWARD),),
    ),
    "e06_membership_map_register": E6,
    "e06b_membership_lispers": replace(
        E6, records=(replace(MEMBERSHIP_RECORD, ttl=3, locators=(E6B_LOCATOR,)),)
    ),
    "e07_her_data_membership": (
        DataHeader(nonce=0xABCDEF, instance_id=0xFFFFFF),
        UdpPacket(RLOC1, GROUP, 61001, 4342, E6.encode(), ttl=64, ident=1),
        E6,
    ),
    "e08_map_notify_ack": MapNotifyAck(
        nonce=0x1111222233334444,
        records=(E1_RECORD,),
        alg_id=2,
        auth_data=bytes.fromhex(
            "62c00e8c1bf2dd9a6be50eee9d6f2b100d3923c6ce9027fa96c907dc3f3abf55"
        ),
    ),
    "e09_reliable_transport_registration": TransportMessage(17, 1, E1.encode()),
    "e10_map_referral": MapReferral(
        0xC1C2C3C4C5C6C7C8,
        (
            ReferralRecord(
                V4("10.1.0.0"),
                16,
                (Locator(V4("192.0.2.9"), 0, 0, 0, 0),),
                ttl=1440,
                action=ReferralAction.MS_ACK,
                authoritative=True,
            ),
        ),
    ),
}
