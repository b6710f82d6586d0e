#!/usr/bin/env python3
"""Shadow traffic: what copies to a shadow pool cost the clients, all on 127.0.0.1.

    python benchmarks/shadow.py [--python VENV] [--rounds 3] [--duration 10] [--warmup 2]
                                [--sat-duration 5] [--connections 64]
                                [--rate-fraction 0.5[,0.2...] | --rate N[,M...]]
                                [--slow-delay 0.2] [--hang-seconds 20] [--hang-read 60s,2s]
                                [--cases off,full,slow,tenth]
                                [--json benchmarks/shadow-results.json]

One splitter per case, each in front of the same primary backend (pool `blue`, weight
100) with a pool `canary` (weight 0) that gets the copies (`shadow: {pool: canary,
share: S}`); otherwise as the `splitter` target of run.py (one process, access log off,
sticky cookies on). Every request comes from 127.0.0.1, so the bound on the copies one
client address causes (`rollouts.analysis.max_per_address`, 100 a second by default) is
lifted: the share alone decides, as with many clients.

    off      share 0 (the shadow section ready, nothing copied), healthy canary
    full     share 1.0, a healthy canary (a second backend like the primary, the same JSON)
    slow     share 1.0, a canary that answers 200 ms (--slow-delay) later
    tenth    share 0.1, a healthy canary

The primary and the healthy canary are two nginx (one worker each, `return 200` with
the same small JSON body), or benchmarks/shadow_backend.py without nginx; the slow one
is shadow_backend.py --delay (a timer per request: any number wait at once, none
queues). In one run:

1. calibration: wrk -t1 -c64 against `off`: the req/s it sustains here, now; the fixed
   rates of part 2 are --rate-fraction of it (default 0.5), rounded down to a whole
   number of requests per second per connection, unless --rate gives them.
2. rounds, the cases in alternating order:
   a. latency at each fixed offered rate, below saturation: h2load --h1 -c64, each
      connection sending rate/64 requests a second, evenly spaced (--rps), the
      connections opened 1 ms apart (-r 1 --rate-period 1ms) so that their requests are
      spread over the period: with -D, h2load starts every connection's timer at once,
      and each period begins with a burst of 64 requests. Every request's time from the
      log (--log-file): p50, p90, p99, p99.9 and max; the rate achieved; the splitter's
      CPU (share of one core); the copies' outcomes (GET /api/v1/shadow). After an
      untimed --warmup run. A closed-loop load (wrk) measures only throughput: copies
      cost CPU, and the latency it shows follows the req/s.
   b. req/s at saturation: wrk -t1 -c64, with the splitter's CPU per request.
3. memory: a splitter copying every request (share 1.0, max_in_flight default 64) to a
   canary that accepts and never answers (shadow_backend.py --hang; it passes the health
   checks, so the copies keep going to it), once per read timeout in --hang-read
   (default 60s, the default, and 2s, so that the copies time out and new ones replace
   them during the load): RSS and open file descriptors idle, at the end of a
   --hang-seconds wrk -c64 load, its peak, and 5 s after; the client's req/s, p50 and p99.

Tables: per case the median over the rounds; "vs off" the median over the rounds of the
ratio to `off`'s run of the same round (run right before or after). Every process is
stopped at the end, also on Ctrl-C/SIGTERM. Needs wrk and h2load (Debian:
nghttp2-client) on PATH; nginx is optional. The harness is stdlib only (it imports
run.py, not splitter); splitter runs as run.py runs it: this checkout's source, or with
--python the splitter installed in that venv (e.g. compiled), from outside any checkout
and without PYTHONPATH.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import run
from run import Bench, Sampler, Service, free_port, tree_cpu_s, tree_pids, tree_rss_mb

HERE = Path(__file__).resolve().parent
# The JSON body of every backend (shadow_backend.BODY; nginx serves the same bytes).
BODY = '{"id": 1, "name": "widget", "price": 10, "stock": 5}'
CASES = {  # name -> (share, canary backend)
    "off": (0.0, "healthy"),
    "full": (1.0, "healthy"),
    "slow": (1.0, "slow"),
    "tenth": (0.1, "healthy"),
}
DESCRIBE = {
    "off": "share 0 (no copies)",
    "full": "share 1.0, healthy shadow",
    "slow": "share 1.0, shadow {delay} ms slower",
    "tenth": "share 0.1, healthy shadow",
    "hang": "share 1.0, shadow never answers",
}
# Every request of the benchmark comes from 127.0.0.1: the bound on the copies one client
# address causes per second (rollouts.analysis.max_per_address, 100 by default) is lifted,
# so that the share decides what is copied, as with many clients.
MAX_PER_ADDRESS = 1_000_000
TALLY_KEYS = ("compared", "same", "differ", "skipped", "errors")


# -- the services ---------------------------------------------------------------------
def start_json_backend(bench: Bench, name: str) -> Service | None:
    """A fast backend answering BODY: nginx (one worker), else shadow_backend.py."""
    port = free_port()
    if shutil.which("nginx"):
        body = BODY.replace('"', '\\"')
        return bench.nginx(
            f"{name}(nginx)",
            port,
            f"""    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ default_type application/json; return 200 "{body}\\n"; }}
    }}""",
        )
    return start_python_backend(bench, name, port, [])


def start_python_backend(
    bench: Bench, name: str, port: int | None, extra: list[str]
) -> Service | None:
    port = port or free_port()
    argv = [sys.executable, str(HERE / "shadow_backend.py"), str(port), *extra]
    return bench.spawn(f"{name}(python)", port, argv, ready_path="/healthz")


def start_splitter(
    bench: Bench, name: str, primary: int, canary: int, share: float, read: str | None = None
) -> tuple[Service, int] | None:
    """splitter `name`: pool blue (weight 100) on primary, canary (weight 0) on canary,
    `shadow: {pool: canary, share: share}`; with read, `timeouts: {read: read}`. Returns
    the service and its admin port."""
    port, admin = free_port(), free_port()
    d = bench.fresh_dir(name)
    cfg = d / "splitter.yaml"
    text = f"""listen: 127.0.0.1:{port}
admin: {{listen: 127.0.0.1:{admin}}}
sticky: {{cookie: splitter, secret: benchmark-secret}}
access_log: false
workers: 1
state_file: {d / "state.json"}
pools:
  blue: {{weight: 100, backends: ["http://127.0.0.1:{primary}"]}}
  canary: {{weight: 0, backends: ["http://127.0.0.1:{canary}"]}}
shadow: {{pool: canary, share: {share}}}
rollouts: {{analysis: {{max_per_address: {MAX_PER_ADDRESS}}}}}
"""
    if read:
        text += f"timeouts: {{read: {read}}}\n"
    cfg.write_text(text)
    argv, cwd, env = run.splitter_command(False, d)
    svc = bench.spawn(name, port, [*argv, "run", "-c", str(cfg)], cwd=cwd, env=env)
    return (svc, admin) if svc else None


def shadow_tally(admin: int) -> dict:
    """GET /api/v1/shadow: the counts of the copies' outcomes."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/v1/shadow", timeout=5) as r:
            doc = json.load(r)
    except (OSError, ValueError):
        return {k: 0 for k in TALLY_KEYS}
    return {k: int(doc.get(k, 0)) for k in TALLY_KEYS}


def tally_delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in TALLY_KEYS}


def open_fds(pid: int) -> int:
    n = 0
    for p in tree_pids(pid):
        try:
            n += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return n


# -- load -----------------------------------------------------------------------------
def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of an ascending list."""
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


def run_h2load(port: int, conns: int, rate: int, seconds: int, log: Path | None) -> dict:
    """h2load at a fixed offered rate: `conns` HTTP/1.1 keep-alive connections, each
    sending rate // conns requests a second, evenly spaced, for `seconds`; the connections
    are opened 1 ms apart (-r 1 --rate-period 1ms) so that their requests are spread over
    each period rather than sent together (with -D, h2load starts every connection's
    timer at once: a burst of `conns` requests per period). Latency percentiles from the
    per-request log (time from sending the request to the end of its answer)."""
    per_conn = max(1, rate // conns)
    total = per_conn * conns * seconds
    argv = ["h2load", "--h1", "-t1", f"-c{conns}", "-r1", "--rate-period=1ms"]
    argv += [f"--rps={per_conn}", f"-n{total}"]
    if log is not None:
        argv.append(f"--log-file={log}")
    argv.append(f"http://127.0.0.1:{port}/")
    t0 = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    wall = time.monotonic() - t0
    if out.returncode != 0:
        raise RuntimeError(f"h2load failed ({out.returncode}): {out.stderr.strip()[-300:]}")
    summary = [ln for ln in out.stdout.splitlines() if ln.startswith("requests:")]
    failed = 0
    if summary:  # "requests: N total, N started, N done, N succeeded, N failed, ..."
        words = summary[0].replace(",", "").split()
        failed = sum(int(words[i - 1]) for i, w in enumerate(words) if w in ("failed", "errored"))
    if log is None:
        return {"failed": failed}
    rows = []
    with open(log) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3:
                rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
    log.unlink(missing_ok=True)
    if not rows:
        raise RuntimeError(f"h2load logged no request:\n{out.stdout[-500:]}")
    lat = sorted(r[2] / 1000 for r in rows)
    span = (max(r[0] for r in rows) - min(r[0] for r in rows)) / 1e6
    return {
        "offered_rps": per_conn * conns,
        "achieved_rps": round(len(rows) / span, 1) if span > 0 else 0.0,
        "requests": len(rows),
        "wall_s": round(wall, 2),
        "p50_ms": round(percentile(lat, 0.50), 3),
        "p90_ms": round(percentile(lat, 0.90), 3),
        "p99_ms": round(percentile(lat, 0.99), 3),
        "p999_ms": round(percentile(lat, 0.999), 3),
        "max_ms": round(lat[-1], 3),
        "mean_ms": round(statistics.fmean(lat), 3),
        "non2xx": sum(1 for r in rows if not 200 <= r[1] < 300),
        "failed": failed,
    }


# -- the parts ------------------------------------------------------------------------
def fixed_rate(bench: Bench, svc: Service, admin: int, args, rate: int, case: str) -> dict:
    pid = svc.proc.pid
    if args.warmup:
        run_h2load(svc.port, args.connections, rate, args.warmup, None)
    t0 = shadow_tally(admin)
    cpu0, w0 = tree_cpu_s(pid), time.monotonic()
    with Sampler(pid) as s:
        log = bench.tmp / f"h2load-{case}.log"
        r = run_h2load(svc.port, args.connections, rate, args.duration, log)
    cpu1, w1 = tree_cpu_s(pid), time.monotonic()
    r.update(
        case=case,
        cpu_pct=round((cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1]) / (w1 - w0) * 100, 1),
        rss_peak_mb=round(s.peak, 1),
        copies=tally_delta(t0, shadow_tally(admin)),
    )
    return r


def saturation(svc: Service, admin: int, args, case: str) -> dict:
    pid = svc.proc.pid
    if args.warmup:
        run.run_wrk(svc.port, args.connections, args.warmup)
    t0 = shadow_tally(admin)
    with Sampler(pid) as s:
        cpu0 = tree_cpu_s(pid)
        r = run.run_wrk(svc.port, args.connections, args.sat_duration)
        cpu1 = tree_cpu_s(pid)
    n = max(r["requests"], 1)
    r.update(
        case=case,
        user_us=round((cpu1[0] - cpu0[0]) / n * 1e6, 2),
        sys_us=round((cpu1[1] - cpu0[1]) / n * 1e6, 2),
        rss_peak_mb=round(s.peak, 1),
        copies=tally_delta(t0, shadow_tally(admin)),
    )
    return r


def hang_part(bench: Bench, args, primary: Service, out: dict) -> None:
    """RSS and file descriptors of a splitter copying every request to a canary that never
    answers, before, during and after a bounded wrk load."""
    hang = start_python_backend(bench, "canary-hang", None, ["--hang"])
    if hang is None:
        out["skipped"].append("hang backend")
        return
    for read in args.hang_read:
        name = f"splitter-hang-read{read}"
        started = start_splitter(bench, name, primary.port, hang.port, 1.0, read)
        if started is None:
            out["skipped"].append(name)
            continue
        svc, admin = started
        pid = svc.proc.pid
        time.sleep(1.0)
        idle, fds_idle = tree_rss_mb(pid), open_fds(pid)
        t0 = shadow_tally(admin)
        with Sampler(pid) as s:
            try:
                r = run.run_wrk(svc.port, args.connections, args.hang_seconds)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                print(f"  hang read {read}: FAILED: {e}")
                bench.stop(svc)
                continue
            end, fds_end = tree_rss_mb(pid), open_fds(pid)
        copies_end = tally_delta(t0, shadow_tally(admin))
        time.sleep(5.0)
        h = dict(
            read_timeout=read,
            seconds=args.hang_seconds,
            rps=r["rps"],
            requests=r["requests"],
            p50_ms=r["p50_ms"],
            p99_ms=r["p99_ms"],
            errors=r["non2xx"] + r["socket_errors"],
            rss_idle_mb=round(idle, 1),
            rss_end_mb=round(end, 1),
            rss_peak_mb=round(s.peak, 1),
            rss_after_mb=round(tree_rss_mb(pid), 1),
            fds_idle=fds_idle,
            fds_end=fds_end,
            fds_after=open_fds(pid),
            copies_at_end=copies_end,
            copies_after=tally_delta(t0, shadow_tally(admin)),
        )
        out["hang"].append(h)
        print(
            f"  hang read {read:<4} {h['rps']:>9,.0f} req/s  p50 {h['p50_ms']:.3f} ms  "
            f"p99 {h['p99_ms']:.3f} ms  RSS {idle:.1f} -> end {end:.1f} (peak {s.peak:.1f}) "
            f"-> 5 s after {h['rss_after_mb']} MB  fds {fds_idle} -> {fds_end} -> "
            f"{h['fds_after']}  copies {h['copies_after']}"
        )
        bench.stop(svc)
    bench.stop(hang)


def summarize(runs: list[dict], keys: tuple[str, ...], cases: list[str]) -> dict:
    """Per case: the median over the rounds of each key, and of its ratio to off's run of
    the same round (and rate)."""
    off = {(r["round"], r.get("rate")): r for r in runs if r["case"] == "off"}
    res = {}
    for c in cases:
        rows = [r for r in runs if r["case"] == c]
        if not rows:
            continue
        m: dict = {"rounds": len(rows)}
        for k in keys:
            m[k] = statistics.median(r[k] for r in rows)
            pairs = [(r, off.get((r["round"], r.get("rate")))) for r in rows]
            ratios = [r[k] / o[k] for r, o in pairs if o is not None and o[k]]
            m[f"{k}_vs_off"] = round(statistics.median(ratios), 3) if ratios else None
        m["copies"] = {k: sum(r["copies"][k] for r in rows) for k in TALLY_KEYS}
        res[c] = m
    return res


def _ratio(m: dict, key: str) -> str:
    v = m.get(f"{key}_vs_off")
    return "-" if v is None else f"{v:.2f}"


def _copies(c: dict) -> str:
    compared = f"{c['compared']:,} ({c['same']:,} same, {c['differ']:,} differ)"
    return f"{compared} / {c['skipped']:,} / {c['errors']:,}"


def tables(doc: dict) -> str:
    delay = round(doc["slow_delay_s"] * 1000)
    desc = {k: v.format(delay=delay) for k, v in DESCRIBE.items()}
    off_rps = doc["calibration"].get("rps", 0)
    lines = [
        f"Machine: {doc['machine']}",
        "",
        f"Calibration: `off` sustained {off_rps:,.0f} req/s (wrk -t1 -c{doc['connections']}) "
        "at the start of the run.",
    ]
    for rate in doc["rates"]:
        lat = doc["fixed_rate"][str(rate)]
        runs = [r for r in doc["fixed_rate_runs"] if r["rate"] == rate]
        lines += [
            "",
            f"Fixed offered rate {rate:,} req/s ({rate / off_rps:.0%} of off's), h2load --h1 "
            f"-c{doc['connections']} (each connection {rate // doc['connections']} req/s, "
            f"evenly spaced), {doc['duration_s']} s per run after {doc['warmup_s']} s of "
            f"warm-up, {doc['rounds']} rounds; the median over the rounds; vs off: the median "
            "of the rounds' ratios; CPU: the splitter process, % of one core:",
            "",
            "| case | achieved req/s | p50 ms | p50 vs off | p99 ms | p99 vs off | p99.9 ms "
            "| max ms | errors | CPU % | copies compared / skipped / errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for c, m in lat.items():
            lines.append(
                f"| {c}: {desc[c]} | {m['achieved_rps']:,.0f} | {m['p50_ms']:.3f} "
                f"| {_ratio(m, 'p50_ms')} | {m['p99_ms']:.3f} | {_ratio(m, 'p99_ms')} "
                f"| {m['p999_ms']:.3f} | {m['max_ms']:.1f} | {m['errors']:g} "
                f"| {m['cpu_pct']:.0f} | {_copies(m['copies'])} |"
            )
        lines += [
            "",
            f"Each round at {rate:,} req/s, p50 / p99 ms:",
            "",
            "| round | " + " | ".join(lat) + " |",
            "|---:|" + "---:|" * len(lat),
        ]
        for rnd in range(doc["rounds"]):
            cells = []
            for c in lat:
                r = next((r for r in runs if (r["round"], r["case"]) == (rnd, c)), None)
                cells.append(f"{r['p50_ms']:.3f} / {r['p99_ms']:.3f}" if r else "-")
            lines.append(f"| {rnd + 1} | " + " | ".join(cells) + " |")
    sat = doc["saturation"]
    lines += [
        "",
        f"Saturation, wrk -t1 -c{doc['connections']}, {doc['sat_duration_s']} s per run, "
        f"{doc['rounds']} rounds (a closed loop: req/s is the figure, its latency follows "
        "the req/s); CPU: the splitter process per request, the median over the rounds:",
        "",
        "| case | req/s | req/s vs off | p50 ms | p99 ms | errors | CPU us/req user+sys "
        "| CPU/req vs off | peak RSS MB | copies compared / skipped / errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c, m in sat.items():
        lines.append(
            f"| {c}: {desc[c]} | {m['rps']:,.0f} | {_ratio(m, 'rps')} | {m['p50_ms']:.3f} "
            f"| {m['p99_ms']:.3f} | {m['errors']:g} | {m['user_us']:.1f}+{m['sys_us']:.1f} "
            f"| {_ratio(m, 'cpu_us')} | {m['rss_peak_mb']:.1f} | {_copies(m['copies'])} |"
        )
    if doc["hang"]:
        lines += [
            "",
            f"Memory: share 1.0 to a shadow that never answers (max_in_flight 64), wrk -t1 "
            f"-c{doc['connections']} for {doc['hang'][0]['seconds']} s; RSS of the splitter "
            "process in MB, idle, at the end of the load, its peak, and 5 s after; its open "
            "file descriptors:",
            "",
            "| read timeout | req/s | p50 ms | p99 ms | errors | RSS idle | RSS at end "
            "| RSS peak | RSS 5 s after | fds idle / end / after | copies compared / skipped "
            "/ errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for h in doc["hang"]:
            lines.append(
                f"| {h['read_timeout']} | {h['rps']:,.0f} | {h['p50_ms']:.3f} "
                f"| {h['p99_ms']:.3f} | {h['errors']} | {h['rss_idle_mb']} | {h['rss_end_mb']} "
                f"| {h['rss_peak_mb']} | {h['rss_after_mb']} "
                f"| {h['fds_idle']} / {h['fds_end']} / {h['fds_after']} "
                f"| {_copies(h['copies_after'])} |"
            )
    return "\n".join(lines)


def _sigterm(*_: object) -> None:
    raise KeyboardInterrupt


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({model}), load average {load}"


def parse_list(text: str, kind: type) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds of parts 2a and 2b (3)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per h2load run (10)")
    ap.add_argument("--sat-duration", type=int, default=5, help="seconds per wrk run (5)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds per run (2)")
    ap.add_argument("--connections", type=int, default=64, help="client connections (64)")
    ap.add_argument(
        "--rate-fraction",
        default="0.5",
        help="the fixed rates, as shares of off's req/s at saturation, comma-separated (0.5)",
    )
    ap.add_argument("--rate", help="the fixed rates in req/s, comma-separated (instead)")
    ap.add_argument("--slow-delay", type=float, default=0.2, help="the slow shadow's delay, s")
    ap.add_argument("--hang-seconds", type=int, default=20, help="the memory part's load, s")
    ap.add_argument(
        "--hang-read",
        default="60s,2s",
        help="read timeouts of the memory part, one run each ('' skips it; default 60s,2s)",
    )
    ap.add_argument("--cases", default=",".join(CASES), help="subset of " + ",".join(CASES))
    ap.add_argument("--python", metavar="PYTHON", help="as run.py --python")
    ap.add_argument("--json", default=str(HERE / "shadow-results.json"), help="results file")
    args = ap.parse_args()
    args.hang_read = [t.strip() for t in args.hang_read.split(",") if t.strip()]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if "off" not in cases:
        cases.insert(0, "off")
    if any(c not in CASES for c in cases):
        ap.error(f"--cases: choose from {list(CASES)}")
    if min(args.rounds, args.duration, args.sat_duration, args.connections) < 1:
        ap.error("--rounds, --duration, --sat-duration and --connections must be >= 1")
    try:
        fractions = parse_list(args.rate_fraction, float)
        fixed = parse_list(args.rate, int) if args.rate else []
    except ValueError:
        ap.error("--rate-fraction and --rate: comma-separated numbers")
    if not fixed and (not fractions or not all(0 < f < 1 for f in fractions)):
        ap.error("--rate-fraction: shares between 0 and 1")
    if fixed and min(fixed) < args.connections:
        ap.error("--rate: at least one request per second per connection")
    if args.python:
        run.SPLITTER_PYTHON = run.venv_python(Path(args.python).absolute())
        if run.SPLITTER_PYTHON is None:
            ap.error(f"--python {args.python}: not a python interpreter or a venv")
    for tool in ("wrk", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (Debian: apt-get install wrk nghttp2-client)")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm)
    nofile = run.raise_nofile(args.connections * 8 + 1024)
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    tools = {"wrk": tool_version(["wrk", "-v"]), "h2load": tool_version(["h2load", "--version"])}
    machine_start = machine()
    print(f"date: {started}   {machine_start}   {nofile}   {tools}")
    tmp = Path(tempfile.mkdtemp(prefix="splitter-shadow-bench-"))
    bench = Bench(tmp)
    build = run.splitter_build(False, tmp)
    print(f"splitter: {build}")
    out: dict = {"hang": [], "skipped": []}
    lat_runs: list[dict] = []
    sat_runs: list[dict] = []
    calibration: dict = {}
    rates: list[int] = []
    t_start = time.monotonic()
    try:
        print("\n[shadow] starting:")
        primary = start_json_backend(bench, "primary")
        healthy = start_json_backend(bench, "canary")
        slow = start_python_backend(bench, "canary-slow", None, ["--delay", str(args.slow_delay)])
        if primary is None or healthy is None or slow is None:
            sys.exit("a backend did not start")
        canaries = {"healthy": healthy, "slow": slow}
        svcs: dict[str, tuple[Service, int]] = {}
        for c in cases:
            share, canary = CASES[c]
            s = start_splitter(bench, f"splitter-{c}", primary.port, canaries[canary].port, share)
            if s is None:
                sys.exit(f"splitter-{c} did not start")
            svcs[c] = s
        time.sleep(2.0)  # a health check of every pool
        print(f"  calibration: wrk -c{args.connections} against off")
        calibration = saturation(svcs["off"][0], svcs["off"][1], args, "off")
        wanted = fixed or [int(calibration["rps"] * f) for f in fractions]
        rates = [max(1, r // args.connections) * args.connections for r in wanted]
        print(f"  off sustains {calibration['rps']:,.0f} req/s; fixed rates {rates} req/s")
        for rnd in range(args.rounds):
            order = cases if rnd % 2 == 0 else cases[::-1]
            for rate in rates:
                for c in order:
                    svc, admin = svcs[c]
                    try:
                        r = fixed_rate(bench, svc, admin, args, rate, c)
                    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                        print(f"  r{rnd + 1} rate {rate} {c}: FAILED: {e}")
                        continue
                    r.update(round=rnd, rate=rate, errors=r["non2xx"] + r["failed"])
                    lat_runs.append(r)
                    print(
                        f"  r{rnd + 1} rate {rate:,} {c:<6} achieved {r['achieved_rps']:>8,.0f}"
                        f"  p50 {r['p50_ms']:7.3f}  p99 {r['p99_ms']:7.3f}  p99.9 "
                        f"{r['p999_ms']:7.3f}  max {r['max_ms']:7.1f} ms  err {r['errors']}  "
                        f"CPU {r['cpu_pct']:.0f}%  copies {r['copies']}"
                    )
            for c in order[::-1]:
                svc, admin = svcs[c]
                try:
                    r = saturation(svc, admin, args, c)
                except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                    print(f"  r{rnd + 1} saturation {c}: FAILED: {e}")
                    continue
                r.update(round=rnd, errors=r["non2xx"] + r["socket_errors"])
                r["cpu_us"] = r["user_us"] + r["sys_us"]
                sat_runs.append(r)
                print(
                    f"  r{rnd + 1} wrk -c{args.connections} {c:<6} {r['rps']:>9,.0f} req/s  "
                    f"p50 {r['p50_ms']:7.3f}  p99 {r['p99_ms']:7.3f} ms  err {r['errors']}  "
                    f"CPU {r['user_us']:.1f}+{r['sys_us']:.1f} us/req  copies {r['copies']}"
                )
        for svc, _ in svcs.values():
            bench.stop(svc)
        if args.hang_read:
            print("\n[shadow, memory] a shadow that never answers:")
            hang_part(bench, args, primary, out)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        bench.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    build_after = run.splitter_build(False, Path(tempfile.gettempdir()))
    if build_after != build:  # e.g. a venv whose splitter was reinstalled meanwhile
        print(f"WARNING: splitter --version said {build!r} at the start, {build_after!r} now")

    lat_keys = ("achieved_rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "errors",
                "cpu_pct")  # fmt: skip
    sat_keys = ("rps", "p50_ms", "p99_ms", "errors", "user_us", "sys_us", "cpu_us", "rss_peak_mb")
    doc = {
        "date": started,
        "machine": f"{machine_start} at the start; {machine()} at the end",
        "nproc": os.cpu_count(),
        "elapsed_s": round(elapsed, 1),
        "build": build,
        "build_after": build_after,
        "tools": tools,
        "connections": args.connections,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "sat_duration_s": args.sat_duration,
        "warmup_s": args.warmup,
        "slow_delay_s": args.slow_delay,
        "backends": "nginx" if shutil.which("nginx") else "python",
        "calibration": calibration,
        "rates": rates,
        "fixed_rate": {
            str(rate): summarize([r for r in lat_runs if r["rate"] == rate], lat_keys, cases)
            for rate in rates
        },
        "saturation": summarize(sat_runs, sat_keys, cases),
        "hang": out["hang"],
        "skipped": out["skipped"],
        "fixed_rate_runs": lat_runs,
        "saturation_runs": sat_runs,
    }
    print(f"\n# splitter shadow benchmark, {started}, took {elapsed:.0f} s")
    print(f"\n{build}; backends: {doc['backends']}; {tools['h2load']}; {tools['wrk']}\n")
    print(tables(doc))
    if out["skipped"]:
        print(f"\nskipped (did not start): {', '.join(out['skipped'])}")
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
