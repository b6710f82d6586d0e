"""Build: the request path's pure modules compiled with mypyc when a C compiler is at hand.

`pip install .` compiles the modules in COMPILED with mypyc (typed Python to C, same
source); where that cannot be done (no compiler, no Python headers, an unusual platform),
or with SPLITTER_PURE_BUILD=1, splitter installs as plain Python and behaves the same,
only slower. `splitter --version` says which build is running; SPLITTER_PURE=1 at run time
makes a compiled install import the plain modules (the tests run both).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = [
    "splitter/http1/messages.py",
    "splitter/http1/request.py",
    "splitter/http1/response.py",
    "splitter/observe/observation.py",
    "splitter/routing.py",
    "splitter/routetable.py",
    "splitter/state.py",
    "splitter/observe/stats.py",
    "splitter/observe/counters.py",
    "splitter/proxy/ejection.py",
    "splitter/proxy/clientaddr.py",
    "splitter/proxy/proxyproto.py",
    "splitter/proxy/policy.py",
    "splitter/proxy/upstream.py",
    "splitter/proxy/shadowing.py",
    "splitter/shadow/compare.py",
    "splitter/shadow/tally.py",
    "splitter/proxy/exchange.py",
    "splitter/proxy/h2stream.py",
    "splitter/proxy/h2call.py",
    "splitter/proxy/downstream.py",
    "splitter/proxy/accesslog.py",
    "splitter/proxy/listener.py",
    "splitter/tls/transport.py",
]


class OptionalBuildExt(build_ext):
    """Compiling is an optimisation: when it fails, install the plain modules."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            _skip(exc)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            _skip(exc)


def _skip(exc: BaseException) -> None:
    print(f"splitter: not compiled ({exc}); installing the pure Python modules", file=sys.stderr)


def _extensions() -> list[Any]:
    if os.environ.get("SPLITTER_PURE_BUILD") == "1":
        return []
    try:
        from mypyc.build import mypycify

        return mypycify(["--ignore-missing-imports", *COMPILED], opt_level="3")
    except (Exception, SystemExit) as exc:
        _skip(exc)
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
