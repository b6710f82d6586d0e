#!/usr/bin/env python3
"""Reverse-proxy comparison: splitter vs nginx vs haproxy, all on 127.0.0.1.

    python benchmarks/run.py [--quick] [--duration 5] [--warmup 1] [--connections 1,8,64,512]
                             [--backend tiny|flask|both] [--targets direct,splitter,...]
                             [--rounds 1] [--no-stream] [--stream-size 1G]
                             [--burst 10000] [--json benchmarks/results.json]
                             [--python VENV_PYTHON] [--baseline CHECKOUT|VENV]
                             [--tls] [--tls-connections 64] [--tls-clients 8]
                             [--tls-burst 10000]
                             [--http2] [--h2-parts h2c,tls,grpc,idle] [--h2-connections 64]
                             [--h2-streams 10] [--h2-requests 100000]
                             [--h2-grpc-calls 20000] [--h2-idle 1000]

Three parts, a fourth with --tls and a fifth with --http2, each bounded in time:
  1. req/s and latency (wrk -t1) per backend kind ("tiny": nginx `return 200`, or
     benchmarks/backend.py without nginx; "flask": benchmarks/flask_backend.py under gunicorn,
     2 sync workers, which close every connection) and per connection count, for the targets
     direct, splitter, splitter-log, splitter-w2 (workers: 2), splitter-routes50 (a table of 50
     routes, hosts and prefixes mixed, the benchmarked route in its middle with 5 segments
     that every request is checked against), nginx, haproxy and minimal (a bare
     httptools proxy, minimal_proxy.py, as the floor for Python). The RSS of each
     target (its whole process tree) is sampled every 100 ms: idle, peak per load, after.
  2. streaming: a 1 GiB download (nginx serving a sparse file, or benchmarks/stream_backend.py)
     and a 1 GiB upload (to benchmarks/stream_backend.py, which discards it) through each proxy,
     measured with curl; MB/s and the proxy's peak RSS.
  3. a burst of 10,000 short connections against splitter; its RSS before, peak, 5 s after.
  4. TLS (--tls, or the targets splitter-tls and nginx-tls named in --targets, which then
     run alone): splitter and nginx with the same certificate (ECDSA P-256, self-signed,
     made with openssl in the temp dir) and the same TLS settings, in front of the tiny
     backend: keep-alive HTTPS req/s and latency (wrk -t1 -c64); new TLS 1.3 connections
     per second, a full handshake and one request each (benchmarks/tls_client.py: wrk with
     `Connection: close` resumes sessions), and resumed ones (that wrk run); the CPU per
     request or connection; RSS before, at peak and 5 s after a burst of 10,000 TLS
     connections.
  5. HTTP/2 (--http2, or the targets splitter-http2 and nginx-http2 named in --targets,
     which then run alone; benchmarks/http2.py): h2load -c64 -m10 -n N against splitter
     and nginx, h2c and h2 over TLS, in front of the tiny backend over HTTP/1.1; gRPC
     unary calls to a grpcio server (benchmarks/grpc_backend.py) through splitter (a pool
     `protocol: h2c`) and nginx (grpc_pass); RSS per idle h2c connection. Needs h2load
     (Debian: nghttp2-client), and grpcio for the gRPC scenario.
Every started process is stopped at the end, also on Ctrl-C/SIGTERM. Stdlib only; needs `wrk`
(and `curl` for part 2, `openssl` and nginx for part 4) on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ALL_TARGETS = [
    "direct", "splitter", "splitter-routes50", "splitter-log", "splitter-w2", "nginx", "haproxy",
    "minimal",
]  # fmt: skip
STREAM_TARGETS = ["direct", "splitter", "nginx", "haproxy"]
# The TLS part (--tls, or these named in --targets): splitter and nginx with the same
# certificate and TLS settings, in front of the tiny backend; see tls_part.
TLS_TARGETS = ["splitter-tls", "nginx-tls"]
# The HTTP/2 part (--http2, or these named in --targets): h2c, h2 over TLS, gRPC and the
# memory of idle h2c connections, splitter beside nginx; see http2.py.
HTTP2_TARGETS = ["splitter-http2", "nginx-http2"]
SPLITTERS = {
    "splitter": (False, 1),
    "splitter-log": (True, 1),
    "splitter-w2": (False, 2),
    "splitter-base": (False, 1),  # the same, from the checkout or venv given by --baseline
    "splitter-tls": (False, 1),  # the same, with `tls:` (the TLS part)
}
# splitter-routes<N>: splitter with a table of N routes (see routes_config), access log off.
ROUTES_TARGET = re.compile(r"splitter-routes([1-9][0-9]*)")
ROUTE_SEGMENTS = 5  # --segments: on the benchmarked route, none matching its requests
BASELINE: Path | None = None  # --baseline as a checkout: its source, on PYTHONPATH
BASELINE_PYTHON: str | None = None  # --baseline as a venv: the splitter installed there
SPLITTER_PYTHON: str | None = None  # --python: the splitter installed there (e.g. compiled)
START_TIMEOUT = 15.0
# The certificate both TLS targets serve: ECDSA P-256, self-signed, as in the TLS docs.
OPENSSL_CERT = [
    "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-nodes", "-days", "30", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
]  # fmt: skip
# nginx-tls: what splitter's `tls:` sets (TLS 1.2 and 1.3; for 1.2 only ECDHE with AEAD
# ciphers, the client's order; the groups X25519, P-256, P-384; session tickets on).
TLS_CIPHERS = ":".join(
    f"ECDHE-{auth}-{cipher}"
    for cipher in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305")
    for auth in ("ECDSA", "RSA")
)
TLS_NGINX = f"""
        ssl_certificate {{cert}};
        ssl_certificate_key {{key}};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers {TLS_CIPHERS};
        ssl_prefer_server_ciphers off;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_session_tickets on;"""
MAXCONN = 4096  # nginx worker_connections and haproxy maxconn
MB = 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want: int) -> str:
    """Raise RLIMIT_NOFILE towards want (at most the hard limit); children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as e:
            return f"RLIMIT_NOFILE stays {soft} (hard {hard}): {e}"
        soft = target
    return f"RLIMIT_NOFILE {soft} (hard {hard})"


# -- memory ---------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return kids


def tree_pids(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(pid: int) -> float:
    """VmRSS of pid plus all its descendants (workers, nginx worker), in MB (10^6)."""
    return sum(rss_kb(p) for p in tree_pids(pid)) * 1024 / MB


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of pid plus all its descendants (from /proc/PID/stat)."""
    user = system = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / TICK, system / TICK


class Sampler:
    """Samples tree_rss_mb(pid) every 100 ms in a thread; .peak is the maximum seen."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.peak = tree_rss_mb(pid)
        self.samples = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            self.samples += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_mb(self.pid))


@dataclass
class Service:
    name: str
    port: int
    proc: subprocess.Popen
    stderr_path: Path
    tls: bool = False  # the listener speaks HTTPS
    ready_path: str = "/"  # answers GET with 200 once it is ready
    # instead of GET ready_path: None once ready, else what is wrong (e.g. an h2c request)
    probe: Callable[[Service], str | None] | None = None
    admin: int | None = None  # a splitter's admin port

    def stderr_tail(self, n: int = 15) -> str:
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + ln for ln in lines[-n:])


@dataclass
class Bench:
    tmp: Path
    services: list[Service] = field(default_factory=list)
    seq: int = 0
    # name -> why it did not start: the problem and the last line of its stderr
    problems: dict[str, str] = field(default_factory=dict)

    def fresh_dir(self, name: str) -> Path:
        self.seq += 1
        d = self.tmp / f"{self.seq:02d}-{name}"
        d.mkdir()
        return d

    # -- process management -------------------------------------------------------
    def spawn(
        self,
        name: str,
        port: int,
        argv: list[str],
        cwd: Path | None = None,
        env: dict | None = None,
        tls: bool = False,
        ready_path: str = "/",
        probe: Callable[[Service], str | None] | None = None,
    ) -> Service | None:
        """Start argv, wait until it accepts on port and answers GET ready_path with 200
        (over TLS, unverified, when tls), or until probe(service) returns None."""
        self.seq += 1
        err = self.tmp / f"{self.seq:02d}-{name}.stderr"
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err.open("wb"),
                start_new_session=True,
            )  # own process group, no Ctrl-C: we stop it (and its children) ourselves
        except OSError as e:
            print(f"  SKIP {name}: cannot start: {e}")
            return None
        svc = Service(name, port, proc, err, tls, ready_path, probe)
        self.services.append(svc)
        problem = wait_ready(svc)
        if problem:
            tail = svc.stderr_tail()
            print(f"  SKIP {name}: {problem}\n{tail}")
            last = tail.strip().splitlines()[-1].strip() if tail.strip() else ""
            self.problems[name] = f"{problem}: {last}" if last else problem
            self.stop(svc)
            return None
        print(f"  {name}: ready on 127.0.0.1:{port} (pid {proc.pid})")
        return svc

    def stop(self, svc: Service) -> None:
        if svc.proc.poll() is None:
            try:
                os.killpg(svc.proc.pid, signal.SIGTERM)
                svc.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(svc.proc.pid, signal.SIGKILL)
                svc.proc.wait(5)
            except ProcessLookupError:
                pass
        # children that outlived their parent (same process group) go too
        try:
            os.killpg(svc.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if svc in self.services:
            self.services.remove(svc)

    def stop_all(self) -> None:
        for svc in reversed(list(self.services)):
            try:
                self.stop(svc)
            except Exception as e:  # keep stopping the others
                print(f"  warning: stopping {svc.name}: {e}", file=sys.stderr)

    # -- the servers ---------------------------------------------------------------
    def nginx(
        self,
        name: str,
        port: int,
        body: str,
        tls: bool = False,
        probe: Callable[[Service], str | None] | None = None,
    ) -> Service | None:
        d = self.fresh_dir(name)
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = d / "nginx.conf"
        conf.write_text(f"""{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile {2 * MAXCONN + 64};
events {{ worker_connections {MAXCONN}; }}
http {{
    access_log off;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    sendfile on;
{body}
}}
""")
        argv = ["nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf)]
        return self.spawn(name, port, argv, tls=tls, probe=probe)

    def start_tiny(self, big_file: Path | None) -> Service | None:
        """nginx `return 200 "blue"` (GET /big serves big_file), else benchmarks/backend.py."""
        port = free_port()
        if shutil.which("nginx"):
            big = f"location = /big {{ alias {big_file}; default_type application/octet-stream; }}"
            return self.nginx(
                "backend-tiny(nginx)",
                port,
                f"""    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "blue\\n"; }}
        {big if big_file else ""}
    }}""",
            )
        return self.spawn(
            "backend-tiny(python)", port, [sys.executable, str(HERE / "backend.py"), str(port)]
        )

    def start_flask(self) -> Service | None:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{port}",
            "--backlog",
            "4096",
            "--chdir",
            str(HERE),
            "flask_backend:app",
        ]
        return self.spawn("backend-flask(gunicorn)", port, argv, cwd=HERE)

    def start_stream_backend(self, size: int) -> Service | None:
        port = free_port()
        argv = [sys.executable, str(HERE / "stream_backend.py"), str(port), str(size)]
        return self.spawn("backend-stream(python)", port, argv)

    def start_splitter(
        self,
        name: str,
        backend: int,
        cert: tuple[Path, Path] | None = None,
        pool: dict | None = None,
        probe: Callable[[Service], str | None] | None = None,
    ) -> Service | None:
        """splitter `name` in front of backend; with cert (certificate, key) its listener
        speaks only TLS (`tls:` with that pair, min_version 1.2); pool: more settings of
        the pool (e.g. `protocol: h2c`); probe: as Bench.spawn's."""
        routes = ROUTES_TARGET.fullmatch(name)
        access_log, workers = SPLITTERS.get(name, (False, 1))
        port, admin = free_port(), free_port()
        d = self.fresh_dir(name)
        cfg = d / "splitter.yaml"
        common = f"""listen: 127.0.0.1:{port}
admin: {{listen: 127.0.0.1:{admin}}}
sticky: {{cookie: splitter, secret: benchmark-secret}}
access_log: {"true" if access_log else "false"}
workers: {workers}
state_file: {d / "state.json"}
"""
        if cert:
            pair = {"cert": str(cert[0]), "key": str(cert[1])}
            tls = {"certificates": [pair], "min_version": "1.2"}
            common += "tls: " + json.dumps(tls) + "\n"
        if routes:
            table = routes_config(int(routes.group(1)), ROUTE_SEGMENTS, backend)
            cfg.write_text(common + "routes: " + json.dumps(table) + "\n")  # JSON is YAML
        else:
            blue = {"weight": 100, "backends": [f"http://127.0.0.1:{backend}"], **(pool or {})}
            cfg.write_text(common + "pools:\n  blue: " + json.dumps(blue) + "\n")
        argv, cwd, env = splitter_command(name == "splitter-base", d)
        svc = self.spawn(
            name,
            port,
            [*argv, "run", "-c", str(cfg)],
            cwd=cwd,
            env=env,
            tls=cert is not None,
            probe=probe,
        )
        if svc is not None:
            svc.admin = admin
        return svc

    def start_nginx_proxy(
        self,
        backend: int,
        cert: tuple[Path, Path] | None = None,
        http2: bool = False,
        probe: Callable[[Service], str | None] | None = None,
    ) -> Service | None:
        """nginx as the proxy (target `nginx`); with cert, the target `nginx-tls`: the same
        with TLS on its listener, set as splitter sets it (see TLS_NGINX); with http2, its
        listener speaks HTTP/2 (`nginx-h2c`: h2c with prior knowledge only, so give a
        probe; with cert, `nginx-h2`: h2 or HTTP/1.1 by ALPN)."""
        name = "nginx-tls" if cert else "nginx"
        if http2:
            name = "nginx-h2" if cert else "nginx-h2c"
        if not shutil.which("nginx"):
            print(f"  SKIP {name}: not installed")
            return None
        port = free_port()
        ssl = ""
        if cert:
            ssl = TLS_NGINX.format(cert=cert[0], key=cert[1])
        if http2:
            ssl += nginx_http2_directive()
        # Streaming settings an operator would use for large bodies: no request buffering
        # to disk, no response spooling to temp files (nginx then streams synchronously).
        return self.nginx(
            name,
            port,
            f"""    upstream be {{
        server 127.0.0.1:{backend};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port}{nginx_listen_options(cert is not None, http2)};{ssl}
        client_max_body_size 0;
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;
            add_header X-Request-Id $request_id;
            proxy_request_buffering off;
            proxy_max_temp_file_size 0;
        }}
    }}""",
            tls=cert is not None,
            probe=probe,
        )

    def start_haproxy(self, backend: int) -> Service | None:
        if not shutil.which("haproxy"):
            print("  SKIP haproxy: not installed")
            return None
        port = free_port()
        conf = self.fresh_dir("haproxy") / "haproxy.cfg"
        conf.write_text(f"""global
    nbthread 1
    maxconn {MAXCONN}
defaults
    mode http
    maxconn {MAXCONN}
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend fe
    bind 127.0.0.1:{port}
    option forwardfor
    unique-id-format %{{+X}}o%ci%cp%fi%fp%Ts%rt%pid
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Request-Id %[unique-id]
    http-response set-header X-Request-Id %[unique-id]
    default_backend be
backend be
    server s1 127.0.0.1:{backend} maxconn {MAXCONN}
""")
        return self.spawn("haproxy", port, ["haproxy", "-db", "-f", str(conf)])

    def start_target(self, target: str, backend: Service) -> Service | None:
        if target == "direct":
            return backend
        if target in SPLITTERS or ROUTES_TARGET.fullmatch(target):
            return self.start_splitter(target, backend.port)
        if target == "nginx":
            return self.start_nginx_proxy(backend.port)
        if target == "minimal":
            return self.start_minimal(backend.port)
        return self.start_haproxy(backend.port)

    def start_minimal(self, backend: int) -> Service | None:
        port = free_port()
        argv = [sys.executable, str(HERE / "minimal_proxy.py"), str(port), str(backend)]
        return self.spawn("minimal", port, argv)


@functools.cache
def nginx_version() -> tuple[int, ...]:
    """The installed nginx's version (`nginx -v`), e.g. (1, 22, 1); () if unknown."""
    try:
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stderr + out.stdout)
    return tuple(int(x) for x in m.groups()) if m else ()


def nginx_listen_options(ssl: bool, http2: bool) -> str:
    """What follows the address of nginx's `listen`: before 1.25.1 HTTP/2 is a listen
    option (`listen ... http2`), from 1.25.1 the directive `http2 on;`."""
    opts = " ssl" if ssl else ""
    if http2 and nginx_version() < (1, 25, 1):
        opts += " http2"
    return opts + " backlog=4096"


def nginx_http2_directive() -> str:
    """`http2 on;` where nginx has it (1.25.1 and later), else nothing (see above)."""
    return "\n        http2 on;" if nginx_version() >= (1, 25, 1) else ""


def splitter_command(baseline: bool, workdir: Path) -> tuple[list[str], Path, dict[str, str]]:
    """How to run splitter (argv up to its subcommand, cwd, env): this checkout's source on
    PYTHONPATH; with --python (or a venv as --baseline for splitter-base) the splitter
    installed in that venv, from a directory outside any checkout and without PYTHONPATH,
    so that no source tree shadows the installed (compiled) modules."""
    python = BASELINE_PYTHON if baseline else SPLITTER_PYTHON
    if python is not None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return [python, "-m", "splitter"], workdir, env
    repo = BASELINE if baseline and BASELINE is not None else REPO
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return [sys.executable, "-m", "splitter"], repo, env


def splitter_build(baseline: bool, workdir: Path) -> str:
    """What `splitter --version` says of the splitter a target runs (version and build)."""
    argv, cwd, env = splitter_command(baseline, workdir)
    try:
        out = subprocess.run(
            [*argv, "--version"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    return out.stdout.strip() or f"unknown ({out.stderr.strip()[-200:]})"


def routes_config(n: int, segments: int, backend: int) -> list[dict]:
    """A table of `n` routes, hosts and prefixes mixed, for a target `splitter-routes<n>`.

    The benchmark's requests (`GET /`, Host 127.0.0.1:PORT) are taken by the route `bench`
    (hosts [127.0.0.1], path_prefix /) in the middle of the table, not first. Around it, in
    turn: an exact host, a wildcard host, a path prefix without hosts, and the benchmark's own
    host with a longer prefix (so the table has to look past a route of the same host).
    `bench` has `segments` segments (header, cookie, query, source in turn) that never match
    the benchmark's requests, so every request is checked against all of them before the
    weights choose; they send to `canary`, at weight 0."""
    url = f"http://127.0.0.1:{backend}"
    table: list[dict] = []
    middle = n // 2
    for i in range(n):
        if i == middle:
            continue
        route: dict = {"name": f"r{i}", "pools": {"blue": {"weight": 100, "backends": [url]}}}
        kind = i % 4
        if kind == 0:
            route["hosts"] = [f"svc{i}.example.com", f"www.svc{i}.example.com"]
        elif kind == 1:
            route["hosts"] = [f"*.svc{i}.example.net"]
            route["path_prefix"] = f"/app{i}"
        elif kind == 2:
            route["path_prefix"] = f"/svc{i}"
        else:
            route["hosts"] = ["127.0.0.1"]
            route["path_prefix"] = f"/api{i}/v1"
        table.append(route)
    kinds = [
        lambda j: {"header": {"name": f"X-Beta-{j}", "value": "1"}},
        lambda j: {"cookie": {"name": f"beta{j}", "value": "yes"}},
        lambda j: {"query": {"name": f"preview{j}"}},
        lambda j: {"source": [f"10.{j}.0.0/16", f"2001:db8:{j}::/48"]},
    ]
    bench = {
        "name": "bench",
        "hosts": ["127.0.0.1"],
        "path_prefix": "/",
        "pools": {
            "blue": {"weight": 100, "backends": [url]},
            "canary": {"weight": 0, "backends": [url]},
        },
    }
    if segments:
        bench["segments"] = [
            {"pool": "canary", **kinds[j % len(kinds)](j)} for j in range(segments)
        ]
    table.insert(min(middle, len(table)), bench)
    return table


def unverified_tls() -> ssl.SSLContext:
    """A client context that does not verify the certificate (the self-signed one)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_ready(svc: Service) -> str | None:
    """None when svc answers GET svc.ready_path with 200 (or svc.probe returns None)
    within START_TIMEOUT, else the problem."""
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        rc = svc.proc.poll()
        if rc is not None:
            return f"exited with code {rc}"
        if svc.probe is not None:
            problem = svc.probe(svc)
            if problem is None:
                return None
            last = problem
            time.sleep(0.2)
            continue
        try:
            if svc.tls:
                c: http.client.HTTPConnection = http.client.HTTPSConnection(
                    "127.0.0.1", svc.port, timeout=2, context=unverified_tls()
                )
            else:
                c = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=2)
            c.request("GET", svc.ready_path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return None
            last = f"GET {svc.ready_path} answered {r.status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    return f"not ready after {START_TIMEOUT:.0f}s ({last})"


# -- wrk ------------------------------------------------------------------------------
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"bad wrk duration {text!r}")
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def run_wrk(
    port: int, conns: int, seconds: int, scheme: str = "http", headers: tuple[str, ...] = ()
) -> dict:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    argv += [a for h in headers for a in ("-H", h)]
    argv.append(f"{scheme}://127.0.0.1:{port}/")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()[-300:]}")
    return parse_wrk(out.stdout)


def parse_wrk(text: str) -> dict:
    def grab(pattern: str, default: str | None = None) -> str:
        m = re.search(pattern, text, re.M)
        if m:
            return m.group(1)
        if default is None:
            raise ValueError(f"wrk output lacks {pattern!r}:\n{text}")
        return default

    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    socket_errors = sum(int(x) for x in sock.groups()) if sock else 0
    return {
        "rps": float(grab(r"^Requests/sec:\s+([\d.]+)")),
        "requests": int(grab(r"^\s*(\d+) requests in")),
        "p50_ms": to_ms(grab(r"^\s+50%\s+(\S+)")),
        "p99_ms": to_ms(grab(r"^\s+99%\s+(\S+)")),
        "non2xx": int(grab(r"Non-2xx or 3xx responses:\s+(\d+)", "0")),
        "socket_errors": socket_errors,
    }


# -- streaming (curl) -----------------------------------------------------------------
def run_curl(direction: str, port: int, big_file: Path, size: int, timeout: float) -> dict:
    url = f"http://127.0.0.1:{port}/" + ("big" if direction == "download" else "upload")
    argv = ["curl", "-s", "-o", "/dev/null", "--max-time", str(int(timeout))]
    if direction == "download":
        argv += ["-w", "%{http_code} %{size_download} %{time_total}", url]
    else:  # -T streams the file; no "Expect: 100-continue" round trip
        argv += [
            "-X",
            "POST",
            "-H",
            "Expect:",
            "-H",
            "Content-Type: application/octet-stream",
            "-T",
            str(big_file),
            "-w",
            "%{http_code} %{size_upload} %{time_total}",
            url,
        ]
    t0 = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 15)
    wall = time.monotonic() - t0
    try:
        code, nbytes, secs = out.stdout.split()
        status, nbytes, secs = int(code), int(float(nbytes)), float(secs)
    except ValueError:
        status, nbytes, secs = 0, 0, wall
    ok = out.returncode == 0 and status == 200 and nbytes == size
    return {
        "ok": ok,
        "status": status,
        "bytes": nbytes,
        "seconds": round(secs, 3),
        "mb_s": round(nbytes / secs / MB, 1) if secs > 0 else 0.0,
        "curl_rc": out.returncode,
    }


# -- burst of short connections -------------------------------------------------------
async def _burst(
    port: int,
    total: int,
    batch: int,
    per_conn_timeout: float,
    tls: ssl.SSLContext | None = None,
) -> dict:
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

    async def one() -> bool:
        writer = None
        try:
            if tls is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(req)
                data = await reader.read()  # until the server closes
                return data.startswith(b"HTTP/1.1 200")
            # a full handshake each (asyncio never resumes a session by itself)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=tls, server_hostname="localhost"
            )
            writer.write(req)
            data = b""
            try:
                while chunk := await reader.read(65536):
                    data += chunk
            except OSError:  # a close without close_notify: judge what arrived
                pass
            return data.startswith(b"HTTP/1.1 200")
        except (OSError, asyncio.IncompleteReadError):
            return False
        finally:
            if writer is not None:
                writer.close()

    async def guarded() -> bool:
        try:
            return await asyncio.wait_for(one(), per_conn_timeout)
        except TimeoutError:
            return False

    ok = done = 0
    for start in range(0, total, batch):
        n = min(batch, total - start)
        results = await asyncio.gather(*(guarded() for _ in range(n)))
        ok += sum(results)
        done += n
    return {"connections": done, "ok": ok, "failed": done - ok}


def burst_test(
    svc: Service, total: int, batch: int, settle: float = 5.0, tls: ssl.SSLContext | None = None
) -> dict:
    before = tree_rss_mb(svc.proc.pid)
    t0 = time.monotonic()
    with Sampler(svc.proc.pid) as s:
        r = asyncio.run(_burst(svc.port, total, batch, per_conn_timeout=15.0, tls=tls))
        secs = time.monotonic() - t0
        time.sleep(settle)
    r.update(
        target=svc.name,
        batch=batch,
        seconds=round(secs, 2),
        rss_before_mb=round(before, 1),
        rss_peak_mb=round(s.peak, 1),
        rss_after_mb=round(tree_rss_mb(svc.proc.pid), 1),
        settle_s=settle,
    )
    return r


# -- report ---------------------------------------------------------------------------
def fmt_err(r: dict) -> str:
    errs = r["non2xx"] + r["socket_errors"]
    return "0" if not errs else f"{r['non2xx']} non-2xx, {r['socket_errors']} socket"


def _order(target: str) -> float:
    """Table order: as in ALL_TARGETS, splitter-base right after splitter, then any other
    splitter-routes<N> after splitter-routes50."""
    if target == "splitter-base":
        return ALL_TARGETS.index("splitter") + 0.5
    if target in ALL_TARGETS:
        return ALL_TARGETS.index(target)
    return ALL_TARGETS.index("splitter-routes50") + 0.5


def load_table(results: list[dict]) -> str:
    by = {(r["target"], r["connections"]): r for r in results}
    rows = [
        "| target | conns | req/s | p50 ms | p99 ms | errors | req/s vs nginx "
        "| added p50 ms | added p50 vs nginx | peak RSS MB | CPU us/req user+sys |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(results, key=lambda r: (r["connections"], _order(r["target"]))):
        n, d = by.get(("nginx", r["connections"])), by.get(("direct", r["connections"]))
        ratio = f"{r['rps'] / n['rps']:.2f}" if n and n["rps"] else "-"
        added = added_ratio = "-"
        if d and r["target"] != "direct":
            a = r["p50_ms"] - d["p50_ms"]
            added = f"{a:.3f}"
            if n:
                na = n["p50_ms"] - d["p50_ms"]
                added_ratio = f"{a / na:.2f}" if na > 0 else "-"
        rows.append(
            f"| {r['target']} | {r['connections']} | {r['rps']:,.0f} | {r['p50_ms']:.3f} "
            f"| {r['p99_ms']:.3f} | {fmt_err(r)} | {ratio} | {added} | {added_ratio} "
            f"| {r['rss_peak_mb']:.1f} | {r['user_us_median']:.1f}+{r['sys_us_median']:.1f} |"
        )
    return "\n".join(rows)


def stream_table(streams: list[dict]) -> str:
    rows = [
        "| direction | target | MB/s | vs nginx | seconds | complete | peak RSS MB (idle) |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    by = {(s["direction"], s["target"]): s for s in streams}
    for s in streams:
        n = by.get((s["direction"], "nginx"))
        ratio = f"{s['mb_s'] / n['mb_s']:.2f}" if n and n["ok"] and n["mb_s"] and s["ok"] else "-"
        done = "yes" if s["ok"] else f"NO ({s['bytes']:,} B, HTTP {s['status']}, rc {s['curl_rc']})"
        rows.append(
            f"| {s['direction']} | {s['target']} | {s['mb_s']:,.1f} | {ratio} | {s['seconds']:.2f} "
            f"| {done} | {s['rss_peak_mb']:.1f} ({s['rss_idle_mb']:.1f}) |"
        )
    return "\n".join(rows)


def memory_table(memory: list[dict], conns: list[int]) -> str:
    rows = [
        "| backend | target | idle MB | "
        + " | ".join(f"peak c={c}" for c in conns)
        + " | after MB |",
        "|---|---|---:|" + "---:|" * len(conns) + "---:|",
    ]
    for m in memory:
        peaks = " | ".join(
            f"{m['peak_by_conns'][str(c)]:.1f}" if str(c) in m["peak_by_conns"] else "-"
            for c in conns
        )
        rows.append(
            f"| {m['backend']} | {m['target']} | {m['idle_mb']:.1f} | {peaks} "
            f"| {m['after_mb']:.1f} |"
        )
    return "\n".join(rows)


def venv_python(path: Path) -> str | None:
    """The interpreter at `path`, or of the venv at `path` (its bin/python); None if neither.
    Not resolved: a venv's python is a link, and the link is what makes it that venv's."""
    if path.is_dir():
        path = path / "bin" / "python"
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def _sigterm(*_: object) -> None:
    raise KeyboardInterrupt


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 1G, 256M)")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


# -- the three parts ------------------------------------------------------------------
def load_part(
    bench: Bench, kind: str, args, conns: list[int], wanted: list[str], out: dict
) -> None:
    print(f"\n[{kind}] starting:")
    backend = bench.start_tiny(None) if kind == "tiny" else bench.start_flask()
    if backend is None:
        out["skipped"].append(f"backend {kind}")
        return
    svcs: dict[str, Service] = {}
    for t in wanted:
        if t == "minimal" and kind != "tiny":
            continue  # it pairs connections 1:1: only for a keep-alive backend
        svc = bench.start_target(t, backend)
        if svc:
            svcs[t] = svc
        else:
            out["skipped"].append(f"{kind}/{t}")
    targets = [t for t in wanted if t in svcs]
    time.sleep(1.0)  # let workers and health checks settle before the idle reading
    idle = {t: tree_rss_mb(svcs[t].proc.pid) for t in targets}
    peaks: dict[str, dict[str, float]] = {t: {} for t in targets}
    runs: list[dict] = []
    k = 0
    for rnd in range(args.rounds):
        for c in conns:
            order = targets if k % 2 == 0 else targets[::-1]  # alternate to spread drift
            k += 1
            for t in order:
                pid = svcs[t].proc.pid
                before = tree_rss_mb(pid)
                try:
                    with Sampler(pid) as s:
                        if args.warmup:
                            run_wrk(svcs[t].port, c, args.warmup)
                        cpu0 = tree_cpu_s(pid)
                        r = run_wrk(svcs[t].port, c, args.duration)
                        cpu1 = tree_cpu_s(pid)
                except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                    print(f"  {kind} {t} c={c}: FAILED: {e}")
                    continue
                n = max(r["requests"], 1)
                r.update(
                    backend=kind,
                    target=t,
                    connections=c,
                    round=rnd,
                    user_us=round((cpu1[0] - cpu0[0]) / n * 1e6, 2),
                    sys_us=round((cpu1[1] - cpu0[1]) / n * 1e6, 2),
                    rss_before_mb=round(before, 1),
                    rss_peak_mb=round(s.peak, 1),
                    rss_after_mb=round(tree_rss_mb(pid), 1),
                )
                peaks[t][str(c)] = max(peaks[t].get(str(c), 0.0), s.peak)
                runs.append(r)
                print(
                    f"  {kind} r{rnd + 1} c={c:<4} {t:<17} {r['rps']:>9,.0f} req/s  "
                    f"p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:8.3f} ms  "
                    f"err {r['non2xx'] + r['socket_errors']:<5} RSS peak {s.peak:6.1f} MB  "
                    f"CPU {r['user_us']:.1f}+{r['sys_us']:.1f} us/req"
                )
    time.sleep(1.0)
    for t in targets:
        out["memory"].append(
            {
                "backend": kind,
                "target": t,
                "idle_mb": round(idle[t], 1),
                "peak_by_conns": {c: round(v, 1) for c, v in peaks[t].items()},
                "after_mb": round(tree_rss_mb(svcs[t].proc.pid), 1),
            }
        )
    if kind == "tiny" and args.burst and "splitter" in svcs:
        print(f"  burst: {args.burst} connections against splitter, batches of {args.burst_batch}")
        b = burst_test(svcs["splitter"], args.burst, args.burst_batch)
        out["burst"] = b
        print(
            f"  burst: {b['ok']}/{b['connections']} ok in {b['seconds']} s; RSS "
            f"{b['rss_before_mb']} -> peak {b['rss_peak_mb']} -> {b['rss_after_mb']} MB"
        )
    out["runs"].extend(runs)
    for svc in svcs.values():
        bench.stop(svc)
    bench.stop(backend)


def stream_part(bench: Bench, args, wanted: list[str], out: dict) -> None:
    size = args.stream_size
    if not shutil.which("curl"):
        print("\nSKIP streaming: curl is not installed")
        out["skipped"].append("streaming (no curl)")
        return
    big = bench.tmp / "big.bin"
    with open(big, "wb") as f:  # sparse, like `truncate -s 1G`
        f.truncate(size)
    targets = [t for t in STREAM_TARGETS if t in wanted]
    for direction in ("download", "upload"):
        print(f"\n[stream {direction}, {size / 2**20:.0f} MiB] starting:")
        if direction == "download" and shutil.which("nginx"):
            backend = bench.start_tiny(big)
        else:
            backend = bench.start_stream_backend(size)
        if backend is None:
            out["skipped"].append(f"stream {direction} backend")
            continue
        svcs = {}
        for t in targets:
            svc = bench.start_target(t, backend)
            if svc:
                svcs[t] = svc
            else:
                out["skipped"].append(f"stream {direction}/{t}")
        time.sleep(0.5)
        # one untimed transfer straight to the backend warms the page cache and the backend
        try:
            run_curl(direction, backend.port, big, size, args.stream_timeout)
        except subprocess.TimeoutExpired:
            pass
        for t in targets:
            if t not in svcs:
                continue
            pid = svcs[t].proc.pid
            idle = tree_rss_mb(pid)
            try:
                with Sampler(pid) as s:
                    r = run_curl(direction, svcs[t].port, big, size, args.stream_timeout)
            except subprocess.TimeoutExpired:
                r = {
                    "ok": False,
                    "status": 0,
                    "bytes": 0,
                    "seconds": args.stream_timeout,
                    "mb_s": 0.0,
                    "curl_rc": -1,
                }
            r.update(
                direction=direction,
                target=t,
                size=size,
                backend=backend.name,
                rss_idle_mb=round(idle, 1),
                rss_peak_mb=round(s.peak, 1),
            )
            out["streams"].append(r)
            print(
                f"  {direction:<8} {t:<9} {r['mb_s']:>8,.1f} MB/s  {r['seconds']:6.2f} s  "
                f"{'ok' if r['ok'] else 'INCOMPLETE'}  RSS {idle:.1f} -> peak {s.peak:.1f} MB"
            )
        for svc in svcs.values():
            bench.stop(svc)
        bench.stop(backend)
    big.unlink(missing_ok=True)


# -- TLS: splitter and nginx with the same certificate and settings -------------------
def make_certificate(d: Path) -> tuple[Path, Path] | str:
    """A self-signed ECDSA P-256 pair in d (the openssl command of the TLS docs), or why not."""
    crt, key = d / "tls.crt", d / "tls.key"
    if not shutil.which("openssl"):
        return "openssl is not installed"
    try:
        out = subprocess.run(
            [*OPENSSL_CERT, "-keyout", str(key), "-out", str(crt)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"openssl: {e}"
    if out.returncode != 0:
        return f"openssl failed: {out.stderr.strip()[-300:]}"
    return crt, key


def _https_get(ctx: ssl.SSLContext, port: int, session: ssl.SSLSession | None = None) -> dict:
    """One `GET /` (Connection: close) over a fresh TLS connection, offering session (one
    that ctx made)."""
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(req)
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except (ssl.SSLEOFError, ConnectionResetError):
                pass
            cipher = s.cipher()
            return {
                "ok": data.startswith(b"HTTP/1.1 200"),
                "version": s.version(),
                "cipher": cipher[0] if cipher else None,
                "alpn": s.selected_alpn_protocol(),
                "resumed": s.session_reused,
                "session": s.session,  # after the answer: with TLS 1.3's ticket in it
            }


def tls_probe(port: int) -> dict:
    """What a default client gets: protocol, cipher, key-exchange group (from `openssl
    s_client -brief`), and whether a second connection offering the first one's session
    is resumed (session tickets)."""
    ctx = unverified_tls()
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        first = _https_get(ctx, port)
        second = _https_get(ctx, port, first.pop("session"))
    except (OSError, ssl.SSLError) as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    second.pop("session")
    probe = dict(first, ok=first["ok"] and second["ok"], resumption=second["resumed"])
    del probe["resumed"]
    try:
        out = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
        )
        m = re.search(r"^(?:Peer|Server) Temp Key: (.+)$", out.stdout + out.stderr, re.M)
        probe["group"] = m.group(1).strip() if m else None
    except (OSError, subprocess.TimeoutExpired):
        probe["group"] = None
    return probe


def run_handshakes(svc: Service, seconds: float, clients: int) -> dict:
    """New TLS 1.3 connections per second, a full handshake and one request each, from
    `clients` threads of benchmarks/tls_client.py split over up to nproc processes, all
    beginning at the same moment; plus the target's CPU per connection."""
    procs = max(1, min(clients, os.cpu_count() or 1))
    threads = [clients // procs + (i < clients % procs) for i in range(procs)]
    start = time.time() + 1.0  # the clients' start-up (an interpreter each) happens before
    argv = [sys.executable, str(HERE / "tls_client.py"), str(svc.port), "--seconds", str(seconds)]
    argv += ["--start", f"{start:.3f}", "--max", str(max(1000, int(seconds * 20000)))]
    cpu0 = tree_cpu_s(svc.proc.pid)
    running: list[subprocess.Popen] = []
    try:
        for n in threads:
            running.append(
                subprocess.Popen(
                    [*argv, "--threads", str(n)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outs = [p.communicate(timeout=seconds + 60) for p in running]
    finally:
        for p in running:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    cpu1 = tree_cpu_s(svc.proc.pid)
    parts = []
    for p, (stdout, stderr) in zip(running, outs, strict=True):
        if p.returncode != 0 or not stdout.strip():
            raise RuntimeError(f"tls_client.py failed ({p.returncode}): {stderr.strip()[-300:]}")
        parts.append(json.loads(stdout.strip().splitlines()[-1]))
    total = {k: sum(x[k] for x in parts) for k in ("ok", "failed", "reused")}
    n = max(total["ok"] + total["failed"], 1)
    versions: dict[str, int] = {}
    for x in parts:
        for v, k in x["versions"].items():
            versions[v] = versions.get(v, 0) + k
    return dict(
        total,
        conn_s=round(sum(x["ok"] / x["seconds"] for x in parts if x["seconds"] > 0), 1),
        seconds=max(x["seconds"] for x in parts),
        clients=clients,
        processes=procs,
        versions=versions,
        errors=[e for x in parts for e in x["errors"]][:5],
        user_us=round((cpu1[0] - cpu0[0]) / n * 1e6, 1),
        sys_us=round((cpu1[1] - cpu0[1]) / n * 1e6, 1),
    )


def _median_by(rows: list[dict], key: str) -> dict:
    rows = sorted(rows, key=lambda r: r[key])
    return rows[(len(rows) - 1) // 2]


def tls_part(bench: Bench, args, wanted: list[str], out: dict) -> None:
    """splitter-tls and nginx-tls in front of one tiny backend, the same certificate (ECDSA
    P-256, self-signed) and TLS settings: 1. keep-alive HTTPS (wrk -t1, --tls-connections);
    2. new TLS 1.3 connections per second, a full handshake and one request each
    (tls_client.py, --tls-clients), and resumed ones (wrk with Connection: close, which
    resumes); 3. RSS before, at peak and 5 s after a burst of --tls-burst TLS connections."""
    targets = [t for t in TLS_TARGETS if t in wanted]
    res: dict = {
        "targets": targets,
        "certificate": "ECDSA P-256, self-signed (openssl req -x509 -newkey ec)",
        "settings": {
            "protocols": "TLSv1.2 TLSv1.3",
            "tls12_ciphers": TLS_CIPHERS,
            "groups": "X25519:prime256v1:secp384r1",
            "session_tickets": True,
        },
        "keepalive_connections": args.tls_connections,
        "handshake_clients": args.tls_clients,
        "probe": {},
        "keepalive": {},
        "handshake": {},
        "resumed": {},
        "keepalive_runs": [],
        "handshake_runs": [],
        "resumed_runs": [],
        "burst": [],
    }
    out["tls"] = res
    print("\n[tls] starting:")
    cert = make_certificate(bench.fresh_dir("tls-cert"))
    if isinstance(cert, str):
        print(f"  SKIP tls: {cert}")
        out["skipped"].append(f"tls ({cert})")
        return
    backend = bench.start_tiny(None)
    if backend is None:
        out["skipped"].append("tls/backend tiny")
        return
    svcs: dict[str, Service] = {}
    for t in targets:
        if t == "splitter-tls":
            svc = bench.start_splitter(t, backend.port, cert)
        else:
            svc = bench.start_nginx_proxy(backend.port, cert)
        if svc:
            svcs[t] = svc
        else:
            out["skipped"].append(f"tls/{t}")
    live = [t for t in targets if t in svcs]
    time.sleep(1.0)
    for t in live:
        p = tls_probe(svcs[t].port)
        res["probe"][t] = p
        print(
            f"  {t}: {p.get('version')} {p.get('cipher')} group {p.get('group')} "
            f"ALPN {p.get('alpn')} resumption {'yes' if p.get('resumption') else 'NO'}"
            + ("" if p.get("ok") else f"  PROBE FAILED {p.get('error', '')}")
        )
    res["idle_mb"] = {t: round(tree_rss_mb(svcs[t].proc.pid), 1) for t in live}
    c = args.tls_connections
    for rnd in range(args.rounds):
        order = live if rnd % 2 == 0 else live[::-1]
        for t in order:  # 1. keep-alive HTTPS
            pid = svcs[t].proc.pid
            try:
                with Sampler(pid) as s:
                    if args.warmup:
                        run_wrk(svcs[t].port, c, args.warmup, "https")
                    cpu0 = tree_cpu_s(pid)
                    r = run_wrk(svcs[t].port, c, args.duration, "https")
                    cpu1 = tree_cpu_s(pid)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                print(f"  tls keep-alive {t} c={c}: FAILED: {e}")
                continue
            n = max(r["requests"], 1)
            r.update(
                target=t,
                connections=c,
                round=rnd,
                user_us=round((cpu1[0] - cpu0[0]) / n * 1e6, 2),
                sys_us=round((cpu1[1] - cpu0[1]) / n * 1e6, 2),
                rss_peak_mb=round(s.peak, 1),
            )
            res["keepalive_runs"].append(r)
            print(
                f"  tls r{rnd + 1} keep-alive c={c:<3} {t:<12} {r['rps']:>9,.0f} req/s  "
                f"p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:8.3f} ms  "
                f"err {r['non2xx'] + r['socket_errors']:<5} "
                f"CPU {r['user_us']:.1f}+{r['sys_us']:.1f} us/req"
            )
        for t in order[::-1]:  # 2. new TLS 1.3 connections, full handshakes
            pid = svcs[t].proc.pid
            try:
                if args.warmup:
                    run_handshakes(svcs[t], args.warmup, 2)
                with Sampler(pid) as s:
                    h = run_handshakes(svcs[t], args.duration, args.tls_clients)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                print(f"  tls new connections {t}: FAILED: {e}")
                continue
            h.update(target=t, round=rnd, rss_peak_mb=round(s.peak, 1))
            res["handshake_runs"].append(h)
            print(
                f"  tls r{rnd + 1} new conns     {t:<12} {h['conn_s']:>9,.0f} conn/s "
                f"failed {h['failed']} resumed {h['reused']} {h['versions']}  "
                f"CPU {h['user_us']:.1f}+{h['sys_us']:.1f} us/conn"
                + (f"  errors: {h['errors']}" if h["errors"] else "")
            )
        for t in order:  # 2b. what wrk measures with Connection: close: resumptions
            pid = svcs[t].proc.pid
            try:
                cpu0 = tree_cpu_s(pid)
                r = run_wrk(
                    svcs[t].port, args.tls_clients, args.duration, "https", ("Connection: close",)
                )
                cpu1 = tree_cpu_s(pid)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                print(f"  tls resumed {t}: FAILED: {e}")
                continue
            n = max(r["requests"], 1)
            r.update(
                target=t,
                connections=args.tls_clients,
                round=rnd,
                user_us=round((cpu1[0] - cpu0[0]) / n * 1e6, 1),
                sys_us=round((cpu1[1] - cpu0[1]) / n * 1e6, 1),
            )
            res["resumed_runs"].append(r)
            print(
                f"  tls r{rnd + 1} resumed conns {t:<12} {r['rps']:>9,.0f} conn/s "
                f"err {r['non2xx'] + r['socket_errors']}  "
                f"CPU {r['user_us']:.1f}+{r['sys_us']:.1f} us/conn"
            )
    if args.tls_burst:
        for t in live:  # 3. a burst of TLS connections
            time.sleep(1.0)
            print(f"  tls burst: {args.tls_burst} TLS connections against {t}")
            b = burst_test(svcs[t], args.tls_burst, args.burst_batch, tls=unverified_tls())
            b["returned"] = b["rss_after_mb"] <= b["rss_before_mb"] * 1.10
            res["burst"].append(b)
            print(
                f"  tls burst {t}: {b['ok']}/{b['connections']} ok in {b['seconds']} s; RSS "
                f"{b['rss_before_mb']} -> peak {b['rss_peak_mb']} -> {b['rss_after_mb']} MB "
                f"({'within' if b['returned'] else 'NOT within'} 10% of before)"
            )
    tls_summarize(res, live)
    for svc in svcs.values():
        bench.stop(svc)
    bench.stop(backend)


def tls_summarize(res: dict, live: list[str]) -> None:
    """res["keepalive"], ["handshake"], ["resumed"]: one result per target out of the
    rounds' runs (see the comments)."""
    # One result per target: the median run; the CPU per request or connection, the median
    # over the rounds; "vs nginx", the median over the rounds of the ratio to nginx's run
    # of the same round (the two ran one after the other, so a busy moment hits both).
    for key, rank in (("keepalive", "rps"), ("handshake", "conn_s"), ("resumed", "rps")):
        runs = res[f"{key}_runs"]
        nginx = {r["round"]: r[rank] for r in runs if r["target"] == "nginx-tls"}
        for t in live:
            rows = [r for r in runs if r["target"] == t]
            if not rows:
                continue
            ratios = [r[rank] / nginx[r["round"]] for r in rows if nginx.get(r["round"])]
            res[key][t] = dict(
                _median_by(rows, rank),
                user_us_median=statistics.median(r["user_us"] for r in rows),
                sys_us_median=statistics.median(r["sys_us"] for r in rows),
                vs_nginx=round(statistics.median(ratios), 3) if ratios else None,
                cpu_us_median=statistics.median(r["user_us"] + r["sys_us"] for r in rows),
                rounds=len(rows),
            )
        # what the ratio would be with a core each: nginx's CPU per request (or connection)
        # over the target's, less moved by what else runs than req/s is
        n = res[key].get("nginx-tls")
        for r in res[key].values():
            ok = n and r["cpu_us_median"] > 0
            r["vs_nginx_by_cpu"] = round(n["cpu_us_median"] / r["cpu_us_median"], 3) if ok else None


def _vs(r: dict, key: str = "vs_nginx") -> str:
    return "-" if r.get(key) is None else f"{r[key]:.2f}"


def _cpu(r: dict) -> str:
    return f"{r['user_us_median']:.1f}+{r['sys_us_median']:.1f}"


def tls_tables(res: dict) -> str:
    lines = []
    for t, p in res["probe"].items():
        lines.append(
            f"- {t}: {p.get('version')}, {p.get('cipher')}, group {p.get('group')}, "
            f"ALPN {p.get('alpn')}, session resumption {'yes' if p.get('resumption') else 'no'}"
        )
    rounds = max((r["rounds"] for r in res["keepalive"].values()), default=0)
    lines += [
        "",
        f"Figures: the median run of {rounds} round(s); vs nginx: the median of the rounds' "
        "ratios to nginx (run right before or after); CPU: the target's process tree, the "
        "median of the rounds; by CPU: nginx's CPU per request (or connection) divided by "
        "the target's, the ratio with a core for each.",
        "",
        f"Keep-alive HTTPS (wrk -t1 -c{res['keepalive_connections']}):",
        "",
        "| target | req/s | vs nginx | p50 ms | p99 ms | errors | CPU us/req user+sys "
        "| by CPU vs nginx | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t, r in res["keepalive"].items():
        lines.append(
            f"| {t} | {r['rps']:,.0f} | {_vs(r)} | {r['p50_ms']:.3f} "
            f"| {r['p99_ms']:.3f} | {fmt_err(r)} | {_cpu(r)} | {_vs(r, 'vs_nginx_by_cpu')} "
            f"| {r['rss_peak_mb']:.1f} |"
        )
    lines += [
        "",
        f"New TLS 1.3 connections, a full handshake and one request each "
        f"({res['handshake_clients']} clients, tls_client.py); resumed: wrk "
        f"-c{res['handshake_clients']} with Connection: close (it resumes each session):",
        "",
        "| target | new conn/s | vs nginx | failed | resumed | CPU us/conn user+sys "
        "| by CPU vs nginx | peak RSS MB | resumed conn/s | vs nginx | CPU us/conn user+sys "
        "| by CPU vs nginx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in res["targets"]:
        h, w = res["handshake"].get(t), res["resumed"].get(t)
        if not h and not w:
            continue
        new = (
            f"{h['conn_s']:,.0f} | {_vs(h)} | {h['failed']} | {h['reused']} | {_cpu(h)} "
            f"| {_vs(h, 'vs_nginx_by_cpu')} | {h['rss_peak_mb']:.1f}"
            if h
            else "- | - | - | - | - | - | -"
        )
        old = (
            f"{w['rps']:,.0f} | {_vs(w)} | {_cpu(w)} | {_vs(w, 'vs_nginx_by_cpu')}"
            if w
            else "- | - | - | -"
        )
        lines.append(f"| {t} | {new} | {old} |")
    if res["burst"]:
        b0 = res["burst"][0]
        lines += [
            "",
            f"A burst of {b0['connections']:,} TLS connections (batches of {b0['batch']}, "
            "a full handshake and one request each):",
            "",
            "| target | ok | failed | seconds | RSS before MB | RSS peak MB | RSS 5 s after MB "
            "| within 10% of before |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for b in res["burst"]:
            lines.append(
                f"| {b['target']} | {b['ok']:,} | {b['failed']:,} | {b['seconds']} "
                f"| {b['rss_before_mb']} | {b['rss_peak_mb']} | {b['rss_after_mb']} "
                f"| {'yes' if b['returned'] else 'no'} |"
            )
    return "\n".join(lines)


def main() -> int:
    global BASELINE, BASELINE_PYTHON, SPLITTER_PYTHON, ROUTE_SEGMENTS
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up seconds per run (default 1)")
    ap.add_argument("--connections", help="comma list (default 1,8,64,512; --quick: 8,64)")
    ap.add_argument("--backend", choices=["tiny", "flask", "both"], default="both")
    ap.add_argument(
        "--targets", default=",".join(ALL_TARGETS), help="comma subset of " + ",".join(ALL_TARGETS)
    )
    ap.add_argument(
        "--rounds", type=int, default=1, help="repeat the load part; the median-req/s run is kept"
    )
    ap.add_argument("--no-stream", action="store_true", help="skip the 1 GiB download/upload")
    ap.add_argument("--stream-size", type=parse_size, help="default 1G (--quick: 256M)")
    ap.add_argument("--stream-timeout", type=float, default=120.0, help="per transfer, seconds")
    ap.add_argument(
        "--burst",
        type=int,
        help="connections in the burst test (default 10000, --quick: 0); 0 skips it",
    )
    ap.add_argument("--burst-batch", type=int, default=1000, help="concurrent connections")
    ap.add_argument(
        "--tls",
        action="store_true",
        help="add the TLS part: splitter-tls beside nginx-tls (the same certificate and "
        "settings); `--targets splitter-tls,nginx-tls` runs only that part",
    )
    ap.add_argument(
        "--tls-connections", type=int, default=64, help="keep-alive HTTPS connections (64)"
    )
    ap.add_argument(
        "--tls-clients",
        type=int,
        default=8,
        help="concurrent clients making new TLS connections (default 8, in nproc processes)",
    )
    ap.add_argument(
        "--tls-burst",
        type=int,
        default=10000,
        help="TLS connections in the TLS burst (default 10000, also with --quick); 0 skips it",
    )
    ap.add_argument(
        "--http2",
        action="store_true",
        help="add the HTTP/2 part (http2.py): splitter beside nginx over h2c, h2 over TLS, "
        "gRPC, and idle h2c connections; `--targets splitter-http2,nginx-http2` runs only it",
    )
    ap.add_argument(
        "--h2-parts",
        default="h2c,tls,grpc,idle",
        help="the HTTP/2 part's scenarios, a subset of h2c,tls,grpc,idle (default all)",
    )
    ap.add_argument("--h2-connections", type=int, default=64, help="h2load -c (default 64)")
    ap.add_argument("--h2-streams", type=int, default=10, help="h2load -m (default 10)")
    ap.add_argument(
        "--h2-requests", type=int, help="h2load -n per h2c/h2 run (default 100000, --quick 20000)"
    )
    ap.add_argument(
        "--h2-grpc-calls", type=int, help="h2load -n per gRPC run (default 20000, --quick 5000)"
    )
    ap.add_argument("--h2-grpc-size", type=int, default=64, help="gRPC message bytes (64)")
    ap.add_argument(
        "--h2-idle",
        type=int,
        default=1000,
        help="idle h2c connections for the memory figure (default 1000); 0 skips it",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 s per point, connections 8,64, 256 MiB streams, no burst",
    )
    ap.add_argument("--json", default=str(HERE / "results.json"), help="results file")
    ap.add_argument(
        "--baseline",
        metavar="PATH",
        help="another splitter: a checkout (e.g. a git worktree of an older commit, run from "
        "its source) or a venv, or its python, where it is installed (run as installed, e.g. "
        "compiled): adds the target splitter-base, for a before/after in the same run",
    )
    ap.add_argument(
        "--python",
        metavar="PYTHON",
        help="run the splitter targets with this interpreter (or venv) and the splitter "
        "installed there (e.g. `pip install .`, compiled) instead of this checkout's source",
    )
    ap.add_argument(
        "--segments",
        type=int,
        default=ROUTE_SEGMENTS,
        help=f"segments on the benchmarked route of splitter-routes<N> (default {ROUTE_SEGMENTS})",
    )
    args = ap.parse_args()
    if args.baseline:
        path = Path(args.baseline).absolute()
        if (path / "splitter" / "__init__.py").exists():
            BASELINE = path.resolve()
        else:
            BASELINE_PYTHON = venv_python(path)
            if BASELINE_PYTHON is None:
                ap.error(f"--baseline {args.baseline}: neither a checkout nor a venv or python")
    if args.python:
        SPLITTER_PYTHON = venv_python(Path(args.python).absolute())
        if SPLITTER_PYTHON is None:
            ap.error(f"--python {args.python}: not a python interpreter or a venv")
    if args.segments < 0:
        ap.error("--segments must be >= 0")
    ROUTE_SEGMENTS = args.segments
    if args.quick:
        args.duration, args.warmup = 2, 1
    conns = [
        int(c)
        for c in (args.connections or ("8,64" if args.quick else "1,8,64,512")).split(",")
        if c
    ]
    if args.stream_size is None:
        args.stream_size = (256 << 20) if args.quick else (1 << 30)
    if args.burst is None:
        args.burst = 0 if args.quick else 10000
    kinds = ["tiny", "flask"] if args.backend == "both" else [args.backend]
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.tls:
        wanted += [t for t in TLS_TARGETS if t not in wanted]
    if args.http2:
        wanted += [t for t in HTTP2_TARGETS if t not in wanted]
    has_baseline = BASELINE is not None or BASELINE_PYTHON is not None
    if has_baseline and "splitter-base" not in wanted:
        wanted.insert(wanted.index("splitter") + 1 if "splitter" in wanted else 0, "splitter-base")
    bad = [
        t
        for t in wanted
        if t not in ALL_TARGETS + TLS_TARGETS + HTTP2_TARGETS
        and t != "splitter-base"
        and not ROUTES_TARGET.fullmatch(t)
    ]
    if bad or not wanted or not conns or min(conns) < 1:
        choices = ALL_TARGETS + TLS_TARGETS + HTTP2_TARGETS
        ap.error(f"bad --targets {bad} (choose from {choices}) or --connections")
    if min(args.tls_connections, args.tls_clients) < 1 or args.tls_burst < 0:
        ap.error("--tls-connections and --tls-clients must be >= 1, --tls-burst >= 0")
    args.h2_parts = [p.strip() for p in args.h2_parts.split(",") if p.strip()]
    if not set(args.h2_parts) <= {"h2c", "tls", "grpc", "idle"}:
        ap.error(f"--h2-parts {args.h2_parts}: a subset of h2c,tls,grpc,idle")
    if args.h2_requests is None:
        args.h2_requests = 20000 if args.quick else 100000
    if args.h2_grpc_calls is None:
        args.h2_grpc_calls = 5000 if args.quick else 20000
    small = (args.h2_connections, args.h2_streams, args.h2_requests, args.h2_grpc_calls)
    if min(small) < 1 or args.h2_idle < 0 or args.h2_grpc_size < 0:
        ap.error("--h2-connections, -streams, -requests, -grpc-calls must be >= 1, the rest >= 0")
    tls_wanted = [t for t in wanted if t in TLS_TARGETS]
    h2_wanted = [t for t in wanted if t in HTTP2_TARGETS]
    args.h2_targets = {t.split("-")[0] for t in h2_wanted}  # splitter, nginx
    # the other parts' targets
    wanted = [t for t in wanted if t not in TLS_TARGETS and t not in HTTP2_TARGETS]
    if (wanted or tls_wanted) and not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install -y wrk)")

    # SIGTERM behaves like Ctrl-C so the finally block below always cleans up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm)
    nofile = raise_nofile(max(max(conns) * 4, args.h2_idle * 3) + args.burst_batch * 2 + 1024)
    nproc = os.cpu_count()
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    print(f"date: {started}   nproc: {nproc}   python: {sys.version.split()[0]}   {nofile}")
    est = args.rounds * len(kinds) * len(conns) * len(wanted) * (args.duration + args.warmup)
    est += args.rounds * len(tls_wanted) * (3 * args.duration + 2 * args.warmup + 2)
    parts = []
    if wanted:
        streams = "off" if args.no_stream else f"{args.stream_size / 2**20:.0f} MiB"
        parts.append(
            f"backends={kinds} targets={wanted} connections={conns}; streams={streams}; "
            f"burst={args.burst or 'off'}"
        )
    if tls_wanted:
        parts.append(
            f"tls={tls_wanted} keep-alive c={args.tls_connections}, {args.tls_clients} "
            f"handshake clients, burst={args.tls_burst or 'off'}"
        )
    if h2_wanted:
        parts.append(
            f"http2={h2_wanted} {args.h2_parts} h2load -c{args.h2_connections} "
            f"-m{args.h2_streams} -n{args.h2_requests} (gRPC -n{args.h2_grpc_calls}), "
            f"idle={args.h2_idle}"
        )
    print(
        f"plan: {'; '.join(parts)}; duration={args.duration}s warmup={args.warmup}s "
        f"rounds={args.rounds} (~{est}s of load)"
    )

    tmp = Path(tempfile.mkdtemp(prefix="splitter-bench-"))
    bench = Bench(tmp)
    builds = {"splitter": splitter_build(False, tmp)}
    if "splitter-base" in wanted:
        builds["splitter-base"] = splitter_build(True, tmp)
    for name, build in builds.items():
        print(f"{name}: {build}")
    out: dict = {
        "runs": [], "memory": [], "streams": [], "burst": None, "tls": None, "http2": None,
        "skipped": [],
    }  # fmt: skip
    t_start = time.monotonic()
    try:
        if wanted:
            for kind in kinds:
                load_part(bench, kind, args, conns, wanted, out)
            if not args.no_stream:
                stream_part(bench, args, wanted, out)
        if tls_wanted:
            tls_part(bench, args, tls_wanted, out)
        if h2_wanted:
            import http2  # http2.py, beside this file: HTTP/2 and gRPC

            http2.http2_part(bench, args, out)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        bench.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - t_start

    # one result per (backend, target, conns): the median-req/s run over the rounds
    runs = out["runs"]
    results = []
    for kind in kinds:
        for c in conns:
            for t in wanted:
                rs = sorted(
                    (
                        r
                        for r in runs
                        if (r["backend"], r["target"], r["connections"]) == (kind, t, c)
                    ),
                    key=lambda r: r["rps"],
                )
                if rs:
                    # CPU per request: the median over the rounds (it moves less than req/s)
                    results.append(
                        dict(
                            rs[(len(rs) - 1) // 2],
                            user_us_median=statistics.median(r["user_us"] for r in rs),
                            sys_us_median=statistics.median(r["sys_us"] for r in rs),
                        )
                    )

    print(f"\n# splitter benchmark, {started}, nproc={nproc}, took {elapsed:.0f} s\n")
    print(
        f"wrk -t1, {args.duration} s per point after {args.warmup} s warm-up, "
        f"rounds={args.rounds}; RSS = whole process tree, sampled every 100 ms"
    )
    for kind in kinds:
        rs = [r for r in results if r["backend"] == kind]
        if rs:
            desc = {
                "tiny": "tiny backend (nginx return 200)"
                if shutil.which("nginx")
                else "tiny backend (python asyncio)",
                "flask": "Flask backend (gunicorn, 2 sync workers, closes every connection)",
            }
            print(f"\n## {desc[kind]}\n")
            print(load_table(rs))
    if out["streams"]:
        print(f"\n## streaming, {args.stream_size / 2**20:.0f} MiB per transfer (curl)\n")
        print(stream_table(out["streams"]))
    if out["memory"]:
        print("\n## memory (RSS MB, process tree)\n")
        print(memory_table(out["memory"], conns))
    if out["burst"]:
        b = out["burst"]
        print(
            f"\n## burst: {b['connections']:,} short connections to splitter "
            f"(batches of {b['batch']}, one request each)\n"
        )
        print("| ok | failed | seconds | RSS before MB | RSS peak MB | RSS 5 s after MB |")
        print("|---:|---:|---:|---:|---:|---:|")
        print(
            f"| {b['ok']:,} | {b['failed']:,} | {b['seconds']} | {b['rss_before_mb']} "
            f"| {b['rss_peak_mb']} | {b['rss_after_mb']} |"
        )
    if out["tls"]:
        print(
            "\n## TLS: splitter and nginx, the same certificate (ECDSA P-256) and settings, "
            "tiny backend\n"
        )
        print(tls_tables(out["tls"]))
    if out["http2"]:
        import http2

        print("\n## HTTP/2: splitter and nginx, h2load\n")
        print(http2.tables(out["http2"]))
    if out["skipped"]:
        print(f"\nskipped (did not start): {', '.join(out['skipped'])}")
    doc = {
        "date": started,
        "nproc": nproc,
        "elapsed_s": round(elapsed, 1),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": conns,
        "backends": kinds,
        "rounds": args.rounds,
        "stream_size": None if args.no_stream else args.stream_size,
        "skipped": out["skipped"],
        "builds": builds,
        "route_segments": ROUTE_SEGMENTS,
        "results": results,
        "streams": out["streams"],
        "memory": out["memory"],
        "burst": out["burst"],
        "tls": out["tls"],
        "http2": out["http2"],
        "runs": runs,
        "rps_median_all_rounds": {
            f"{kind}/{t}@{c}": statistics.median(rps)
            for kind in kinds
            for t in wanted
            for c in conns
            if (
                rps := [
                    r["rps"]
                    for r in runs
                    if (r["backend"], r["target"], r["connections"]) == (kind, t, c)
                ]
            )
        },
    }
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.modules.setdefault("run", sys.modules[__name__])  # http2.py's `import run`: this one
    sys.exit(main())
