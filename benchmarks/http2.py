"""The HTTP/2 part of run.py (`run.py --http2`, or `--targets splitter-http2,nginx-http2`
for this part alone): splitter beside nginx, on 127.0.0.1, in one run.

1. h2c: h2load -c64 -m10 -n N (h2c with prior knowledge, h2load's default for http://)
   against splitter (its plain listener) and nginx (`listen ... http2`, or `http2 on;`
   from nginx 1.25.1), both in front of the same origin, nginx `return 200` over
   HTTP/1.1 keep-alive (nginx proxies as the run.py target `nginx` does, adding the same
   headers). Rounds in alternating order: req/s, p50 and p99 (from h2load's per-request
   log: h2load prints only min, max, mean and sd), errors, the target's CPU per request
   and peak RSS; "vs nginx" is the median over the rounds of the ratio to nginx's run of
   the same round.
2. h2 over TLS: the same with TLS on both listeners (the certificate and settings of the
   TLS part, ALPN offering h2 and http/1.1); h2load must negotiate h2.
3. gRPC unary calls: a grpcio server (benchmarks/grpc_backend.py, an echo of bytes) as the
   origin; splitter with a pool `protocol: h2c`, nginx with `grpc_pass`, and the server
   directly; h2load POSTs a framed message (`-d`, content-type application/grpc,
   te: trailers). h2load does not read grpc-status: an answered call is one the server
   counted (its Count method), and calls h2load saw answered beyond that count as errors.
4. memory per idle h2c connection: K connections that each complete the preface and
   SETTINGS exchange (both ways acknowledged) and one `GET /`, then stay idle; the
   server's RSS (process tree, VmRSS) before and after, divided by K; then closed.

A splitter without HTTP/2 on its listener, or one that does not take a pool `protocol:
h2c`, is reported as "not supported yet" with the reason, and the rest goes on. Every
load is bounded (-n, h2load's -N inactivity timeout, and a timeout per run).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import run
from run import HERE, Bench, Sampler, Service, free_port, tree_cpu_s, tree_pids, tree_rss_mb

SCENARIOS = ("h2c", "tls", "grpc")
PARTS = (*SCENARIOS, "idle")
DESCRIBE = {
    "h2c": "h2c (prior knowledge), nginx return 200 behind over HTTP/1.1",
    "tls": "h2 over TLS (ALPN), nginx return 200 behind over HTTP/1.1",
    "grpc": "gRPC unary echo, grpcio server behind",
}
GRPC_PATH = "/bench.Echo/Echo"
RUN_TIMEOUT = 600.0  # seconds, per h2load run: a stalled target fails, the run goes on
INACTIVITY = "10s"  # h2load -N: a connection without activity this long is given up


# -- h2load ---------------------------------------------------------------------------
def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of an ascending list."""
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


def run_h2load(
    url: str,
    conns: int,
    streams: int,
    requests: int,
    log: Path | None = None,
    data: Path | None = None,
    headers: tuple[str, ...] = (),
) -> dict:
    """h2load -c conns -m streams -n requests against url (h2c with prior knowledge for
    http://, h2 by ALPN for https://); with data, POSTs of that file. Raises RuntimeError
    when h2load fails or did not speak HTTP/2."""
    argv = ["h2load", "-t1", f"-c{conns}", f"-m{streams}", f"-n{requests}", "-N", INACTIVITY]
    if data is not None:
        argv += ["-d", str(data)]
    argv += [a for h in headers for a in ("-H", h)]
    if log is not None:
        argv.append(f"--log-file={log}")
    argv.append(url)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    text = out.stdout
    proto = re.search(r"^Application protocol: (\S+)", text, re.M)
    if proto is None:  # no connection came up: what h2load said
        tail = " | ".join((out.stderr.strip() or text.strip()).splitlines()[-3:])[-300:]
        raise RuntimeError(f"h2load did not speak HTTP/2: {tail or 'no output'}")
    if proto.group(1) not in ("h2", "h2c"):
        raise RuntimeError(f"h2load did not speak HTTP/2: it negotiated {proto.group(1)}")
    if out.returncode != 0:
        raise RuntimeError(f"h2load failed ({out.returncode}): {out.stderr.strip()[-300:]}")
    return parse_h2load(text, log)


def parse_h2load(text: str, log: Path | None) -> dict:
    fin = re.search(r"^finished in ([\d.]+)(m?s), ([\d.]+) req/s", text, re.M)
    req = re.search(
        r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
        re.M,
    )
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if not (fin and req and codes):
        raise ValueError(f"h2load output not understood:\n{text[-800:]}")
    total, _, done, ok, failed, errored, timeout = (int(x) for x in req.groups())
    r = {
        "rps": float(fin.group(3)),
        "seconds": float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1),
        "requests": total,
        "done": done,
        "succeeded": ok,
        "failed": failed + errored + timeout,
        "status_2xx": int(codes.group(1)),
        "non2xx": sum(int(x) for x in codes.groups()[1:]),
        "not_done": total - done,
    }
    if log is not None:
        lat: list[float] = []
        with open(log) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    lat.append(int(parts[2]) / 1000)
        log.unlink(missing_ok=True)
        lat.sort()
        r.update(
            p50_ms=round(percentile(lat, 0.50), 3),
            p99_ms=round(percentile(lat, 0.99), 3),
            max_ms=round(lat[-1], 3) if lat else 0.0,
            logged=len(lat),
        )
    return r


def url_of(svc: Service, path: str = "/") -> str:
    return f"{'https' if svc.tls else 'http'}://127.0.0.1:{svc.port}{path}"


def h2_probe(svc: Service) -> str | None:
    """None if svc answers one HTTP/2 `GET /` (h2c, or h2 by ALPN over TLS) with 2xx."""
    try:
        r = run_h2load(url_of(svc), 1, 1, 1)
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as e:
        return str(e).splitlines()[0]
    if r["status_2xx"] == 1:
        return None
    return (
        f"no answer to GET / over {'h2' if svc.tls else 'h2c'} (h2load: {r['done']} of 1 "
        f"done, {r['non2xx']} not 2xx, {r['failed']} failed)"
    )


def grpc_call(port: int, method: str, payload: bytes, timeout: float = 2.0) -> bytes:
    import grpc  # only this part needs grpcio

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        answer: bytes = ch.unary_unary(method)(payload, timeout=timeout)
        return answer


def grpc_probe(svc: Service) -> str | None:
    """None if one Echo call through svc (grpcio's client) comes back unchanged."""
    try:
        got = grpc_call(svc.port, GRPC_PATH, b"probe")
    except Exception as e:  # grpc.RpcError and what grpcio raises on a broken connection
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return None if got == b"probe" else f"Echo answered {got!r}"


def grpc_statuses(svc: Service) -> dict[str, float]:
    """A splitter's splitter_grpc_responses_total by grpc_status (GET /metrics on its
    admin listener); {} for anything else or when it cannot be read."""
    if svc.admin is None:
        return {}
    try:
        url = f"http://127.0.0.1:{svc.admin}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except (OSError, ValueError):
        return {}
    out: dict[str, float] = {}
    for m in re.finditer(
        r'^splitter_grpc_responses_total\{[^}]*grpc_status="([^"]*)"[^}]*\} (\S+)$', text, re.M
    ):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def grpc_count(port: int) -> int:
    return int.from_bytes(grpc_call(port, "/bench.Echo/Count", b"", timeout=10), "big")


def probe_once(svc: Service, probe: Any, seconds: float = 3.0) -> str | None:
    """probe(svc) until it passes or `seconds` pass: the last problem, or None."""
    deadline = time.monotonic() + seconds
    while True:
        problem = probe(svc)
        if problem is None or time.monotonic() > deadline:
            return problem
        time.sleep(0.2)


# -- the servers ----------------------------------------------------------------------
def start_grpc_backend(bench: Bench) -> Service | None:
    port = free_port()
    argv = [sys.executable, str(HERE / "grpc_backend.py"), str(port)]
    return bench.spawn("backend-grpc(grpcio)", port, argv, probe=grpc_probe)


def start_nginx_grpc(bench: Bench, backend: int) -> Service | None:
    """nginx-grpc: an h2c listener, `grpc_pass` to backend over a kept-alive upstream, the
    same headers as the other nginx targets."""
    if not shutil.which("nginx"):
        print("  SKIP nginx-grpc: not installed")
        return None
    port = free_port()
    return bench.nginx(
        "nginx-grpc",
        port,
        f"""    upstream grpcbe {{
        server 127.0.0.1:{backend};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port}{run.nginx_listen_options(False, True)};{run.nginx_http2_directive()}
        location / {{
            grpc_pass grpc://grpcbe;
            grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            grpc_set_header X-Forwarded-Host $host;
            grpc_set_header X-Forwarded-Proto $scheme;
            grpc_set_header X-Request-Id $request_id;
            add_header X-Request-Id $request_id;
        }}
    }}""",
        probe=grpc_probe,
    )


def start_splitter_checked(
    bench: Bench,
    name: str,
    backend: int,
    probe: Any,
    cert: tuple[Path, Path] | None = None,
    pool: dict | None = None,
    wait_probe: bool = False,
) -> tuple[Service | None, str | None]:
    """A splitter, and whether it does what the scenario needs: (service, None), or
    (None, why not). With wait_probe the probe is its readiness check (a gRPC pool: a
    GET / would go to the gRPC server), else it is ready when GET / over HTTP/1.1
    answers, and then probed."""
    svc = bench.start_splitter(name, backend, cert, pool, probe if wait_probe else None)
    if svc is None:
        return None, bench.problems.get(name, "did not start")
    problem = None if wait_probe else probe_once(svc, probe)
    if problem:
        print(f"  {name}: not supported yet: {problem}")
        bench.stop(svc)
        return None, problem
    return svc, None


# -- memory per idle h2c connection ---------------------------------------------------
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    )


def literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def response_status(block: bytes) -> int | None:
    """:status of a response's first header block (hpack when installed, else the one
    representation both servers use for 200: the static table's index 8)."""
    try:
        import hpack  # h2's HPACK, installed with splitter
    except ImportError:
        return 200 if block[:1] == b"\x88" else None
    for name, value in hpack.Decoder().decode(block):
        if name in (":status", b":status"):
            return int(value)
    return None


class IdleClient:
    """One h2c connection: preface and SETTINGS, both sides' SETTINGS acknowledged, one
    `GET /` answered, then held open and idle until closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.status: int | None = None

    async def open(self) -> bool:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        authority = b"127.0.0.1:%d" % self.port
        block = b"".join(
            literal(n, v)
            for n, v in (
                (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                (b":authority", authority),
            )
        )  # fmt: skip
        self.writer.write(
            PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_STREAM | END_HEADERS, 1, block)
        )
        acked = settings = ended = False
        buf = b""
        while not (acked and settings and ended):
            chunk = await self.reader.read(65536)
            if not chunk:
                return False
            buf += chunk
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                kind, flags = buf[3], buf[4]
                stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                payload, buf = buf[9 : 9 + length], buf[9 + length :]
                if kind == SETTINGS:
                    if flags & ACK:
                        acked = True
                    else:
                        settings = True
                        self.writer.write(frame(SETTINGS, ACK, 0))
                elif kind == PING and not flags & ACK:
                    self.writer.write(frame(PING, ACK, 0, payload))
                elif kind == HEADERS and stream == 1 and self.status is None:
                    if flags & PADDED:
                        payload = payload[1 : len(payload) - payload[0]]
                    if flags & PRIORITY:
                        payload = payload[5:]
                    self.status = response_status(payload)
                elif kind in (RST_STREAM, GOAWAY):
                    return False
                if stream == 1 and flags & END_STREAM and kind in (HEADERS, DATA):
                    ended = True
        await self.writer.drain()
        return self.status == 200

    async def still_open(self) -> bool:
        """No end of stream from the server (a GOAWAY or a close) while idle."""
        assert self.reader is not None
        try:
            data = await asyncio.wait_for(self.reader.read(65536), 0.05)
        except TimeoutError:
            return True
        except OSError:
            return False
        return bool(data) and GOAWAY not in data[3:4]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _open_clients(port: int, n: int, batch: int) -> tuple[list[IdleClient], int]:
    async def one(c: IdleClient) -> bool:
        try:
            return await asyncio.wait_for(c.open(), 15.0)
        except (OSError, TimeoutError, ValueError):
            return False

    clients: list[IdleClient] = []
    ok = 0
    for start in range(0, n, batch):
        group = [IdleClient(port) for _ in range(min(batch, n - start))]
        ok += sum(await asyncio.gather(*(one(c) for c in group)))
        clients += group
    return clients, ok


def open_fds(pid: int) -> int:
    n = 0
    for p in tree_pids(pid):
        try:
            n += len(list(Path(f"/proc/{p}/fd").iterdir()))
        except OSError:
            pass
    return n


async def _idle(svc: Service, n: int, batch: int, settle: float) -> dict:
    pid = svc.proc.pid
    warm, _ = await _open_clients(svc.port, 20, 20)  # first-use allocations, not per connection
    for c in warm:
        c.close()
    await asyncio.sleep(settle)
    rss0, fds0 = tree_rss_mb(pid), open_fds(pid)
    t0 = time.monotonic()
    clients, ok = await _open_clients(svc.port, n, batch)
    opened_s = time.monotonic() - t0
    await asyncio.sleep(settle)
    rss1, fds1 = tree_rss_mb(pid), open_fds(pid)
    still = sum(await asyncio.gather(*(c.still_open() for c in clients if c.writer)))
    for c in clients:
        c.close()
    await asyncio.sleep(settle)
    rss2 = tree_rss_mb(pid)
    return {
        "target": svc.name,
        "connections": n,
        "ok": ok,
        "still_open": still,
        "open_s": round(opened_s, 2),
        "rss_before_mb": round(rss0, 2),
        "rss_idle_mb": round(rss1, 2),
        "rss_after_close_mb": round(rss2, 2),
        "fds_added": fds1 - fds0,
        "kb_per_connection": round((rss1 - rss0) * 1000 / max(ok, 1), 1),
    }


# Longer than splitter's limits.upstream_idle_timeout (4 s): the backend connections the
# requests opened are closed again before RSS is read, so that what stays is the clients'.
IDLE_SETTLE = 5.0


def idle_memory(svc: Service, n: int, batch: int = 250, settle: float = IDLE_SETTLE) -> dict:
    return asyncio.run(_idle(svc, n, batch, settle))


# -- the part -------------------------------------------------------------------------
def grpc_body(d: Path, size: int) -> Path:
    """One gRPC message of `size` bytes, framed: uncompressed flag, length, bytes."""
    body = d / "grpc-request.bin"
    body.write_bytes(b"\x00" + size.to_bytes(4, "big") + b"x" * size)
    return body


def http2_part(bench: Bench, args: Any, out: dict) -> None:
    """See the module's docstring; results in out["http2"]."""
    parts = args.h2_parts
    res: dict = {
        "parts": parts,
        "connections": args.h2_connections,
        "streams": args.h2_streams,
        "requests": args.h2_requests,
        "grpc_calls": args.h2_grpc_calls,
        "grpc_size": args.h2_grpc_size,
        "idle_connections": args.h2_idle,
        "nginx": ".".join(map(str, run.nginx_version())) or None,
        "h2load": tool_version(["h2load", "--version"]),
        "unsupported": {},
        "runs": [],
        "results": {},
        "idle": [],
    }
    out["http2"] = res
    if not shutil.which("h2load"):
        print("\nSKIP http2: h2load is not installed (Debian: apt-get install nghttp2-client)")
        out["skipped"].append("http2 (no h2load)")
        return
    print(f"\n[http2] starting ({res['h2load']}, nginx {res['nginx']}):")
    origin = bench.start_tiny(None)
    if origin is None:
        out["skipped"].append("http2/origin")
        return
    # scenario -> [(target, service, url, extra h2load arguments)]
    plan: dict[str, list[tuple[str, Service, str, dict]]] = {s: [] for s in SCENARIOS}
    grpc_backend = None

    def unsupported(scenario: str, why: str) -> None:
        res["unsupported"][scenario] = why

    splitter, nginx = "splitter" in args.h2_targets, "nginx" in args.h2_targets
    if "h2c" in parts:
        if splitter:
            s, why = start_splitter_checked(bench, "splitter-h2c", origin.port, h2_probe)
            if s:
                plan["h2c"].append(("splitter", s, url_of(s), {}))
            else:
                unsupported("h2c", why or "")
        n = bench.start_nginx_proxy(origin.port, http2=True, probe=h2_probe) if nginx else None
        if n:
            plan["h2c"].append(("nginx", n, url_of(n), {}))
    if "tls" in parts:
        cert = run.make_certificate(bench.fresh_dir("http2-cert"))
        if isinstance(cert, str):
            print(f"  SKIP http2 over TLS: {cert}")
            out["skipped"].append(f"http2/tls ({cert})")
        else:
            if splitter:
                s, why = start_splitter_checked(bench, "splitter-h2", origin.port, h2_probe, cert)
                if s:
                    plan["tls"].append(("splitter", s, url_of(s), {}))
                else:
                    unsupported("tls", why or "")
            n = bench.start_nginx_proxy(origin.port, cert, http2=True) if nginx else None
            if n and probe_once(n, h2_probe) is None:
                plan["tls"].append(("nginx", n, url_of(n), {}))
            elif n:
                print("  nginx-h2: does not answer over h2")
                bench.stop(n)
    if "grpc" in parts:
        grpc_backend = start_grpc_backend(bench)
        if grpc_backend is None:
            out["skipped"].append("http2/grpc backend")
        else:
            body = grpc_body(bench.fresh_dir("grpc-body"), args.h2_grpc_size)
            load = {
                "data": body,
                "headers": ("content-type: application/grpc", "te: trailers"),
                "count": grpc_backend.port,
            }
            plan["grpc"].append(("direct", grpc_backend, url_of(grpc_backend, GRPC_PATH), load))
            if splitter:
                s, why = start_splitter_checked(
                    bench, "splitter-grpc", grpc_backend.port, grpc_probe,
                    pool={"protocol": "h2c"}, wait_probe=True,
                )  # fmt: skip
                if s:
                    plan["grpc"].append(("splitter", s, url_of(s, GRPC_PATH), load))
                else:
                    unsupported("grpc", why or "")
            n = start_nginx_grpc(bench, grpc_backend.port) if nginx else None
            if n:
                plan["grpc"].append(("nginx", n, url_of(n, GRPC_PATH), load))
    time.sleep(1.0)

    for rnd in range(args.rounds):
        for scenario in SCENARIOS:
            targets = plan[scenario]
            order = targets if rnd % 2 == 0 else targets[::-1]
            for target, svc, url, load in order:
                r = measure(bench, args, scenario, target, svc, url, load)
                if r is None:
                    continue
                r["round"] = rnd
                res["runs"].append(r)
                print(
                    f"  http2 r{rnd + 1} {scenario:<4} {target:<8} {r['rps']:>9,.0f} req/s  "
                    f"p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:8.3f} ms  "
                    f"err {r['errors']:<5} CPU {r['user_us']:.1f}+{r['sys_us']:.1f} us/req  "
                    f"RSS peak {r['rss_peak_mb']:.1f} MB"
                    + (f"  grpc-status {r['grpc_status']}" if r.get("grpc_status") else "")
                )
                if r["errors"] and svc.admin is not None:  # a splitter: what it logged
                    r["log_tail"] = svc.stderr_tail(8)
                    print(r["log_tail"])
    for targets in plan.values():
        for _, svc, _, _ in targets:
            if svc is not grpc_backend:
                bench.stop(svc)
    if grpc_backend is not None:
        bench.stop(grpc_backend)
    summarize(res, plan)

    if "idle" in parts and args.h2_idle:
        print(f"  idle: {args.h2_idle} h2c connections, each after one request")
        s = n = None
        if splitter:
            s, why = start_splitter_checked(bench, "splitter-idle", origin.port, h2_probe)
            if s is None:
                unsupported("idle", why or "")
        if nginx:
            n = bench.start_nginx_proxy(origin.port, http2=True, probe=h2_probe)
        for t in (x for x in (s, n) if x is not None):
            time.sleep(1.0)
            m = idle_memory(t, args.h2_idle)
            m["target"] = "splitter" if t is s else "nginx"
            res["idle"].append(m)
            print(
                f"  idle {m['target']:<8} {m['ok']}/{m['connections']} ok, {m['still_open']} "
                f"still open; RSS {m['rss_before_mb']} -> {m['rss_idle_mb']} MB "
                f"({m['kb_per_connection']} KB per connection, {m['fds_added']} fds more), "
                f"{m['rss_after_close_mb']} MB after closing"
            )
            bench.stop(t)
    bench.stop(origin)


def measure(
    bench: Bench, args: Any, scenario: str, target: str, svc: Service, url: str, load: dict
) -> dict | None:
    """One timed h2load run (after a warm-up run of a tenth as many requests)."""
    grpc = scenario == "grpc"
    n = args.h2_grpc_calls if grpc else args.h2_requests
    kw = {"data": load.get("data"), "headers": load.get("headers", ())}
    c, m = args.h2_connections, args.h2_streams
    pid = svc.proc.pid
    log = bench.tmp / f"h2load-{scenario}-{target}.log"
    try:
        if args.warmup:
            run_h2load(url, c, m, max(c * m, n // 10), **kw)
        count0 = grpc_count(load["count"]) if grpc else 0
        statuses0 = grpc_statuses(svc) if grpc else {}
        with Sampler(pid) as s:
            cpu0 = tree_cpu_s(pid)
            r = run_h2load(url, c, m, n, log, **kw)
            cpu1 = tree_cpu_s(pid)
        answered = grpc_count(load["count"]) - count0 if grpc else None
        statuses = grpc_statuses(svc) if grpc else {}
    except Exception as e:  # h2load's failures, and grpcio's (the Count call)
        print(f"  http2 {scenario} {target}: FAILED: {str(e).splitlines()[0][:300]}")
        return None
    finally:
        log.unlink(missing_ok=True)
    done = max(r["done"], 1)
    # every request without a 2xx answer (failed, not done, or not 2xx: h2load's failed
    # count includes requests never sent, so the parts are not added up) ...
    errors = r["requests"] - r["status_2xx"]
    if answered is not None:
        # ... and for gRPC, 2xx answers beyond the calls the server answered (a proxy's
        # own trailers-only error has status 200)
        r["grpc_answered"] = answered
        if statuses:  # splitter: its count of the calls by grpc-status during the run
            r["grpc_status"] = {
                k: int(v - statuses0.get(k, 0.0)) for k, v in sorted(statuses.items())
            }
        r["grpc_not_from_server"] = max(0, r["status_2xx"] - answered)
        errors += r["grpc_not_from_server"]
    r.update(
        scenario=scenario,
        target=target,
        connections=c,
        streams=m,
        errors=errors,
        user_us=round((cpu1[0] - cpu0[0]) / done * 1e6, 2),
        sys_us=round((cpu1[1] - cpu0[1]) / done * 1e6, 2),
        rss_peak_mb=round(s.peak, 1),
    )
    return r


def summarize(res: dict, plan: dict) -> None:
    """res["results"][scenario][target]: the median-req/s run over the rounds; CPU the
    median over the rounds; vs_nginx the median of the rounds' ratios to nginx's run of
    the same round (run right before or after)."""
    for scenario, targets in plan.items():
        runs = [r for r in res["runs"] if r["scenario"] == scenario]
        nginx = {r["round"]: r["rps"] for r in runs if r["target"] == "nginx"}
        out: dict = {}
        for target, _, _, _ in targets:
            rows = sorted((r for r in runs if r["target"] == target), key=lambda r: r["rps"])
            if not rows:
                continue
            ratios = [r["rps"] / nginx[r["round"]] for r in rows if nginx.get(r["round"])]
            out[target] = dict(
                rows[(len(rows) - 1) // 2],
                rounds=len(rows),
                user_us_median=statistics.median(r["user_us"] for r in rows),
                sys_us_median=statistics.median(r["sys_us"] for r in rows),
                vs_nginx=round(statistics.median(ratios), 3) if ratios else None,
                errors_all_rounds=sum(r["errors"] for r in rows),
                requests_all_rounds=sum(r["requests"] for r in rows),
            )
        if out:
            res["results"][scenario] = out


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout.strip() or out.stderr.strip()).splitlines()[0]


def tables(res: dict) -> str:
    c, m = res["connections"], res["streams"]
    lines = [
        f"h2load -c{c} -m{m}: -n {res['requests']:,} requests (gRPC: {res['grpc_calls']:,} "
        f"calls of {res['grpc_size']} bytes) per run; {res['h2load']}, nginx {res['nginx']}. "
        "The median-req/s run of the rounds; vs nginx: the median of the rounds' ratios to "
        "nginx's run of the same round; CPU: the target's process tree, per request, the "
        "median of the rounds; errors: requests without a 2xx answer (for gRPC also 2xx "
        "answers beyond the calls the server answered), in that run and in all rounds.",
        "",
        "| scenario | target | req/s | vs nginx | p50 ms | p99 ms | errors (all rounds) "
        "| CPU us/req user+sys | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in SCENARIOS:
        for target, r in res["results"].get(scenario, {}).items():
            vs = "-" if r.get("vs_nginx") is None else f"{r['vs_nginx']:.2f}"
            lines.append(
                f"| {DESCRIBE[scenario]} | {target} | {r['rps']:,.0f} | {vs} "
                f"| {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
                f"| {r['errors']:,} ({r['errors_all_rounds']:,} of {r['requests_all_rounds']:,}) "
                f"| {r['user_us_median']:.1f}+{r['sys_us_median']:.1f} | {r['rss_peak_mb']:.1f} |"
            )
        if scenario in res["unsupported"]:
            lines.append(f"| {DESCRIBE[scenario]} | splitter | not supported yet | | | | | | |")
    if res["idle"]:
        lines += [
            "",
            f"Memory per idle h2c connection: {res['idle_connections']:,} connections, each "
            "after the SETTINGS exchange and one GET /, then idle; RSS of the process tree "
            "before and with them open:",
            "",
            "| target | ok | still open | RSS before MB | RSS with them MB | KB per connection "
            "| fds added | RSS after closing MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for i in res["idle"]:
            lines.append(
                f"| {i['target']} | {i['ok']:,} | {i['still_open']:,} | {i['rss_before_mb']} "
                f"| {i['rss_idle_mb']} | {i['kb_per_connection']} | {i['fds_added']} "
                f"| {i['rss_after_close_mb']} |"
            )
    elif "idle" in res["unsupported"]:
        lines += ["", "Memory per idle h2c connection: splitter not supported yet."]
    if res["unsupported"]:
        lines.append("")
    for scenario, why in res["unsupported"].items():
        lines.append(f"- splitter, {scenario}: not supported yet ({why})")
    return "\n".join(lines)
