"""End to end: the admin API (CONTRACT.md section 5) and `splitter ctl`, against a real
`splitter run` process with real gunicorn backends (blue, green, canary).

Read-only and error-path checks share one process per module (each of them checks that
nothing changed); tests that change weights get a process of their own.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from splitter.admin.routes import ADMIN, ROUTES
from tests.conftest import complete_config
from tests.rawhttp import parse_responses, read_until_close, send_raw
from tests.support import (
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
COOKIE = "splitter"
START = {"blue": 90, "green": 0, "canary": 10}
MAX_BODY = 64 * 1024

# Every endpoint of section 5, from the admin listener's route table: path -> its methods
# (the calls of one route for the route `default`, which every config here has).
ENDPOINTS: dict[str, set[str]] = {}
for _route in ROUTES:
    if _route.tag == ADMIN:
        ENDPOINTS.setdefault(_route.path.replace("{route}", "default"), set()).add(_route.method)
API_GETS = [p for p, methods in ENDPOINTS.items() if p.startswith("/api/") and "GET" in methods]


# --------------------------------------------------------------------------- helpers


def config_for(three_pools: Mapping[str, Backend], **extra: Any) -> dict[str, Any]:
    return pools_config(
        dict(three_pools), START, sticky={"cookie": COOKIE, "max_age": 3600}, **extra
    )


def start_shared(tmp_path: Path, three_pools: Mapping[str, Backend], **extra: Any) -> SplitterProc:
    config = complete_config(config_for(three_pools, **extra), tmp_path)
    path = write_config(tmp_path / "splitter.yaml", config)
    proc = SplitterProc(path, tmp_path)
    proc.config = config
    try:
        proc.wait_ready()
        proc.wait_readyz()
    except BaseException:
        proc.stop()
        raise
    return proc


def stop_shared(proc: SplitterProc) -> None:
    proc.stop()
    print(f"--- {proc!r} stderr (last 4000 chars):\n{proc.stderr_text()[-4000:]}")


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, three_pools: dict[str, Backend]
) -> Iterator[SplitterProc]:
    """One splitter without a token; tests using it must not change anything."""
    proc = start_shared(tmp_path_factory.mktemp("admin-shared"), three_pools)
    yield proc
    stop_shared(proc)


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, three_pools: dict[str, Backend]
) -> Iterator[SplitterProc]:
    """One splitter with `admin.token: TOKEN`; tests using it must not change anything."""
    proc = start_shared(tmp_path_factory.mktemp("admin-token"), three_pools, admin={"token": TOKEN})
    yield proc
    stop_shared(proc)


def call(
    sp: SplitterProc,
    method: str,
    path: str,
    body: Any = None,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    token: str | None = None,
    source: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One admin request (from the loopback address `source` when given): (status,
    lower-cased headers, parsed JSON or the raw bytes)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    hdrs = dict(headers or {})
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    status, resp_headers, content = http_request(
        sp.admin_url + path, method, body=data, headers=hdrs, source=source
    )
    parsed: Any = content
    if resp_headers.get("content-type", "").startswith("application/json"):
        parsed = json.loads(content)
    return status, resp_headers, parsed


def get_weights(sp: SplitterProc, token: str | None = None) -> dict[str, Any]:
    status, _, body = call(sp, "GET", "/api/v1/weights", token=token)
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def get_events(sp: SplitterProc, token: str | None = None) -> list[dict[str, Any]]:
    status, _, body = call(sp, "GET", "/api/v1/events", token=token)
    assert status == 200, body
    return list(body["events"])


def snapshot(sp: SplitterProc, token: str | None = None) -> tuple[Any, ...]:
    """What a refused request must not change: the weights, the events, the pools' weights."""
    status, _, pools = call(sp, "GET", "/api/v1/pools", token=token)
    assert status == 200
    return (
        get_weights(sp, token),
        get_events(sp, token),
        {name: info["weight"] for name, info in pools.items()},
    )


def assert_json_error(status: int, headers: Mapping[str, str], body: Any, expected: int) -> None:
    assert status == expected, (status, body)
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body


def proxy_pool(sp: SplitterProc, cookie: str | None = None) -> tuple[str, str | None]:
    """GET / through the proxy: (the pool that answered, the cookie value set if any)."""
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    status, resp_headers, body = http_request(sp.proxy_url + "/", headers=headers)
    assert status == 200, body
    set_cookie = resp_headers.get("set-cookie")
    value = None
    if set_cookie and set_cookie.startswith(f"{COOKIE}="):
        value = set_cookie.split(";", 1)[0].split("=", 1)[1]
    return body.decode().strip(), value


def sticky_clients(sp: SplitterProc, n: int) -> dict[str, str]:
    """n new clients through the proxy: cookie value -> pool."""
    clients = {}
    for _ in range(n):
        pool, cookie = proxy_pool(sp)
        assert cookie, "the sticky cookie was not set"
        clients[cookie] = pool
    return clients


_SOURCES = (f"127.0.2.{i}" for i in itertools.count(1))


def another_client() -> str:
    """A loopback address no test used yet: wrong tokens lock out their address (10 in
    a minute), and the tests sharing a process must not lock one another out."""
    return next(_SOURCES)


def raw_admin(
    sp: SplitterProc, data: bytes, timeout: float = 5, source: str | None = None
) -> tuple[int, Any]:
    """Raw bytes to the admin port; (status, parsed JSON body) of the first response."""
    if source is None:
        raw = send_raw(sp.admin_port, data, timeout=timeout)
    else:
        with socket.create_connection(
            ("127.0.0.1", sp.admin_port), timeout, source_address=(source, 0)
        ) as sock:
            sock.sendall(data)
            raw = read_until_close(sock, timeout)
    replies = parse_responses(raw)
    assert replies, "no response"
    reply = replies[0]
    body: Any = reply.body
    if (reply.header("content-type") or "").startswith("application/json"):
        body = json.loads(reply.body)
    return reply.status, body


# --------------------------------------------------------------------------- reads


def test_get_weights(shared: SplitterProc) -> None:
    status, headers, body = call(shared, "GET", "/api/v1/weights")
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert body == START
    assert list(body) == ["blue", "green", "canary"]  # the config's order


def test_get_pools_shape(shared: SplitterProc, three_pools: dict[str, Backend]) -> None:
    def all_up() -> Any:
        status, _, body = call(shared, "GET", "/api/v1/pools")
        assert status == 200
        ups = [b["up"] for info in body.values() for b in info["backends"]]
        return body if all(u is True for u in ups) else None

    body = wait_until(all_up, 10, message="every backend up in /api/v1/pools")
    assert list(body) == ["blue", "green", "canary"]
    for name, info in body.items():
        assert set(info) >= {"weight", "backends"}
        assert info["weight"] == START[name]
        assert info["backends"] == [{"url": three_pools[name].url, "weight": 1, "up": True}]


def test_healthz_readyz_metrics(shared: SplitterProc) -> None:
    assert call(shared, "GET", "/healthz")[0] == 200
    assert call(shared, "GET", "/readyz")[0] == 200
    status, headers, body = call(shared, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert "splitter_pool_weight" in text
    assert 'splitter_pool_weight{pool="blue",route="default"} 90' in text


def test_openapi_describes_every_endpoint(shared: SplitterProc) -> None:
    status, headers, doc = call(shared, "GET", "/api/v1/openapi.json")
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert isinstance(doc, dict)
    assert str(doc["openapi"]).startswith("3.")
    assert doc["info"]["title"] and doc["info"]["version"]
    for path, methods in ENDPOINTS.items():
        path = path.replace("/routes/default/", "/routes/{route}/")
        assert path in doc["paths"], path
        described = {m.upper() for m in doc["paths"][path]}
        assert methods <= described, (path, described)
        for method in methods:
            assert doc["paths"][path][method.lower()]["responses"], (path, method)


def test_gets_change_nothing(shared: SplitterProc) -> None:
    before = snapshot(shared)
    for path, methods in ENDPOINTS.items():
        if "GET" in methods:
            assert call(shared, "GET", path)[0] == 200, path
            # a GET with a body that would be a valid change is still only a read
            assert call(shared, "GET", path, body={"blue": 1, "pool": "green"})[0] == 200, path
    # GETs on the endpoints that change things (405) change nothing either
    for path in ("/api/v1/switch", "/api/v1/reload"):
        assert call(shared, "GET", path, body={"pool": "green"})[0] == 405
    assert snapshot(shared) == before


# --------------------------------------------------------------------------- changes


def test_put_partial_update_takes_effect(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config_for(three_pools))
    sp.wait_readyz()
    before = sticky_clients(sp, 30)
    assert set(before.values()) <= {"blue", "canary"}

    status, headers, body = call(sp, "PUT", "/api/v1/weights", {"canary": 20})
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert body == {"blue": 90, "green": 0, "canary": 20}  # the full map; others keep theirs
    assert get_weights(sp) == body

    status, _, body = call(sp, "PUT", "/api/v1/weights", {"canary": 100, "blue": 0})
    assert status == 200, body
    assert body == {"blue": 0, "green": 0, "canary": 100}
    # the next request already follows: new clients and returning ones (blue is at 0)
    for _ in range(20):
        assert proxy_pool(sp)[0] == "canary"
    for cookie in before:
        assert proxy_pool(sp, cookie)[0] == "canary"

    # fractional weights are kept as given
    status, _, body = call(sp, "PUT", "/api/v1/weights", {"blue": 12.5})
    assert status == 200, body
    assert body == {"blue": 12.5, "green": 0, "canary": 100}


def test_switch_moves_everyone(splitter_factory: Any, three_pools: dict[str, Backend]) -> None:
    sp = splitter_factory(config_for(three_pools))
    sp.wait_readyz()
    clients = sticky_clients(sp, 30)
    assert set(clients.values()) <= {"blue", "canary"}

    status, headers, body = call(sp, "POST", "/api/v1/switch", {"pool": "green"})
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert body == {
        "weights": {"blue": 0, "green": 100, "canary": 0},
        "previous": START,
    }
    assert get_weights(sp) == body["weights"]
    for cookie in clients:  # returning clients, whatever pool they were in
        assert proxy_pool(sp, cookie)[0] == "green"
    for _ in range(20):
        assert proxy_pool(sp)[0] == "green"

    status, _, body = call(sp, "POST", "/api/v1/switch", {"pool": "blue"})
    assert status == 200, body
    assert body == {
        "weights": {"blue": 100, "green": 0, "canary": 0},
        "previous": {"blue": 0, "green": 100, "canary": 0},
    }
    for cookie in clients:
        assert proxy_pool(sp, cookie)[0] == "blue"


def test_events_list_changes_in_order(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config_for(three_pools))
    start_count = len(get_events(sp))
    assert call(sp, "PUT", "/api/v1/weights", {"canary": 30})[0] == 200
    assert call(sp, "PUT", "/api/v1/weights", {"canary": 50, "blue": 50})[0] == 200
    assert call(sp, "POST", "/api/v1/switch", {"pool": "green"})[0] == 200
    # refused changes are no events
    assert call(sp, "PUT", "/api/v1/weights", {"purple": 1})[0] == 404
    assert call(sp, "PUT", "/api/v1/weights", {"blue": 0, "green": 0})[0] == 409

    events = get_events(sp)
    assert len(events) == start_count + 3
    new_events = events[start_count:]
    expected = [
        (START, {"blue": 90, "green": 0, "canary": 30}),
        ({"blue": 90, "green": 0, "canary": 30}, {"blue": 50, "green": 0, "canary": 50}),
        ({"blue": 50, "green": 0, "canary": 50}, {"blue": 0, "green": 100, "canary": 0}),
    ]
    for event, (old, new) in zip(new_events, expected, strict=True):
        assert event["source"] == "api", event
        assert event["old"] == old, event
        assert event["new"] == new, event
        assert isinstance(event["time"], str) and event["time"], event
        assert isinstance(event["what"], str) and event["what"], event
    times = [e["time"] for e in new_events]
    assert times == sorted(times)


def test_reload_answers_200(splitter_factory: Any, three_pools: dict[str, Backend]) -> None:
    sp = splitter_factory(config_for(three_pools))
    status, _, body = call(sp, "POST", "/api/v1/reload")
    assert status == 200, body
    assert get_weights(sp) == START
    # an invalid file: 422 with the errors, the old config kept
    sp.config_path.write_text("listen: [\n")
    status, headers, body = call(sp, "POST", "/api/v1/reload")
    assert_json_error(status, headers, body, 422)
    assert get_weights(sp) == START


# --------------------------------------------------------------------------- bad input

NOT_OBJECT = [
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"", id="empty"),
    pytest.param(b"[1, 2]", id="array"),
    pytest.param(b"[]", id="empty-array"),
    pytest.param(b'"blue"', id="string"),
    pytest.param(b"42", id="number"),
    pytest.param(b"null", id="null"),
    pytest.param(b"true", id="true"),
    pytest.param(b'{"blue": 10', id="truncated"),
    pytest.param(b'{"blue": 10}{"blue": 20}', id="two-values"),
    pytest.param(b'{"blue": "\xff"}', id="bad-utf8"),
]

BAD_WEIGHT_VALUES = [
    pytest.param(b"NaN", id="NaN"),
    pytest.param(b"Infinity", id="Infinity"),
    pytest.param(b"-Infinity", id="-Infinity"),
    pytest.param(b"1e400", id="1e400"),
    pytest.param(b"-1e400", id="-1e400"),
    pytest.param(b"1" + b"0" * 400, id="400-digit-int"),
    pytest.param(b"-1", id="-1"),
    pytest.param(b"-0.5", id="-0.5"),
    pytest.param(b"-1e-300", id="-1e-300"),
    pytest.param(b"1000000.5", id="1000000.5"),
    pytest.param(b"1000000.0000001", id="just-above-a-million"),
    pytest.param(b"1000001", id="1000001"),
    pytest.param(b"1e7", id="1e7"),
    pytest.param(b"1e20", id="1e20"),
    pytest.param(b"1e308", id="1e308"),
    pytest.param(b"9223372036854775807", id="2**63-1"),
    pytest.param(b"9223372036854775808", id="2**63"),
    pytest.param(b"18446744073709551615", id="2**64-1"),
    pytest.param(b"18446744073709551616", id="2**64"),
    pytest.param(b"100000000000000000000000000000", id="10**29"),
    pytest.param(b"true", id="true"),
    pytest.param(b"false", id="false"),
    pytest.param(b'"10"', id="string-10"),
    pytest.param(b"null", id="null"),
    pytest.param(b"{}", id="object"),
    pytest.param(b"[10]", id="array"),
]


@pytest.mark.parametrize("raw", NOT_OBJECT)
@pytest.mark.parametrize("path,method", [("/api/v1/weights", "PUT"), ("/api/v1/switch", "POST")])
def test_body_not_a_json_object_is_400(
    shared: SplitterProc, raw: bytes, path: str, method: str
) -> None:
    before = snapshot(shared)
    assert_json_error(*call(shared, method, path, raw=raw), expected=400)
    assert snapshot(shared) == before


@pytest.mark.parametrize("value", BAD_WEIGHT_VALUES)
def test_bad_weight_value_is_400(shared: SplitterProc, value: bytes) -> None:
    before = snapshot(shared)
    assert_json_error(*call(shared, "PUT", "/api/v1/weights", raw=b'{"blue": ' + value + b"}"), 400)
    # also with a valid change next to it: all or nothing
    raw = b'{"canary": 50, "blue": ' + value + b"}"
    assert_json_error(*call(shared, "PUT", "/api/v1/weights", raw=raw), 400)
    assert snapshot(shared) == before


def test_weight_edges_are_taken_and_shown_everywhere(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    """1,000,000 exactly, -0.0 and tiny positive numbers are weights: every answer that
    shows them (weights, pools, events, metrics) carries them, and so does a restart."""
    sp = splitter_factory(config_for(three_pools))
    sp.wait_readyz()
    raw = b'{"blue": 1e6, "green": -0.0, "canary": 1e-300}'
    status, _, body = call(sp, "PUT", "/api/v1/weights", raw=raw)
    assert status == 200, body
    expected = {"blue": 1000000, "green": 0, "canary": 1e-300}
    assert body == expected
    status, _, text = http_request(sp.admin_url + "/api/v1/weights")
    assert status == 200 and b"-0" not in text, text  # no negative zero on the wire

    def shown(sp: SplitterProc) -> None:
        assert get_weights(sp) == expected
        status, _, pools = call(sp, "GET", "/api/v1/pools")
        assert status == 200, pools
        assert {name: info["weight"] for name, info in pools.items()} == expected
        status, _, metrics = call(sp, "GET", "/metrics")
        assert status == 200
        gauges = {
            line.split('"')[1]: float(line.rpartition(" ")[2])
            for line in metrics.decode().splitlines()
            if line.startswith("splitter_pool_weight{")
        }
        assert gauges == expected

    shown(sp)
    assert get_events(sp)[-1]["new"] == expected
    for _ in range(10):  # 1e-300 against 1e6: blue takes (all but a 1e-306 share of) it all
        assert proxy_pool(sp)[0] == "blue"

    # the smallest positive double alone takes all the traffic
    raw = b'{"blue": 0, "canary": 5e-324}'
    status, _, body = call(sp, "PUT", "/api/v1/weights", raw=raw)
    assert status == 200, body
    assert body == {"blue": 0, "green": 0, "canary": 5e-324}
    for _ in range(10):
        assert proxy_pool(sp)[0] == "canary"

    raw = b'{"blue": 1000000, "canary": 1e-300}'
    assert call(sp, "PUT", "/api/v1/weights", raw=raw)[0] == 200
    assert sp.stop() == 0
    again = splitter_factory(sp.config_path)
    shown(again)
    assert "Traceback" not in again.stderr_text()


def test_refused_huge_weight_leaves_every_answer_and_a_restart_working(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config_for(three_pools))
    before = snapshot(sp)
    for raw in (b'{"green": 1e20}', b'{"green": 18446744073709551616}', b'{"green": 1e308}'):
        assert_json_error(*call(sp, "PUT", "/api/v1/weights", raw=raw), expected=400)
    assert snapshot(sp) == before
    assert call(sp, "GET", "/metrics")[0] == 200
    assert sp.stop() == 0
    again = splitter_factory(sp.config_path)
    assert get_weights(again) == START
    assert "Traceback" not in sp.stderr_text() + again.stderr_text()


def test_reload_with_weight_above_a_million_is_422(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config_for(three_pools))
    before = snapshot(sp)
    text = sp.config_path.read_text()
    assert "weight: 0\n" in text
    sp.config_path.write_text(text.replace("weight: 0\n", "weight: 1.0e+20\n", 1))
    line = 1 + text[: text.index("weight: 0\n")].count("\n")
    status, headers, body = call(sp, "POST", "/api/v1/reload")
    assert_json_error(status, headers, body, 422)
    assert any(f"pools.green.weight (line {line}): must be <= 1000000" in e for e in body["errors"])
    weights, _, pools = snapshot(sp)
    assert (weights, pools) == (before[0], before[2])


@pytest.mark.parametrize(
    "body,expected",
    [
        pytest.param({"purple": 10}, 404, id="unknown-pool"),
        pytest.param({"blue": 50, "purple": 10}, 404, id="unknown-with-known"),
        pytest.param({"BLUE": 10}, 404, id="pool-name-case"),
        pytest.param({"blue": 0, "canary": 0}, 409, id="all-zero"),
        pytest.param({"blue": 0.0, "canary": 0, "green": 0}, 409, id="all-zero-explicit"),
    ],
)
def test_put_weights_refused(shared: SplitterProc, body: Any, expected: int) -> None:
    before = snapshot(shared)
    assert_json_error(*call(shared, "PUT", "/api/v1/weights", body), expected=expected)
    assert snapshot(shared) == before


def test_put_empty_object_changes_nothing(shared: SplitterProc) -> None:
    """`{}` names no pool: either refused (400) or a no-op answering the map."""
    before = snapshot(shared)
    status, headers, body = call(shared, "PUT", "/api/v1/weights", raw=b"{}")
    if status == 200:
        assert body == START
    else:
        assert_json_error(status, headers, body, 400)
    assert snapshot(shared)[0] == before[0]


@pytest.mark.parametrize(
    "body,expected",
    [
        pytest.param({"pool": "purple"}, 404, id="unknown-pool"),
        pytest.param({}, 400, id="missing-pool"),
        pytest.param({"name": "green"}, 400, id="other-key"),
        pytest.param({"pool": 1}, 400, id="pool-number"),
        pytest.param({"pool": None}, 400, id="pool-null"),
        pytest.param({"pool": ["green"]}, 400, id="pool-list"),
        pytest.param({"pool": {"name": "green"}}, 400, id="pool-object"),
        pytest.param({"pool": True}, 400, id="pool-true"),
    ],
)
def test_switch_refused(shared: SplitterProc, body: Any, expected: int) -> None:
    before = snapshot(shared)
    assert_json_error(*call(shared, "POST", "/api/v1/switch", body), expected=expected)
    assert snapshot(shared) == before


@pytest.mark.parametrize("path,method", [("/api/v1/weights", "PUT"), ("/api/v1/switch", "POST")])
def test_body_over_64k_with_content_length_is_413(
    shared: SplitterProc, path: str, method: str
) -> None:
    before = snapshot(shared)
    # a valid change padded with whitespace: refused for its size, not applied
    valid = b'{"canary": 50}' if method == "PUT" else b'{"pool": "green"}'
    raw = valid + b" " * (MAX_BODY + 1 - len(valid))
    assert_json_error(*call(shared, method, path, raw=raw), expected=413)
    assert_json_error(*call(shared, method, path, raw=b"x" * (1024 * 1024)), expected=413)
    assert snapshot(shared) == before


@pytest.mark.parametrize("path,method", [("/api/v1/weights", "PUT"), ("/api/v1/switch", "POST")])
def test_body_over_64k_chunked_is_413(shared: SplitterProc, path: str, method: str) -> None:
    before = snapshot(shared)
    valid = b'{"canary": 50}' if method == "PUT" else b'{"pool": "green"}'
    body = valid + b" " * (MAX_BODY + 1 - len(valid))
    chunks = b""
    for i in range(0, len(body), 8192):
        piece = body[i : i + 8192]
        chunks += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    chunks += b"0\r\n\r\n"
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + chunks
    status, body_json = raw_admin(shared, request)
    assert status == 413, body_json
    assert isinstance(body_json, dict) and isinstance(body_json.get("error"), str)
    assert snapshot(shared) == before


def test_body_of_exactly_64k_is_taken(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    """ "Over 64 KiB" is refused; 64 KiB itself is not over."""
    sp = splitter_factory(config_for(three_pools))
    valid = b'{"canary": 50}'
    raw = valid + b" " * (MAX_BODY - len(valid))
    assert len(raw) == MAX_BODY
    status, _, body = call(sp, "PUT", "/api/v1/weights", raw=raw)
    assert status == 200, body
    assert body == {"blue": 90, "green": 0, "canary": 50}


@pytest.mark.parametrize(
    "method,path",
    [
        ("DELETE", "/api/v1/weights"),
        ("POST", "/api/v1/weights"),
        ("PATCH", "/api/v1/weights"),
        ("GET", "/api/v1/switch"),
        ("PUT", "/api/v1/switch"),
        ("DELETE", "/api/v1/switch"),
        ("GET", "/api/v1/reload"),
        ("PUT", "/api/v1/pools"),
        ("DELETE", "/api/v1/events"),
        ("POST", "/api/v1/openapi.json"),
        ("POST", "/healthz"),
        ("POST", "/metrics"),
    ],
)
def test_wrong_method_is_405(shared: SplitterProc, method: str, path: str) -> None:
    before = snapshot(shared)
    body = {"blue": 10, "pool": "green"}
    status, headers, reply = call(shared, method, path, body=body)
    assert_json_error(status, headers, reply, 405)
    assert headers.get("allow"), headers  # RFC 9110: a 405 lists the methods it takes
    assert snapshot(shared) == before


def test_unknown_api_path_is_404_json(shared: SplitterProc) -> None:
    before = snapshot(shared)
    assert_json_error(*call(shared, "PUT", "/api/v1/weight", {"blue": 1}), expected=404)
    assert_json_error(*call(shared, "GET", "/api/v2/weights"), expected=404)
    assert snapshot(shared) == before


# --------------------------------------------------------------------------- token

BAD_AUTH = [
    pytest.param(None, id="missing"),
    pytest.param("Bearer wrong", id="wrong"),
    pytest.param(f"Bearer {TOKEN[:-1]}", id="prefix"),
    pytest.param(f"Bearer {TOKEN}2", id="longer"),
    pytest.param("Bearer ", id="empty"),
    pytest.param(f"Basic {TOKEN}", id="basic-scheme"),
    pytest.param(TOKEN, id="no-scheme"),
    pytest.param(f"Token {TOKEN}", id="token-scheme"),
]


@pytest.mark.parametrize("auth", BAD_AUTH)
def test_token_required_on_api(guarded: SplitterProc, auth: str | None) -> None:
    before = snapshot(guarded, TOKEN)
    headers = {"Authorization": auth} if auth is not None else {}
    calls = [("GET", p, None) for p in API_GETS] + [
        ("PUT", "/api/v1/weights", {"canary": 50}),
        ("POST", "/api/v1/switch", {"pool": "green"}),
        ("POST", "/api/v1/reload", None),
        ("GET", "/api/v1/nothing-here", None),
    ]
    for i, (method, path, body) in enumerate(calls):
        if i % 8 == 0:
            client = another_client()  # 8 wrong tokens each: below the lockout of an address
        status, resp_headers, reply = call(
            guarded, method, path, body=body, headers=headers, source=client
        )
        assert_json_error(status, resp_headers, reply, 401)
        assert TOKEN not in json.dumps(reply)
    assert snapshot(guarded, TOKEN) == before


def test_token_with_non_ascii_authorization_is_401(guarded: SplitterProc) -> None:
    """Header bytes that are not ASCII (or not UTF-8) are a wrong token, not a crash."""
    before = snapshot(guarded, TOKEN)
    client = another_client()
    for value in (b"Bearer s3cr\xe9t", b"Bearer \xff\xfe", "Bearer s3crét".encode()):
        request = (
            b"GET /api/v1/weights HTTP/1.1\r\nHost: admin\r\nAuthorization: "
            + value
            + b"\r\nConnection: close\r\n\r\n"
        )
        status, body = raw_admin(guarded, request, source=client)
        assert status == 401, (value, status, body)
        assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    assert snapshot(guarded, TOKEN) == before


def test_token_accepted(guarded: SplitterProc) -> None:
    for path in API_GETS:
        status, _, _ = call(guarded, "GET", path, token=TOKEN)
        assert status == 200, path
    assert get_weights(guarded, TOKEN) == START
    # bad input behind a good token: the usual 4xx, not 401
    assert_json_error(*call(guarded, "PUT", "/api/v1/weights", {"x": 1}, token=TOKEN), 404)


def test_token_allows_changes(splitter_factory: Any, three_pools: dict[str, Backend]) -> None:
    sp = splitter_factory(config_for(three_pools, admin={"token": TOKEN}))
    status, _, body = call(sp, "PUT", "/api/v1/weights", {"canary": 50}, token=TOKEN)
    assert status == 200, body
    assert body == {"blue": 90, "green": 0, "canary": 50}
    status, _, body = call(sp, "POST", "/api/v1/switch", {"pool": "green"}, token=TOKEN)
    assert status == 200, body
    assert call(sp, "POST", "/api/v1/reload", token=TOKEN)[0] == 200


def test_probes_and_metrics_need_no_token(guarded: SplitterProc) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert call(guarded, "GET", path)[0] == 200, path
        assert call(guarded, "GET", path, headers={"Authorization": "Bearer wrong"})[0] == 200


def test_no_token_configured_needs_no_auth(shared: SplitterProc) -> None:
    for path in API_GETS:
        assert call(shared, "GET", path)[0] == 200, path
        # a stray Authorization header does not matter either
        assert call(shared, "GET", path, headers={"Authorization": "Bearer x"})[0] == 200, path


# --------------------------------------------------------------------------- Host and Origin

# Every path, with each method it takes, one it does not take, and an unknown path.
EVERY_CALL = [(m, p) for p, methods in ENDPOINTS.items() for m in sorted(methods)] + [
    ("DELETE", "/api/v1/weights"),
    ("POST", "/metrics"),
    ("GET", "/api/v1/nothing-here"),
    ("GET", "/"),
]
CHANGE_BODY = {"canary": 50, "pool": "green"}
FOREIGN_HOSTS = [
    "evil.com",
    "evil.com:{port}",
    "localhost.evil.com",
    "localhost.evil.com:{port}",
    "127.0.0.1.evil.com",
    "127.0.0.1.evil.com:{port}",
    "[::2]",
    "[::2]:{port}",
    "localhost.",
    "127.1:{port}",
    "0.0.0.0:{port}",
    "[::ffff:127.0.0.1]:{port}",
]
LOOPBACK_HOSTS = [
    "localhost:{port}",
    "LOCALHOST:{port}",
    "localhost",
    "127.0.0.1:{port}",
    "127.5.6.7",
    "127.5.6.7:{port}",
    "[::1]:{port}",
    "[::1]",
]


def with_host(sp: SplitterProc, host: str, method: str, path: str, **kw: Any) -> Any:
    headers = {"Host": host.format(port=sp.admin_port), **kw.pop("headers", {})}
    return call(sp, method, path, headers=headers, **kw)


def raw_call(sp: SplitterProc, method: str, path: str, head: str, body: bytes = b"") -> Any:
    """A request written by hand (no Host unless `head` has one); (status, parsed body)."""
    request = f"{method} {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n"
    return raw_admin(sp, request.encode() + b"Connection: close\r\n\r\n" + body)


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_without_token_a_foreign_host_is_403_on_every_path(shared: SplitterProc, host: str) -> None:
    """DNS rebinding: a page of evil.com whose name now resolves to 127.0.0.1 sends its own
    Host; without a token the admin listener serves nothing to it, not even /metrics."""
    before = snapshot(shared)
    for method, path in EVERY_CALL:
        body = CHANGE_BODY if method in ("PUT", "POST") else None
        status, headers, reply = with_host(shared, host, method, path, body=body)
        assert_json_error(status, headers, reply, 403)
        assert "weights" not in reply and "pools" not in reply, reply
    assert snapshot(shared) == before


@pytest.mark.parametrize("method,path", EVERY_CALL)
def test_without_token_an_empty_or_missing_host_is_refused(
    shared: SplitterProc, method: str, path: str
) -> None:
    before = snapshot(shared)
    body = json.dumps(CHANGE_BODY).encode() if method in ("PUT", "POST") else b""
    head = "Content-Type: application/json\r\n"
    status, reply = raw_call(shared, method, path, "Host:\r\n" + head, body)
    assert status == 403 and isinstance(reply, dict) and reply.get("error"), (status, reply)
    # HTTP/1.0 may leave Host out; it is still no loopback Host
    request = f"{method} {path} HTTP/1.0\r\n{head}Content-Length: {len(body)}\r\n\r\n"
    status, reply = raw_admin(shared, request.encode() + body)
    assert status == 403 and isinstance(reply, dict) and reply.get("error"), (status, reply)
    # HTTP/1.1 without Host, or with two: RFC 9112 makes these a 400 before anything else
    two = "Host: 127.0.0.1\r\nHost: "
    for hosts in ("", f"{two}127.0.0.1\r\n", f"{two}evil.com\r\n"):
        status, reply = raw_call(shared, method, path, hosts + head, body)
        assert status in (400, 403), (hosts, status, reply)
    assert snapshot(shared) == before


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_without_token_loopback_hosts_reach_every_path(shared: SplitterProc, host: str) -> None:
    for method, path in EVERY_CALL:
        if method == "GET" and path.startswith(("/api/v1/", "/healthz", "/readyz", "/metrics")):
            status, _, reply = with_host(shared, host, method, path)
            expected = 404 if path == "/api/v1/nothing-here" else 200
            assert status == expected, (host, path, status, reply)


def test_text_plain_cross_site_post_is_403(shared: SplitterProc) -> None:
    """The attack as a browser sends it: a form-like text/plain POST from another site,
    straight to 127.0.0.1 (right Host, foreign Origin) or through DNS rebinding."""
    before = snapshot(shared)
    for host, origin in [
        ("127.0.0.1:{port}", "http://evil.com"),
        ("evil.com:{port}", "http://evil.com:{port}"),
    ]:
        origin = origin.format(port=shared.admin_port)
        for path, raw in [
            ("/api/v1/switch", b'{"pool": "green"}'),
            ("/api/v1/weights", b'{"canary": 100, "blue": 0}'),
            ("/api/v1/reload", b""),
        ]:
            method = "PUT" if path.endswith("weights") else "POST"
            headers = {"Content-Type": "text/plain", "Origin": origin}
            status, resp_headers, reply = with_host(
                shared, host, method, path, raw=raw, headers=headers
            )
            assert_json_error(status, resp_headers, reply, 403)
    assert snapshot(shared) == before


def foreign_origins(port: int) -> list[str]:
    return [
        "null",
        "http://evil.com",
        f"http://localhost:{port + 1 if port < 65535 else 1}",
        f"http://127.0.0.1:{port + 1 if port < 65535 else 1}",
        f"https://127.0.0.1:{port}",
        f"http://127.0.0.1:{port}.evil.com",
        "http://127.0.0.1",
        "",
    ]


@pytest.mark.parametrize(
    "method,path",
    [
        ("PUT", "/api/v1/weights"),
        ("POST", "/api/v1/switch"),
        ("POST", "/api/v1/reload"),
        ("DELETE", "/api/v1/weights"),
        ("POST", "/metrics"),
        ("POST", "/api/v1/nothing-here"),
    ],
)
def test_a_change_from_another_origin_is_403(shared: SplitterProc, method: str, path: str) -> None:
    before = snapshot(shared)
    host = f"127.0.0.1:{shared.admin_port}"
    for origin in foreign_origins(shared.admin_port):
        status, headers, reply = call(
            shared, method, path, body=CHANGE_BODY, headers={"Origin": origin, "Host": host}
        )
        assert_json_error(status, headers, reply, 403)
    # two Origin headers, the second one the right one
    head = f"Host: {host}\r\nOrigin: http://evil.com\r\nOrigin: http://{host}\r\n"
    status, reply = raw_call(shared, method, path, head, json.dumps(CHANGE_BODY).encode())
    assert status == 403, reply
    assert snapshot(shared) == before


def test_reads_with_another_origin_are_served(shared: SplitterProc) -> None:
    for path in [*API_GETS, "/healthz", "/readyz", "/metrics"]:
        status, _, _ = call(shared, "GET", path, headers={"Origin": "http://evil.com"})
        assert status == 200, path


def test_a_change_from_its_own_origin_is_served(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config_for(three_pools))
    port = sp.admin_port
    for host, weight in [(f"127.0.0.1:{port}", 20), (f"localhost:{port}", 30), ("[::1]", 40)]:
        headers = {"Host": host, "Origin": f"http://{host}"}
        status, _, body = call(sp, "PUT", "/api/v1/weights", {"canary": weight}, headers=headers)
        assert status == 200, (host, body)
        assert body["canary"] == weight
    # curl's way: Host 127.0.0.1:PORT and no Origin
    status, _, body = call(sp, "POST", "/api/v1/switch", {"pool": "green"})
    assert status == 200, body


def test_with_token_any_host_is_served_but_a_foreign_origin_is_not(guarded: SplitterProc) -> None:
    before = snapshot(guarded, TOKEN)
    for host in FOREIGN_HOSTS + LOOPBACK_HOSTS:
        status, _, reply = with_host(guarded, host, "GET", "/api/v1/weights", token=TOKEN)
        assert (status, reply) == (200, START), host
        assert with_host(guarded, host, "GET", "/api/v1/weights")[0] == 401, host
        assert with_host(guarded, host, "GET", "/metrics")[0] == 200, host
    # a cross-site change: 403 before the token is even looked at, so with a good one too
    for origin in [*foreign_origins(guarded.admin_port), "http://splitter.example"]:
        for token in (TOKEN, None, "wrong"):
            for method, path in [("PUT", "/api/v1/weights"), ("POST", "/api/v1/switch")]:
                status, headers, reply = with_host(
                    guarded, "splitter.example", method, path, body=CHANGE_BODY,
                    headers={"Origin": origin}, token=token,
                )  # fmt: skip
                if origin == "http://splitter.example":
                    assert status == (401 if token != TOKEN else 400), (origin, token, reply)
                else:
                    assert_json_error(status, headers, reply, 403)
    assert snapshot(guarded, TOKEN) == before


def test_with_token_a_change_from_its_own_origin_is_served(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config_for(three_pools, admin={"token": TOKEN}))
    headers = {"Host": "splitter.example:8443", "Origin": "http://splitter.example:8443"}
    status, _, body = call(sp, "PUT", "/api/v1/weights", {"canary": 50}, None, headers, TOKEN)
    assert status == 200, body


# --------------------------------------------------------------------------- proxy listener


def test_admin_api_not_on_proxy_listener(shared: SplitterProc) -> None:
    before = snapshot(shared)
    for method, path, body in [
        ("GET", "/api/v1/weights", None),
        ("GET", "/api/v1/openapi.json", None),
        ("PUT", "/api/v1/weights", {"canary": 100, "blue": 0}),
        ("POST", "/api/v1/switch", {"pool": "green"}),
        ("POST", "/api/v1/reload", None),
    ]:
        data = json.dumps(body).encode() if body is not None else None
        status, headers, content = http_request(
            shared.proxy_url + path, method, body=data, headers={"X-Splitter-Pool": "blue"}
        )
        # it reached a backend (the Flask app has no such route) and not the admin API
        assert status in (404, 405), (method, path, status, content)
        assert headers.get("x-backend") in ("blue", "canary"), headers
        assert b'"weights"' not in content and b"openapi" not in content
    assert snapshot(shared) == before


# --------------------------------------------------------------------------- schemathesis


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_schemathesis_admin_api(splitter_factory: Any, three_pools: dict[str, Backend]) -> None:
    """Every operation of the served OpenAPI description, fuzzed with valid and invalid
    data (30 examples each, derandomized): no 5xx, and every answer conforms to the
    description (status code, content type, response schema)."""
    import schemathesis  # in the test extra: a missing install must fail, not skip
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    sp = splitter_factory(config_for(three_pools))
    schema = schemathesis.openapi.from_url(sp.admin_url + "/api/v1/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []
    calls: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # (schemathesis leaves out the operation serving the schema itself)
    documented = {route.path for route in ROUTES if route.documented}
    assert documented - {"/api/v1/openapi.json"} == {op.path for op in operations}
    for operation in operations:
        if operation.path == "/api/v1/stream":
            continue  # an endless event stream: tested in test_e2e_live.py
        for mode in schemathesis.GenerationMode:

            @settings(
                max_examples=30,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(base_url=sp.admin_url, timeout=10)
                calls.append(response.status_code)
                case.validate_response(response, checks=checks)

            try:
                run()
            except Unsatisfiable:
                # no invalid request can be made for an operation without any input
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.path
            except Exception as exc:  # collect per operation and mode, report all
                failures.append(
                    f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}"
                )
    assert not failures, "\n\n".join(failures)
    assert len(calls) >= 100 and any(c >= 400 for c in calls), calls
    # whatever the fuzzer did, the process is alive and its weights consistent
    weights = get_weights(sp)
    assert set(weights) == set(START) and any(w > 0 for w in weights.values())
    assert sp.running


# --------------------------------------------------------------------------- splitter ctl


def ctl(sp: SplitterProc, *args: str, env: Mapping[str, str] | None = None) -> Any:
    full_env = {"SPLITTER_ADMIN_TOKEN": "", "SPLITTER_ADMIN_URL": "", **(env or {})}
    return run_cli("ctl", "--admin", sp.admin_url, *args, env=full_env)


def test_ctl_against_real_process(splitter_factory: Any, three_pools: dict[str, Backend]) -> None:
    sp = splitter_factory(config_for(three_pools))

    r = ctl(sp, "weights")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["POOL", "WEIGHT", "SHARE"]
    assert [ln.split() for ln in lines[1:]] == [
        ["blue", "90", "90%"],
        ["green", "0", "0%"],
        ["canary", "10", "10%"],
    ]

    r = ctl(sp, "set", "canary=30", "blue=70")
    assert r.returncode == 0, r.stderr
    assert get_weights(sp) == {"blue": 70, "green": 0, "canary": 30}
    assert ["canary", "30", "30%"] in [ln.split() for ln in r.stdout.splitlines()]

    r = ctl(sp, "--json", "weights")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"blue": 70, "green": 0, "canary": 30}

    r = ctl(sp, "switch", "green")
    assert r.returncode == 0, r.stderr
    assert get_weights(sp) == {"blue": 0, "green": 100, "canary": 0}
    assert "green" in r.stdout and "100" in r.stdout

    r = ctl(sp, "events")
    assert r.returncode == 0, r.stderr
    api_lines = [ln for ln in r.stdout.splitlines() if " api " in f" {ln} "]
    assert len(api_lines) == 2, r.stdout

    r = ctl(sp, "--json", "events")
    assert r.returncode == 0, r.stderr
    events = json.loads(r.stdout)["events"]
    assert [e["new"] for e in events if e["source"] == "api"] == [
        {"blue": 70, "green": 0, "canary": 30},
        {"blue": 0, "green": 100, "canary": 0},
    ]

    r = ctl(sp, "pools")
    assert r.returncode == 0, r.stderr
    for backend in three_pools.values():
        assert backend.url in r.stdout

    r = ctl(sp, "reload")
    assert r.returncode == 0, r.stderr
    assert "reloaded" in r.stdout

    # server-side refusals: exit 1, one line on stderr, nothing changed
    for args, code in [
        (("set", "purple=10"), 404),
        (("set", "blue=0", "green=0", "canary=0"), 409),
        (("switch", "purple"), 404),
    ]:
        r = ctl(sp, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f"splitter ctl: {code}: "), r.stderr
    assert get_weights(sp) == {"blue": 0, "green": 100, "canary": 0}

    # usage errors: exit 2 before any request
    r = ctl(sp, "set", "canary=-1")
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_ctl_with_token(splitter_factory: Any, three_pools: dict[str, Backend]) -> None:
    sp = splitter_factory(config_for(three_pools, admin={"token": TOKEN}))

    r = ctl(sp, "--token", TOKEN, "set", "canary=30", "blue=70")
    assert r.returncode == 0, r.stderr
    assert get_weights(sp, TOKEN) == {"blue": 70, "green": 0, "canary": 30}

    r = ctl(sp, "weights", env={"SPLITTER_ADMIN_TOKEN": TOKEN})
    assert r.returncode == 0, r.stderr
    assert "canary" in r.stdout

    r = ctl(sp, "switch", "green", "--token", TOKEN)  # options after the command
    assert r.returncode == 0, r.stderr
    assert get_weights(sp, TOKEN) == {"blue": 0, "green": 100, "canary": 0}

    for args, env in [
        (("weights",), None),
        (("set", "canary=50"), None),
        (("--token", "wrong", "weights"), None),
        (("switch", "blue"), {"SPLITTER_ADMIN_TOKEN": "wrong"}),
    ]:
        r = ctl(sp, *args, env=env)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("splitter ctl: 401: "), r.stderr
        assert TOKEN not in r.stderr
    assert get_weights(sp, TOKEN) == {"blue": 0, "green": 100, "canary": 0}


def test_ctl_unreachable() -> None:
    r = run_cli("ctl", "--admin", f"http://127.0.0.1:{free_port()}", "weights")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("splitter ctl: cannot reach the admin API")
