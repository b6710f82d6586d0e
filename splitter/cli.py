"""The command line: `splitter run`, `splitter check`, `splitter demo`.

The only module that calls `sys.exit`. Expected failures (a bad config, a busy port, an
unsafe admin listener) end with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from splitter import __version__
from splitter.config import DEFAULT_ROUTE, Route, load
from splitter.errors import ConfigError, StartupError
from splitter.tls import check_config_files, check_files_expired_too
from splitter.tls.certs import CertificateError, date_of, load_pair

DEFAULT_CONFIG = "config/splitter.yaml"
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"splitter: {message}\n")


class _Version(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from splitter import build

        print(f"splitter {__version__} ({build()})")
        parser.exit()


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 5000:
        raise argparse.ArgumentTypeError("must be from 0 to 5000 requests a second")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="splitter", description="A reverse proxy for blue/green and canary releases."
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and build")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    default = os.environ.get("SPLITTER_CONFIG") or DEFAULT_CONFIG
    run = commands.add_parser("run", help="run the proxy")
    run.add_argument("-c", "--config", default=default, help=f"config file (default: {default})")
    check = commands.add_parser("check", help="validate a config file")
    check.add_argument("-c", "--config", default=default, help=f"config file (default: {default})")
    commands.add_parser("ctl", help="talk to a running splitter's admin API (splitter ctl --help)")
    demo = commands.add_parser(
        "demo", help="run the proxy in front of demo backends, in two routes"
    )
    demo.add_argument("--config", default=None, help="demo config (default: the bundled one)")
    demo.add_argument("--load", type=_rate, default=0.0, metavar="RPS",
                      help="RPS requests a second to the proxy from simulated clients")  # fmt: skip
    demo.add_argument("--faulty", action="append", default=[], metavar="POOL",
                      help="that pool's backend answers 500 to 30%% of its requests")  # fmt: skip
    demo.add_argument("--slow", action="append", default=[], metavar="POOL",
                      help="that pool's backend is 300 ms slower")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ctl"]:
        from splitter import ctl  # the admin client; it does not import the proxy

        sys.exit(ctl.main(argv[1:]))
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help(sys.stderr)
        sys.exit(EXIT_USAGE)
    try:
        if args.command == "check":
            sys.exit(_check(args.config))
        if args.command == "run":
            from splitter import app

            app.run(load(args.config, files=check_config_files), args.config)
        elif args.command == "demo":
            from splitter import demo

            demo.run(args.config, args.load, args.faulty, args.slow)
    except ConfigError as exc:
        print(f"splitter: {exc.one_line()}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except StartupError as exc:
        print(f"splitter: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)


def _check(path: str) -> int:
    try:
        config = load(path, files=check_files_expired_too)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_USAGE

    def pools(route: Route) -> str:
        return ", ".join(f"{p.name}={p.weight:g}" for p in route.pools)

    [first, *more] = config.routes
    listen = f"listen {config.listen}" + (" (TLS)" if config.tls is not None else "")
    if not more and first.name == DEFAULT_ROUTE and not first.hosts:
        print(f"{path}: ok ({listen}, pools {pools(first)})")
    else:
        print(f"{path}: ok ({listen}, {len(config.routes)} routes)")
        for route in config.routes:
            hosts = ",".join(route.hosts) if route.hosts else "*"
            print(f"  {route.name}: {hosts}{route.path_prefix}  pools {pools(route)}")
    if config.tls is not None:
        for pair in config.tls.certificates:
            try:
                loaded = load_pair(pair, config.tls.min_version)
            except CertificateError as exc:  # changed since the check, a moment ago
                print(f"splitter: {exc}", file=sys.stderr)
                return EXIT_USAGE
            names = ", ".join(loaded.names) or "no DNS names"
            print(f"  certificate {pair.cert}: {names}; valid until {date_of(loaded.not_after)}")
    return 0
