"""End to end: the optional `metrics.listen` listener (CONTRACT.md sections 2 and 11)
against a real `splitter run` process.

It serves GET /metrics, /healthz and /readyz (the admin listener's answers) on any
address, without a token and without the admin listener's Host rule; every other path is
a 404 JSON error, another method on those three a 405; it never serves the admin API and
can change nothing.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SplitterFactory, complete_config
from tests.support import (
    LOCALHOST,
    Backend,
    SplitterProc,
    free_port,
    http_request,
    pools_config,
    run_cli,
    wait_until,
    write_config,
)

TOKEN = "s3cret-of-16-chars"
START = {"blue": 90, "green": 0, "canary": 10}
CHANGE = {"canary": 50, "blue": 50}
ADDRESS_HINT = "must be host:port, e.g. 0.0.0.0:8080 or [::1]:8080"


def metrics_config(three_pools: Mapping[str, Backend], **extra: Any) -> dict[str, Any]:
    extra.setdefault("metrics", {"listen": f"{LOCALHOST}:{free_port()}"})
    return pools_config(dict(three_pools), START, **extra)


def metrics_url(proc: SplitterProc) -> str:
    assert proc.config is not None
    return f"http://{proc.config['metrics']['listen']}"


def request(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """(status, lower-cased headers, parsed JSON or the raw bytes)."""
    data = None if body is None else json.dumps(body).encode()
    hdrs = dict(headers or {})
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    status, resp_headers, content = http_request(url, method, body=data, headers=hdrs)
    parsed: Any = content
    if resp_headers.get("content-type", "").startswith("application/json"):
        parsed = json.loads(content)
    return status, resp_headers, parsed


def state(proc: SplitterProc) -> tuple[Any, Any]:
    """What the metrics listener must never change: the weights and the events."""
    weights = request(proc.admin_url + "/api/v1/weights")
    events = request(proc.admin_url + "/api/v1/events")
    assert weights[0] == 200 and events[0] == 200
    return weights[2], events[2]


def metric_names(text: bytes) -> set[str]:
    return {m.decode() for m in re.findall(rb"^# TYPE (\S+) ", text, re.MULTILINE)}


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, three_pools: dict[str, Backend]
) -> Iterator[SplitterProc]:
    """One splitter with a metrics listener and no admin token; its tests change nothing."""
    workdir = tmp_path_factory.mktemp("metrics-listener")
    config = complete_config(metrics_config(three_pools), workdir)
    proc = SplitterProc(write_config(workdir / "splitter.yaml", config), workdir)
    proc.config = config
    try:
        proc.wait_ready()
        proc.wait_readyz()
        yield proc
    finally:
        proc.stop()
        print(f"--- {proc!r} stderr (last 4000 chars):\n{proc.stderr_text()[-4000:]}")


# --------------------------------------------------------------------------- what it serves


def test_the_ready_line_names_the_metrics_listener(shared: SplitterProc) -> None:
    line = shared.wait_for_stderr(r"^splitter: listening on ")
    assert line.endswith(f", metrics on {metrics_url(shared)}"), line


def test_healthz_is_served(shared: SplitterProc) -> None:
    status, _, body = request(metrics_url(shared) + "/healthz")
    assert (status, body) == (200, {"status": "ok"})
    assert request(shared.admin_url + "/healthz")[2] == body


def test_readyz_is_served(shared: SplitterProc) -> None:
    status, _, body = request(metrics_url(shared) + "/readyz")
    assert (status, body) == (200, {"status": "ready"})
    assert request(shared.admin_url + "/readyz")[2] == body


def test_metrics_are_served_as_on_the_admin_listener(shared: SplitterProc) -> None:
    status, _, _ = http_request(shared.proxy_url + "/")
    assert status == 200
    status, headers, body = http_request(metrics_url(shared) + "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b'splitter_pool_weight{pool="blue",route="default"} 90.0' in body
    assert re.search(
        rb'splitter_requests_total\{code="200",pool="(blue|canary)",route="default"\} [1-9]', body
    )
    _, _, admin_body = http_request(shared.admin_url + "/metrics")
    assert metric_names(body) == metric_names(admin_body)
    assert "splitter_requests_total" in metric_names(body)


def test_head_of_the_probes_is_served(shared: SplitterProc) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        status, _, body = http_request(metrics_url(shared) + path, "HEAD")
        assert (status, body) == (200, b""), path


@pytest.mark.parametrize(
    "host", ["evil.example", "10.1.2.3:9902", "splitter.default.svc.cluster.local", ""]
)
def test_any_host_is_served(shared: SplitterProc, host: str) -> None:
    """Prometheus and the kubelet reach the pod's IP: no Host rule here."""
    for path in ("/healthz", "/readyz", "/metrics"):
        status, _, _ = request(metrics_url(shared) + path, headers={"Host": host})
        assert status == 200, (host, path)
    # the admin listener still refuses the same request
    status, _, _ = request(shared.admin_url + "/metrics", headers={"Host": "evil.example"})
    assert status == 403


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api/v1/weights",
        "/api/v1/pools",
        "/api/v1/events",
        "/api/v1/openapi.json",
        "/api/v1/stats",
        "/api/v1/stream",
        "/api/v1/rollout",
        "/metrics/",
        "/healthz/x",
        "/%2e%2e/api/v1/weights",
        "/index.html",
    ],
)
def test_every_other_path_is_404_json(shared: SplitterProc, path: str) -> None:
    before = state(shared)
    for method in ("GET", "POST", "PUT", "DELETE"):
        body = CHANGE if method in ("POST", "PUT") else None
        status, headers, reply = request(metrics_url(shared) + path, method, body)
        assert status == 404, (method, path, status, reply)
        assert headers["content-type"].startswith("application/json")
        assert isinstance(reply, dict) and reply.get("error"), reply
        assert "blue" not in json.dumps(reply), reply
    assert state(shared) == before


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_another_method_on_a_probe_is_405(shared: SplitterProc, path: str, method: str) -> None:
    before = state(shared)
    status, headers, reply = request(metrics_url(shared) + path, method, CHANGE)
    assert status == 405, (status, reply)
    assert isinstance(reply, dict) and reply.get("error"), reply
    assert "GET" in headers.get("allow", ""), headers
    assert state(shared) == before


def test_admin_changes_are_not_served_with_a_token_either(
    splitter_factory: SplitterFactory, three_pools: dict[str, Backend]
) -> None:
    """A bearer token opens nothing more there: it is not the admin API."""
    proc = splitter_factory(metrics_config(three_pools, admin={"token": TOKEN}))
    url = metrics_url(proc)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert request(proc.admin_url + "/api/v1/weights")[0] == 401
    for method, path in [
        ("GET", "/api/v1/weights"),
        ("PUT", "/api/v1/weights"),
        ("POST", "/api/v1/switch"),
        ("POST", "/api/v1/reload"),
        ("GET", "/api/v1/openapi.json"),
    ]:
        body = {"pool": "green"} if path.endswith("switch") else CHANGE
        status, _, reply = request(url + path, method, body, headers=auth)
        assert status == 404, (method, path, reply)
    status, _, weights = request(proc.admin_url + "/api/v1/weights", headers=auth)
    assert (status, weights) == (200, START)
    # and the probes need no token
    for path in ("/healthz", "/readyz", "/metrics"):
        assert request(url + path)[0] == 200, path


# --------------------------------------------------------------------------- lifecycle


def test_readyz_turns_503_at_once_on_sigterm(
    splitter_factory: SplitterFactory, three_pools: dict[str, Backend]
) -> None:
    proc = splitter_factory(
        metrics_config(three_pools, shutdown={"accept_grace": "2s", "grace": "5s"})
    )
    url = metrics_url(proc)
    wait_until(lambda: request(url + "/readyz")[0] == 200, timeout=10, message="ready")
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    wait_until(
        lambda: request(url + "/readyz")[0] == 503,
        timeout=0.5,
        interval=0.02,
        message="/readyz 503 on the metrics listener right after SIGTERM",
    )
    status, _, body = request(url + "/readyz")
    assert (status, body["reason"]) == (503, "shutting down")
    assert request(url + "/healthz")[0] == 200  # still alive while it drains
    assert time.monotonic() - sent < 1.5
    assert proc.wait(timeout=10) == 0
    with pytest.raises(OSError):
        http_request(url + "/healthz", timeout=1)


def test_a_busy_metrics_port_exits_2_with_one_line(
    tmp_path: Path, three_pools: dict[str, Backend]
) -> None:
    holder = socket.socket()
    holder.bind((LOCALHOST, 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        config = complete_config(
            metrics_config(three_pools, metrics={"listen": f"{LOCALHOST}:{port}"}), tmp_path
        )
        path = write_config(tmp_path / "busy.yaml", config)
        result = subprocess.run(
            [sys.executable, "-m", "splitter", "run", "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
    finally:
        holder.close()
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2, result.stderr
    busy = f"splitter: cannot listen on {LOCALHOST}:{port} (metrics): address already in use"
    assert lines == [busy]
    assert "Traceback" not in result.stderr


def test_with_workers_the_primary_serves_it(
    splitter_factory: SplitterFactory, three_pools: dict[str, Backend]
) -> None:
    proc = splitter_factory(metrics_config(three_pools, workers=2))
    url = metrics_url(proc)
    wait_until(lambda: request(url + "/readyz")[0] == 200, timeout=15, message="ready")
    for _ in range(20):
        assert http_request(proc.proxy_url + "/")[0] == 200

    def counted() -> bool:
        body = http_request(url + "/metrics")[2]
        ok = rb'^splitter_requests_total\{code="200",[^}]*\} (\S+)$'
        total = sum(float(value) for value in re.findall(ok, body, re.MULTILINE))
        return total >= 20

    wait_until(counted, timeout=5, message="the workers' requests summed on the metrics listener")
    assert request(url + "/api/v1/weights")[0] == 404


def test_a_reload_that_changes_it_needs_a_restart(
    splitter_factory: SplitterFactory, three_pools: dict[str, Backend]
) -> None:
    proc = splitter_factory(metrics_config(three_pools))
    assert proc.config is not None
    old_url, new_port = metrics_url(proc), free_port()
    edited = json.loads(json.dumps(proc.config))
    edited["metrics"]["listen"] = f"{LOCALHOST}:{new_port}"
    edited["pools"]["canary"]["weight"] = 20
    write_config(proc.config_path, edited, atomic=True)
    status, _, body = request(proc.admin_url + "/api/v1/reload", "POST")
    assert status == 200, body
    assert body["weights"] == {"blue": 90, "green": 0, "canary": 20}  # the rest applies
    proc.wait_for_stderr(r"metrics\.listen changed to .*restart", timeout=2)
    assert request(old_url + "/healthz")[0] == 200
    with pytest.raises(OSError):
        http_request(f"http://{LOCALHOST}:{new_port}/healthz", timeout=1)
    # removing the section is a change too: the listener stays until a restart
    del edited["metrics"]
    write_config(proc.config_path, edited, atomic=True)
    assert request(proc.admin_url + "/api/v1/reload", "POST")[0] == 200
    proc.wait_for_stderr(r"metrics\.listen changed to \(none\).*restart", timeout=2)
    assert request(old_url + "/metrics")[0] == 200


def test_without_the_section_there_is_no_metrics_listener(
    splitter_factory: SplitterFactory, three_pools: dict[str, Backend]
) -> None:
    proc = splitter_factory(pools_config(dict(three_pools), START))
    line = proc.wait_for_stderr(r"^splitter: listening on ")
    assert "metrics" not in line, line


# --------------------------------------------------------------------------- check


def test_check_reports_a_bad_metrics_listen_with_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "listen: 127.0.0.1:8080\n"
        "pools:\n"
        "  blue: {weight: 1, backends: [http://127.0.0.1:5001]}\n"
        "metrics:\n"
        "  listen: 0.0.0.0\n"
        "  path: /metrics\n"
    )
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert f"{path}: metrics.listen (line 5): {ADDRESS_HINT} (the port is missing)" in lines
    assert any(ln.startswith(f"{path}: metrics.path (line 6): unknown key") for ln in lines)


def test_check_accepts_a_metrics_listener(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(
        "listen: 127.0.0.1:8080\n"
        "pools:\n"
        "  blue: {weight: 1, backends: [http://127.0.0.1:5001]}\n"
        "metrics: {listen: '0.0.0.0:9902'}\n"
    )
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 0, result.stderr
