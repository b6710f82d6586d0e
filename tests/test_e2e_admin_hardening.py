"""End to end: the hardening of the admin listener (CONTRACT.md section 5), against a real
`splitter run` process.

- the dashboard's session cookie never reaches a backend;
- wrong tokens are limited per client address, and never lock out another address;
- the admin listener's own limits (head timeout, connection cap) never take the proxy down;
- durations are at most 30 days everywhere;
- state that does not validate is set aside: the process starts and every call answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from tests.rawbackend import RawBackend, Script
from tests.rawhttp import parse_responses, send_raw
from tests.support import (
    Backend,
    SplitterProc,
    http_request,
    pools_config,
    start_splitter,
)

TOKEN = "s3cret-of-the-admin-api"
START = {"blue": 90, "green": 0, "canary": 10}


def call(
    sp: SplitterProc,
    method: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    token: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One admin request on a fresh connection: (status, lower-cased headers, JSON or bytes)."""
    data = None if body is None else json.dumps(body).encode()
    hdrs = dict(headers or {})
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    status, resp_headers, content = http_request(sp.admin_url + path, method, data, hdrs)
    parsed: Any = content
    if resp_headers.get("content-type", "").startswith("application/json"):
        parsed = json.loads(content)
    return status, resp_headers, parsed


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, three_pools: dict[str, Backend]
) -> Iterator[SplitterProc]:
    """One splitter without a token; tests using it must not change anything."""
    proc = start_splitter(pools_config(three_pools, START), tmp_path_factory.mktemp("shared"))
    yield proc
    proc.stop()


# --------------------------------------------------------------------------- the cookie


def echo_cookies(head: bytes) -> Script:
    """A backend's answer: the Cookie header lines it received, one per line, as they came."""
    lines = [ln for ln in head.split(b"\r\n")[1:] if ln.lower().startswith(b"cookie:")]
    body = b"\n".join(lines)
    return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)]


def test_the_dashboard_session_cookie_never_reaches_a_backend(
    splitter_factory: Any, raw_backend: Callable[..., RawBackend]
) -> None:
    """With the dashboard and the app on one host (cookies are scoped by host, not port),
    a browser sends `splitter_admin` to the app too: the proxy drops it, and only it."""
    backend = raw_backend(echo_cookies)
    sp = splitter_factory(
        pools_config({"blue": backend}, {"blue": 100}, admin={"token": TOKEN})
    )
    status, headers, _ = call(sp, "POST", "/api/v1/session", {"token": TOKEN})
    assert status == 204
    session = headers["set-cookie"].split(";", 1)[0]
    assert session.startswith("splitter_admin=")

    cases = [
        ([f"theme=dark; {session}; cart=a%20b"], ["Cookie: theme=dark; cart=a%20b"]),
        ([session], []),
        ([f"{session};id=7", "lang=fr"], ["Cookie: id=7", "Cookie: lang=fr"]),
        (["xsplitter_admin=1; a=splitter_admin"], ["Cookie: xsplitter_admin=1; a=splitter_admin"]),
    ]
    for sent, received in cases:
        head = "".join(f"Cookie: {value}\r\n" for value in sent)
        request = f"GET / HTTP/1.1\r\nHost: app.test\r\n{head}Connection: close\r\n\r\n"
        [response] = parse_responses(send_raw(sp.proxy_port, request.encode()))
        assert response.status == 200, response
        echoed = response.body.decode().split("\n") if response.body else []
        assert echoed == received, sent
    assert all(b"splitter_admin=" not in h.replace(b"xsplitter_admin", b"") for h in backend.heads())
    # and the session itself still works on the admin listener
    cookie = {"Cookie": session, "X-Requested-With": "splitter"}
    assert call(sp, "GET", "/api/v1/weights", headers=cookie)[0] == 200


# --------------------------------------------------------------------------- durations


LONG = "9" * 400  # a float overflow: an infinite duration before it was refused


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pool": "canary", "steps": [{"weight": 5, "hold": LONG}]}, "steps[0].hold"),
        ({"pool": "canary", "steps": [{"weight": 5, "max": LONG + "h"}]}, "steps[0].max"),
        ({"pool": "canary", "steps": [{"weight": 5, "max": "721h"}]}, "steps[0].max"),
        ({"pool": "canary", "analysis": {"warmup": LONG}}, "analysis.warmup"),
        ({"pool": "canary", "analysis": {"latency_floor": "43201m"}}, "analysis.latency_floor"),
        ({"pool": "green", "strategy": "bluegreen", "preview": {"hold": LONG}}, "preview.hold"),
        ({"pool": "green", "strategy": "bluegreen", "preview": {"max": LONG}}, "preview.max"),
        ({"pool": "green", "strategy": "bluegreen", "keep": LONG + "s"}, "keep"),
        ({"pool": "canary", "steps": [{"weight": 5, "hold": "-1s"}]}, "steps[0].hold"),
    ],
)
def test_a_rollout_with_a_duration_over_30_days_is_a_400(
    shared: SplitterProc, body: dict[str, Any], field: str
) -> None:
    sp = shared
    status, _, reply = call(sp, "POST", "/api/v1/rollout", body)
    assert status == 400, reply
    assert reply["error"].startswith(f"{field}: must be"), reply
    assert call(sp, "GET", "/api/v1/rollout")[0] == 404  # nothing was started
    assert call(sp, "GET", "/api/v1/weights")[2] == START
