"""End to end: runtime weights that survive restarts, and hot reload of the config file
(docs/admin-api.md and docs/operations.md#hot-reload), against the real process and real
backends."""

from __future__ import annotations

import copy
import http.client
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import (
    LOCALHOST,
    Backend,
    SplitterProc,
    admin_api,
    free_port,
    http_request,
    pools_config,
    wait_until,
    write_config,
)

SplitterFactory = Callable[..., SplitterProc]

RELOAD_WITHIN = 2.0  # docs/operations.md#hot-reload: a change is in force within 2 seconds


# --------------------------------------------------------------------------- helpers


def api(
    proc: SplitterProc, method: str, path: str, body: Any = None, timeout: float = 5
) -> tuple[int, Any]:
    return admin_api(proc, method, path, body, timeout=timeout)


def weights(proc: SplitterProc) -> dict[str, float]:
    status, body = api(proc, "GET", "/api/v1/weights")
    assert status == 200, body
    return dict(body)


def put_weights(proc: SplitterProc, new: dict[str, float]) -> dict[str, float]:
    status, body = api(proc, "PUT", "/api/v1/weights", new)
    assert status == 200, body
    return dict(body)


def events(proc: SplitterProc) -> list[dict[str, Any]]:
    status, body = api(proc, "GET", "/api/v1/events")
    assert status == 200, body
    return list(body["events"])


def pool_served(proc: SplitterProc, path: str = "/") -> str:
    """Which pool's backend answered one fresh proxied request (no cookie)."""
    status, headers, body = http_request(proc.proxy_url + path, timeout=5)
    assert status == 200, (status, body)
    return headers["x-pool"]


def pools_served(proc: SplitterProc, n: int = 30) -> set[str]:
    return {pool_served(proc) for _ in range(n)}


def wait_weights(proc: SplitterProc, expected: dict[str, float], timeout: float) -> None:
    wait_until(
        lambda: weights(proc) == expected,
        timeout=timeout,
        interval=0.02,
        message=f"weights == {expected}",
    )


def wait_only_pool(proc: SplitterProc, pool: str, timeout: float = 5) -> None:
    """Until proxied requests all reach `pool` (new backends may need a health check)."""
    wait_until(
        lambda: pools_served(proc, 10) == {pool},
        timeout=timeout,
        interval=0.05,
        message=f"every proxied request served by {pool}",
    )


def metric(proc: SplitterProc, name: str, labels: str = "") -> float:
    """The value of one sample of /metrics, e.g. metric(p, "x_total", 'result="failure"')."""
    status, _, raw = http_request(proc.admin_url + "/metrics")
    assert status == 200
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in raw.decode().splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == wanted:
            return float(value)
    raise AssertionError(f"no sample {wanted} in /metrics:\n{raw.decode()}")


def state_data(path: str | Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return dict(json.loads(f.read()))


def three_pool_config(three_pools: dict[str, Backend], w: dict[str, float], **extra: Any) -> Any:
    return pools_config(
        {name: three_pools[name] for name in ("blue", "green", "canary")}, w, **extra
    )


def with_weights(cfg: dict[str, Any], w: dict[str, float]) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    for name, value in w.items():
        out["pools"][name]["weight"] = value
    return out


def start_from_dict(
    splitter_factory: SplitterFactory, cfg: dict[str, Any]
) -> tuple[SplitterProc, dict[str, Any]]:
    proc = splitter_factory(cfg)
    assert proc.config is not None
    proc.wait_readyz(timeout=10)
    return proc, copy.deepcopy(proc.config)


def refused(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


class InFlight:
    """One proxied request run in a thread; `result` is (status, headers, body) or the
    exception it raised."""

    def __init__(self, url: str, timeout: float = 20) -> None:
        self.result: Any = None
        self._thread = threading.Thread(target=self._run, args=(url, timeout), daemon=True)
        self._thread.start()

    def _run(self, url: str, timeout: float) -> None:
        try:
            self.result = http_request(url, timeout=timeout)
        except Exception as exc:  # recorded for the test to assert on
            self.result = exc

    def join(self, timeout: float) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the request did not finish"
        return self.result


# --------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_api_weights_survive_a_restart(
    stop: str, three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    assert pools_served(proc, 10) == {"blue"}
    assert put_weights(proc, {"blue": 0, "green": 100}) == {"blue": 0, "green": 100, "canary": 0}
    if stop == "sigterm":
        assert proc.stop() == 0
    else:
        proc.kill()  # SIGKILL right after the PUT answered: it must already be on disk
        assert proc.proc.returncode == -signal.SIGKILL

    saved = state_data(cfg["state_file"])
    assert saved["runtime"]["weights"] == {"blue": 0, "green": 100, "canary": 0}

    again = splitter_factory(proc.config_path)
    assert weights(again) == {"blue": 0, "green": 100, "canary": 0}
    again.wait_readyz(timeout=10)
    assert pools_served(again, 20) == {"green"}
    restored = [e for e in events(again) if e["source"] == "startup"]
    assert restored, events(again)
    assert restored[-1]["new"] == {"blue": 0, "green": 100, "canary": 0}
    assert restored[-1]["old"] == {"blue": 100, "green": 0, "canary": 0}


# --------------------------------------------------------------------------- file wins


def test_file_weights_changed_while_stopped_win_at_restart(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    put_weights(proc, {"blue": 0, "green": 100})
    assert proc.stop() == 0
    assert "runtime" in state_data(cfg["state_file"])

    write_config(proc.config_path, with_weights(cfg, {"blue": 0, "canary": 100}))
    again = splitter_factory(proc.config_path)
    expected = {"blue": 0, "green": 0, "canary": 100}
    assert weights(again) == expected
    again.wait_readyz(timeout=10)
    assert pools_served(again, 20) == {"canary"}
    assert "runtime" not in state_data(cfg["state_file"])
    dropped = [e for e in events(again) if "dropped" in e["what"]]
    assert dropped, events(again)
    assert dropped[-1]["old"] == {"blue": 0, "green": 100, "canary": 0}
    assert dropped[-1]["new"] == expected


@pytest.mark.parametrize("atomic", [False, True], ids=["in_place", "atomic"])
def test_file_weights_changed_while_running_win(
    atomic: bool, three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    put_weights(proc, {"blue": 0, "green": 100})
    assert pools_served(proc, 10) == {"green"}

    write_config(proc.config_path, with_weights(cfg, {"blue": 0, "canary": 100}), atomic=atomic)
    expected = {"blue": 0, "green": 0, "canary": 100}
    wait_weights(proc, expected, RELOAD_WITHIN)
    assert pools_served(proc, 20) == {"canary"}
    dropped = [e for e in events(proc) if "dropped" in e["what"]]
    assert dropped, events(proc)
    assert dropped[-1]["source"] == "file"
    assert dropped[-1]["new"] == expected
    assert "runtime" not in state_data(cfg["state_file"])

    # And after a restart, the file's weights stay (nothing runtime is left to restore).
    assert proc.stop() == 0
    again = splitter_factory(proc.config_path)
    assert weights(again) == expected


def test_file_edit_without_weight_change_keeps_runtime_weights(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    runtime = put_weights(proc, {"blue": 0, "green": 100})
    before = len(events(proc))

    # Add a backend to blue and turn off the access log: same weights in the file.
    edited = copy.deepcopy(cfg)
    edited["pools"]["blue"]["backends"].append(three_pools["canary"].url)
    edited["access_log"] = False
    write_config(proc.config_path, edited, atomic=True)

    def reloaded() -> bool:
        return any(e["what"] == "config reloaded" for e in events(proc)[before:])

    wait_until(reloaded, timeout=RELOAD_WITHIN, interval=0.02, message="a reload event")
    logged = len(proc.access_log())
    status, pools = api(proc, "GET", "/api/v1/pools")
    assert status == 200
    assert [b["url"] for b in pools["blue"]["backends"]] == edited["pools"]["blue"]["backends"]
    assert weights(proc) == runtime
    assert pools_served(proc, 20) == {"green"}
    time.sleep(0.2)
    assert len(proc.access_log()) == logged  # access_log: false is in force
    assert not [e for e in events(proc) if "dropped" in e["what"]]
    assert state_data(cfg["state_file"])["runtime"]["weights"] == runtime
    assert metric(proc, "splitter_config_reloads_total", 'result="success"') >= 1

    # The runtime weights also survive a restart on the edited file.
    assert proc.stop() == 0
    again = splitter_factory(proc.config_path)
    assert weights(again) == runtime


def test_api_change_made_after_a_file_edit_is_not_superseded_by_it(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    """docs/admin-api.md/6: only a file edit made *after* a weight change supersedes it; runtime
    weights stay while "the weights written in the file are the same as when they were
    set". Here the file is edited first and the PUT follows at once (before the next
    poll): the file's weights at the time of the PUT never change afterwards, so the
    PUT's weights must stay in force."""
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    write_config(proc.config_path, with_weights(cfg, {"blue": 50, "green": 50}), atomic=True)
    answered = put_weights(proc, {"blue": 0, "green": 100})  # right after the edit
    assert answered == {"blue": 0, "green": 100, "canary": 0}
    time.sleep(RELOAD_WITHIN)  # the watcher has seen the (earlier) edit by now
    assert weights(proc) == answered, events(proc)
    assert pools_served(proc, 20) == {"green"}
    assert not [e for e in events(proc) if "dropped" in e["what"]], events(proc)

    # And it is what a restart on the same file restores.
    assert proc.stop() == 0
    again = splitter_factory(proc.config_path)
    assert weights(again) == answered


# --------------------------------------------------------------------------- state file


@pytest.mark.parametrize(
    "content", [b"\x00\xff{not json at all", b'{"version": 99}'], ids=["garbage", "version99"]
)
def test_unusable_state_file_is_set_aside(
    content: bytes,
    tmp_path: Path,
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
) -> None:
    state = tmp_path / "state.json"
    state.write_bytes(content)
    cfg = three_pool_config(three_pools, {"blue": 70, "green": 30}, state_file=str(state))
    proc = splitter_factory(cfg)
    assert weights(proc) == {"blue": 70, "green": 30, "canary": 0}

    aside = list(tmp_path.glob("state.json.bad-*"))
    assert len(aside) == 1, list(tmp_path.iterdir())
    assert aside[0].read_bytes() == content
    errors = [ln for ln in proc.stderr_text().splitlines() if "ERROR" in ln and "state" in ln]
    assert errors, proc.stderr_text()
    assert str(state) in errors[0]

    proc.wait_readyz(timeout=10)
    assert pools_served(proc, 30) == {"blue", "green"}
    # A fresh state file works: a weight change is saved in it.
    put_weights(proc, {"blue": 0})
    assert state_data(state)["runtime"]["weights"] == {"blue": 0, "green": 30, "canary": 0}


def test_weight_change_does_not_follow_a_link_planted_next_to_the_state_file(
    tmp_path: Path, three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    state = tmp_path / "state.json"
    cfg = three_pool_config(three_pools, {"blue": 70, "green": 30}, state_file=str(state))
    proc = splitter_factory(cfg)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    planted = tmp_path / f"state.json.tmp-{proc.pid}"  # the name the temporary file had
    planted.symlink_to(victim)

    assert put_weights(proc, {"blue": 0}) == {"blue": 0, "green": 30, "canary": 0}
    assert victim.read_bytes() == b"precious\n"
    assert planted.is_symlink()
    assert not state.is_symlink()
    assert state_data(state)["runtime"]["weights"] == {"blue": 0, "green": 30, "canary": 0}
    assert os.stat(state).st_mode & 0o777 == 0o600
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith((".state", "state"))]
    assert sorted(leftovers) == ["state.json", planted.name], leftovers


BAD_SAVED_WEIGHTS = [
    pytest.param({"blue": 1e20, "green": 100, "canary": 0}, id="1e20"),
    pytest.param({"blue": 1000000.5, "green": 100, "canary": 0}, id="above-a-million"),
    pytest.param({"blue": 2**64, "green": 100, "canary": 0}, id="2**64"),
    pytest.param({"blue": 1e308, "green": 100, "canary": 0}, id="1e308"),
    pytest.param({"blue": -1, "green": 100, "canary": 0}, id="negative"),
    pytest.param({"blue": "10", "green": 100, "canary": 0}, id="string"),
    pytest.param({"blue": [10], "green": 100, "canary": 0}, id="list"),
    pytest.param({"blue": None, "green": 100, "canary": 0}, id="null"),
    pytest.param({"blue": True, "green": 100, "canary": 0}, id="true"),
    pytest.param({"blue": 0, "green": 0, "canary": 0}, id="all-zero"),
    pytest.param({"blue": 1, "green": 100}, id="pool-missing"),
    pytest.param([100, 0, 0], id="not-a-map"),
]


@pytest.mark.parametrize("saved", BAD_SAVED_WEIGHTS)
def test_invalid_saved_runtime_weights_are_ignored_at_start(
    saved: Any,
    tmp_path: Path,
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
) -> None:
    """Saved runtime weights that are not valid weights (out of range, not numbers, all 0)
    do not stop a start: they are ignored with a log line and the config's weights apply,
    even though the file's weights are those they were saved against."""
    state = tmp_path / "state.json"
    file_weights = {"blue": 70, "green": 30, "canary": 0}
    runtime = {"weights": saved, "file_weights": file_weights, "time": "2026-01-01T00:00:00Z"}
    state.write_text(json.dumps({"version": 1, "cookie_secret": "ab" * 32, "runtime": runtime}))
    cfg = three_pool_config(three_pools, file_weights, state_file=str(state))
    proc = splitter_factory(cfg)

    assert weights(proc) == file_weights
    for path in ("/api/v1/pools", "/api/v1/events", "/metrics"):
        assert http_request(proc.admin_url + path)[0] == 200, path
    stderr = proc.stderr_text()
    assert "Traceback" not in stderr, stderr
    logged = [ln for ln in stderr.splitlines() if "runtime weights" in ln and str(state) in ln]
    assert logged, stderr
    proc.wait_readyz(timeout=10)
    assert pools_served(proc, 30) == {"blue", "green"}
    # they are gone from the file (the cookie key is kept), and a restart is clean too
    assert "runtime" not in state_data(state)
    assert state_data(state)["cookie_secret"] == "ab" * 32
    assert proc.stop() == 0
    again = splitter_factory(proc.config_path)
    assert weights(again) == file_weights
    assert "Traceback" not in again.stderr_text()


# --------------------------------------------------------------------------- hot reload


def test_hot_reload_in_place_write(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    inode = os.stat(proc.config_path).st_ino
    for n, (target, w) in enumerate(
        [("green", {"blue": 0, "green": 100}), ("blue", {"blue": 100, "green": 0})]
    ):
        text = yaml.safe_dump(with_weights(cfg, w), sort_keys=False)
        with open(proc.config_path, "r+") as f:  # same inode: truncate, then write
            f.truncate(0)
            f.write(text)
        assert os.stat(proc.config_path).st_ino == inode
        wait_weights(proc, {**w, "canary": 0}, RELOAD_WITHIN)
        assert pools_served(proc, 20) == {target}, n
        assert metric(proc, "splitter_config_last_reload_successful") == 1
        time.sleep(0.6)  # the next write is a new poll, with a new mtime


def test_hot_reload_atomic_rename(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    inode = os.stat(proc.config_path).st_ino
    for target, w in [("green", {"blue": 0, "green": 100}), ("blue", {"blue": 100, "green": 0})]:
        write_config(proc.config_path, with_weights(cfg, w), atomic=True)
        assert os.stat(proc.config_path).st_ino != inode
        inode = os.stat(proc.config_path).st_ino
        wait_weights(proc, {**w, "canary": 0}, RELOAD_WITHIN)
        assert pools_served(proc, 20) == {target}
    reloads = [e for e in events(proc) if e["what"] == "config reloaded"]
    assert [e["source"] for e in reloads] == ["file", "file"]


def test_hot_reload_configmap_symlink_swap(
    tmp_path: Path, three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    """The kubelet's layout: splitter.yaml -> ..data/splitter.yaml, ..data -> ..<timestamp>;
    an update writes a new timestamped directory and renames a new ..data link over the old."""
    cm = tmp_path / "configmap"
    cm.mkdir()
    base = three_pool_config(
        three_pools,
        {"blue": 100, "green": 0},
        listen=f"{LOCALHOST}:{free_port()}",
        admin={"listen": f"{LOCALHOST}:{free_port()}"},
        state_file=str(tmp_path / "splitter-state.json"),
    )

    def publish(dirname: str, w: dict[str, float]) -> None:
        (cm / dirname).mkdir()
        write_config(cm / dirname / "splitter.yaml", with_weights(base, w))
        os.symlink(dirname, cm / "..data_tmp")
        os.replace(cm / "..data_tmp", cm / "..data")

    (cm / "..2026_a").mkdir()
    write_config(cm / "..2026_a" / "splitter.yaml", base)
    os.symlink("..2026_a", cm / "..data")
    os.symlink("..data/splitter.yaml", cm / "splitter.yaml")

    proc = splitter_factory(cm / "splitter.yaml")
    proc.wait_readyz(timeout=10)
    assert weights(proc) == {"blue": 100, "green": 0, "canary": 0}
    assert pools_served(proc, 10) == {"blue"}

    previous = "..2026_a"
    steps = [("..2026_b", "green", {"blue": 0, "green": 100})]
    steps.append(("..2026_c", "canary", {"green": 0, "canary": 100}))
    for dirname, target, w in steps:
        publish(dirname, {**{"blue": 0, "green": 0, "canary": 0}, **w})
        shutil.rmtree(cm / previous)  # the kubelet removes the old directory
        previous = dirname
        wait_weights(proc, {"blue": 0, "green": 0, "canary": 0, **w}, RELOAD_WITHIN)
        assert pools_served(proc, 20) == {target}


def test_sighup_reloads_at_once(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    before = len(events(proc))
    write_config(proc.config_path, with_weights(cfg, {"blue": 0, "green": 100}))
    proc.send_signal(signal.SIGHUP)
    wait_weights(proc, {"blue": 0, "green": 100, "canary": 0}, 0.5)
    assert pools_served(proc, 20) == {"green"}
    # (the watcher may also have seen the write; the signal makes its own reload either way)
    wait_until(
        lambda: any(e["source"] == "signal" for e in events(proc)[before:]),
        timeout=0.5,
        message="an event with source signal",
    )
    assert proc.running


def test_post_reload_reloads_at_once(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    before = len(events(proc))
    write_config(proc.config_path, with_weights(cfg, {"blue": 0, "green": 100}))
    status, body = api(proc, "POST", "/api/v1/reload")
    assert status == 200, body
    assert weights(proc) == {"blue": 0, "green": 100, "canary": 0}
    assert pools_served(proc, 20) == {"green"}
    assert any(e["source"] == "api" for e in events(proc)[before:]), events(proc)


# --------------------------------------------------------------------------- invalid file


def _invalid_text(cfg: dict[str, Any], kind: str) -> tuple[str, int, str]:
    """An invalid version of `cfg`: (text, line of the error, what the error names)."""
    lines = yaml.safe_dump(cfg, sort_keys=False).splitlines()
    blue_weight = next(
        i for i, ln in enumerate(lines) if ln.strip().startswith("weight:") and i > 0
    )
    assert lines[blue_weight - 1].strip() == "blue:", lines
    if kind == "bad_yaml":
        lines[blue_weight] = lines[blue_weight] + ": 5"  # "weight: 100: 5"
        what = "invalid YAML"
    else:
        lines[blue_weight] = lines[blue_weight].replace("weight: 100", "weight: -5")
        what = "pools.blue.weight"
    return "\n".join(lines) + "\n", blue_weight + 1, what


@pytest.mark.parametrize("kind", ["bad_yaml", "negative_weight"])
def test_invalid_file_changes_nothing(
    kind: str, three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    assert metric(proc, "splitter_config_last_reload_successful") == 1
    text, line, what = _invalid_text(cfg, kind)
    write_config(proc.config_path, text, atomic=True)

    logged = proc.wait_for_stderr(r"reload.*failed", timeout=RELOAD_WITHIN + 1)
    assert str(proc.config_path) in logged, logged
    assert f"line {line}" in logged, logged
    assert what in logged, logged

    assert weights(proc) == {"blue": 100, "green": 0, "canary": 0}
    assert pools_served(proc, 20) == {"blue"}
    assert metric(proc, "splitter_config_reloads_total", 'result="failure"') >= 1
    assert metric(proc, "splitter_config_last_reload_successful") == 0

    status, body = api(proc, "POST", "/api/v1/reload")
    assert status == 422, body
    assert body["error"]
    assert body["errors"], body
    assert any(what in e and f"line {line}" in e for e in body["errors"]), body
    assert weights(proc) == {"blue": 100, "green": 0, "canary": 0}
    assert pools_served(proc, 10) == {"blue"}

    # A later valid edit applies, and the gauge is back to 1.
    write_config(proc.config_path, with_weights(cfg, {"blue": 0, "green": 100}), atomic=True)
    wait_weights(proc, {"blue": 0, "green": 100, "canary": 0}, RELOAD_WITHIN)
    assert pools_served(proc, 20) == {"green"}
    assert metric(proc, "splitter_config_last_reload_successful") == 1
    assert metric(proc, "splitter_config_reloads_total", 'result="success"') >= 1


# --------------------------------------------------------------------------- pools, backends


def test_pools_and_backends_added_removed_and_changed(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    blue, green, canary = three_pools["blue"], three_pools["green"], three_pools["canary"]
    proc, cfg = start_from_dict(splitter_factory, pools_config({"blue": blue}, {"blue": 100}))
    assert pools_served(proc, 10) == {"blue"}

    # A new pool with a weight: traffic reaches it.
    added = copy.deepcopy(cfg)
    added["pools"]["canary"] = {"weight": 100, "backends": [canary.url]}
    write_config(proc.config_path, added, atomic=True)
    wait_weights(proc, {"blue": 100, "canary": 100}, RELOAD_WITHIN)
    assert metric(proc, "splitter_pool_weight", 'pool="canary",route="default"') == 100
    wait_until(
        lambda: pools_served(proc, 40) == {"blue", "canary"},
        timeout=5,
        message="both blue and canary serve",
    )

    # Removed again: none reaches it.
    write_config(proc.config_path, cfg, atomic=True)
    wait_weights(proc, {"blue": 100}, RELOAD_WITHIN)
    assert pools_served(proc, 40) == {"blue"}
    status, pools = api(proc, "GET", "/api/v1/pools")
    assert status == 200 and list(pools) == ["blue"], pools
    with pytest.raises(AssertionError, match="no sample"):
        metric(proc, "splitter_pool_weight", 'pool="canary",route="default"')

    # Blue's backend is now the green server: traffic moves there.
    moved = copy.deepcopy(cfg)
    moved["pools"]["blue"]["backends"] = [green.url]
    write_config(proc.config_path, moved, atomic=True)
    wait_only_pool(proc, "green", timeout=RELOAD_WITHIN + 1)
    status, pools = api(proc, "GET", "/api/v1/pools")
    assert [b["url"] for b in pools["blue"]["backends"]] == [green.url]


def test_listen_change_needs_a_restart_but_the_rest_applies(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    new_proxy, new_admin = free_port(), free_port()
    edited = with_weights(cfg, {"blue": 0, "green": 100})
    edited["listen"] = f"{LOCALHOST}:{new_proxy}"
    edited["admin"]["listen"] = f"{LOCALHOST}:{new_admin}"
    write_config(proc.config_path, edited, atomic=True)

    wait_weights(proc, {"blue": 0, "green": 100, "canary": 0}, RELOAD_WITHIN)
    assert pools_served(proc, 20) == {"green"}  # still on the old listener
    proc.wait_for_stderr(r"(?i)\blisten\b.*restart", timeout=2)
    proc.wait_for_stderr(r"(?i)admin\.listen.*restart", timeout=2)
    assert refused(new_proxy)
    assert refused(new_admin)


def test_alias_bomb_is_refused_by_a_reload_at_once(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    lines = ['l0: &l0 ["lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 10)]
    write_config(proc.config_path, "\n".join(lines) + "\n" + yaml.safe_dump(cfg, sort_keys=False))
    started = time.monotonic()
    status, body = api(proc, "POST", "/api/v1/reload", timeout=30)
    assert time.monotonic() - started < 5
    assert status == 422, body
    assert any("l5 (line 6): expands to more than 100000" in e for e in body["errors"]), body
    assert weights(proc) == {"blue": 100, "green": 0, "canary": 0}
    assert pools_served(proc, 10) == {"blue"}


# --------------------------------------------------------------------------- admin at restart

OLD_TOKEN = "old-s3cret-of-16-chars"
NEW_TOKEN = "n3w-s3cret-of-16-chars"
API_GETS = ["/api/v1/weights", "/api/v1/pools", "/api/v1/events", "/api/v1/openapi.json"]


def admin_status(
    proc: SplitterProc,
    method: str = "GET",
    path: str = "/api/v1/weights",
    token: str | None = None,
    host: str | None = None,
    body: Any = None,
) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if host is not None:
        headers["Host"] = host
    data = None if body is None else json.dumps(body).encode()
    return http_request(proc.admin_url + path, method, body=data, headers=headers)[0]


def reload_by(proc: SplitterProc, how: str, token: str | None) -> None:
    """Ask for a reload of the edited file (the watcher sees it by itself)."""
    if how == "signal":
        proc.send_signal(signal.SIGHUP)
    elif how == "api":
        assert admin_status(proc, "POST", "/api/v1/reload", token) == 200


def assert_admin_as_started(proc: SplitterProc, token: str, refused: str | None) -> None:
    """The admin API behaves per the token it started with (`token`, "" for none);
    `refused` is a token that must not work."""
    foreign = f"evil.com:{proc.admin_port}"
    for path in API_GETS:
        if token:
            assert admin_status(proc, path=path, token=token) == 200, path
            assert admin_status(proc, path=path, token=token, host=foreign) == 200, path
            assert admin_status(proc, path=path) == 401, path
        else:  # no token: open on loopback, and a foreign Host is still refused
            assert admin_status(proc, path=path) == 200, path
            assert admin_status(proc, path=path, token=refused, host=foreign) == 403, path
        if refused:
            assert admin_status(proc, path=path, token=refused) == (401 if token else 200), path
    if token and refused:
        switch = {"pool": "canary"}
        assert admin_status(proc, "POST", "/api/v1/switch", refused, body=switch) == 401
        assert admin_status(proc, "POST", "/api/v1/reload", refused) == 401


@pytest.mark.parametrize("how", ["file", "signal", "api"])
@pytest.mark.parametrize(
    "old,new",
    [
        pytest.param(OLD_TOKEN, "", id="token-emptied"),
        pytest.param(OLD_TOKEN, NEW_TOKEN, id="token-changed"),
        pytest.param("", NEW_TOKEN, id="token-added"),
    ],
)
def test_reload_keeps_the_admin_token_until_a_restart(
    how: str,
    old: str,
    new: str,
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
) -> None:
    cfg = three_pool_config(three_pools, {"blue": 100, "green": 0}, admin={"token": old})
    proc, cfg = start_from_dict(splitter_factory, cfg)
    edited = with_weights(cfg, {"blue": 0, "green": 100})
    edited["admin"]["token"] = new
    write_config(proc.config_path, edited, atomic=True)
    reload_by(proc, how, old)

    # the rest of the file is applied...
    expected = {"blue": 0, "green": 100, "canary": 0}
    headers = {"Authorization": f"Bearer {old}"} if old else {}

    def in_force() -> Any:
        return json.loads(http_request(proc.admin_url + "/api/v1/weights", headers=headers)[2])

    wait_until(lambda: in_force() == expected, RELOAD_WITHIN, message=f"weights {expected}")
    # ...but not the token: one line says a restart is needed, without the tokens
    line = proc.wait_for_stderr(r"admin\.token.*restart", timeout=2)
    assert OLD_TOKEN not in line and NEW_TOKEN not in line, line
    assert_admin_as_started(proc, old, new)
    assert proc.running

    # a restart on the edited file puts the new token in force
    assert proc.stop() == 0
    again = splitter_factory(proc.config_path)
    assert_admin_as_started(again, new, old)


def test_reload_keeps_admin_listen_and_its_protection_until_a_restart(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    """admin.listen moved to all interfaces, with the token that then requires: the
    running loopback listener keeps no token and its Host protection."""
    proc, cfg = start_from_dict(
        splitter_factory, three_pool_config(three_pools, {"blue": 100, "green": 0})
    )
    new_admin = free_port()
    edited = with_weights(cfg, {"blue": 0, "green": 100})
    edited["admin"] = {"listen": f"0.0.0.0:{new_admin}", "token": NEW_TOKEN}
    write_config(proc.config_path, edited, atomic=True)
    proc.send_signal(signal.SIGHUP)

    wait_weights(proc, {"blue": 0, "green": 100, "canary": 0}, RELOAD_WITHIN)
    line = proc.wait_for_stderr(r"admin\.listen.*restart", timeout=2)
    assert NEW_TOKEN not in line, line
    assert refused(new_admin)
    assert_admin_as_started(proc, "", NEW_TOKEN)


# --------------------------------------------------------------------------- no drops


def test_no_request_dropped_while_weights_flip(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    """4 keep-alive clients send requests (each a new identity: no cookie kept) while the
    weights flip 100 times, alternately by the API and by config file edits."""
    proc, cfg = start_from_dict(
        splitter_factory,
        three_pool_config(
            three_pools, {"blue": 100, "green": 0}, sticky={"cookie": "splitter"}, access_log=False
        ),
    )
    host, port = LOCALHOST, proc.proxy_port
    done = threading.Event()
    deadline = time.monotonic() + 40
    lock = threading.Lock()
    seen: dict[str, int] = {}
    failures: list[str] = []
    counts = [0, 0, 0, 0]

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            while not done.is_set() and counts[index] < 2000 and time.monotonic() < deadline:
                try:
                    conn.request("GET", "/")  # http.client sends no cookie back
                    resp = conn.getresponse()
                    body = resp.read().decode("utf-8", "replace")
                    ok = resp.status == 200 and body in ("blue", "green")
                    with lock:
                        if ok:
                            seen[body] = seen.get(body, 0) + 1
                        else:
                            failures.append(f"{resp.status} {body[:200]!r}")
                except Exception as exc:  # every failure counts, none may happen
                    with lock:
                        failures.append(repr(exc))
                    conn.close()
                counts[index] += 1
                time.sleep(0.01)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    flips = 0
    try:
        for i in range(50):
            # By the API: everyone to green.
            put_weights(proc, {"blue": 0, "green": 100})
            flips += 1
            time.sleep(0.08)
            # By the file (a new content every time, so the file's weights differ and win),
            # made instant with SIGHUP: everyone back to blue.
            file_w = {"blue": 101 + i, "green": 0}
            write_config(proc.config_path, with_weights(cfg, file_w), atomic=True)
            proc.send_signal(signal.SIGHUP)
            wait_weights(proc, {**file_w, "canary": 0}, RELOAD_WITHIN)
            flips += 1
            time.sleep(0.08)
            assert time.monotonic() < deadline, f"too slow: {flips} flips"
    finally:
        done.set()
        for t in threads:
            t.join(15)
    assert not any(t.is_alive() for t in threads)
    total = sum(counts)
    assert flips == 100
    print(f"{total} requests, by pool {seen}, per client {counts}")
    assert not failures, f"{len(failures)} of {total} requests failed: {failures[:5]}"
    assert total >= 2000, counts
    assert seen.get("blue", 0) > 0 and seen.get("green", 0) > 0, seen
    assert sum(seen.values()) == total
    assert proc.running


# --------------------------------------------------------------------------- in flight


@pytest.mark.parametrize("change", ["backend_replaced", "pool_removed"])
def test_in_flight_request_finishes_on_the_old_config(
    change: str, three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    blue, green = three_pools["blue"], three_pools["green"]
    proc, cfg = start_from_dict(
        splitter_factory, pools_config({"blue": blue, "green": green}, {"blue": 100})
    )
    slow = InFlight(proc.proxy_url + "/slow?seconds=2", timeout=20)
    time.sleep(0.5)  # the request is at the blue backend, sleeping

    edited = copy.deepcopy(cfg)
    if change == "backend_replaced":
        edited["pools"]["blue"]["backends"] = [green.url]
        expected = {"blue": 100, "green": 0}
    else:
        del edited["pools"]["blue"]
        edited["pools"]["green"]["weight"] = 100
        expected = {"green": 100}
    write_config(proc.config_path, edited, atomic=True)
    proc.send_signal(signal.SIGHUP)
    wait_weights(proc, expected, 1)
    wait_only_pool(proc, "green", timeout=3)

    result = slow.join(10)
    assert not isinstance(result, Exception), result
    status, headers, body = result
    assert (status, body) == (200, b"slow")
    assert headers["x-pool"] == "blue"
    assert proc.running
