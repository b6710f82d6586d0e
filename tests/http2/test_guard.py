"""The flood guard (splitter.http2.guard): each flood of section 14 trips it, a busy
legitimate client never does. Time is a number passed in: no test sleeps."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.config import Limits
from splitter.http2.guard import (
    CONTINUATION,
    DATA,
    EMPTY_FRAMES,
    END_HEADERS,
    END_STREAM,
    FRAME_SIZE,
    HEADER_BLOCK,
    HEADERS,
    OPEN_STREAMS,
    PADDED,
    PING,
    PING_FLOOD,
    PRIORITY,
    PRIORITY_FLOOD,
    RAPID_RESET,
    RST_STREAM,
    SETTINGS,
    SETTINGS_FLOOD,
    WINDOW_UPDATE,
    WINDOW_UPDATE_FLOOD,
    Budgets,
    FloodGuard,
)

BUDGETS = Budgets.for_limits(Limits())
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ACK = 0x1


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    header = len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big")
    return header + payload


def guard(now: float = 0.0) -> FloodGuard:
    return FloodGuard(BUDGETS, now)


def request(g: FloodGuard, stream: int, now: float, end_stream: bool = True) -> str:
    return g.received(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), 40, stream, now)


# -- each flood trips it -------------------------------------------------------------------


def test_rapid_reset_trips_within_one_read_of_the_attack() -> None:
    g = guard()
    now = 5.0  # the attack's first read: thousands of HEADERS and RST_STREAM at once
    stream = 1
    for _ in range(BUDGETS.resets):  # the burst: a browser leaving a page is far below it
        assert request(g, stream, now) == ""
        assert g.received(RST_STREAM, 0, 4, stream, now) == ""
        stream += 2
    assert request(g, stream, now) == ""
    assert g.received(RST_STREAM, 0, 4, stream, now) == RAPID_RESET
    assert g.tripped == RAPID_RESET
    assert g.received(PING, 0, 8, 0, now) == RAPID_RESET  # stays tripped


def test_resets_a_splitter_provoked_count_as_the_clients() -> None:
    g = guard()
    for i in range(BUDGETS.resets):
        request(g, 2 * i + 1, 0.0)
        assert g.refused(2 * i + 1, 0.0) == ""
    request(g, 2 * BUDGETS.resets + 1, 0.0)
    assert g.refused(2 * BUDGETS.resets + 1, 0.0) == RAPID_RESET


def test_the_reset_budget_refills_at_its_rate() -> None:
    g = guard()
    stream = 1
    # 30 premature resets a second, under the 33 a second that refill: never trips.
    for second in range(200):
        for i in range(30):
            now = second + i / 30
            request(g, stream, now)
            assert g.received(RST_STREAM, 0, 4, stream, now + 0.01) == ""
            stream += 2
    # 100 a second drains the burst (1000) at 67 a second net: trips within 16 s.
    start = 200.0
    for n in range(100 * 16):
        now = start + n / 100
        request(g, stream, now)
        if g.received(RST_STREAM, 0, 4, stream, now + 0.001):
            break
        stream += 2
    assert g.tripped == RAPID_RESET and 10 < now - start < 16


def test_late_resets_are_never_premature() -> None:
    g = guard()
    for i in range(5000):  # cancelled downloads and streaming calls, each over a second old
        request(g, 2 * i + 1, i * 0.001)
        assert g.received(RST_STREAM, 0, 4, 2 * i + 1, i * 0.001 + 1.5) == ""
    # A reset of a stream that is over (or never was) costs nothing either.
    request(g, 10001, 10.0)
    g.closed(10001)
    assert g.received(RST_STREAM, 0, 4, 10001, 10.0) == ""
    assert g.received(RST_STREAM, 0, 4, 99999, 10.0) == ""


def test_open_streams_are_bounded_even_when_nothing_is_reset() -> None:
    g = guard()
    for i in range(4 * BUDGETS.max_streams):
        assert request(g, 2 * i + 1, 0.0, end_stream=False) == ""
    assert request(g, 8 * BUDGETS.max_streams + 1, 0.0) == OPEN_STREAMS


def test_settings_flood() -> None:
    g = guard()
    results = [g.received(SETTINGS, 0, 6, 0, 0.001 * i) for i in range(200)]
    assert SETTINGS_FLOOD in results and results.index(SETTINGS_FLOOD) <= 101


def test_ping_flood() -> None:
    g = guard()
    results = [g.received(PING, 0, 8, 0, 0.0001 * i) for i in range(200)]
    assert PING_FLOOD in results and results.index(PING_FLOOD) <= 101


def test_each_frame_splitter_sends_earns_one_ping() -> None:
    g = guard()
    for i in range(5000):  # gRPC's BDP estimator: one ping per data burst it receives
        g.sent(DATA)
        assert g.received(PING, 0, 8, 0, i * 0.0001) == ""
    results = [g.received(PING, 0, 8, 0, 0.5 + 0.0001 * i) for i in range(200)]
    assert PING_FLOOD in results
    other = guard()
    for _ in range(BUDGETS.pings):
        assert other.received(PING, 0, 8, 0, 0.0) == ""
    other.sent(SETTINGS)  # only response frames earn pings
    other.sent(WINDOW_UPDATE)
    assert other.received(PING, 0, 8, 0, 0.0) == PING_FLOOD


def test_empty_data_frames_in_a_row() -> None:
    g = guard()
    request(g, 1, 0.0, end_stream=False)
    results = [g.received(DATA, 0, 0, 1, 0.0) for _ in range(BUDGETS.empty_frames + 1)]
    assert results[-1] == EMPTY_FRAMES and results[:-1] == [""] * BUDGETS.empty_frames


def test_empty_frames_with_data_between_or_ending_the_stream_are_fine() -> None:
    g = guard()
    request(g, 1, 0.0, end_stream=False)
    for _ in range(1000):
        assert g.received(DATA, 0, 0, 1, 0.0) == ""
        assert g.received(DATA, 0, 100, 1, 0.0) == ""
    for i in range(1000):
        request(g, 2 * i + 3, 0.0, end_stream=False)
        assert g.received(DATA, END_STREAM, 0, 2 * i + 3, 0.0) == ""
        g.closed(2 * i + 3)


def test_empty_continuation_frames() -> None:
    g = guard()
    assert g.received(HEADERS, 0, 30, 1, 0.0) == ""
    results = [g.received(CONTINUATION, 0, 0, 1, 0.0) for _ in range(BUDGETS.empty_frames + 1)]
    assert results[-1] == EMPTY_FRAMES


def test_a_header_block_that_never_ends() -> None:
    g = guard()
    assert g.received(HEADERS, 0, 16384, 1, 0.0) == ""
    verdict = ""
    frames = 1
    while not verdict and frames < 1000:
        verdict = g.received(CONTINUATION, 0, 16384, 1, 0.0)
        frames += 1
    assert verdict == HEADER_BLOCK
    assert frames * 16384 <= BUDGETS.header_block + 16384


def test_a_header_block_in_tiny_frames() -> None:
    g = guard()
    assert g.received(HEADERS, 0, 1, 1, 0.0) == ""
    results = [g.received(CONTINUATION, 0, 1, 1, 0.0) for _ in range(BUDGETS.header_block_frames)]
    assert results[-1] == HEADER_BLOCK and results[-2] == ""


def test_a_header_block_at_the_limits_passes() -> None:
    g = guard()
    # The largest list headers.request_head accepts, HPACK-encoded as literals (larger
    # than the fields), in 16 KiB frames.
    block = 65536 + 8192 + 9 * 100
    assert g.received(HEADERS, 0, 16384, 1, 0.0) == ""
    sent = 16384
    while block - sent > 16384:
        assert g.received(CONTINUATION, 0, 16384, 1, 0.0) == ""
        sent += 16384
    assert g.received(CONTINUATION, END_HEADERS, block - sent, 1, 0.0) == ""


def test_priority_flood() -> None:
    g = guard()
    results = [g.received(PRIORITY, 0, 5, 1, 0.0) for _ in range(BUDGETS.priority_per_stream + 1)]
    assert results[-1] == PRIORITY_FLOOD and results[-2] == ""


def test_unknown_extension_frames_share_the_priority_budget() -> None:
    g = guard()
    results = [g.received(0x10, 0, 5, 0, 0.0) for _ in range(BUDGETS.priority_per_stream + 1)]
    assert results[-1] == PRIORITY_FLOOD


def test_window_update_flood() -> None:
    g = guard()
    # Before any stream or data: one update (a larger connection window) is all there is.
    assert g.received(WINDOW_UPDATE, 0, 4, 0, 0.0) == ""
    assert g.received(WINDOW_UPDATE, 0, 4, 0, 0.0) == WINDOW_UPDATE_FLOOD
    g = guard()
    request(g, 1, 0.0)
    g.sent(DATA)
    allowed = 1 + 2 * (1 + BUDGETS.window_updates_per_data * 1)
    results = [g.received(WINDOW_UPDATE, 0, 4, 1, 0.0) for _ in range(allowed + 1)]
    assert results[-1] == WINDOW_UPDATE_FLOOD and results[-2] == ""


def test_window_updates_follow_the_data_splitter_sends() -> None:
    g = guard()
    request(g, 1, 0.0)
    for _ in range(10000):
        g.sent(DATA)
        assert g.received(WINDOW_UPDATE, 0, 4, 0, 0.0) == ""
        assert g.received(WINDOW_UPDATE, 0, 4, 1, 0.0) == ""
    extra = [g.received(WINDOW_UPDATE, 0, 4, 1, 0.0) for _ in range(200_000)]
    assert WINDOW_UPDATE_FLOOD in extra


# -- a busy legitimate client never trips it -----------------------------------------------


def test_a_busy_legitimate_client_never_trips_it() -> None:
    g = guard()
    now = 0.0
    assert g.received(SETTINGS, 0, 18, 0, now) == ""
    assert g.received(WINDOW_UPDATE, 0, 4, 0, now) == ""  # a larger connection window
    assert g.received(SETTINGS, ACK, 0, 0, now) == ""
    stream = 1
    next_ping = 1.0
    for round_ in range(300):  # 5 minutes of 128 concurrent streams, round after round
        batch = list(range(stream, stream + 256, 2))
        stream += 256
        for s in batch:
            assert g.received(PRIORITY, 0, 5, s, now) == ""  # a browser's priority tree
            assert request(g, s, now, end_stream=False) == ""
            assert g.received(DATA, 0, 1000, s, now) == ""
            assert g.received(DATA, END_STREAM, 0, s, now) == ""  # an empty last frame
        now += 0.5
        for s in batch:  # each answered: HEADERS, two DATA frames, and the client's updates
            g.sent(HEADERS)
            g.sent(DATA)
            g.sent(DATA)
            assert g.received(WINDOW_UPDATE, 0, 4, s, now) == ""
            assert g.received(WINDOW_UPDATE, 0, 4, 0, now) == ""
            g.closed(s)
        if round_ % 20 == 19:  # now and then the user leaves a page: every stream cancelled
            cancelled = list(range(stream, stream + 256, 2))
            stream += 256
            for s in cancelled:
                assert request(g, s, now) == ""
            now += 0.2
            for s in cancelled:
                assert g.received(RST_STREAM, 0, 4, s, now) == ""
        if round_ % 100 == 50:
            assert g.received(SETTINGS, 0, 6, 0, now) == ""  # a window change
        while next_ping <= now:
            assert g.received(PING, 0, 8, 0, next_ping) == ""
            next_ping += 1.0
        now += 0.5
    assert g.tripped == "" and not g.opened


# -- reading frame headers out of the bytes ------------------------------------------------


def _connection(*frames: bytes) -> bytes:
    return PREFACE + b"".join(frames)


def test_the_bytes_are_read_frame_by_frame_whatever_the_reads() -> None:
    data = _connection(
        frame(SETTINGS, 0, 0, bytes(12)),
        frame(HEADERS, END_HEADERS, 1, bytes(30)),
        frame(DATA, PADDED, 1, b"\x05" + bytes(5)),  # only padding: an empty frame
        frame(DATA, PADDED, 1, b"\x05" + bytes(5)),
        frame(DATA, PADDED, 1, b"\x05" + bytes(5)),
        frame(DATA, PADDED, 1, b"\x05" + bytes(5)),
        frame(DATA, PADDED, 1, b"\x05" + bytes(5)),
    )
    whole = guard()
    assert whole.feed(data, 0.0) == EMPTY_FRAMES
    last_pad_length = len(data) - 6  # the byte that tells the fifth frame is all padding
    for size in (1, 2, 7, 9, 10, 13, 64):
        g = guard()
        verdicts = [g.feed(data[i : i + size], 0.0) for i in range(0, len(data), size)]
        first = next(i for i, verdict in enumerate(verdicts) if verdict)
        assert first == last_pad_length // size, size
        assert set(verdicts[first:]) == {EMPTY_FRAMES}


def test_payloads_are_skipped_not_read_as_frames() -> None:
    # A DATA payload that looks like SETTINGS frames is body, not SETTINGS.
    fake = frame(SETTINGS, 0, 0) * 500
    data = _connection(
        frame(HEADERS, END_HEADERS, 1, bytes(20)),
        frame(DATA, 0, 1, fake[:16384]),
        frame(DATA, PADDED | END_STREAM, 1, b"\x03" + fake[:100] + bytes(3)),
    )
    g = guard()
    assert g.feed(data, 0.0) == ""
    assert g.settings.tokens == BUDGETS.settings


def test_a_frame_over_the_max_frame_size_trips_at_its_header() -> None:
    # 16 MiB announced: the verdict comes with the header's last byte, before any payload.
    header = ((1 << 24) - 1).to_bytes(3, "big") + bytes([0xAA, 0]) + bytes(4)
    g = guard()
    assert g.feed(PREFACE + header[:8], 0.0) == ""
    assert g.feed(header[8:], 0.0) == FRAME_SIZE
    # The largest frame SETTINGS_MAX_FRAME_SIZE allows passes; one byte more does not.
    largest = _connection(
        frame(HEADERS, END_HEADERS, 1, bytes(20)), frame(DATA, 0, 1, bytes(16384))
    )
    assert guard().feed(largest, 0.0) == ""
    assert guard().feed(_connection(frame(DATA, 0, 1, bytes(16385))), 0.0) == FRAME_SIZE


_FRAMES = st.lists(
    st.tuples(
        st.sampled_from(
            [DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE, CONTINUATION, 0x10]
        ),
        st.integers(min_value=0, max_value=255),
        st.integers(min_value=0, max_value=9),
        st.binary(max_size=40),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(frames=_FRAMES, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6))
def test_any_split_of_the_bytes_gives_the_same_accounting(
    frames: list[tuple[int, int, int, bytes]], cuts: list[int]
) -> None:
    data = _connection(*[frame(k, f, s, p) for k, f, s, p in frames])
    whole = guard()
    expected = whole.feed(data, 0.0)
    g = guard()
    bounds = sorted({0, len(data), *[c % (len(data) + 1) for c in cuts]})
    verdict = ""
    for start, end in itertools.pairwise(bounds):
        verdict = g.feed(data[start:end], 0.0) or verdict
    assert verdict == expected
    assert (g.streams, g.window_updates, g.priority_frames, g.empty_in_a_row) == (
        whole.streams,
        whole.window_updates,
        whole.priority_frames,
        whole.empty_in_a_row,
    )


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_bytes_give_a_verdict_never_an_exception(data: bytes) -> None:
    assert guard().feed(data, 0.0) in (
        "",
        EMPTY_FRAMES,
        PRIORITY_FLOOD,
        WINDOW_UPDATE_FLOOD,
        HEADER_BLOCK,
        SETTINGS_FLOOD,
        PING_FLOOD,
        FRAME_SIZE,
    )
