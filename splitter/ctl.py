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
    splitter ctl rollout start green --bluegreen [--auto-promote] [--keep 10m]
    splitter ctl rollout status [--watch] | pause | resume | promote [--full] | abort | history

Options (before or after the command):

    --admin URL        admin API (default: $SPLITTER_ADMIN_URL, else http://127.0.0.1:9901)
    --token TOKEN      sent as `Authorization: Bearer TOKEN` (default: $SPLITTER_ADMIN_TOKEN)
    --json             print the server's JSON response as is (also for error responses)
    --timeout SECONDS  per network operation (default: 5)

Exit status: 0 done; 1 the server answered with an error (one line on stderr:
`splitter ctl: STATUS: MESSAGE`; a rejected reload also lists the config errors) or could
not be reached; 2 a usage error (one line on stderr).

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
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any, NoReturn

PROG = "splitter ctl"
DEFAULT_ADMIN_URL = "http://127.0.0.1:9901"
DEFAULT_TIMEOUT = 5.0
ENV_URL = "SPLITTER_ADMIN_URL"
ENV_TOKEN = "SPLITTER_ADMIN_TOKEN"
API = "/api/v1"

MAX_WEIGHT = 1_000_000  # as splitter.config.MAX_WEIGHT (not imported: it needs yaml)

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


class _Failure(Exception):
    """The request failed: `lines` go to stderr, exit status 1."""

    def __init__(self, *lines: str) -> None:
        super().__init__(lines[0] if lines else "")
        self.lines = lines


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
        """Returns (status, body) for any answer, 2xx or not; _Failure if unreachable."""
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

    def _unreachable(self, reason: object) -> _Failure:
        if isinstance(reason, TimeoutError):
            text = f"timed out after {self.timeout:g}s"
        elif isinstance(reason, OSError) and reason.strerror:
            text = reason.strerror
        elif isinstance(reason, http.client.RemoteDisconnected | ConnectionResetError):
            text = "the connection was closed without an answer"
        else:
            text = str(reason) or type(reason).__name__
        return _Failure(f"{PROG}: cannot reach the admin API at {self.base_url}: {text}")


def _decode(content: bytes) -> Any:
    """The JSON value of a body; raises ValueError if it is not JSON."""
    return json.loads(content.decode("utf-8"))


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
    return [f"{PROG}: {status}: {_one_line(message)}", *extra]


def _reason(status: int) -> str:
    try:
        return http.client.responses[status].lower()
    except KeyError:
        return "error"


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- formatting


def _number(value: Any) -> str:
    """90.0 -> "90", 12.5 -> "12.5"; anything else as JSON."""
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    return json.dumps(value) if not isinstance(value, str) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compact(value: Any) -> str:
    """A weight map as "blue=90 canary=10"; None as "-"."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return " ".join(f"{k}={_number(v)}" for k, v in value.items())
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _columns(rows: Sequence[Sequence[str]], right: AbstractSet[int] = frozenset()) -> list[str]:
    """Rows as aligned lines, columns two spaces apart; columns in `right` right-aligned."""
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths.get(i, 0), len(cell))
    return [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: AbstractSet[int]) -> str:
    return "\n".join(_columns([headers, *rows], right))


def _arrow() -> str:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "→".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "->"
    return "→"


def _weights_map(payload: Any, what: str = "weights") -> dict[str, int | float]:
    if not isinstance(payload, dict) or not all(_is_number(v) for v in payload.values()):
        raise _Failure(f"{PROG}: unexpected answer from the admin API: {what} is not a map")
    return payload


def _weights_table(weights: Mapping[str, int | float]) -> str:
    if not weights:
        return "no pools"
    total = sum(weights.values())
    rows = []
    for pool, weight in weights.items():
        share = f"{_number(round(weight * 100 / total, 1))}%" if total > 0 else "-"
        rows.append([pool, _number(weight), share])
    return _table(["POOL", "WEIGHT", "SHARE"], rows, right={1, 2})


def _show_weights(payload: Any) -> str:
    return _weights_table(_weights_map(payload))


def _show_switch(payload: Any) -> str:
    if not isinstance(payload, dict):
        raise _Failure(f"{PROG}: unexpected answer from the admin API: not a JSON object")
    new = _weights_map(payload.get("weights"), "weights")
    old = _weights_map(payload.get("previous") or {}, "previous")
    arrow = _arrow()
    pools = list(new) + [p for p in old if p not in new]
    rows = [
        [pool, _number(old[pool]) if pool in old else "-", arrow, _number(new.get(pool, "-"))]
        for pool in pools
    ]
    return _table(["POOL", "PREVIOUS", "", "NEW"], rows, right={1, 3})


def _show_reload(payload: Any) -> str:
    weights = payload.get("weights") if isinstance(payload, dict) else None
    if weights is None:
        return "config reloaded"
    return "config reloaded\n" + _weights_table(_weights_map(weights))


def _show_events(payload: Any) -> str:
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list):
        raise _Failure(f"{PROG}: unexpected answer from the admin API: no list of events")
    if not events:
        return "no events"
    arrow = _arrow()
    rows = []
    for event in events:
        if not isinstance(event, dict):
            continue
        change = ""
        if "old" in event or "new" in event:
            change = f"{_compact(event.get('old'))} {arrow} {_compact(event.get('new'))}"
        rows.append(
            [
                _one_line(str(event.get("time", ""))),
                _one_line(str(event.get("source", ""))),
                _one_line(str(event.get("what", ""))),
                change,
            ]
        )
    return _table(["TIME", "SOURCE", "WHAT", "CHANGE"], rows, right=set())


def _show_pools(payload: Any) -> str:
    if not isinstance(payload, dict):
        raise _Failure(f"{PROG}: unexpected answer from the admin API: not a JSON object")
    if not payload:
        return "no pools"
    heads: list[list[str]] = []
    groups: list[list[list[str]]] = []
    for pool, info in payload.items():
        if not isinstance(info, dict):
            info = {}
        listed = info.get("backends")
        backends = [b for b in listed if isinstance(b, dict)] if isinstance(listed, list) else []
        up = sum(1 for b in backends if b.get("up") is True)
        weight = _number(info.get("weight", "?"))
        heads.append([pool, f"weight {weight}", f"{up}/{len(backends)} up"])
        groups.append(
            [
                [
                    "  " + str(b.get("url", "?")),
                    f"weight {_number(b.get('weight', '?'))}",
                    "up" if b.get("up") is True else "DOWN",
                ]
                for b in backends
            ]
        )
    # the pool lines are aligned together, and so are all the backend lines
    backend_lines = iter(_columns([row for group in groups for row in group]))
    out: list[str] = []
    for head, group in zip(_columns(heads), groups, strict=True):
        out.append(head)
        out.extend(next(backend_lines) for _ in group)
        if not group:
            out.append("  (no backends)")
    return "\n".join(out)


# --------------------------------------------------------------------------- commands

Show = Callable[[Any], str]


def _request(args: argparse.Namespace) -> tuple[str, str, Any, Show]:
    """(method, path, body, formatter) for the command."""
    command: str = args.command
    if command == "weights":
        return "GET", "/weights", None, _show_weights
    if command == "set":
        return "PUT", "/weights", _parse_weights(args.assignments), _show_weights
    if command == "switch":
        pool = args.pool.strip()
        if not pool:
            raise _UsageError("switch: POOL must not be empty")
        return "POST", "/switch", {"pool": pool}, _show_switch
    if command == "reload":
        return "POST", "/reload", None, _show_reload
    if command == "events":
        return "GET", "/events", None, _show_events
    if command == "pools":
        return "GET", "/pools", None, _show_pools
    if command == "rollout":
        return _rollout_request(args)
    raise _UsageError(f"unknown command {command!r}")  # pragma: no cover - argparse checks


def _run(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(list(argv))
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    method, path, body, show = _request(args)
    client = _Client(_admin_url(args.admin), _token(args.token), args.timeout)
    if getattr(args, "watch", False) and not args.json:
        return _watch(client)
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
        raise _Failure(*_error_lines(status, content, client.token is not None))
    try:
        payload = _decode(content)
    except ValueError:
        raise _Failure(
            f"{PROG}: unexpected answer from {client.base_url} ({status}): not JSON; "
            "is this the admin listener?"
        ) from None
    print(show(payload))
    return EXIT_OK


# --------------------------------------------------------------------------- rollouts


def _rollout_request(args: argparse.Namespace) -> tuple[str, str, Any, Show]:
    what: str = args.action
    if what == "start":
        body: dict[str, Any] = {"pool": args.pool.strip()}
        if args.bluegreen:
            body["strategy"] = "bluegreen"
            if args.steps:
                raise _UsageError("--steps is for a canary; a blue-green rollout has --keep")
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
            if args.hold or args.max:
                extra = {k: v for k, v in (("hold", args.hold), ("max", args.max)) if v}
                steps = [s if isinstance(s, dict) else {"weight": s, **extra} for s in steps]
            body["steps"] = steps
        return "POST", "/rollout", body, _show_rollout
    if what == "status":
        return "GET", "/rollout", None, _show_rollout
    if what == "history":
        return "GET", "/rollouts", None, _show_history
    control = {"full": True} if what == "promote" and args.full else None
    return "POST", f"/rollout/{what}", control, _show_rollout


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


def _show_rollout(payload: Any) -> str:
    if not isinstance(payload, dict) or "pool" not in payload:
        raise _Failure(f"{PROG}: unexpected answer from the admin API: not a rollout")
    steps = payload.get("steps") or []
    step = payload.get("step", 0)
    analysis = payload.get("analysis") or {}
    cand = analysis.get("candidate") or {}
    base = analysis.get("baseline") or {}
    if payload.get("strategy") == "bluegreen":
        where = "preview" if step == 0 else "after the switch"
    else:
        where = f"step {step + 1} of {len(steps)}"
    lines = [
        f"rollout {payload.get('id')} of {payload.get('pool')}: {payload.get('strategy')} "
        f"strategy, {payload.get('status')} ({where})",
        f"  {_one_line(str(payload.get('reason', '')))}",
        *_warmup_lines(analysis.get("warmup_until")),
        f"  weights  {_compact(payload.get('weights'))}   "
        f"(from {_compact(payload.get('start_weights'))})",
        f"  verdict  {analysis.get('verdict')}: candidate {cand.get('requests', 0)} requests, "
        f"{cand.get('bad', 0)} bad, {cand.get('slow', 0)} slow; baseline "
        f"{base.get('requests', 0)}, {base.get('bad', 0)} bad, {base.get('slow', 0)} slow",
    ]
    needed = analysis.get("needed_requests")
    done = cand.get("requests", 0)
    if needed and payload.get("status") in ("progressing", "paused"):
        lines.append(f"  judged   {_bar(done, done + needed)} {done} of about {done + needed}")
    history = payload.get("history") or []
    for entry in history[-5:]:
        if isinstance(entry, dict):
            lines.append(f"  {entry.get('at', '')}  {entry.get('what', '')}: "
                         f"{_one_line(str(entry.get('detail', '')))}")  # fmt: skip
    return "\n".join(lines)


def _warmup_lines(until: Any) -> list[str]:
    """`analysis.warmup_until` (present while the step's requests are not yet judged):
    "warming up until 16:00:30 (12s left)", in local time as a clock on the wall shows."""
    if not isinstance(until, str) or not until:
        return []
    try:
        end = datetime.fromisoformat(until)
    except ValueError:
        return [f"  warming up until {_one_line(until)}"]
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    left = max(0, math.ceil(end.timestamp() - time.time()))
    return [f"  warming up until {end.astimezone():%H:%M:%S} ({left}s left)"]


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = min(width, int(width * done / total)) if total > 0 else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _show_history(payload: Any) -> str:
    rollouts = payload.get("rollouts") if isinstance(payload, dict) else None
    if not isinstance(rollouts, list):
        raise _Failure(f"{PROG}: unexpected answer from the admin API: no list of rollouts")
    if not rollouts:
        return "no rollouts"
    rows = [
        [str(r.get("started_at", "")), str(r.get("id", "")), str(r.get("pool", "")),
         str(r.get("strategy", "")), str(r.get("status", "")),
         _one_line(str(r.get("reason", "")))]
        for r in rollouts if isinstance(r, dict)
    ]  # fmt: skip
    return _table(["STARTED", "ID", "POOL", "STRATEGY", "STATUS", "REASON"], rows, right=set())


def _watch(client: _Client) -> int:
    """Draw the rollout every second until it ends; 0 when promoted, 1 otherwise."""
    tty = sys.stdout.isatty()
    last = ""
    while True:
        status, content = client.call("GET", "/rollout")
        if status != 200:
            raise _Failure(*_error_lines(status, content, client.token is not None))
        payload = _decode(content)
        text = _show_rollout(payload)
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
        print(f"{PROG}: {_one_line(str(exc))} (see '{PROG} --help')", file=sys.stderr)
        return EXIT_USAGE
    except _Failure as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
