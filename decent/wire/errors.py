"""The single exception the wire decoders raise on hostile input."""

from __future__ import annotations


class DecodeError(ValueError):
    """The only exception a decoder may raise on hostile input.

    Its text names the byte offset (where known) and the reason.
    """
