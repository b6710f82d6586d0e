"""The live feed (splitter/admin/stream.py): one encoding per message, kinds, bounded queues."""

from __future__ import annotations

import asyncio
import json

import pytest

from splitter.admin.stream import Dropped, Feed, encode


def parse(message: bytes) -> tuple[str, object]:
    head, data, blank = message.split(b"\n", 2)
    assert head.startswith(b"event: ") and data.startswith(b"data: ") and blank == b"\n"
    return head[7:].decode(), json.loads(data[6:])


def test_encode_is_one_event_with_one_data_line() -> None:
    message = encode("event", {"what": "line\nbreak", "n": 1})
    assert message.count(b"\n") == 3  # the newline in the data is escaped by JSON
    assert parse(message) == ("event", {"what": "line\nbreak", "n": 1})


def test_publish_reaches_every_subscriber_that_wants_the_kind() -> None:
    async def main() -> None:
        feed = Feed()
        everything = feed.subscribe()
        rollouts = feed.subscribe({"rollout"})
        assert feed.wants("rollout") and feed.wants("stats")
        feed.publish("stats", {"x": 1})
        feed.publish("rollout", {"id": "r1"})
        assert [parse(m) for m in await everything.next(1)] == [
            ("stats", {"x": 1}),
            ("rollout", {"id": "r1"}),
        ]
        assert [parse(m) for m in await rollouts.next(1)] == [("rollout", {"id": "r1"})]
        feed.unsubscribe(everything)
        assert not feed.wants("stats")

    asyncio.run(main())


def test_next_returns_nothing_after_its_timeout() -> None:
    async def main() -> None:
        feed = Feed()
        subscriber = feed.subscribe()
        assert await subscriber.next(0.01) == []
        feed.publish("weights", {"blue": 1})
        assert len(await subscriber.next(0.01)) == 1

    asyncio.run(main())


def test_a_subscriber_that_falls_behind_is_dropped_not_buffered() -> None:
    async def main() -> None:
        feed = Feed(max_queued=5)
        drops: list[str] = []
        slow = feed.subscribe(on_drop=lambda: drops.append("slow"))
        fast = feed.subscribe()
        for i in range(5):
            feed.publish("event", {"i": i})
            assert len(await fast.next(1)) == 1
        assert not slow.dropped and len(slow.queue) == 5
        feed.publish("event", {"i": 5})  # the sixth, with five waiting: dropped
        assert slow.dropped and drops == ["slow"] and not slow.queue
        assert slow not in feed.subscribers and feed.dropped == 1
        for _ in range(3):
            feed.publish("event", {"big": "x" * 1000})
        assert not slow.queue  # nothing more is kept for it
        with pytest.raises(Dropped):
            await slow.next(1)
        assert len(await fast.next(1)) == 4  # the others go on

    asyncio.run(main())


def test_close_ends_every_stream() -> None:
    async def main() -> None:
        feed = Feed()
        closed: list[int] = []
        subscriber = feed.subscribe(on_drop=lambda: closed.append(1))
        waiting = asyncio.ensure_future(subscriber.next(10))
        await asyncio.sleep(0)
        feed.close()
        with pytest.raises(Dropped):
            await waiting
        assert closed == [1] and not feed.subscribers

    asyncio.run(main())


def test_publish_with_nobody_listening_encodes_nothing() -> None:
    feed = Feed()
    feed.publish("stats", object())  # not serialisable: never encoded
