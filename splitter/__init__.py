"""splitter: a reverse proxy for blue/green and canary releases.

The request path's modules may be compiled with mypyc (see setup.py); the compiled and the
plain modules are the same source. With SPLITTER_PURE=1 in the environment, the plain
modules are imported even where compiled ones are installed (the tests run both builds).
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from types import ModuleType
from typing import cast

__version__ = "0.1.0"


class _SourceFirst:
    """Imports splitter's submodules from their .py files, never from a compiled module."""

    @classmethod
    def find_spec(
        cls, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith("splitter.") or not path:
            return None
        loader = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)
        for entry in path:
            spec = importlib.machinery.FileFinder(entry, loader).find_spec(name, target)
            if spec is not None:
                return spec
        return None


def _stale_compiled() -> str | None:
    """A compiled module older than its source (an edited checkout of an editable
    install): the source is what the developer means, so the plain modules are used."""
    root = os.path.dirname(__file__)
    if not os.path.exists(os.path.join(root, os.pardir, "setup.py")):
        return None  # an installed package: its files are as they were built
    for directory, _, files in os.walk(root):
        for name in files:
            if name.endswith(".so") or name.endswith(".pyd"):
                source = os.path.join(directory, name.split(".", 1)[0] + ".py")
                compiled = os.path.join(directory, name)
                try:
                    if os.stat(source).st_mtime > os.stat(compiled).st_mtime:
                        return source
                except OSError:
                    continue
    return None


if os.environ.get("SPLITTER_PURE") == "1":
    sys.meta_path.insert(0, cast("MetaPathFinder", _SourceFirst))
elif (_stale := _stale_compiled()) is not None:
    sys.meta_path.insert(0, cast("MetaPathFinder", _SourceFirst))
    print(
        f"splitter: {_stale} is newer than its compiled module: running the pure Python "
        "modules (pip install -e . compiles them again)",
        file=sys.stderr,
    )


def build() -> str:
    """ "compiled" when the request path runs as compiled code, else "pure Python"."""
    from splitter.proxy import exchange

    return "pure Python" if exchange.__file__.endswith(".py") else "compiled"
