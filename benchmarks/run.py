#!/usr/bin/env python3
"""Throughput/latency comparison: splitter vs nginx vs haproxy, all on 127.0.0.1.

    python benchmarks/run.py [--duration 10] [--connections 8,64] [--quick]
                             [--targets direct,splitter,splitter-log,nginx,haproxy]
                             [--rounds 1] [--json benchmarks/results.json]

A tiny backend (nginx `return 200`, or benchmarks/backend.py when nginx is missing) is
started, then every proxy in front of it, each on its own free port; wrk (-t1) is run
against each target for each connection count. Every started process is stopped at
the end, also on Ctrl-C. Stdlib only; needs `wrk` on PATH.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ALL_TARGETS = ["direct", "splitter", "splitter-log", "nginx", "haproxy"]
START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    name: str
    port: int
    proc: subprocess.Popen
    stderr_path: Path

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

    # -- process management -------------------------------------------------------
    def spawn(
        self,
        name: str,
        port: int,
        argv: list[str],
        cwd: Path | None = None,
        env: dict | None = None,
    ) -> Service | None:
        """Start argv, wait until it accepts on port and answers GET / with 200."""
        err = self.tmp / f"{name}.stderr"
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err.open("wb"),
                start_new_session=True,
            )  # no Ctrl-C: we stop it ourselves
        except OSError as e:
            print(f"  SKIP {name}: cannot start: {e}")
            return None
        svc = Service(name, port, proc, err)
        self.services.append(svc)
        problem = wait_ready(svc)
        if problem:
            print(f"  SKIP {name}: {problem}\n{svc.stderr_tail()}")
            self.stop(svc)
            return None
        print(f"  {name}: ready on 127.0.0.1:{port} (pid {proc.pid})")
        return svc

    def stop(self, svc: Service) -> None:
        if svc.proc.poll() is None:
            try:
                os.killpg(svc.proc.pid, signal.SIGTERM)
                svc.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(svc.proc.pid, signal.SIGKILL)
                svc.proc.wait(5)
            except ProcessLookupError:
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
    def nginx_conf(self, name: str, port: int, body: str) -> Path:
        d = self.tmp / name
        d.mkdir()
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = d / "nginx.conf"
        conf.write_text(f"""{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
{body}
}}
""")
        return conf

    def start_backend(self) -> Service | None:
        port = free_port()
        if shutil.which("nginx"):
            conf = self.nginx_conf(
                "backend",
                port,
                f"""    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "blue\\n"; }}
    }}""",
            )
            return self.spawn(
                "backend(nginx)",
                port,
                [
                    "nginx",
                    "-p",
                    str(conf.parent),
                    "-e",
                    str(conf.parent / "error.log"),
                    "-c",
                    str(conf),
                ],
            )
        return self.spawn(
            "backend(python)", port, [sys.executable, str(HERE / "backend.py"), str(port)]
        )

    def start_splitter(self, name: str, backend: int, access_log: bool) -> Service | None:
        port, admin = free_port(), free_port()
        cfg = self.tmp / f"{name}.yaml"
        cfg.write_text(f"""listen: 127.0.0.1:{port}
admin: {{listen: 127.0.0.1:{admin}}}
pools:
  blue: {{weight: 100, backends: ["http://127.0.0.1:{backend}"]}}
access_log: {"true" if access_log else "false"}
state_file: {self.tmp / (name + "-state.json")}
""")
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        return self.spawn(
            name, port, [sys.executable, "-m", "splitter", "run", "-c", str(cfg)], cwd=REPO, env=env
        )

    def start_nginx_proxy(self, backend: int) -> Service | None:
        if not shutil.which("nginx"):
            print("  SKIP nginx: not installed")
            return None
        port = free_port()
        conf = self.nginx_conf(
            "nginx-proxy",
            port,
            f"""    upstream be {{
        server 127.0.0.1:{backend};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}""",
        )
        return self.spawn(
            "nginx",
            port,
            [
                "nginx",
                "-p",
                str(conf.parent),
                "-e",
                str(conf.parent / "error.log"),
                "-c",
                str(conf),
            ],
        )

    def start_haproxy(self, backend: int) -> Service | None:
        if not shutil.which("haproxy"):
            print("  SKIP haproxy: not installed")
            return None
        port = free_port()
        conf = self.tmp / "haproxy.cfg"
        conf.write_text(f"""global
    nbthread 1
    maxconn 4000
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server s1 127.0.0.1:{backend}
""")
        return self.spawn("haproxy", port, ["haproxy", "-db", "-f", str(conf)])


def wait_ready(svc: Service) -> str | None:
    """None when svc answers GET / with 200 within START_TIMEOUT, else the problem."""
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        rc = svc.proc.poll()
        if rc is not None:
            return f"exited with code {rc}"
        try:
            c = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=2)
            c.request("GET", "/")
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return None
            last = f"GET / answered {r.status}"
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


def run_wrk(port: int, conns: int, seconds: int) -> dict:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"]
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


# -- report ---------------------------------------------------------------------------
def table(results: list[dict]) -> str:
    by = {(r["target"], r["connections"]): r for r in results}
    rows = [
        "| target | conns | req/s | p50 ms | p99 ms | errors | req/s vs nginx "
        "| added p50 ms | added p50 vs nginx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n, d = by.get(("nginx", r["connections"])), by.get(("direct", r["connections"]))
        ratio = f"{r['rps'] / n['rps']:.2f}" if n else "-"
        added = added_ratio = "-"
        if d and r["target"] != "direct":
            a = r["p50_ms"] - d["p50_ms"]
            added = f"{a:.3f}"
            if n:
                na = n["p50_ms"] - d["p50_ms"]
                added_ratio = f"{a / na:.2f}" if na > 0 else "-"
        errs = r["non2xx"] + r["socket_errors"]
        err = "0" if not errs else f"{r['non2xx']} non-2xx, {r['socket_errors']} socket"
        rows.append(
            f"| {r['target']} | {r['connections']} | {r['rps']:,.0f} | {r['p50_ms']:.3f} "
            f"| {r['p99_ms']:.3f} | {err} | {ratio} | {added} | {added_ratio} |"
        )
    return "\n".join(rows)


def _sigterm(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument(
        "--warmup", type=int, default=2, help="warm-up seconds before each run (default 2)"
    )
    ap.add_argument("--connections", default="8,64", help="comma list (default 8,64)")
    ap.add_argument(
        "--targets", default=",".join(ALL_TARGETS), help="comma subset of " + ",".join(ALL_TARGETS)
    )
    ap.add_argument(
        "--rounds", type=int, default=1, help="repeat everything; the median-req/s run is kept"
    )
    ap.add_argument("--quick", action="store_true", help="--duration 3 --warmup 1")
    ap.add_argument("--json", default=str(HERE / "results.json"), help="results file")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup = 3, 1
    conns = [int(c) for c in args.connections.split(",") if c]
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = [t for t in wanted if t not in ALL_TARGETS]
    if bad or not wanted or not conns:
        ap.error(f"unknown targets {bad}; choose from {ALL_TARGETS}")
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install -y wrk)")

    # SIGTERM behaves like Ctrl-C so the finally block below always cleans up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm)
    nproc = os.cpu_count()
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    print(f"date: {started}   nproc: {nproc}   python: {sys.version.split()[0]}")
    est = args.rounds * len(conns) * len(wanted) * (args.duration + args.warmup)
    print(
        f"plan: targets={wanted} connections={conns} duration={args.duration}s "
        f"warmup={args.warmup}s rounds={args.rounds}  (~{est}s of load)"
    )

    tmp = Path(tempfile.mkdtemp(prefix="splitter-bench-"))
    bench = Bench(tmp)
    runs: list[dict] = []
    skipped: list[str] = []
    try:
        print("starting:")
        backend = bench.start_backend()
        if backend is None:
            sys.exit("backend failed to start; nothing to measure")
        ports: dict[str, int] = {}
        starters = {
            "direct": lambda: backend,
            "splitter": lambda: bench.start_splitter("splitter", backend.port, access_log=False),
            "splitter-log": lambda: bench.start_splitter(
                "splitter-log", backend.port, access_log=True
            ),
            "nginx": lambda: bench.start_nginx_proxy(backend.port),
            "haproxy": lambda: bench.start_haproxy(backend.port),
        }
        for t in wanted:
            svc = starters[t]()
            if svc:
                ports[t] = svc.port
            else:
                skipped.append(t)
        targets = [t for t in wanted if t in ports]

        k = 0
        for rnd in range(args.rounds):
            for c in conns:
                order = targets if k % 2 == 0 else targets[::-1]  # alternate to spread drift
                k += 1
                for t in order:
                    try:
                        if args.warmup:
                            run_wrk(ports[t], c, args.warmup)
                        r = run_wrk(ports[t], c, args.duration)
                    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                        print(f"  {t} c={c}: FAILED: {e}")
                        continue
                    r.update(target=t, connections=c, round=rnd)
                    runs.append(r)
                    print(
                        f"  round {rnd + 1} c={c:<4} {t:<13} {r['rps']:>10,.0f} req/s  "
                        f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
                        f"errors {r['non2xx'] + r['socket_errors']}"
                    )
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        bench.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    # one result per (target, conns): the median-req/s run over the rounds
    results = []
    for c in conns:
        for t in wanted:
            rs = sorted(
                (r for r in runs if r["target"] == t and r["connections"] == c),
                key=lambda r: r["rps"],
            )
            if rs:
                results.append(rs[(len(rs) - 1) // 2])
    print(f"\n## splitter benchmark, {started}, nproc={nproc}, wrk -t1, {args.duration}s per run\n")
    print(table(results))
    if skipped:
        print(f"\nskipped (did not start): {', '.join(skipped)}")
    doc = {
        "date": started,
        "nproc": nproc,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": conns,
        "rounds": args.rounds,
        "skipped": skipped,
        "results": results,
        "runs": runs,
        "rps_median_all_rounds": {
            f"{t}@{c}": statistics.median(
                r["rps"] for r in runs if r["target"] == t and r["connections"] == c
            )
            for t in wanted
            for c in conns
            if any(r["target"] == t and r["connections"] == c for r in runs)
        },
    }
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
