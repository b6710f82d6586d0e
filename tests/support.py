"""Helpers for end-to-end tests: free ports, real backends, and the splitter process.

Everything listens on 127.0.0.1, every wait has a timeout, and every process is started in
its own session so that stopping it also stops its children (gunicorn workers).

Import as `from tests.support import ...` (conftest.py puts the repo root on sys.path;
always use the `tests.` prefix so there is one copy of each module).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCALHOST = "127.0.0.1"

# The metric families every splitter exposes from the start (docs/operations.md#metrics),
# by the name the Prometheus parser reports (no _total) -> type.
METRIC_FAMILIES = {
    "splitter_requests": "counter",
    "splitter_request_duration_seconds": "histogram",
    "splitter_pool_weight": "gauge",
    "splitter_backend_up": "gauge",
    "splitter_upstream_errors": "counter",
    "splitter_grpc_responses": "counter",
    "splitter_config_reloads": "counter",
    "splitter_config_last_reload_successful": "gauge",
}
READY_PREFIX = "splitter: listening"

T = TypeVar("T")


# --------------------------------------------------------------------------- basics


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10, host: str = LOCALHOST) -> None:
    """Wait until something accepts TCP connections on host:port; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def wait_until(
    predicate: Callable[[], T], timeout: float = 10, interval: float = 0.05, message: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy (returned); exceptions count as
    false. AssertionError after `timeout` seconds, with the last exception if any."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"condition not met within {timeout}s: {message or predicate!r}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            )
        time.sleep(interval)


def http_request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5,
    source: str | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (no pooling, nothing left open), from the local
    address `source` when given (127.0.0.2: another client address on loopback):
    returns (status, headers with lower-case names, body). An https:// URL is checked
    with `context` (by default: not verified, for the test's own certificates)."""
    m = re.match(r"^(https?)://([^/]+)(.*)$", url)
    if not m:
        raise ValueError(f"not an http:// URL: {url}")
    scheme, hostport, path = m.group(1), m.group(2), m.group(3) or "/"
    host, _, port = hostport.rpartition(":")
    source_address = (source, 0) if source is not None else None
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            host.strip("[]"), int(port), timeout=timeout, source_address=source_address,
            context=context or ssl._create_unverified_context(),
        )  # fmt: skip
    else:
        conn = http.client.HTTPConnection(
            host.strip("[]"), int(port), timeout=timeout, source_address=source_address
        )
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def admin_api(
    where: SplitterProc | str,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, Any]:
    """The one admin-API client of the tests: `method path` on the admin listener of a
    splitter process (or an admin URL), `body` sent as JSON; (status, the answer's JSON,
    or its bytes when it is not JSON)."""
    url = where if isinstance(where, str) else where.admin_url
    sent = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    status, _, raw = http_request(url + path, method, data, sent, timeout=timeout)
    if raw[:1] in (b"{", b"["):
        return status, json.loads(raw)
    return status, (raw or None)


class FakeClock:
    """The one fake clock of the tests: call it for the time; move it with `advance`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    status, _, body = http_request(url, timeout=timeout)
    return status, body


def pattern_chunk(size: int) -> bytes:
    """One chunk of the Flask backend's /stream (same as tests.backends.flask_app)."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def stream_sha256(n: int, size: int) -> str:
    """The sha256 of the body of the Flask backend's /stream?n=N&size=S."""
    digest = hashlib.sha256()
    chunk = pattern_chunk(size)
    for _ in range(n):
        digest.update(chunk)
    return digest.hexdigest()


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    pythonpath = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + pythonpath if pythonpath else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Signal the whole process group `proc` leads (it was started with start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    # The leader is reaped; wait (bounded) for the rest of the group so its sockets close.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


# --------------------------------------------------------------------------- backends


class Backend:
    """A backend process on 127.0.0.1:port. `stop()` is graceful (SIGTERM, then kill);
    `kill()` is abrupt (SIGKILL to the process and its workers). Both are idempotent."""

    def __init__(
        self, pool: str, backend_id: str, port: int, proc: subprocess.Popen[bytes], log: Any
    ) -> None:
        self.pool = pool
        self.backend_id = backend_id
        self.port = port
        self.url = f"http://{LOCALHOST}:{port}"
        self.proc = proc
        self._log = log  # an unnamed temp file holding the process's stderr

    def __repr__(self) -> str:
        return f"<Backend {self.backend_id} pool={self.pool} {self.url}>"

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        if self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return str(self._log.read().decode("utf-8", "replace"))

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        _kill_group(self.proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


def _start_backend(
    pool: str,
    backend_id: str,
    argv_for_port: Callable[[int], list[str]],
    env: Mapping[str, str],
    port: int | None = None,
    scheme: str = "http",
) -> Backend:
    """`port`: a fixed port (to bring a stopped backend back where it was)."""
    last_log = ""
    fixed = port
    for _attempt in range(3):  # a "free" port can be taken by someone else in between
        port = fixed or free_port()
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            argv_for_port(port),
            cwd=REPO_ROOT,
            env=_child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        backend = Backend(pool, backend_id, port, proc, log)
        backend.url = f"{scheme}://{LOCALHOST}:{port}"
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if http_get(f"{backend.url}/healthz", timeout=1)[0] == 200:
                    return backend
            time.sleep(0.05)
        last_log = backend.log_text()
        backend.stop()
    raise AssertionError(f"backend {backend_id} ({pool}) did not start:\n{last_log}")


def start_flask_backend(
    pool: str,
    backend_id: str | None = None,
    workers: int = 2,
    threads: int = 8,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    tls: tuple[str, str] | None = None,
) -> Backend:
    """gunicorn (gthread) serving tests.backends.flask_app:app; returns once /healthz is 200.
    `env` adds to its environment (FAIL_RATE, DELAY, FAULT_FILE, FAIL_EVERY: see the app);
    `tls` (certificate file, key file) makes it an https:// backend."""
    backend_id = backend_id or pool
    tls_args = ["--certfile", tls[0], "--keyfile", tls[1]] if tls is not None else []

    def argv(port: int) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn",
            "--worker-class", "gthread",
            "-w", str(workers), "--threads", str(threads),
            "-b", f"{LOCALHOST}:{port}",
            "--log-level", "warning",
            "--timeout", "120",
            "--graceful-timeout", "5",
            *tls_args,
            "tests.backends.flask_app:app",
        ]  # fmt: skip

    full_env = {"POOL": pool, "BACKEND_ID": backend_id, **(env or {})}
    scheme = "https" if tls is not None else "http"
    return _start_backend(pool, backend_id, argv, full_env, port, scheme)


def start_aio_backend(pool: str, backend_id: str | None = None) -> Backend:
    """The aiohttp app (WebSocket echo at /ws); returns once /healthz is 200."""
    backend_id = backend_id or pool

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "tests.backends.aio_app", "--port", str(port), "--pool", pool]

    return _start_backend(pool, backend_id, argv, {"POOL": pool, "BACKEND_ID": backend_id})


def start_shadow_backend(
    pool: str, price: int = 10, noise: bool = False, delay: float = 0.0, name: str = "widget"
) -> Backend:
    """tests.backends.shadow_app: one version of a small JSON service (shadow traffic's
    tests); returns once /healthz is 200."""

    def argv(port: int) -> list[str]:
        extra = ["--noise"] if noise else []
        if name != "widget":
            extra += ["--name", name]
        return [
            sys.executable, "-m", "tests.backends.shadow_app", "--port", str(port),
            "--pool", pool, "--price", str(price), "--delay", str(delay), *extra,
        ]  # fmt: skip

    return _start_backend(pool, pool, argv, {"POOL": pool})


# --------------------------------------------------------------------------- config


def start_grpc_backend(
    pool: str,
    fail_rate: float = 0.0,
    port: int | None = None,
    backend_id: str | None = None,
    tls: tuple[str, str] | None = None,
) -> Backend:
    """A real gRPC server (tests.backends.grpc_app: echo.Echo and grpc.health.v1, h2c on
    127.0.0.1); returns once it says it serves. `fail_rate`: the share of Say calls that
    fail with UNAVAILABLE; `tls` (certificate file, key file): h2 over TLS, an https://
    backend."""
    backend_id = backend_id or pool

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "tests.backends.grpc_app", "--port", str(port),
                "--pool", pool, *(["--tls", *tls] if tls else [])]  # fmt: skip

    env = {"FAIL_RATE": str(fail_rate)}
    scheme = "https" if tls else "http"
    return _start_ready_backend(pool, backend_id, argv, env, port, scheme)


def start_h2_backend(pool: str, *args: str, backend_id: str | None = None) -> Backend:
    """tests.backends.h2_app: an h2c server on the `h2` library (its routes answer well or
    with hostile frames, see the module); `args` are its options (--max-streams,
    --goaway-after, --all). Returns once it says it serves."""
    backend_id = backend_id or pool

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "tests.backends.h2_app", "--port", str(port),
                "--name", backend_id, *args]  # fmt: skip

    return _start_ready_backend(pool, backend_id, argv, {}, None)


def _start_ready_backend(
    pool: str,
    backend_id: str,
    argv_for_port: Callable[[int], list[str]],
    env: Mapping[str, str],
    port: int | None,
    scheme: str = "http",
) -> Backend:
    """A backend process that prints "ready" once it serves (no HTTP/1.1 /healthz to poll)."""
    last_log = ""
    for _attempt in range(3):
        chosen = port or free_port()
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            argv_for_port(chosen),
            cwd=REPO_ROOT,
            env=_child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        backend = Backend(pool, backend_id, chosen, proc, log)
        backend.url = f"{scheme}://{LOCALHOST}:{chosen}"
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if "ready" in backend.log_text():
                return backend
            time.sleep(0.05)
        last_log = backend.log_text()
        backend.stop()
    raise AssertionError(f"backend {backend_id} ({pool}) did not start:\n{last_log}")


def write_config(path: Path | str, config: Mapping[str, Any] | str, atomic: bool = False) -> Path:
    """Write a config (a dict is dumped with yaml.safe_dump, a str is written as is).
    `path` is a file when it ends in .yaml/.yml, else a directory (file: splitter.yaml).
    The write is in place (same inode) unless `atomic`, which writes a sibling and renames."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        path = path / "splitter.yaml"
    text = config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
    if atomic:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        with open(path, "r+" if path.exists() else "w") as f:
            f.write(text)
            f.truncate()
    return path


def pools_config(
    pools: Mapping[str, Backend | str | Sequence[Backend | str | Mapping[str, Any]]],
    weights: Mapping[str, float],
    **extra: Any,
) -> dict[str, Any]:
    """A config dict: {"pools": {name: {"weight": w, "backends": [urls]}}} plus a quick health
    check (interval 200ms, thresholds 1) unless `health_check=` is given, plus `extra` keys.
    Pools missing from `weights` get weight 0."""
    out: dict[str, Any] = {"pools": {}}
    for name, backends in pools.items():
        items = [backends] if isinstance(backends, str) or hasattr(backends, "url") else backends
        urls = [getattr(b, "url", b) for b in items]
        out["pools"][name] = {"weight": weights.get(name, 0), "backends": urls}
    out["health_check"] = {
        "path": "/healthz",
        "interval": "200ms",
        "timeout": "1s",
        "healthy_threshold": 1,
        "unhealthy_threshold": 1,
    }
    out.update(extra)
    return out


def route_entry(
    name: str,
    pools: Mapping[str, Any],
    weights: Mapping[str, float],
    **keys: Any,
) -> dict[str, Any]:
    """One entry of `routes:` (docs/configuration.md#routes-and-segments): `pools` maps a
    pool name to a backend (anything with `.url`, or a URL) or a list of them; pools missing
    from `weights` get weight 0; `keys` (hosts, path_prefix, segments, rollouts) as given."""
    out: dict[str, Any] = {"name": name, **keys, "pools": {}}
    for pool, backends in pools.items():
        items = [backends] if isinstance(backends, str) or hasattr(backends, "url") else backends
        urls = [getattr(b, "url", b) for b in items]
        out["pools"][pool] = {"weight": weights.get(pool, 0), "backends": urls}
    return out


def routes_config(*routes: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A config dict with `routes` (see `route_entry`), the quick health check of
    `pools_config` unless `health_check=` is given, plus `extra` keys."""
    out = pools_config({}, {}, **extra)
    del out["pools"]
    return {"routes": [dict(r) for r in routes], **out}


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _hostport(value: Any, env: Mapping[str, str]) -> tuple[str, int] | None:
    if not isinstance(value, str):
        return None
    value = _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "localhost"):
        host = LOCALHOST
    elif host == "::":
        host = "::1"
    return host, int(port)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --------------------------------------------------------------------------- splitter


class SplitterProc:
    """`python -m splitter run -c CONFIG` with cwd `workdir`; stdout/stderr go to files there.

    Ports (and so `proxy_url`, `admin_url`) are read from the config file when not given.
    """

    _counter = 0

    def __init__(
        self,
        config_path: Path | str,
        workdir: Path | str,
        env: Mapping[str, str] | None = None,
        proxy_port: int | None = None,
        admin_port: int | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.config_path = Path(config_path)
        self.workdir = Path(workdir)
        self.env = _child_env(env)
        self.config: dict[str, Any] | None = None  # the dict written, when made from one
        SplitterProc._counter += 1
        n = SplitterProc._counter
        self.stdout_path = self.workdir / f"splitter-{n}.stdout"
        self.stderr_path = self.workdir / f"splitter-{n}.stderr"

        proxy = admin = None
        with contextlib.suppress(Exception):
            raw = yaml.safe_load(self.config_path.read_text())
            proxy = _hostport(raw.get("listen"), self.env)
            admin_section = raw.get("admin") or {}
            admin = _hostport(admin_section.get("listen", "127.0.0.1:9901"), self.env)
        proxy_host, cfg_proxy_port = proxy or (LOCALHOST, 0)
        admin_host, cfg_admin_port = admin or (LOCALHOST, 0)
        self.proxy_port: int = proxy_port or cfg_proxy_port
        self.admin_port: int = admin_port or cfg_admin_port
        self.proxy_url = _url(proxy_host, self.proxy_port)
        self.admin_url = _url(admin_host, self.admin_port)

        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                [sys.executable, "-m", "splitter", "run", "-c", str(self.config_path), *args],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def __repr__(self) -> str:
        return f"<SplitterProc pid={self.pid} proxy={self.proxy_url} admin={self.admin_url}>"

    # -- output

    def stdout_text(self) -> str:
        return self.stdout_path.read_bytes().decode("utf-8", "replace")

    def stderr_text(self) -> str:
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def access_log(self) -> list[dict[str, Any]]:
        """The JSON objects among stdout's lines (anything else is skipped)."""
        entries = []
        for line in self.stdout_text().splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                entries.append(obj)
        return entries

    def wait_for_stderr(self, pattern: str, timeout: float = 10) -> str:
        """Wait until a stderr line matches the regex `pattern` (re.search); returns it."""
        rx = re.compile(pattern)

        def find() -> str | None:
            for line in self.stderr_text().splitlines():
                if rx.search(line):
                    return line
            return None

        return wait_until(find, timeout, message=f"stderr line matching {pattern!r}")

    # -- lifecycle

    def wait_ready(self, timeout: float = 15) -> None:
        """Until stderr has a line starting "splitter: listening" and admin /healthz is 200.
        AssertionError (with stderr) if the process exits first or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"splitter exited with {self.proc.returncode} before it was ready; "
                    f"stderr:\n{self.stderr_text()}"
                )
            if any(ln.startswith(READY_PREFIX) for ln in self.stderr_text().splitlines()):
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if http_get(f"{self.admin_url}/healthz", timeout=1)[0] == 200:
                        return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"splitter not ready after {timeout}s; stderr:\n{self.stderr_text()}"
                )
            time.sleep(0.05)

    def wait_readyz(self, timeout: float = 10) -> None:
        """Until admin /readyz answers 200 (a weighted pool has a healthy backend)."""
        wait_until(
            lambda: http_get(f"{self.admin_url}/readyz", timeout=1)[0] == 200,
            timeout,
            message="admin /readyz == 200",
        )

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit status; subprocess.TimeoutExpired if still running after `timeout`."""
        return self.proc.wait(timeout)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL the whole process group.
        Returns the exit status of the graceful stop, None if it had to be killed."""
        code: int | None = None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.proc.wait(timeout)
        else:
            code = self.proc.returncode
        self.kill()
        return code

    def kill(self) -> None:
        _kill_group(self.proc)  # also any worker processes left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """`python -m splitter ARGS...`, capturing stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "splitter", *args],
        env=_child_env(env),
        cwd=cwd if cwd is not None else REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Health checks that never take a backend down during a test (probed once at start, then
# hourly): what is tested is the request path's own handling, and a closed port gives 502.
NO_HEALTH_DOWN = {
    "path": "/healthz",
    "interval": "1h",
    "timeout": "1s",
    "healthy_threshold": 1,
    "unhealthy_threshold": 1000,
}


def start_splitter(config: dict[str, Any], workdir: Path) -> SplitterProc:
    """A splitter on `config` (listen, admin and state_file filled in when absent), for
    fixtures wider than a test (the function-scoped `splitter_factory` cannot serve them).
    The caller stops it."""
    config = dict(config)
    config.setdefault("listen", f"{LOCALHOST}:{free_port()}")
    config.setdefault("admin", {"listen": f"{LOCALHOST}:{free_port()}"})
    config.setdefault("state_file", str(workdir / "splitter-state.json"))
    path = write_config(workdir / "splitter.yaml", config)
    proc = SplitterProc(path, workdir)
    proc.config = config
    proc.wait_ready()
    return proc
