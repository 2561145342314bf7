"""Every size and count limit the wire decoders enforce, in one place.

The RFC field widths already cap most counts; these limits are tighter, so a
hostile datagram cannot make a decoder build large object graphs. Encoders
enforce the same limits, so we never emit what we would refuse.
"""

from __future__ import annotations

from typing import Final

#: EID-records in one Map-Request, Map-Reply, Map-Register, Map-Notify(-Ack)
#: or Map-Referral (the wire field is 8 bits).
MAX_RECORDS: Final = 255
#: Locator (RLOC) records in one EID-record (the wire field is 8 bits).
MAX_LOCATORS: Final = 64
#: ITR-RLOCs in one Map-Request (the 5-bit IRC field allows 32).
MAX_ITR_RLOCS: Final = 32
#: Entries in one Replication List Entry LCAF (RFC 8060 type 13).
MAX_RLE_ENTRIES: Final = 1024
#: Items in one AFI-List LCAF (RFC 8060 type 1).
MAX_AFI_LIST_ITEMS: Final = 32
#: How deeply LCAFs may nest inside each other (AFI-List inside IID inside ...).
MAX_LCAF_DEPTH: Final = 4
#: Bytes in a distinguished name (AFI 17), not counting its terminating NUL.
#: Names as EIDs are short; a node certificate travels base64-encoded in one
#: (wire/trust.py, the signature locator), so this is sized for that.
MAX_NAME_LEN: Final = 4096
#: Bytes of an encoded node certificate (wire/trust.py): the largest whose
#: signature locator, base64(2-byte length, certificate, 64-byte signature),
#: still fits in one distinguished name.
MAX_CERTIFICATE_LEN: Final = MAX_NAME_LEN // 4 * 3 - 2 - 64
#: EID-prefixes one node certificate may name.
MAX_CERTIFICATE_EIDS: Final = 64
#: Signatures in one Map-Referral record (the wire field is 4 bits).
MAX_SIGNATURES: Final = 15
#: Bytes of a LISP control message; a UDP payload cannot be larger.
MAX_MESSAGE_LEN: Final = 65507
