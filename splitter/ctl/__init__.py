"""`splitter ctl`: a small client for the admin API (CONTRACT.md section 5), for people at a
terminal and for scripts.

Usage:

    splitter ctl [OPTIONS] COMMAND [ARGS] [OPTIONS]

    splitter ctl weights                   pools, weights and share of traffic
    splitter ctl set canary=20 blue=80     set some weights (the others keep theirs)
    splitter ctl switch green              blue/green flip: green 100, all others 0
    splitter ctl reload                    re-read the config file (lists its errors if bad)
    splitter ctl events                    the last changes: time, source, what, old -> new
    splitter ctl pools                     pools with their backends, up or down
    splitter ctl rollout start canary [--steps 5,25,pause,50,100] [--hold 1m] [--max 10m]
                                      [--shadow 10%]   (a test step on copies first)
    splitter ctl rollout start green --bluegreen [--auto-promote] [--keep 10m]
    splitter ctl rollout status [--watch] | pause | resume | promote [--full] | abort | history
    splitter ctl routes                    routes: hosts, path prefix, weights, segments, rollout
    splitter ctl shadow                    shadow traffic: pool, share, what its copies' answers
                                           compared to (rates, fields, last differences)
    splitter ctl shadow set 10% [--pool canary] [--reference green | --no-reference]
    splitter ctl shadow stop               stop copying (runtime state, like a weight)

Options (before or after the command):

    --route NAME       the route a command that concerns pools acts on (weights, set,
                       switch, pools, rollout, shadow): it calls /api/v1/routes/NAME/...; without
                       it, the route `default` or the only route
    --admin URL        admin API (default: $SPLITTER_ADMIN_URL, else http://127.0.0.1:9901)
    --token TOKEN      sent as `Authorization: Bearer TOKEN` (default: $SPLITTER_ADMIN_TOKEN)
    --json             print the server's JSON response as is (also for error responses)
    --timeout SECONDS  per network operation (default: 5)

Exit status: 0 done; 1 the server answered with an error (one line on stderr:
`splitter ctl: STATUS: MESSAGE`; a rejected reload also lists the config errors) or could
not be reached; 2 a usage error (one line on stderr), an unknown route included, and a
command without --route when there are several routes and none named `default`.

Standard library only (no aiohttp), so that it starts fast. Proxy settings in the
environment (http_proxy, ...) are ignored: the admin API is reached directly.
Entry point: `main(argv)`, with the arguments after `ctl`; it returns the exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from splitter.ctl.show import (
    PROG,
    Failure,
    one_line,
    show_events,
    show_history,
    show_pools,
    show_reload,
    show_rollout,
    show_routes,
    show_shadow,
    show_switch,
    show_weights,
)

DEFAULT_ADMIN_URL = "http://127.0.0.1:9901"
DEFAULT_TIMEOUT = 5.0
ENV_URL = "SPLITTER_ADMIN_URL"
ENV_TOKEN = "SPLITTER_ADMIN_TOKEN"
API = "/api/v1"

MAX_WEIGHT = 1_000_000  # as splitter.config.MAX_WEIGHT (not imported: it needs yaml)
DEFAULT_ROUTE = "default"  # as splitter.config.DEFAULT_ROUTE

# The commands that concern pools, and so take --route (CONTRACT.md section 12).
PER_ROUTE = frozenset({"weights", "set", "switch", "pools", "rollout", "shadow"})

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _Exit(Exception):
    """Ends `main` with a status (argparse's --help and errors, without SystemExit)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _UsageError(Exception):
    """Bad arguments: one line on stderr, exit status 2."""


class _WrongRoute(Failure):
    """--route names no route, or is missing where it is needed: exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


# --------------------------------------------------------------------------- arguments


def _add_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options, on the top parser and again on each command so that they may follow
    the command; there they default to SUPPRESS so they never overwrite a value given
    before the command."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("admin API options")
    group.add_argument(
        "--route",
        metavar="NAME",
        default=default(None),
        help="the route a command that concerns pools acts on (default: the route "
        f"{DEFAULT_ROUTE!r}, or the only one)",
    )
    group.add_argument(
        "--admin",
        metavar="URL",
        default=default(None),
        help=f"admin API URL (default: ${ENV_URL}, else {DEFAULT_ADMIN_URL})",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        default=default(None),
        help=f"bearer token for the admin API (default: ${ENV_TOKEN})",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the server's JSON response as is",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_timeout,
        default=default(DEFAULT_TIMEOUT),
        help=f"network timeout in seconds (default: {DEFAULT_TIMEOUT:g})",
    )


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Look at and change a running splitter through its admin API.",
        epilog=f"Options may also follow the command. Run '{PROG} COMMAND --help' for more.",
    )
    _add_options(parser, top=True)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, title="commands"
    )

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=description)
        _add_options(sub, top=False)
        return sub

    command("weights", "show pools, weights and share of traffic", "Show the pool weights.")
    set_ = command(
        "set",
        "set some pools' weights",
        "Set the named pools' weights (the others keep theirs), then show the weights. "
        "Example: set canary=20 blue=80",
    )
    set_.add_argument(
        "assignments", nargs="+", metavar="POOL=WEIGHT", help="a weight, a number >= 0"
    )
    switch = command(
        "switch", "send all traffic to one pool", "Blue/green flip: POOL 100, all others 0."
    )
    switch.add_argument("pool", metavar="POOL", help="the pool to send all traffic to")
    command(
        "reload",
        "re-read the config file",
        "Re-read the config file. If it is invalid the old config is kept and its errors "
        "are listed.",
    )
    command("events", "show the last changes", "Show the last weight and config changes.")
    command("pools", "show pools and their backends", "Show the pools and their backends.")
    rollout = command(
        "rollout",
        "start and drive an automated rollout",
        "Canary and blue-green rollouts, judged by splitter as they go.",
    )
    actions = rollout.add_subparsers(
        dest="action", metavar="ACTION", parser_class=_Parser, title="actions", required=True
    )

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=summary, description=summary)
        _add_options(sub, top=False)
        return sub

    start = action("start", "start a rollout of POOL (a canary, or --bluegreen)")
    start.add_argument("pool", metavar="POOL", help="the candidate pool")
    start.add_argument("--steps", metavar="LIST",
                       help="canary steps in percent, e.g. 5,25,pause,50,100 (pause: a manual "
                            "gate; default 5,25,50,100)")  # fmt: skip
    start.add_argument("--hold", metavar="DURATION", help="least time at a step, e.g. 1m")
    start.add_argument("--max", metavar="DURATION", help="most time at a step, e.g. 10m")
    start.add_argument("--shadow", metavar="SHARE",
                       help="begin with a test step on shadow traffic: the candidate stays at "
                            "weight 0 and gets copies of SHARE of the requests, e.g. 10%% or "
                            "0.1")  # fmt: skip
    start.add_argument("--bluegreen", action="store_true", help="a blue-green rollout")
    start.add_argument("--auto-promote", action="store_true",
                       help="blue-green: switch by itself once the preview passes")  # fmt: skip
    start.add_argument("--keep", metavar="DURATION", help="blue-green: watch after the switch")
    status = action("status", "show the active (or the last) rollout")
    status.add_argument("--watch", action="store_true",
                        help="draw its progress until it ends (exit 0 when promoted)")  # fmt: skip
    action("pause", "pause the active rollout (its weights stay)")
    action("resume", "resume a paused rollout")
    promote = action("promote", "end the current step as passed")
    promote.add_argument("--full", action="store_true", help="straight to promoted")
    action("abort", "roll back now")
    action("history", "the last rollouts")
    command(
        "routes",
        "show the routes",
        "Show the routes: hosts (* for any), path prefix, weights, segments and rollout.",
    )
    shadow = command(
        "shadow",
        "show or change shadow traffic",
        "Without an action: the shadow in force (pool, share, reference) and what its "
        "copies' answers compared to: the counts, the diff rate, the fields that differ "
        "most and the last differences. 'set' and 'stop' change it (runtime state, like "
        "a weight).",
    )
    shadow_actions = shadow.add_subparsers(
        dest="action", metavar="[ACTION]", parser_class=_Parser, title="actions (optional)"
    )
    shadow_set = shadow_actions.add_parser(
        "set",
        help="copy SHARE of the requests to the shadow pool",
        description="Set the share of the requests copied (and the pool, the reference).",
    )
    _add_options(shadow_set, top=False)
    shadow_set.add_argument(
        "share", metavar="SHARE", help="a percent such as 10%%, or a fraction from 0 to 1"
    )
    shadow_set.add_argument(
        "--pool", metavar="POOL", help="the pool that gets the copies (needed when none is set)"
    )
    reference = shadow_set.add_mutually_exclusive_group()
    reference.add_argument("--reference", metavar="POOL",
                           help="a second copy of the primary's version: where it differs "
                                "from the primary, it is noise")  # fmt: skip
    reference.add_argument("--no-reference", action="store_true", help="no reference")
    shadow_stop = shadow_actions.add_parser(
        "stop", help="stop copying", description="Stop shadow traffic on the route."
    )
    _add_options(shadow_stop, top=False)
    return parser


def _parse_weights(assignments: Sequence[str]) -> dict[str, int | float]:
    """`["canary=20", "blue=80"]` -> `{"canary": 20, "blue": 80}`; _UsageError if bad."""
    weights: dict[str, int | float] = {}
    for item in assignments:
        pool, sep, text = item.partition("=")
        pool, text = pool.strip(), text.strip()
        if not sep or not pool or not text:
            raise _UsageError(f"expected POOL=WEIGHT, e.g. canary=20, got {item!r}")
        try:
            value = float(text)
        except ValueError:
            raise _UsageError(f"weight of {pool!r} is not a number: {text!r}") from None
        if not 0 <= value <= MAX_WEIGHT:  # also refuses nan and inf
            raise _UsageError(
                f"weight of {pool!r} must be a number from 0 to {MAX_WEIGHT}, got {text!r}"
            )
        if pool in weights:
            raise _UsageError(f"pool {pool!r} given twice")
        weights[pool] = int(value) if value.is_integer() else value
    return weights


def _admin_url(value: str | None) -> str:
    url = (value if value is not None else os.environ.get(ENV_URL, "")).strip()
    url = url or DEFAULT_ADMIN_URL
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        raise _UsageError(f"bad admin URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _UsageError(f"bad admin URL {url!r}: expected http://HOST:PORT")
    if parts.query or parts.fragment:
        raise _UsageError(f"bad admin URL {url!r}: no query or fragment, please")
    return url.rstrip("/")


def _token(value: str | None) -> str | None:
    token = (value if value is not None else os.environ.get(ENV_TOKEN, "")).strip()
    if not token:
        return None
    if not token.isascii() or not token.isprintable():
        # never echo the token itself
        raise _UsageError("the admin token must be printable ASCII")
    return token


# --------------------------------------------------------------------------- HTTP


class _Client:
    def __init__(self, base_url: str, token: str | None, timeout: float) -> None:
        self.base_url = base_url
        self.token = token
        self.timeout = timeout
        # no proxies from the environment: the admin API is reached directly
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """Returns (status, body) for any answer, 2xx or not; Failure if unreachable."""
        headers = {"Accept": "application/json", "User-Agent": PROG}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PUT"):
            data = b""
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.base_url + API + path, data=data, headers=headers, method=method
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            try:
                content = exc.read()
            except (OSError, http.client.HTTPException):
                content = b""
            finally:
                with contextlib.suppress(Exception):
                    exc.close()
            return int(exc.code), content
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, reason: object) -> Failure:
        if isinstance(reason, TimeoutError):
            text = f"timed out after {self.timeout:g}s"
        elif isinstance(reason, OSError) and reason.strerror:
            text = reason.strerror
        elif isinstance(reason, http.client.RemoteDisconnected | ConnectionResetError):
            text = "the connection was closed without an answer"
        else:
            text = str(reason) or type(reason).__name__
        return Failure(f"{PROG}: cannot reach the admin API at {self.base_url}: {text}")


def _decode(content: bytes) -> Any:
    """The JSON value of a body; raises ValueError if it is not JSON."""
    return json.loads(content.decode("utf-8"))


def _error_message(content: bytes) -> str:
    """The `error` of an error answer ("" when there is none)."""
    try:
        payload = _decode(content)
    except ValueError:
        return ""
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, str) else ""


def _error_lines(status: int, content: bytes, had_token: bool) -> list[str]:
    """`splitter ctl: STATUS: MESSAGE`, then (422) one indented line per config error."""
    message = ""
    extra: list[str] = []
    try:
        payload = _decode(content)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, str):
            message = error
        errors = payload.get("errors")
        if isinstance(errors, list):
            extra = [f"  {e}" for e in errors]
    if not message:
        message = _reason(status)
    if status == 401 and not had_token:
        message += f" (give a token with --token or ${ENV_TOKEN})"
    return [f"{PROG}: {status}: {one_line(message)}", *extra]


def _reason(status: int) -> str:
    try:
        return http.client.responses[status].lower()
    except KeyError:
        return "error"


# --------------------------------------------------------------------------- commands

Show = Callable[[Any], str]


def _request(args: argparse.Namespace) -> tuple[str, str, Any, Show]:
    """(method, path, body, formatter) for the command; the path of a command that
    concerns pools is that of the main route (see `_route_prefix`)."""
    command: str = args.command
    if command == "weights":
        return "GET", "/weights", None, show_weights
    if command == "set":
        return "PUT", "/weights", _parse_weights(args.assignments), show_weights
    if command == "switch":
        pool = args.pool.strip()
        if not pool:
            raise _UsageError("switch: POOL must not be empty")
        return "POST", "/switch", {"pool": pool}, show_switch
    if command == "reload":
        return "POST", "/reload", None, show_reload
    if command == "events":
        return "GET", "/events", None, show_events
    if command == "pools":
        return "GET", "/pools", None, show_pools
    if command == "rollout":
        return _rollout_request(args)
    if command == "routes":
        return "GET", "/routes", None, show_routes
    if command == "shadow":
        return _shadow_request(args)
    raise _UsageError(f"unknown command {command!r}")  # pragma: no cover - argparse checks


def _route_prefix(args: argparse.Namespace) -> str:
    """`/routes/NAME` for --route NAME ("" without it); a usage error on a command that
    does not concern pools."""
    route: str | None = args.route
    if route is None:
        return ""
    if args.command not in PER_ROUTE:
        raise _UsageError(f"--route does not apply to {args.command}, which concerns every route")
    route = route.strip()
    if not route:
        raise _UsageError("--route: NAME must not be empty")
    return "/routes/" + urllib.parse.quote(route, safe="")


def _route_names(client: _Client) -> list[str] | None:
    """The routes' names in config order (GET /routes), None if that cannot be had."""
    try:
        status, content = client.call("GET", "/routes")
        payload = _decode(content) if status == 200 else None
    except (Failure, ValueError):
        return None
    return list(payload) if isinstance(payload, dict) else None


def _fail(client: _Client, args: argparse.Namespace, status: int, content: bytes) -> NoReturn:
    """Raises the failure for an error answer: _WrongRoute (exit 2) when --route names no
    route, or is needed (several routes and none named `default`); else Failure."""
    lines = _error_lines(status, content, client.token is not None)
    if args.command in PER_ROUTE:
        if args.route is not None:
            if status == 404 and _error_message(content).startswith("unknown route"):
                raise _WrongRoute(*lines)
        elif status == 400:
            names = _route_names(client)
            if names is not None and len(names) > 1 and DEFAULT_ROUTE not in names:
                raise _WrongRoute(
                    f"{PROG}: 400: several routes and none named {DEFAULT_ROUTE}: "
                    f"pass --route NAME (one of: {', '.join(names)})"
                )
    raise Failure(*lines)


def _run(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(list(argv))
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    method, path, body, show = _request(args)
    path = _route_prefix(args) + path
    client = _Client(_admin_url(args.admin), _token(args.token), args.timeout)
    if getattr(args, "watch", False) and not args.json:
        return _watch(client, args, path)
    status, content = client.call(method, path, body)

    if args.json:
        try:
            _decode(content)
        except ValueError:
            pass
        else:
            text = content.decode("utf-8")
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            if 200 <= status < 300:
                return EXIT_OK
    if not 200 <= status < 300:
        _fail(client, args, status, content)
    try:
        payload = _decode(content)
    except ValueError:
        raise Failure(
            f"{PROG}: unexpected answer from {client.base_url} ({status}): not JSON; "
            "is this the admin listener?"
        ) from None
    if args.command == "events":
        # the route of each event, when there is more than one route
        names = _route_names(client)
        print(show_events(payload, routes=names is not None and len(names) > 1))
        return EXIT_OK
    print(show(payload))
    return EXIT_OK


# --------------------------------------------------------------------------- shadow


def _shadow_request(args: argparse.Namespace) -> tuple[str, str, Any, Show]:
    what: str | None = args.action
    if what == "set":
        body: dict[str, Any] = {"share": _parse_share(args.share)}
        if args.pool is not None:
            pool = args.pool.strip()
            if not pool:
                raise _UsageError("shadow set: --pool must not be empty")
            body["pool"] = pool
        if args.reference is not None:
            reference = args.reference.strip()
            if not reference:
                raise _UsageError("shadow set: --reference must not be empty")
            body["reference"] = reference
        elif args.no_reference:
            body["reference"] = None
        return "PUT", "/shadow", body, show_shadow
    if what == "stop":
        return "DELETE", "/shadow", None, show_shadow
    return "GET", "/shadow", None, show_shadow


def _parse_share(text: str) -> float:
    """`10%` or `0.1` -> 0.1; _UsageError unless from 0 to 1 (0% to 100%)."""
    raw = text.strip()
    percent = raw.endswith("%")
    number_text = raw.removesuffix("%").strip()
    try:
        value = float(number_text)
    except ValueError:
        raise _UsageError(
            f"shadow set: SHARE is a percent such as 10% or a fraction from 0 to 1, got {text!r}"
        ) from None
    if percent:
        if not 0 <= value <= 100:  # also refuses nan and inf
            raise _UsageError(f"shadow set: SHARE must be from 0% to 100%, got {text!r}")
        return value / 100 + 0.0
    if not 0 <= value <= 1:
        hint = f" (did you mean {number_text}%?)" if 1 < value <= 100 else ""
        raise _UsageError(
            f"shadow set: SHARE must be a fraction from 0 to 1 or a percent, got {text!r}{hint}"
        )
    return value + 0.0  # -0.0 becomes 0.0


# --------------------------------------------------------------------------- rollouts


def _rollout_request(args: argparse.Namespace) -> tuple[str, str, Any, Show]:
    what: str = args.action
    if what == "start":
        body: dict[str, Any] = {"pool": args.pool.strip()}
        if args.bluegreen:
            body["strategy"] = "bluegreen"
            if args.steps:
                raise _UsageError("--steps is for a canary; a blue-green rollout has --keep")
            if args.shadow is not None:
                raise _UsageError("--shadow is for a canary; a blue-green rollout has a preview")
            if args.auto_promote:
                body["auto_promote"] = True
            if args.keep:
                body["keep"] = args.keep
            preview = {k: v for k, v in (("hold", args.hold), ("max", args.max)) if v}
            if preview:
                body["preview"] = preview
        else:
            if args.auto_promote or args.keep:
                raise _UsageError("--auto-promote and --keep are for --bluegreen")
            steps: list[Any] = _parse_steps(args.steps) if args.steps else [5, 25, 50, 100]
            extra = {k: v for k, v in (("hold", args.hold), ("max", args.max)) if v}
            if extra:
                steps = [s if isinstance(s, dict) else {"weight": s, **extra} for s in steps]
            if args.shadow is not None:
                steps = [{"shadow": {"share": _parse_step_share(args.shadow), **extra}}, *steps]
            body["steps"] = steps
        return "POST", "/rollout", body, show_rollout
    if what == "status":
        return "GET", "/rollout", None, show_rollout
    if what == "history":
        return "GET", "/rollouts", None, show_history
    control = {"full": True} if what == "promote" and args.full else None
    return "POST", f"/rollout/{what}", control, show_rollout


def _parse_steps(text: str) -> list[Any]:
    steps: list[Any] = []
    for item in text.split(","):
        item = item.strip().strip("{}").strip()
        if item == "pause":
            steps.append({"pause": True})
            continue
        try:
            value = float(item)
        except ValueError:
            raise _UsageError(f"--steps: not a weight or 'pause': {item!r}") from None
        steps.append(int(value) if value.is_integer() else value)
    return steps


def _parse_step_share(text: str) -> float:
    """--shadow: a share of the requests, as a percent ("10%") or a fraction ("0.1")."""
    item = text.strip()
    percent = item.endswith("%")
    try:
        value = float(item[:-1] if percent else item)
    except ValueError:
        value = math.nan
    share = value / 100 if percent else value
    if not 0 < share <= 1:  # NaN too
        raise _UsageError(f"--shadow: not a share above 0 and at most 1 (10% or 0.1): {text!r}")
    return share


def _watch(client: _Client, args: argparse.Namespace, path: str) -> int:
    """Draw the rollout (GET `path`) every second until it ends; 0 when promoted, 1
    otherwise."""
    tty = sys.stdout.isatty()
    last = ""
    while True:
        status, content = client.call("GET", path)
        if status != 200:
            _fail(client, args, status, content)
        payload = _decode(content)
        text = show_rollout(payload)
        if text != last:
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")
            print(text, flush=True)
            last = text
        if payload.get("status") in ("promoted", "rolled_back", "cancelled"):
            return EXIT_OK if payload.get("status") == "promoted" else EXIT_FAILED
        time.sleep(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    """`splitter ctl ARGS`: argv is the arguments after `ctl`; returns the exit status."""
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except _Exit as exc:
        return exc.status
    except _UsageError as exc:
        print(f"{PROG}: {one_line(str(exc))} (see '{PROG} --help')", file=sys.stderr)
        return EXIT_USAGE
    except _WrongRoute as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except Failure as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
