"""The HPACK encoder of splitter's HTTP/2 connections (to clients and to backends).

hpack's `Encoder` Huffman-codes every value byte by byte in Python: about two thirds of
the cost of encoding a response's HEADERS, to save about a fifth of their bytes. On the
links splitter serves (loopback, a data centre, a LAN) the CPU matters more, so values go
as plain literals; the dynamic table is used as usual, and a field that is new on every
message (`x-request-id`, a sticky cookie) is sent never-indexed (`never_indexed`), so
that it does not push out of the peer's table what is worth keeping there.
"""

from __future__ import annotations

from typing import Any

from hpack import Encoder
from hpack.struct import NeverIndexedHeaderTuple

__all__ = ["PlainEncoder", "never_indexed"]


# The compiled build type-checks this module without hpack installed (its build environment
# holds setuptools and mypy alone): hpack's names are Any there, hence the ignore and the
# annotated locals.
class PlainEncoder(Encoder):  # type: ignore[misc,unused-ignore]
    """HPACK without Huffman coding (see the module docstring)."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        block: bytes = super().encode(headers, huffman=False)
        return block


def never_indexed(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """A field to send never-indexed (RFC 7541 6.2.3)."""
    field: tuple[bytes, bytes] = NeverIndexedHeaderTuple(name, value)
    return field
