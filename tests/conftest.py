"""Fixtures for end-to-end tests: real backends and a real splitter process.

    def test_canary(backend_factory, splitter_factory):
        blue, canary = backend_factory("blue"), backend_factory("canary")
        sp = splitter_factory(pools_config({"blue": blue, "canary": canary},
                                           {"blue": 90, "canary": 10}))
        ...  # sp.proxy_url, sp.admin_url

Everything started by a fixture is stopped at teardown, whether the test passed or not.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # so `tests.backends...` and `splitter` import in-process
    sys.path.insert(0, str(REPO_ROOT))

from tests.rawbackend import RawBackend, Script  # noqa: E402
from tests.support import (  # noqa: E402
    Backend,
    SplitterProc,
    free_port,
    start_aio_backend,
    start_flask_backend,
    write_config,
)

BackendFactory = Callable[..., Backend]
SplitterFactory = Callable[..., SplitterProc]


@pytest.fixture
def backend_factory() -> Iterator[BackendFactory]:
    """`(pool, backend_id=None, kind="flask"|"aio", **kw) -> Backend`; kw (workers,
    threads) go to start_flask_backend. All are stopped at teardown."""
    started: list[Backend] = []

    def make(pool: str, backend_id: str | None = None, kind: str = "flask", **kw: Any) -> Backend:
        if kind == "flask":
            backend = start_flask_backend(pool, backend_id, **kw)
        elif kind == "aio":
            backend = start_aio_backend(pool, backend_id)
        else:
            raise ValueError(f"unknown backend kind {kind!r}")
        started.append(backend)
        return backend

    yield make
    for backend in reversed(started):
        backend.stop()


@pytest.fixture(scope="session")
def three_pools() -> Iterator[dict[str, Backend]]:
    """Flask backends blue, green, canary (one each), shared by the whole session.
    Do not stop them in a test; use backend_factory for backends a test will kill."""
    backends: dict[str, Backend] = {}
    try:
        for pool in ("blue", "green", "canary"):
            backends[pool] = start_flask_backend(pool)
        yield backends
    finally:
        for backend in backends.values():
            backend.stop()


def complete_config(config: Mapping[str, Any], workdir: Path) -> dict[str, Any]:
    """A copy of `config` with `listen`, `admin.listen` and `state_file` filled in when absent
    (free loopback ports; the state file in `workdir`)."""
    out = copy.deepcopy(dict(config))
    out.setdefault("listen", f"127.0.0.1:{free_port()}")
    admin = out.get("admin")
    if not isinstance(admin, dict):
        admin = out["admin"] = {}
    admin.setdefault("listen", f"127.0.0.1:{free_port()}")
    out.setdefault("state_file", str(workdir / "splitter-state.json"))
    return out


@pytest.fixture
def splitter_factory(tmp_path: Path) -> Iterator[SplitterFactory]:
    """`(config, env=None, wait=True, args=()) -> SplitterProc`, with cwd = tmp_path.

    `config`: a dict (completed by `complete_config`, kept as `proc.config`, written to
    tmp_path/config-N.yaml), a YAML string (written as is; must name its own ports), or
    the Path of an existing file (e.g. `earlier.config_path`, to restart on the same
    config). With `wait`, returns once ready (AssertionError with stderr otherwise).
    Every process is stopped at teardown; its stderr is printed (shown on failure)."""
    started: list[SplitterProc] = []

    def make(
        config: Mapping[str, Any] | str | Path,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
        args: tuple[str, ...] = (),
    ) -> SplitterProc:
        full: dict[str, Any] | None = None
        if isinstance(config, Path):
            path = config
        else:
            if not isinstance(config, str):
                full = complete_config(config, tmp_path)
            path = write_config(tmp_path / f"config-{len(started) + 1}.yaml", full or config)
        proc = SplitterProc(path, tmp_path, env=env, args=args)
        proc.config = full
        started.append(proc)
        if wait:
            proc.wait_ready()
        return proc

    yield make
    for proc in reversed(started):
        code = proc.stop()
        stderr = proc.stderr_text()
        print(f"--- {proc!r} exit={code} stderr (last 4000 chars):\n{stderr[-4000:]}")


@pytest.fixture
def raw_backend() -> Iterator[Callable[..., RawBackend]]:
    """`(reply=None, after="keep", linger=0.0) -> RawBackend`, each stopped at teardown."""
    made: list[RawBackend] = []

    def make(
        reply: bytes | Callable[[bytes], Script | None] | None = None,
        after: str = "keep",
        linger: float = 0.0,
    ) -> RawBackend:
        backend = RawBackend(reply, after, linger)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.stop()
