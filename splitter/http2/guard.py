"""The flood guard of an HTTP/2 connection: counts in, verdict out (section 14).

Theory of operation
-------------------
HTTP/2 lets a client make a server work without asking for anything: open a stream and
reset it at once (Rapid Reset, CVE-2023-44487), send SETTINGS or PING frames that each
need an answer, empty DATA frames, PRIORITY or WINDOW_UPDATE frames by the thousand, a
header block that never ends (the CONTINUATION flood, CVE-2024-27316). `FloodGuard` is the
accountant of one client connection: the shell feeds it the bytes it reads *before* the
`h2` library sees them (`feed`, which finds the frame headers and calls `received` for
each), tells it what it does itself (`refused`, `closed`, `sent`), and ends the connection
with GOAWAY ENHANCE_YOUR_CALM as soon as an answer is not "". No I/O, no clock: `now` is
an argument, seconds on any monotonic scale.

Budgets (`Budgets`; every one far beyond what a legitimate client does, so that a flood
trips within a second while a browser or a gRPC channel never does):

    what                    rule                                           from
    ---------------------   --------------------------------------------   ---------------
    rapid reset             a reset within 1 s of the stream's HEADERS     Varnish, Envoy
                            takes a token: 1000 at most, 33 more a second  nghttp2, Node
    streams open            the client's open streams over 4 x 128         Go net/http
    SETTINGS                100 at most, 10 more a second                  (see below)
    PING                    100 at most, 10 more a second, and one more    gRPC's BDP
                            for each HEADERS or DATA frame splitter sends  estimator
    empty frames            4 DATA/HEADERS/CONTINUATION frames in a row    Envoy (1)
                            with no payload and no END_STREAM
    PRIORITY (and unknown   100 x (1 + streams opened) in all              Envoy, nginx
    extension frames)
    WINDOW_UPDATE           1 + 2 x (streams opened + 10 x DATA frames     Envoy
                            splitter sent) in all
    header block            HEADERS + CONTINUATION of one block over       Go, CVE-2024-
                            2 x (max_header_bytes + max_request_line)      27316
                            bytes, or over one frame per KiB of that
    frame size              a frame header announcing more than            RFC 9113 4.2
                            SETTINGS_MAX_FRAME_SIZE (16 KiB, the default)

Why these numbers:

- Rapid reset. Varnish (`h2_rapid_reset`) and Envoy
  (`overload.premature_reset_min_stream_lifetime_seconds`) both call a reset *premature*
  when it comes within 1 s of the stream's start; only those count here, so a client that
  cancels a long download or a streaming call costs nothing. The rate is nghttp2's stream
  reset limit (`nghttp2_option_set_stream_reset_rate_limit`: a burst of 1000, 33 a second,
  the library of Apache httpd, curl and Node's `streamResetBurst`/`streamResetRate`):
  a browser that leaves a page cancels at most the 128 streams it may have open; the attack
  resets tens of thousands a second and trips within its first read buffers. Streams
  splitter refuses (over the concurrency limit, or a head that is refused) count the same,
  as Envoy's advisory asks: a client that provokes resets is resetting.
- Streams open. The `h2` library refuses streams over SETTINGS_MAX_CONCURRENT_STREAMS;
  the guard still keeps its own count bounded, as Go's server does after its Rapid Reset
  fix (more than 4 x MaxConcurrentStreams handlers waiting: ENHANCE_YOUR_CALM).
- SETTINGS and PING: each needs an ACK, so a flood is also a write flood (Envoy bounds the
  queued answers at 1000, Go at 10000, nginx by the share of control bytes in the
  traffic). A client sends one SETTINGS at the start and a few later (gRPC's BDP estimator
  changes its window a handful of times); it pings for keepalive (seconds apart) and, in
  gRPC, once per data burst it receives (the BDP estimator keeps one ping outstanding):
  hence one more PING for each frame of response splitter sends.
- Empty frames: Envoy's `max_consecutive_inbound_frames_with_empty_payload` is 1 ("no
  legitimate use"); 4 leaves room for a clumsy client and still trips at once.
- PRIORITY: Envoy's `max_inbound_priority_frames_per_stream` (100, per stream opened,
  over the connection's life); nginx gives max(128, 100) and 128 more per stream. RFC 9113
  deprecated the signals; RFC 9218's PRIORITY_UPDATE and other extension frames, which a
  server must read and ignore, share this budget.
- WINDOW_UPDATE: Envoy's `max_inbound_window_update_frames_per_data_frame_sent` (10) in
  its formula; a client sends one or two per DATA frame it gets.
- Header block: a block is HPACK-compressed, and a legitimate one is at most a little
  larger than the fields it holds (`headers.request_head` then checks those against the
  limits, 431); twice the limits is never reached by a block that could pass, and bounds
  what a block that never ends can cost (Go's fix for CVE-2023-45288 does the same).
- Frame size: the `h2` library reads a frame whole before it checks the frame's length
  against SETTINGS_MAX_FRAME_SIZE, so a header announcing 16 MiB (the field's maximum)
  would have it buffer 16 MiB for the connection; the guard refuses it at its header. It is
  a protocol error (FRAME_SIZE_ERROR), not a flood: the shell answers it as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from splitter.config import Limits

__all__ = [
    "CONTINUATION",
    "DATA",
    "FRAME_SIZE",
    "HEADERS",
    "PING",
    "PRIORITY",
    "RST_STREAM",
    "SETTINGS",
    "WINDOW_UPDATE",
    "Budgets",
    "FloodGuard",
]

# Frame types (RFC 9113 6) and the flags the guard reads.
DATA: Final = 0
HEADERS: Final = 1
PRIORITY: Final = 2
RST_STREAM: Final = 3
SETTINGS: Final = 4
PUSH_PROMISE: Final = 5
PING: Final = 6
GOAWAY: Final = 7
WINDOW_UPDATE: Final = 8
CONTINUATION: Final = 9
END_STREAM: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8

# Why a connection ends (a metric's label once the shell counts them).
RAPID_RESET: Final = "rapid_reset"
OPEN_STREAMS: Final = "open_streams"
SETTINGS_FLOOD: Final = "settings"
PING_FLOOD: Final = "ping"
EMPTY_FRAMES: Final = "empty_frames"
PRIORITY_FLOOD: Final = "priority"
WINDOW_UPDATE_FLOOD: Final = "window_update"
HEADER_BLOCK: Final = "header_block"
FRAME_SIZE: Final = "frame_size"

PREFACE_SIZE: Final = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", checked by h2 itself
_FRAME_HEADER: Final = 9


@dataclass(frozen=True, slots=True)
class Budgets:
    """What one connection may do (see the module docstring for each number)."""

    max_streams: int = 128  # SETTINGS_MAX_CONCURRENT_STREAMS, as advertised
    premature: float = 1.0  # a reset this soon after the stream's HEADERS is premature
    resets: int = 1000
    resets_per_second: float = 33.0
    settings: int = 100
    settings_per_second: float = 10.0
    pings: int = 100
    pings_per_second: float = 10.0
    empty_frames: int = 4  # in a row
    priority_per_stream: int = 100
    window_updates_per_data: int = 10
    header_block: int = 2 * (65536 + 8192)  # bytes of one HEADERS + CONTINUATION block
    header_block_frames: int = 1 + 2 * (65536 + 8192) // 1024
    max_frame: int = 16384  # SETTINGS_MAX_FRAME_SIZE, as advertised (the protocol's default)

    @classmethod
    def for_limits(cls, limits: Limits, max_streams: int = 128) -> Budgets:
        block = 2 * (limits.max_header_bytes + limits.max_request_line)
        return cls(max_streams=max_streams, header_block=block,
                   header_block_frames=1 + block // 1024)  # fmt: skip


class _Bucket:
    """A token bucket: `capacity` at most, `rate` more a second."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, capacity: int, rate: float, now: float) -> None:
        self.capacity = float(capacity)
        self.rate = rate
        self.tokens = float(capacity)
        self.last = now

    def take(self, now: float) -> bool:
        elapsed = now - self.last
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def give(self) -> None:
        if self.tokens < self.capacity:
            self.tokens += 1.0


class FloodGuard:
    """The accountant of one client connection (see the module docstring). Every method
    that can trip answers the reason, "" while the client stays within its budgets; once
    tripped, it keeps answering the same reason."""

    def __init__(self, budgets: Budgets, now: float, preface: bool = True) -> None:
        self.budgets = budgets
        self.tripped = ""
        self.opened: dict[int, float] = {}  # the client's streams not yet closed: their start
        self.highest = 0  # the highest stream id the client opened
        self.streams = 0  # streams opened, over the connection's life
        self.data_sent = 0  # DATA frames splitter sent
        self.priority_frames = 0
        self.window_updates = 0
        self.empty_in_a_row = 0
        self.block_bytes = 0  # the header block being read (HEADERS and its CONTINUATIONs)
        self.block_frames = 0
        self.resets = _Bucket(budgets.resets, budgets.resets_per_second, now)
        self.settings = _Bucket(budgets.settings, budgets.settings_per_second, now)
        self.pings = _Bucket(budgets.pings, budgets.pings_per_second, now)
        # Reading frame headers out of the byte stream.
        self.skip = PREFACE_SIZE if preface else 0  # bytes to pass over (preface, payload)
        self.pending = b""  # a frame header not yet complete
        self.pad_of: tuple[int, int, int] | None = None  # a padded DATA frame waiting for
        # its pad length byte: (flags, length, stream)

    # -- the bytes ----------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> str:
        """Read the frame headers in `data` (the client's bytes, in order, as read), and
        account for each frame."""
        pos = 0
        size = len(data)
        while pos < size and not self.tripped:
            if self.pad_of is not None:
                flags, length, stream = self.pad_of
                self.pad_of = None
                pad = data[pos]
                self.received(DATA, flags, max(0, length - 1 - pad), stream, now)
                self.skip = length - 1
                pos += 1
                continue
            if self.skip:
                step = min(self.skip, size - pos)
                self.skip -= step
                pos += step
                continue
            need = _FRAME_HEADER - len(self.pending)
            if need < _FRAME_HEADER or size - pos < _FRAME_HEADER:
                self.pending += data[pos : pos + need]
                pos += need
                if len(self.pending) < _FRAME_HEADER:
                    break
                header = self.pending
                self.pending = b""
            else:
                header = data[pos : pos + _FRAME_HEADER]
                pos += _FRAME_HEADER
            length = int.from_bytes(header[0:3], "big")
            kind = header[3]
            flags = header[4]
            stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
            if length > self.budgets.max_frame:
                return self._trip(FRAME_SIZE)
            if kind == DATA and flags & PADDED and length > 0:
                self.pad_of = (flags, length, stream)
                continue
            self.received(kind, flags, length, stream, now)
            self.skip = length
        return self.tripped

    # -- what the client sends ----------------------------------------------------------

    def received(self, kind: int, flags: int, length: int, stream: int, now: float) -> str:
        """One frame from the client: its type, flags, payload length (for DATA, without
        padding) and stream."""
        if self.tripped:
            return self.tripped
        budgets = self.budgets
        if kind == DATA or kind == HEADERS or kind == CONTINUATION:
            if length == 0 and (kind == CONTINUATION or not flags & END_STREAM):
                self.empty_in_a_row += 1
                if self.empty_in_a_row > budgets.empty_frames:
                    return self._trip(EMPTY_FRAMES)
            elif length:
                self.empty_in_a_row = 0
            if kind == HEADERS:
                if stream > self.highest and stream & 1:
                    self.highest = stream
                    self.streams += 1
                    self.opened[stream] = now
                    if len(self.opened) > 4 * budgets.max_streams:
                        return self._trip(OPEN_STREAMS)
                self.block_bytes = length
                self.block_frames = 1
                return self._check_block()
            if kind == CONTINUATION:
                self.block_bytes += length
                self.block_frames += 1
                return self._check_block()
            return ""
        if kind == RST_STREAM:
            return self._reset(stream, now)
        if kind == SETTINGS:
            return "" if self.settings.take(now) else self._trip(SETTINGS_FLOOD)
        if kind == PING:
            return "" if self.pings.take(now) else self._trip(PING_FLOOD)
        if kind == WINDOW_UPDATE:
            self.window_updates += 1
            allowed = 1 + 2 * (self.streams + budgets.window_updates_per_data * self.data_sent)
            return self._trip(WINDOW_UPDATE_FLOOD) if self.window_updates > allowed else ""
        if kind == PRIORITY or kind > CONTINUATION:
            self.priority_frames += 1
            allowed = budgets.priority_per_stream * (1 + self.streams)
            return self._trip(PRIORITY_FLOOD) if self.priority_frames > allowed else ""
        return ""  # PUSH_PROMISE and GOAWAY: the h2 library answers them

    def _check_block(self) -> str:
        budgets = self.budgets
        if self.block_bytes > budgets.header_block:
            return self._trip(HEADER_BLOCK)
        if self.block_frames > budgets.header_block_frames:
            return self._trip(HEADER_BLOCK)
        return ""

    def _reset(self, stream: int, now: float) -> str:
        opened = self.opened.pop(stream, None)
        if opened is not None and now - opened < self.budgets.premature:
            if not self.resets.take(now):
                return self._trip(RAPID_RESET)
        return ""

    # -- what splitter does -------------------------------------------------------------

    def refused(self, stream: int, now: float) -> str:
        """Splitter reset one of the client's streams because of the client (over the
        concurrency limit, a refused head): a reset the client provoked counts as one it
        sent (the variant of Rapid Reset without RST_STREAM frames)."""
        if self.tripped:
            return self.tripped
        self.opened.pop(stream, None)
        return "" if self.resets.take(now) else self._trip(RAPID_RESET)

    def closed(self, stream: int) -> None:
        """A stream is over (both sides ended, or splitter reset it for a reason of its
        own): a later reset of it is not premature."""
        self.opened.pop(stream, None)

    def sent(self, kind: int) -> None:
        """Splitter sent a HEADERS or DATA frame: a client may answer data with PINGs
        (gRPC's bandwidth estimator) and WINDOW_UPDATEs."""
        if kind == DATA:
            self.data_sent += 1
            self.pings.give()
        elif kind == HEADERS:
            self.pings.give()

    def _trip(self, reason: str) -> str:
        self.tripped = reason
        return reason
