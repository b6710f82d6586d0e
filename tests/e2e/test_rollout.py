"""End to end: rollouts (docs/rollouts.md) through a real `splitter run`, real Flask
backends under gunicorn that fail or slow down on purpose, and sticky clients.

Timings are short for tests (hold 2 s, warmup 1 s) and the floor min_error_rate is 5%
where a clean candidate must pass quickly (at 0.5% a clean pass needs ~1,250 candidate
requests; the judge's own tests show that figure).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.loadgen import run_load
from tests.support import (
    Backend,
    SplitterProc,
    admin_api,
    http_request,
    pools_config,
    run_cli,
    wait_until,
    write_config,
)
from tests.traffic import Traffic

pytestmark = pytest.mark.slow

FAST = {
    "hold": "2s",
    "max": "30s",
    "analysis": {"warmup": "1s", "min_error_rate": 0.05, "latency_floor": "50ms"},
}


def _api(sp: SplitterProc, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return admin_api(sp, method, path, body)


def _rollout(sp: SplitterProc) -> dict[str, Any]:
    status, body = _api(sp, "GET", "/api/v1/rollout")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def _wait_status(sp: SplitterProc, statuses: set[str], timeout: float) -> dict[str, Any]:
    return wait_until(lambda: (r := _rollout(sp)) and r["status"] in statuses and r, timeout)


def _fault(path: Path, fail_rate: float = 0.0, delay: float = 0.0) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fail_rate": fail_rate, "delay": delay}))
    os.replace(tmp, path)


@pytest.fixture
def pools(backend_factory: Callable[..., Backend], tmp_path: Path) -> dict[str, Backend]:
    """blue (the baseline), canary and green, each with a fault file of its own."""
    out = {}
    for name in ("blue", "canary", "green"):
        fault = tmp_path / f"{name}.fault"
        _fault(fault)
        out[name] = backend_factory(name, env={"FAULT_FILE": str(fault)})
    return out


def _config(pools: dict[str, Backend], **extra: Any) -> dict[str, Any]:
    extra.setdefault("rollouts", FAST)
    return pools_config(
        dict(pools),
        {"blue": 100, "canary": 0, "green": 0},
        sticky={"cookie": "splitter"},
        override={"header": "X-Splitter-Pool"},
        health_check={"interval": "1s"},
        **extra,
    )


# -- the texts ------------------------------------------------------------------------


def test_the_texts_name_the_pool_once(
    raw_backend: Callable[..., Any], splitter_factory: Callable[..., SplitterProc]
) -> None:
    """A canary rollout of the pool named canary: its history, its events and `ctl rollout
    status` say "rollout of canary" and "canary strategy", never "canary of canary"."""
    sp = splitter_factory(
        pools_config({"blue": raw_backend(), "canary": raw_backend()}, {"blue": 100})
    )
    status, started = _api(sp, "POST", "/api/v1/rollout", {"pool": "canary", "steps": [20, 100]})
    assert status == 201, started
    assert [(h["what"], h["detail"]) for h in started["history"]] == [
        ("started", "canary strategy"), ("step", "step 1 of 2: canary at 20%"),
    ]  # fmt: skip
    _, events = _api(sp, "GET", "/api/v1/events")
    texts = [e["what"] for e in events["events"] if e["source"] == "rollout"]
    assert texts[0] == "rollout of canary started: canary strategy", texts
    shown = run_cli("ctl", "--admin", sp.admin_url, "rollout", "status")
    assert shown.stdout.splitlines()[0] == (
        f"rollout {started['id']} of canary: canary strategy, progressing (step 1 of 2)"
    )
    assert all("canary of canary" not in text for text in [*texts, shown.stdout])


# -- the canary process ---------------------------------------------------------------


def test_healthy_canary_is_promoted_step_by_step(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    sp = splitter_factory(_config(pools))
    with Traffic(sp.proxy_port, clients=300, rate=150, seconds=90) as traffic:
        status, started = _api(sp, "POST", "/api/v1/rollout",
                               {"pool": "canary", "steps": [20, 50, 100]})  # fmt: skip
        assert status == 201, started
        assert started["status"] == "progressing" and started["weights"]["canary"] == 20
        assert started["start_weights"] == {"blue": 100, "canary": 0, "green": 0}
        t0 = time.monotonic()
        final = _wait_status(sp, {"promoted", "rolled_back", "paused", "cancelled"}, 80)
        took = time.monotonic() - t0
    assert final["status"] == "promoted", final
    assert final["weights"] == {"blue": 0, "canary": 100, "green": 0}
    steps = [h["detail"] for h in final["history"] if h["what"] == "step"]
    assert steps[0].startswith("step 1 of 3") and steps[1].startswith("step 2 of 3"), steps
    assert final["analysis"]["verdict"] == "pass"
    assert traffic.statuses()[0] == 0 and set(traffic.statuses()) == {200}
    print(f"promoted through [20, 50, 100] in {took:.1f}s at 150 rps")
    _, weights = _api(sp, "GET", "/api/v1/weights")
    assert weights == {"blue": 0, "canary": 100, "green": 0}
    _, events = _api(sp, "GET", "/api/v1/events")
    rollout_events = [e for e in events["events"] if e["source"] == "rollout"]
    assert [e["what"].split(":")[0] for e in rollout_events] == [
        "rollout of canary started",
        "rollout of canary step",
        "rollout of canary step",
        "rollout of canary promoted",
    ]


def test_canary_failing_half_its_requests_rolls_back_quickly(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc], tmp_path: Path
) -> None:
    _fault(tmp_path / "canary.fault", fail_rate=0.5)
    sp = splitter_factory(_config(pools, rollouts={**FAST, "analysis": {"warmup": "0s"}}))
    with Traffic(sp.proxy_port, clients=300, rate=150, seconds=60) as traffic:
        assert _api(sp, "POST", "/api/v1/rollout", {"pool": "canary"})[0] == 201
        final = _wait_status(sp, {"rolled_back", "promoted", "paused"}, 40)
        served = traffic.count(pool="canary")
    assert final["status"] == "rolled_back", final
    assert final["analysis"]["verdict"] == "fail"
    assert final["weights"] == {"blue": 100, "canary": 0, "green": 0}
    assert served < 300, f"the canary served {served} requests before the rollback"
    print(f"a canary failing 50% was rolled back after serving {served} requests "
          f"(judged: {final['analysis']['candidate']})")  # fmt: skip


def test_canary_adding_200ms_rolls_back(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc], tmp_path: Path
) -> None:
    _fault(tmp_path / "canary.fault", delay=0.2)
    sp = splitter_factory(_config(pools))
    with Traffic(sp.proxy_port, clients=300, rate=100, seconds=60, threads=8) as traffic:
        assert _api(sp, "POST", "/api/v1/rollout", {"pool": "canary"})[0] == 201
        final = _wait_status(sp, {"rolled_back", "promoted", "paused"}, 40)
        served = traffic.count(pool="canary")
    assert final["status"] == "rolled_back", final
    assert final["analysis"]["candidate"]["slow"] > 0
    assert "slow" in final["reason"], final["reason"]
    print(f"a canary 200 ms slower was rolled back after serving {served} requests")


def test_no_traffic_pauses_with_the_requests_a_verdict_needs(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    sp = splitter_factory(_config(pools))
    body = {"pool": "canary", "steps": [{"weight": 10, "hold": "1s", "max": "3s"}, 100]}
    assert _api(sp, "POST", "/api/v1/rollout", body)[0] == 201
    final = _wait_status(sp, {"paused"}, 15)
    assert final["analysis"]["verdict"] == "inconclusive"
    assert final["analysis"]["needed_requests"] > 0
    assert (
        f"about {final['analysis']['needed_requests']} more candidate requests" in (final["reason"])
    ), final["reason"]
    assert final["weights"]["canary"] == 10  # the weights stay where they are


def test_manual_gate_waits_for_resume(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    sp = splitter_factory(_config(pools))
    with Traffic(sp.proxy_port, clients=200, rate=150, seconds=90):
        body = {"pool": "canary", "steps": [30, {"pause": True}, 60, 100]}
        assert _api(sp, "POST", "/api/v1/rollout", body)[0] == 201
        gate = _wait_status(sp, {"paused", "rolled_back"}, 40)
        assert gate["status"] == "paused" and gate["step"] == 1, gate
        assert "manual gate" in gate["reason"]
        time.sleep(3)
        assert _rollout(sp)["status"] == "paused"  # it waits
        assert _rollout(sp)["weights"]["canary"] == 30
        status, resumed = _api(sp, "POST", "/api/v1/rollout/resume")
        assert status == 200 and resumed["step"] == 2 and resumed["weights"]["canary"] == 60
        final = _wait_status(sp, {"promoted", "rolled_back", "paused"}, 40)
    assert final["status"] == "promoted", final


def test_abort_restores_the_start_weights_and_controls_answer_409_after(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    config = _config(pools)
    config["pools"]["green"]["weight"] = 20
    sp = splitter_factory(config)
    assert _api(sp, "POST", "/api/v1/rollout", {"pool": "canary"})[0] == 201
    _, running = _api(sp, "GET", "/api/v1/weights")
    assert running["canary"] == 5 and abs(running["blue"] + running["green"] - 95) < 1e-6
    assert abs(running["blue"] / running["green"] - 100 / 20) < 1e-6  # shared as at the start
    status, aborted = _api(sp, "POST", "/api/v1/rollout/abort")
    assert status == 200 and aborted["status"] == "rolled_back" and aborted["reason"] == "aborted"
    _, weights = _api(sp, "GET", "/api/v1/weights")
    assert weights == {"blue": 100, "canary": 0, "green": 20}
    for action in ("pause", "resume", "promote", "abort"):
        assert _api(sp, "POST", f"/api/v1/rollout/{action}")[0] == 409


def test_manual_changes_during_a_rollout_are_409_and_a_file_edit_cancels_it(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    sp = splitter_factory(_config(pools))
    assert _api(sp, "POST", "/api/v1/rollout", {"pool": "canary"})[0] == 201
    assert _api(sp, "PUT", "/api/v1/weights", {"blue": 50})[0] == 409
    assert _api(sp, "POST", "/api/v1/switch", {"pool": "green"})[0] == 409
    assert _api(sp, "POST", "/api/v1/rollout", {"pool": "green"})[0] == 409
    assert sp.config is not None
    edited = json.loads(json.dumps(sp.config))
    edited["pools"]["green"]["weight"] = 10
    write_config(sp.config_path, edited)
    final = _wait_status(sp, {"cancelled"}, 10)
    assert "file" in final["reason"]
    _, weights = _api(sp, "GET", "/api/v1/weights")
    assert weights == {"blue": 100, "canary": 0, "green": 10}  # the file's weights stand
    assert _api(sp, "PUT", "/api/v1/weights", {"blue": 50})[0] == 200


def test_bad_rollout_requests_are_refused_and_change_nothing(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    sp = splitter_factory(_config(pools))
    assert _api(sp, "GET", "/api/v1/rollout")[0] == 404
    bad = [
        [], {"pool": "canary", "steps": [50, 20]}, {"pool": "canary", "steps": [0]},
        {"pool": "canary", "steps": [101]}, {"pool": "canary", "strategy": "linear"},
        {"pool": "canary", "surprise": 1},
        {"pool": "canary", "steps": [{"weight": 5, "hold": "x"}]},
        {"pool": "canary", "analysis": {"confidence": 2}}, {"pool": "canary", "steps": "5,25"},
        {"pool": "canary", "strategy": "bluegreen", "steps": [5]},
    ]  # fmt: skip
    for body in bad:
        status, answer = _api(sp, "POST", "/api/v1/rollout", body)
        assert status == 400, (body, status, answer)
        assert "error" in answer
    assert _api(sp, "POST", "/api/v1/rollout", {"pool": "nope"})[0] == 404
    assert _api(sp, "POST", "/api/v1/rollout", {"pool": "blue"})[0] == 409  # the only one > 0
    assert _api(sp, "GET", "/api/v1/rollout")[0] == 404
    assert _api(sp, "GET", "/api/v1/rollouts")[1] == {"rollouts": []}
    _, weights = _api(sp, "GET", "/api/v1/weights")
    assert weights == {"blue": 100, "canary": 0, "green": 0}


def test_rollout_survives_a_kill_and_goes_on_at_the_same_step(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    sp = splitter_factory(_config(pools))
    body = {"pool": "canary", "steps": [{"weight": 25, "hold": "1h", "max": "2h"}, 100]}
    assert _api(sp, "POST", "/api/v1/rollout", body)[0] == 201
    before = _rollout(sp)
    sp.kill()
    again = splitter_factory(sp.config_path)
    after = _rollout(again)
    assert (after["id"], after["status"], after["step"]) == (before["id"], "progressing", 0)
    assert after["weights"] == before["weights"] == {"blue": 75, "canary": 25, "green": 0}
    assert after["history"][-1]["what"] == "restarted"
    _, weights = _api(again, "GET", "/api/v1/weights")
    assert weights == {"blue": 75, "canary": 25, "green": 0}
    assert _api(again, "POST", "/api/v1/rollout/promote", {"full": True})[1]["status"] == (
        "promoted"
    )


def test_rolled_back_canary_clients_return_to_the_baseline_and_no_one_else_moves(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc], tmp_path: Path
) -> None:
    sp = splitter_factory(_config(pools))
    with Traffic(sp.proxy_port, clients=200, rate=150, seconds=90) as traffic:
        body = {"pool": "canary", "steps": [{"weight": 30, "hold": "1h", "max": "2h"}, 100]}
        assert _api(sp, "POST", "/api/v1/rollout", body)[0] == 201
        time.sleep(4)
        before = traffic.pools_of_clients(since=time.monotonic() - 2)
        assert set(before.values()) == {"blue", "canary"}
        _fault(tmp_path / "canary.fault", fail_rate=1.0)
        final = _wait_status(sp, {"rolled_back"}, 30)
        rolled_back_at = time.monotonic()
        time.sleep(4)
        after = traffic.pools_of_clients(since=rolled_back_at + 0.5)
    assert final["status"] == "rolled_back"
    moved = {c for c in before if c in after and before[c] != after[c]}
    was_canary = {c for c, p in before.items() if p == "canary"}
    assert moved == was_canary & set(after), "only the canary's clients changed pool"
    assert all(after[c] == "blue" for c in was_canary if c in after)
    assert all(after[c] == "blue" for c, p in before.items() if p == "blue" and c in after)


def test_a_whole_rollout_under_64_connections_fails_no_request(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    # What is tested is that no request fails across the weight changes. Both pools are the
    # same backend, but 64 connections on a loaded 2-core machine can starve one of them
    # for a while: slowness is left out of this verdict (a floor of 2 s), errors are not.
    slow_ok = {**FAST, "analysis": {**FAST["analysis"], "latency_floor": "2s"}}
    sp = splitter_factory(_config(pools, rollouts=slow_ok))
    result: list[Any] = []

    def load() -> None:
        result.append(run_load(sp.proxy_port, connections=64, total=200_000, duration=25))

    loader = threading.Thread(target=load)
    loader.start()
    time.sleep(0.5)
    assert _api(sp, "POST", "/api/v1/rollout", {"pool": "canary", "steps": [20, 50, 100]})[0] == 201
    final = _wait_status(sp, {"promoted", "rolled_back", "paused"}, 25)
    loader.join(40)
    [load_result] = result
    assert final["status"] == "promoted", final
    assert load_result.failed == 0 and load_result.connect_errors == 0, load_result.summary()
    assert set(load_result.statuses) == {200}, load_result.statuses


# -- the blue-green process -----------------------------------------------------------


def test_faulty_preview_never_switches(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc], tmp_path: Path
) -> None:
    _fault(tmp_path / "green.fault", fail_rate=0.5)
    sp = splitter_factory(_config(pools))
    body = {"pool": "green", "strategy": "bluegreen", "auto_promote": True, "keep": "5s",
            "preview": {"hold": "2s", "max": "30s"}}  # fmt: skip
    with (
        Traffic(sp.proxy_port, clients=100, rate=80, seconds=40) as users,
        Traffic(
            sp.proxy_port, clients=20, rate=40, seconds=40, headers={"X-Splitter-Pool": "green"}
        ) as testers,  # fmt: skip
    ):
        assert _api(sp, "POST", "/api/v1/rollout", body)[0] == 201
        final = _wait_status(sp, {"rolled_back", "promoted", "paused"}, 30)
    assert final["status"] == "rolled_back", final
    assert users.count(pool="green") == 0, "a client without the header reached green"
    assert testers.count(pool="green") > 0
    _, weights = _api(sp, "GET", "/api/v1/weights")
    assert weights == {"blue": 100, "canary": 0, "green": 0}


def test_good_preview_switches_and_a_fault_after_it_switches_back(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc], tmp_path: Path
) -> None:
    sp = splitter_factory(_config(pools))
    body = {"pool": "green", "strategy": "bluegreen", "auto_promote": True, "keep": "60s",
            "preview": {"hold": "2s", "max": "30s"}}  # fmt: skip
    with (
        Traffic(sp.proxy_port, clients=100, rate=100, seconds=80) as users,
        Traffic(
            sp.proxy_port, clients=20, rate=60, seconds=80, headers={"X-Splitter-Pool": "green"}
        ),  # fmt: skip
    ):
        assert _api(sp, "POST", "/api/v1/rollout", body)[0] == 201
        switched = wait_until(lambda: (r := _rollout(sp)) and r["step"] == 1 and r, 40)
        assert switched["status"] == "progressing"
        assert switched["weights"] == {"blue": 0, "canary": 0, "green": 100}
        time.sleep(2)
        _fault(tmp_path / "green.fault", fail_rate=0.5)
        final = _wait_status(sp, {"rolled_back", "promoted"}, 30)
        assert users.count(pool="green") > 0
    assert final["status"] == "rolled_back", final
    _, weights = _api(sp, "GET", "/api/v1/weights")
    assert weights == {"blue": 100, "canary": 0, "green": 0}


def test_preview_without_auto_promote_waits_for_promote(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    sp = splitter_factory(_config(pools))
    body = {"pool": "green", "strategy": "bluegreen", "keep": "3s",
            "preview": {"hold": "1s", "max": "30s"}}  # fmt: skip
    with Traffic(sp.proxy_port, clients=20, rate=80, seconds=60,
                 headers={"X-Splitter-Pool": "green"}):  # fmt: skip
        assert _api(sp, "POST", "/api/v1/rollout", body)[0] == 201
        waiting = _wait_status(sp, {"paused", "rolled_back"}, 30)
        assert waiting["status"] == "paused" and "awaiting promotion" in waiting["reason"]
        assert _api(sp, "POST", "/api/v1/rollout/resume")[1]["status"] == "paused"
        status, promoted = _api(sp, "POST", "/api/v1/rollout/promote")
        assert status == 200 and promoted["weights"]["green"] == 100
        final = _wait_status(sp, {"promoted", "rolled_back"}, 20)
    assert final["status"] == "promoted"


# -- gates, webhooks, metrics, ctl ----------------------------------------------------


class _Receiver:
    """A small HTTP server on loopback: records the JSON it is posted; /gate answers the
    status the test sets."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.gate_status = 503
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                receiver.posts.append((self.path, body))
                status = receiver.gate_status if self.path == "/gate" else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [body["event"] for path, body in self.posts if path == "/hook"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.close()


def test_gates_hold_the_rollout_and_webhooks_are_told(
    pools: dict[str, Backend],
    splitter_factory: Callable[..., SplitterProc],
    receiver: _Receiver,
) -> None:
    sp = splitter_factory(_config(pools))
    body = {
        "pool": "canary", "steps": [30, 100],
        "gates": [{"url": f"{receiver.url}/gate"}],
        "webhooks": [{"url": f"{receiver.url}/hook"}],
    }  # fmt: skip
    with Traffic(sp.proxy_port, clients=200, rate=150, seconds=60):
        assert _api(sp, "POST", "/api/v1/rollout", body)[0] == 201
        held = _wait_status(sp, {"paused"}, 10)
        assert "waiting for gate" in held["reason"] and held["weights"]["canary"] == 0
        assert any(path == "/gate" and b["pool"] == "canary" for path, b in receiver.posts)
        receiver.gate_status = 200
        running = wait_until(lambda: (r := _rollout(sp))["weights"]["canary"] == 30 and r, 15)
        assert running["status"] == "progressing"
        final = _wait_status(sp, {"promoted", "rolled_back"}, 40)
    assert final["status"] == "promoted"
    wait_until(lambda: "promoted" in receiver.events(), 10)
    events = receiver.events()
    assert events[0] == "started" and "paused" in events and "step" in events, events
    assert events[-1] == "promoted"
    hook_bodies = [b for p, b in receiver.posts if p == "/hook"]
    assert all(b["rollout"]["pool"] == "canary" for b in hook_bodies)


def test_rollout_metrics_and_history(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    sp = splitter_factory(_config(pools))
    _, _, text = http_request(f"{sp.admin_url}/metrics")
    assert b"splitter_rollout_" not in text  # no series before the first rollout
    assert _api(sp, "POST", "/api/v1/rollout", {"pool": "canary"})[0] == 201
    _, _, text = http_request(f"{sp.admin_url}/metrics")
    assert b'splitter_rollout_step{pool="canary",route="default"} 0.0' in text
    assert (
        b'splitter_rollout_status{pool="canary",route="default",status="progressing"} 1.0' in text
    )
    assert _api(sp, "POST", "/api/v1/rollout/abort")[0] == 200
    _, _, text = http_request(f"{sp.admin_url}/metrics")
    assert b'splitter_rollout_step{pool="canary",route="default"} -1.0' in text
    assert (
        b'splitter_rollout_status{pool="canary",route="default",status="rolled_back"} 1.0' in text
    )
    assert _api(sp, "POST", "/api/v1/rollout", {"pool": "green"})[0] == 201
    _, listing = _api(sp, "GET", "/api/v1/rollouts")
    assert [(r["pool"], r["status"]) for r in listing["rollouts"]] == [
        ("green", "progressing"), ("canary", "rolled_back"),
    ]  # fmt: skip


def test_ctl_drives_a_rollout(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    sp = splitter_factory(_config(pools))
    admin = ["--admin", sp.admin_url]
    started = run_cli("ctl", *admin, "rollout", "start", "canary", "--steps", "10,{pause},50",
                      "--hold", "1s", "--max", "5s")  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "canary" in started.stdout
    status = run_cli("ctl", *admin, "--json", "rollout", "status")
    assert json.loads(status.stdout)["weights"]["canary"] == 10
    assert run_cli("ctl", *admin, "rollout", "pause").returncode == 0
    assert "paused" in run_cli("ctl", *admin, "rollout", "status").stdout
    assert run_cli("ctl", *admin, "rollout", "resume").returncode == 0
    assert run_cli("ctl", *admin, "rollout", "promote", "--full").returncode == 0
    history = run_cli("ctl", *admin, "rollout", "history")
    assert history.returncode == 0 and "promoted" in history.stdout
    again = run_cli("ctl", *admin, "rollout", "abort")
    assert again.returncode == 1 and "409" in again.stderr
    blue_green = run_cli("ctl", *admin, "rollout", "start", "green", "--bluegreen",
                         "--auto-promote", "--keep", "5s")  # fmt: skip
    assert blue_green.returncode == 0, blue_green.stderr
    assert (
        json.loads(run_cli("ctl", *admin, "--json", "rollout", "status").stdout)["strategy"]
        == "bluegreen"
    )


def test_sigterm_during_a_rollout_keeps_it(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    sp = splitter_factory(_config(pools))
    assert _api(sp, "POST", "/api/v1/rollout", {"pool": "canary", "steps": [40, 100]})[0] == 201
    sp.send_signal(signal.SIGTERM)
    assert sp.wait(15) == 0
    again = splitter_factory(sp.config_path)
    r = _rollout(again)
    assert r["status"] == "progressing" and r["weights"]["canary"] == 40
