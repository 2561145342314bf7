"""The names of the node's counters: one constant each, read by the shells and the page.

A counter is read by name across layers (the status page, the metrics,
the tests), so each name is written once, here. Dynamic families take a
suffix: `DROP + reason`, `REJECT + reason`, `TX + kind`, `RX + kind`.
"""

from __future__ import annotations

from typing import Final

DROP: Final = "drop."
REJECT: Final = "reject."
TX: Final = "tx."
RX: Final = "rx."

RX_MAP_REQUEST: Final = "rx.map-request"
RX_ECM: Final = "rx.ecm"
RX_MAP_REPLY: Final = "rx.map-reply"
RX_MAP_REGISTER: Final = "rx.map-register"
RX_MAP_NOTIFY: Final = "rx.map-notify"
RX_MAP_NOTIFY_ACK: Final = "rx.map-notify-ack"
RX_MAP_REFERRAL: Final = "rx.map-referral"
RX_REPLICATED: Final = "rx.replicated"
REPLICATED_RELEASED: Final = "replicated.released"

REGISTRATION_ACCEPTED: Final = "registration.accepted"
REGISTRATION_REMOVED: Final = "registration.removed"
REGISTRATION_EXPIRED: Final = "registration.expired"
ACCEPT_UNAUTHENTICATED: Final = "accept.unauthenticated"
#: Plain xTRs' Map-Registers carried on to the group, and taken from it.
RELAYED_SENT: Final = "relay.sent"
RELAYED_ACCEPTED: Final = "relay.accepted"
#: NAT traversal (decent.peer.mapping.nat): our relay stopped answering;
#: a client's NAT gave it a new binding; packets relayed to clients.
NAT_RELAY_FAILED: Final = "nat.relay-failed"
NAT_REBOUND: Final = "nat.rebound"
RELAY_FORWARDED: Final = "relay.forwarded"
RELAY_CONTROL: Final = "relay.control"
#: Mesh-signed revocations of node certificates taken (decent.peer.trust).
REVOCATION_LEARNED: Final = "revocation.learned"
NOTIFY_GAVE_UP: Final = "notify.gave-up"
RESYNC_BUSY: Final = "resync.busy"
RESYNC_CONFIRMED: Final = "resync.confirmed"

REPLY_NARROWED: Final = "reply.narrowed"
REQUEST_FAILED: Final = "request.failed"

CACHE_INSTALLED: Final = "cache.installed"
CACHE_EXPIRED: Final = "cache.expired"
CACHE_CLEARED: Final = "cache.cleared"
CACHE_FULL: Final = "cache.full"

RLOCS_CHANGED: Final = "rlocs.changed"
RLOC_UP: Final = "rloc.up"
RLOC_DOWN: Final = "rloc.down"

DATAPLANE_MISS: Final = "dataplane.miss"
DATAPLANE_PETR: Final = "dataplane.petr"
DATAPLANE_NATIVE: Final = "dataplane.native"
DATAPLANE_OUTER_FRAGMENTED: Final = "dataplane.outer-fragmented"
DATAPLANE_ICMP_TOO_BIG: Final = "dataplane.icmp-too-big"
DATAPLANE_ICMP_RATE_LIMITED: Final = "dataplane.icmp-rate-limited"
DATAPLANE_LSB_CHANGE: Final = "dataplane.lsb-change"
#: A new peer RLOC pushed the one idle longest out of the traffic table.
DATAPLANE_TRAFFIC_EVICTED: Final = "dataplane.traffic-evicted"

#: RFC 8061 key exchanges (decent.peer.roles.keys).
KEYS_REQUESTED: Final = "keys.requested"
KEYS_ESTABLISHED: Final = "keys.established"
KEYS_REKEYED: Final = "keys.rekeyed"
KEYS_REFUSED: Final = "keys.refused"
KEYS_UNANSWERED: Final = "keys.unanswered"
KEYS_ASKED: Final = "keys.asked"
KEYS_ANSWERED: Final = "keys.answered"
KEYS_REVOKED: Final = "keys.revoked"
DATAPLANE_AWAITING_KEY: Final = "dataplane.awaiting-key"
DATAPLANE_ENCRYPTED: Final = "dataplane.encrypted"
DATAPLANE_DECRYPTED: Final = "dataplane.decrypted"

# The data plane's drops (its other counters are above).
DROP_DECRYPT_FAILED: Final = "drop.decrypt-failed"
DROP_REPLAYED: Final = "drop.replayed"
DROP_CLEAR_TEXT: Final = "drop.clear-text"
DROP_NO_KEY: Final = "drop.no-key"
DROP_PEER_UNENCRYPTED: Final = "drop.peer-unencrypted"
DROP_NEGATIVE: Final = "drop.negative"
DROP_NEGATIVE_DROP_ACTION: Final = "drop.negative-drop-action"
DROP_NOT_IP: Final = "drop.not-ip"
DROP_NOT_OUR_EID: Final = "drop.not-our-eid"
DROP_NOT_UNICAST: Final = "drop.not-unicast"
DROP_NO_SOURCE_RLOC: Final = "drop.no-source-rloc"
DROP_NO_USABLE_RLOC: Final = "drop.no-usable-rloc"
DROP_OWN_RLOC: Final = "drop.own-rloc"
DROP_QUEUE_FULL: Final = "drop.queue-full"
DROP_QUEUE_TIMEOUT: Final = "drop.queue-timeout"
DROP_SHORT_PACKET: Final = "drop.short-packet"
DROP_TOO_BIG: Final = "drop.too-big"
DROP_UNKNOWN_RLOC: Final = "drop.unknown-rloc"
DROP_UNRESOLVED: Final = "drop.unresolved"
DROP_WRONG_IID: Final = "drop.wrong-iid"
