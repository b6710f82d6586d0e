#!/usr/bin/env python3
"""CPU time per proxied request, user and system, for one or more splitter checkouts.

    python benchmarks/cpu.py [--connections 64] [--duration 5] [--rounds 3] PATH [PATH ...]

Starts a tiny nginx backend (`return 200`), then for each checkout PATH a `splitter run`
from that checkout (sticky cookies on, access log off) and drives it with wrk on loopback,
in alternating order over the rounds. Reports, per checkout, the splitter process's
user and system CPU microseconds per request (from /proc, so the profiler costs nothing)
and req/s. Lower user time is what a request-path change should show. Needs wrk and nginx.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_ticks(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime


def wrk(port: int, conns: int, seconds: float) -> int:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise RuntimeError(out)
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="splitter-cpu-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        backend = free_port()
        (tmp / "nginx.conf").write_text(
            f"worker_processes 1; daemon off; error_log {tmp}/nginx.err; pid {tmp}/nginx.pid;\n"
            "events { worker_connections 4096; }\n"
            f"http {{ access_log off; server {{ listen 127.0.0.1:{backend} backlog=4096; "
            'location / { return 200 "blue"; } } }\n'
        )
        procs.append(subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf")]))
        wait_port(backend)
        splitters = []
        for i, path in enumerate(args.paths):
            port, admin = free_port(), free_port()
            cfg = tmp / f"s{i}.yaml"
            cfg.write_text(
                f"listen: 127.0.0.1:{port}\nadmin: {{listen: 127.0.0.1:{admin}}}\n"
                f'pools:\n  blue: {{weight: 100, backends: ["http://127.0.0.1:{backend}"]}}\n'
                "sticky: {cookie: splitter, secret: benchmark-secret}\n"
                f"access_log: false\nstate_file: {tmp}/state-{i}.json\n"
            )
            # `python -m` puts the working directory first on sys.path: run from the checkout.
            root = Path(path).resolve()
            env = dict(os.environ, PYTHONPATH=str(root))
            proc = subprocess.Popen(
                [sys.executable, "-m", "splitter", "run", "-c", str(cfg)],
                env=env,
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(proc)
            wait_port(port)
            splitters.append((path, port, proc))
        results: dict[str, list[tuple[float, float, float]]] = {p: [] for p in args.paths}
        for rnd in range(args.rounds):
            order = splitters if rnd % 2 == 0 else splitters[::-1]
            for path, port, proc in order:
                wrk(port, args.connections, 1.0)  # warm up
                u0, s0 = cpu_ticks(proc.pid)
                t0 = time.monotonic()
                n = wrk(port, args.connections, args.duration)
                elapsed = time.monotonic() - t0
                u1, s1 = cpu_ticks(proc.pid)
                user = (u1 - u0) / TICK / n * 1e6
                system = (s1 - s0) / TICK / n * 1e6
                results[path].append((user, system, n / elapsed))
                print(
                    f"round {rnd + 1} {path}: user {user:.2f} us  sys {system:.2f} us  "
                    f"{n / elapsed:,.0f} req/s",
                    flush=True,
                )
        print(f"\nc={args.connections}, {args.duration:g} s x {args.rounds} rounds, medians:")
        print("| checkout | user us/req | sys us/req | req/s |\n|---|---:|---:|---:|")
        for path in args.paths:
            rows = results[path]
            print(
                f"| {path} | {statistics.median(r[0] for r in rows):.2f} "
                f"| {statistics.median(r[1] for r in rows):.2f} "
                f"| {statistics.median(r[2] for r in rows):,.0f} |"
            )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
