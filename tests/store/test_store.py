"""The store's document, the state file as a store, and the controller's compare-and-set
loop, in-process (the Redis side runs in tests/e2e/test_store.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from splitter.config import parse
from splitter.control.controller import Controller
from splitter.control.fleet import merge_drained
from splitter.errors import StoreConflict, WeightError
from splitter.observe.stats import Drained
from splitter.state import StateFile
from splitter.store import Document, Edit, state_document, write_state_document
from splitter.store.filestore import FileStore
from splitter.store.redisstore import _classes, _drained, _pairs

CONFIG = {
    "listen": "127.0.0.1:8080",
    "pools": {
        "blue": {"weight": 100, "backends": ["http://127.0.0.1:5001"]},
        "green": {"weight": 0, "backends": ["http://127.0.0.1:5002"]},
    },
}


def test_the_state_file_keeps_the_document_in_its_own_keys() -> None:
    data: dict[str, Any] = {"version": 1, "cookie_secret": "ab"}
    doc = Document(weights={"blue": 1.0}, file_weights={"blue": 2.0}, time="t",
                   rollout={"object": {}}, rollouts=[{"id": "x"}])  # fmt: skip
    write_state_document(data, doc)
    assert data["runtime"] == {"weights": {"blue": 1.0}, "file_weights": {"blue": 2.0},
                               "time": "t"}  # fmt: skip
    assert state_document(data) == doc
    write_state_document(data, doc.replace(weights=None, rollout=None))
    assert "runtime" not in data and "rollout" not in data  # as before: no runtime weights
    assert data["file_weights"] == {"blue": 2.0} and data["cookie_secret"] == "ab"
    assert state_document(data) == Document(file_weights={"blue": 2.0}, rollouts=[{"id": "x"}])


def test_a_state_file_of_before_reads_as_a_document() -> None:
    runtime = {"weights": {"blue": 0}, "file_weights": {"blue": 100}, "time": "t"}
    doc = state_document({"version": 1, "runtime": runtime, "rollouts": "garbage"})
    assert (doc.weights, doc.file_weights, doc.rollouts) == ({"blue": 0}, {"blue": 100}, [])


@pytest.mark.parametrize(
    ("rollout", "active"),
    [
        (None, None),
        ({"object": {"status": "progressing", "pool": "canary"}}, "canary"),
        ({"object": {"status": "paused", "pool": "canary"}}, "canary"),
        ({"object": {"status": "rolled_back", "pool": "canary"}}, None),
        ({"object": "not an object"}, None),
    ],
)
def test_the_active_rollout_of_a_document(rollout: Any, active: str | None) -> None:
    assert Document(rollout=rollout).rollout_active == active


def test_edits_chained_are_done_in_order_and_undone_backwards() -> None:
    calls: list[str] = []

    def edit(n: str) -> Edit:
        return Edit(Document(time=n), lambda: calls.append(f"done {n}"),
                    lambda: calls.append(f"undo {n}"))  # fmt: skip

    first, second = edit("1"), edit("2")
    both = first.then(second)
    assert both.doc.time == "2" and first.then(None) is first
    both.done()
    both.undo()
    assert calls == ["done 1", "done 2", "undo 2", "undo 1"]


def test_the_file_store_writes_only_at_its_revision(tmp_path: Path) -> None:
    state = StateFile(str(tmp_path / "state.json"))
    store = FileStore(state)

    async def run() -> None:
        revision, doc = await store.load()
        assert (revision, doc) == (0, Document())
        assert await store.save(Document(weights={"blue": 5.0}), 0) == 1
        with pytest.raises(StoreConflict):
            await store.save(Document(weights={"blue": 6.0}), 0)

    asyncio.run(run())
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["runtime"]["weights"] == {"blue": 5.0}


def _controller(store: FileStore, state: StateFile) -> Controller:
    return Controller(parse(CONFIG, env={}), state, lambda config, weights: None, store)


def test_a_change_computed_on_a_stale_document_is_computed_again_on_the_newer_one(
    tmp_path: Path,
) -> None:
    """Two controllers writing to one store: the second reads the first's write when its
    own loses, and changes only the pool it names."""
    state = StateFile(str(tmp_path / "state.json"))
    store = FileStore(state)
    first, second = _controller(store, state), _controller(store, state)

    async def run() -> None:
        await first.start()
        await second.start()
        assert await first.set_weights({"green": 30}) == {"blue": 100, "green": 30}
        assert second.revision < store.revision  # stale: its write will conflict
        assert await second.set_weights({"blue": 70}) == {"blue": 70, "green": 30}
        await first.refresh()
        assert first.weights == {"blue": 70, "green": 30}
        with pytest.raises(WeightError) as refused:
            await first.set_weights({"blue": 0, "green": 0})
        assert refused.value.status == 409

    asyncio.run(run())
    assert state_document(state.data).weights == {"blue": 70, "green": 30}
    assert [e["what"] for e in second.events] == ["weights set"]


def test_statistics_drained_add_up_and_cross_the_store_unchanged() -> None:
    into: Drained = {}
    one: Drained = {
        7: {"blue": ([1, 0, 1, 0, 0, 0, 1, 10], {3: 1}, {}, {"GET /": ([1, 0], {3: 1})})}
    }
    two: Drained = {
        7: {"blue": ([2, 1, 2, 1, 0, 0, 0, 20], {3: 1, 4: 1}, {9: 1},
                     {"GET /": ([1, 1], {3: -1, 4: 1}), "!GET /api": ([1, 0], {9: 1})})},
        8: {"none": ([1, 1, 0, 0, 0, 0, 0, 0], {}, {2: 1}, {})},
    }  # fmt: skip
    merge_drained(into, one)
    merge_drained(into, two)
    assert into[7]["blue"] == (
        [3, 1, 3, 1, 0, 0, 1, 30],
        {3: 2, 4: 1},
        {9: 1},
        {"GET /": ([2, 1], {3: 0, 4: 1}), "!GET /api": ([1, 0], {9: 1})},
    )
    assert one[7]["blue"][0] == [1, 0, 1, 0, 0, 0, 1, 10]  # the inputs are left alone
    assert one[7]["blue"][3] == {"GET /": ([1, 0], {3: 1})}
    rows = [
        [second, pool, counts, _pairs(judged), _pairs(other), _classes(classes)]
        for second, pools in into.items()
        for pool, (counts, judged, other, classes) in pools.items()
    ]
    assert _drained(json.loads(json.dumps(rows))) == into
    # Rows of a replica of an earlier version (no classes) still read.
    assert _drained([[7, "blue", [1] * 8, [], []]]) == {7: {"blue": ([1] * 8, {}, {}, {})}}
    # What a replica never writes is refused, not taken in.
    for bad in (
        [[7, "blue", [1, 2], [], []]],  # counts of the wrong length
        [[7, "blue", [1] * 8, [1], []]],  # a histogram of odd length
        [[7, "blue", [1] * 8, [], [], {"GET /": [1, "x", []]}]],
        [[7, "blue", [1] * 8, [], [], {f"GET /{i}": [1, 0, []] for i in range(500)}]],
    ):
        with pytest.raises((ValueError, TypeError, IndexError)):
            _drained(bad)
