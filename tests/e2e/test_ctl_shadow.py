"""`splitter ctl shadow` (show, set, stop) against a real `splitter run` with real
backends (tests.backends.shadow_app: one JSON service per version, whose `price` differs
between versions): what it prints is what the admin API says, the changes it makes are
in force, and bad values or refused changes exit as every ctl command does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from splitter import ctl
from tests.support import (
    Backend,
    SplitterProc,
    admin_api,
    http_request,
    pools_config,
    route_entry,
    routes_config,
    run_cli,
    start_shadow_backend,
    wait_until,
)

SplitterFactory = Callable[..., SplitterProc]
IGNORED_HEADERS = ["date", "x-request-id", "set-cookie", "server", "etag", "last-modified",
                   "x-pool"]  # fmt: skip
SHADOW = {"pool": "canary", "share": 1.0, "ignore_headers": IGNORED_HEADERS,
          "ignore_json": ["/generated_at"]}  # fmt: skip


@pytest.fixture(scope="module")
def versions() -> Iterator[dict[str, Backend]]:
    """blue and green (price 10: the same version) and canary (price 11)."""
    started: dict[str, Backend] = {}
    try:
        for pool, price in (("blue", 10), ("green", 10), ("canary", 11)):
            started[pool] = start_shadow_backend(pool, price=price)
        yield started
    finally:
        for backend in started.values():
            backend.stop()


@pytest.fixture
def sp(splitter_factory: SplitterFactory, versions: dict[str, Backend]) -> SplitterProc:
    """blue 100; canary gets a copy of every request."""
    proc: SplitterProc = splitter_factory(
        pools_config(versions, {"blue": 100}, shadow=SHADOW, access_log=False)
    )
    return proc


def run(capsys: pytest.CaptureFixture[str], sp: SplitterProc, *args: str) -> tuple[int, str, str]:
    status = ctl.main(["--admin", sp.admin_url, *args])
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def shadow_of(sp: SplitterProc, path: str = "/api/v1/shadow") -> dict[str, Any]:
    status, body = admin_api(sp, "GET", path)
    assert status == 200, body
    return dict(body)


def send_and_wait(sp: SplitterProc, paths: list[str], compared: int) -> dict[str, Any]:
    for path in paths:
        status, _, _ = http_request(sp.proxy_url + path)
        assert status == 200
    return wait_until(
        lambda: (body := shadow_of(sp))["compared"] >= compared and body,
        15,
        message=f"{compared} copies compared",
    )


def test_shadow_shows_the_shadow_in_force_and_what_its_copies_compared_to(
    sp: SplitterProc, capsys: pytest.CaptureFixture[str]
) -> None:
    state = send_and_wait(sp, [f"/item/{i}?token=s3cret" for i in range(12)], 12)
    status, out, err = run(capsys, sp, "shadow")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "shadow: canary gets copies of 100% of the requests, no reference"
    assert lines[2].split() == ["COMPARED", "SAME", "DIFFER", "NOISE", "SKIPPED", "ERRORS",
                                "DIFF", "RATE"]  # fmt: skip
    assert lines[3].split() == ["12", "0", "12", "0", "0", "0", "100%"]
    assert lines[5].split() == ["FIELD", "DIFFER"]
    assert lines[6].split() == ["/price", "12"]
    heads = lines[8].split()
    assert heads == ["TIME", "METHOD", "PATH", "STATUS", "FIELD", "PRIMARY", "→", "SHADOW"]
    rows = lines[9:]
    assert len(rows) == 10  # the last ten of the API's (oldest first: the newest last)
    assert len(state["recent"]) == 12
    for row, item in zip(rows, state["recent"][-10:], strict=True):
        cells = row.split()
        assert re.fullmatch(r"[0-9]{2}:[0-9]{2}:[0-9]{2}", cells[0]), row
        assert cells[1:] == ["GET", item["path"], "200", "/price", "10", "→", "11"]
    assert rows[-1].split()[2] == "/item/11?token="  # the query's values never shown
    assert "s3cret" not in out

    # --json: the API's body as it is
    status, out, err = run(capsys, sp, "shadow", "--json")
    assert (status, err) == (0, "")
    assert json.loads(out) == shadow_of(sp)


def test_set_and_stop_change_the_shadow_in_force(
    sp: SplitterProc, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, sp, "shadow", "set", "10%")
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == "shadow: canary gets copies of 10% of the requests, no reference"
    assert shadow_of(sp)["share"] == 0.1

    status, out, err = run(capsys, sp, "shadow", "set", "0.5", "--reference", "green")
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == (
        "shadow: canary gets copies of 50% of the requests, reference green"
    )
    body = shadow_of(sp)
    assert (body["pool"], body["share"], body["reference"]) == ("canary", 0.5, "green")
    # blue and green are the same version: a copy to each, and /price still differs
    state = send_and_wait(sp, [f"/item/{i}" for i in range(40)], 1)
    assert state["fields"][0]["field"] == "/price"

    status, out, err = run(capsys, sp, "--json", "shadow", "set", "12.5%", "--no-reference")
    assert (status, err) == (0, "")
    assert json.loads(out)["reference"] is None and json.loads(out)["share"] == 0.125

    # stopped: no pool, and what the copies compared to stays in view
    compared = shadow_of(sp)["compared"]
    status, out, err = run(capsys, sp, "shadow", "stop")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "no shadow traffic on this route now (stopped); what its copies compared to:"
    assert lines[3].split()[0] == str(compared)
    assert shadow_of(sp)["pool"] is None
    http_request(sp.proxy_url + "/item/after")
    assert shadow_of(sp)["compared"] == compared  # nothing copied any more

    # without a shadow, `set` needs the pool: the API's 400, shown as every ctl error
    status, out, err = run(capsys, sp, "shadow", "set", "20%")
    assert (status, out) == (1, "")
    assert one_line(err) == (
        "splitter ctl: 400: no shadow is set for this route: name the pool that gets the copies"
    )
    status, out, err = run(capsys, sp, "shadow", "set", "20%", "--pool", "canary")
    assert (status, err) == (0, "")
    assert shadow_of(sp)["pool"] == "canary" and shadow_of(sp)["share"] == 0.2

    # each change is an event
    whats = [e["what"] for e in admin_api(sp, "GET", "/api/v1/events")[1]["events"]]
    assert whats.count("shadow set") == 4 and whats.count("shadow stopped") == 1


def test_refused_changes_exit_1_with_the_api_s_line(
    sp: SplitterProc, capsys: pytest.CaptureFixture[str]
) -> None:
    before = shadow_of(sp)
    status, out, err = run(capsys, sp, "shadow", "set", "10%", "--pool", "purple")
    assert (status, out) == (1, "")
    line = one_line(err)
    assert line.startswith("splitter ctl: 404: pool: ") and "purple" in line, line
    status, out, err = run(capsys, sp, "shadow", "set", "10%", "--reference", "canary")
    assert (status, out) == (1, "")
    assert one_line(err).startswith("splitter ctl: 400: reference: "), err
    status, out, err = run(capsys, sp, "--json", "shadow", "set", "10%", "--pool", "purple")
    assert status == 1 and "purple" in json.loads(out)["error"]
    assert shadow_of(sp) == before  # nothing changed


def test_the_command_line_with_routes(
    splitter_factory: SplitterFactory,
    versions: dict[str, Backend],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two routes, a shadow on one: --route picks the route, without it the command
    needs one (several routes and none named default), an unknown one is exit 2."""
    pools = {"blue": versions["blue"], "canary": versions["canary"]}
    sp = splitter_factory(
        routes_config(
            route_entry("shop", pools, {"blue": 100}, hosts=["shop.test"], shadow=SHADOW),
            route_entry("api", pools, {"blue": 100}, path_prefix="/item"),
            access_log=False,
        )
    )
    http_request(sp.proxy_url + "/thing", headers={"Host": "shop.test"})
    wait_until(lambda: shadow_of(sp, "/api/v1/routes/shop/shadow")["compared"] == 1, 15)

    # the real command line, in its own process
    admin = ["--admin", sp.admin_url]
    shown = run_cli("ctl", *admin, "shadow", "--route", "shop")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == (
        "shadow: canary gets copies of 100% of the requests, no reference"
    )
    assert shown.stdout.splitlines()[3].split()[:3] == ["1", "1", "0"]  # the same answer
    changed = run_cli("ctl", *admin, "--route", "shop", "shadow", "set", "25%")
    assert changed.returncode == 0, changed.stderr
    assert shadow_of(sp, "/api/v1/routes/shop/shadow")["share"] == 0.25

    status, out, err = run(capsys, sp, "shadow", "--route", "api")
    assert (status, out, err) == (0, "no shadow traffic on this route\n", "")
    status, out, err = run(capsys, sp, "shadow", "stop", "--route", "nope")
    assert (status, out) == (2, "")
    assert one_line(err) == "splitter ctl: 404: unknown route: nope"
    status, out, err = run(capsys, sp, "shadow")
    assert (status, out) == (2, "")
    assert one_line(err) == (
        "splitter ctl: 400: several routes and none named default: pass --route NAME "
        "(one of: shop, api)"
    )
    assert shadow_of(sp, "/api/v1/routes/shop/shadow")["share"] == 0.25
