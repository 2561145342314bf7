"""Bounds-checked cursor (Reader) and builder (Writer) for every wire codec."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from decent.wire.errors import DecodeError

_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_U64: Final = struct.Struct("!Q")


class Reader:
    """A cursor over bytes. Every short read raises DecodeError with the offset."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, start: int = 0) -> None:
        self._data = data
        self._pos = start
        self._end = len(data)

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def _short(self, n: int) -> DecodeError:
        return DecodeError(
            f"need {n} bytes at offset {self._pos}, have {self._end - self._pos}"
        )

    # The fixed-width reads inline their bounds check: they run several times
    # per datagram, and one extra call per field is measurable.
    def u8(self) -> int:
        pos = self._pos
        if pos >= self._end:
            raise self._short(1)
        self._pos = pos + 1
        return self._data[pos]

    def u16(self) -> int:
        pos = self._pos
        if pos + 2 > self._end:
            raise self._short(2)
        self._pos = pos + 2
        v: int = _U16.unpack_from(self._data, pos)[0]
        return v

    def u32(self) -> int:
        pos = self._pos
        if pos + 4 > self._end:
            raise self._short(4)
        self._pos = pos + 4
        v: int = _U32.unpack_from(self._data, pos)[0]
        return v

    def u64(self) -> int:
        pos = self._pos
        if pos + 8 > self._end:
            raise self._short(8)
        self._pos = pos + 8
        v: int = _U64.unpack_from(self._data, pos)[0]
        return v

    def take(self, n: int) -> bytes:
        pos = self._pos
        if n > self._end - pos:
            raise self._short(n)
        self._pos = pos + n
        return self._data[pos : pos + n]

    def peek_u16(self) -> int:
        if self._end - self._pos < 2:
            raise DecodeError(f"need 2 bytes at offset {self._pos}")
        return int(_U16.unpack_from(self._data, self._pos)[0])

    def take_until_nul(self, limit: int) -> bytes:
        """The bytes before the next NUL (which is consumed), at most limit
        of them: one search rather than a read per byte (signature and
        certificate names run to hundreds of characters)."""
        pos = self._pos
        nul = self._data.find(b"\0", pos, min(self._end, pos + limit + 1))
        if nul < 0:
            if self._end - pos > limit:
                raise DecodeError(f"name at offset {pos} exceeds {limit}")
            raise self._short(self._end - pos + 1)
        self._pos = nul + 1
        return self._data[pos:nul]

    def take_rest(self) -> bytes:
        return self.take(self._end - self._pos)

    def fail(self, reason: str) -> DecodeError:
        return DecodeError(f"{reason} at offset {self._pos}")

    @contextmanager
    def limit(self, n: int) -> Iterator[None]:
        """Confine reads to the next n bytes; they must all be consumed."""
        if n > self._end - self._pos:
            raise DecodeError(
                f"length {n} at offset {self._pos} exceeds the "
                f"{self._end - self._pos} bytes left"
            )
        outer_end = self._end
        self._end = self._pos + n
        yield
        if self._pos != self._end:
            raise DecodeError(
                f"{self._end - self._pos} unread bytes in a length-limited "
                f"field ending at offset {self._end}"
            )
        self._end = outer_end

    def finish(self) -> None:
        if self._pos != self._end:
            raise DecodeError(
                f"{self._end - self._pos} trailing bytes at offset {self._pos}"
            )


class Writer:
    """Appends big-endian fields to a growing buffer."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def u8(self, v: int) -> None:
        self._buf.append(v)

    def u16(self, v: int) -> None:
        self._buf += _U16.pack(v)

    def u32(self, v: int) -> None:
        self._buf += _U32.pack(v)

    def u64(self, v: int) -> None:
        self._buf += _U64.pack(v)

    def put(self, b: bytes) -> None:
        self._buf += b

    def patch_u16(self, offset: int, v: int) -> None:
        _U16.pack_into(self._buf, offset, v)

    def raw(self) -> bytes:
        return bytes(self._buf)


def check_uint(name: str, value: int, bits: int) -> None:
    """Raise ValueError unless value fits in an unsigned field of `bits` bits."""
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name}={value} does not fit in {bits} bits")
