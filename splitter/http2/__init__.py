"""HTTP/2 and gRPC (section 14 of the contract): the pure parts, and the plan for the rest.

Status: `headers`, `grpc` and `guard` are built and tested; nothing imports this package
yet. The rest of this docstring is a plan, not a description: the modules it names under
"to come" do not exist, and the plan will change where building them shows it wrong.

Theory of operation (planned)
-----------------------------
**Which connections.** With `http2: true` (the default), a TLS listener offers ALPN `h2`
before `http/1.1` (`splitter.tls.settings.ALPN`); a connection that picks `h2` is HTTP/2
from its first byte. A plain listener keeps HTTP/1.1 and recognises h2c *with prior
knowledge*: a connection whose first 24 bytes are the client preface
`PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n` (after a PROXY protocol header, when one is
expected). The listener looks at those bytes before it chooses the protocol; llhttp never
sees them. The `Upgrade: h2c` dance of RFC 7540 is not offered (RFC 9113 dropped it).

**The shell** (`connection`, to come): one asyncio protocol per HTTP/2 client connection,
as thin as `proxy.downstream.ClientConn`: it moves bytes and keeps time, and decides
nothing about a request. The protocol itself is the sans-IO `h2` library (hyper-h2,
`H2Connection(client_side=False, header_encoding=None)`): bytes in, events out, bytes to
send. Every read goes first to the flood guard (`guard.FloodGuard.feed`), then to h2:

    data_received(bytes) -> guard.feed: a verdict -> GOAWAY ENHANCE_YOUR_CALM, close
                         -> h2.receive_data -> RequestReceived  -> headers.request_head
                                                                    -> an Exchange, or the
                                                                       refusal's answer
                                               DataReceived     -> exchange.request_body
                                               StreamEnded      -> exchange.request_end
                                               TrailersReceived -> headers.check_trailers
                                               StreamReset      -> exchange.client_gone
                                               WindowUpdated    -> resume waiting streams
                                               ConnectionTerminated -> every stream gone
                         -> h2.data_to_send, one write per read (the batch of today)

**One stream, one exchange.** Each stream is one `proxy.exchange.Exchange`, the state
machine HTTP/1.1 uses, so that routing, the sticky cookie, the override, segments,
limits, timeouts, retries, shadow copies, statistics, metrics and the access log hold for
HTTP/2 with no second copy of any rule. `headers.request_head` fills the same
`RequestHead` the HTTP/1.1 reader fills (`version` "2", `:authority` as Host). The
exchange talks to its client through the `Downstream` interface; a per-stream adapter
(`stream`, to come) implements it for one stream:

    send / begin_batch / end_batch    queue frames; the connection flushes h2 once a batch
    pause_reading / resume_reading    withhold / give the stream's WINDOW_UPDATE: flow
                                      control is the back-pressure of one stream alone
    exchange_done(close)              the stream is over (`close` only matters when draining)
    abort                             RST_STREAM (INTERNAL_ERROR) for that stream only: the
                                      HTTP/2 form of cutting a response short
    start_tunnel                      never called: no Upgrade, no extended CONNECT
    upstream_deadline                 read by the connection's one sweep over its streams

Today the exchange writes HTTP/1.1 bytes through `send` (`policy.response_head` builds
them). The first step of the build moves the response's form behind `Downstream`: a
`respond_head(head, set_cookie)`, `respond_body(data)`, `respond_end()` and
`respond_error(status, reason)` that `ClientConn` implements with exactly today's bytes
(measured with `benchmarks/run.py --quick` before and after), and the stream adapter with
`headers.response_fields` (`:status`, lower-case names, no hop-by-hop field), DATA frames
within the client's window, END_STREAM on the last one (or on the HEADERS of a response
without a body: never an empty DATA frame after it).

**Backends.** A stream to an `http1` pool is an HTTP/1.1 request as today:
`policy.upstream_head` writes `Host` from `:authority`, and a body without
`content-length` goes chunked. An `h2c` pool (and an `https://` backend that picks `h2`
by ALPN) gets streams on shared connections (`upstream`, to come): per backend, a few
connections each carrying up to the backend's SETTINGS_MAX_CONCURRENT_STREAMS streams;
the request's fields are the head's lines in lower case, plus `te: trailers` when the
client sent it. A REFUSED_STREAM, or a GOAWAY whose last stream id is below ours, means
the backend did not process the request (RFC 9113 8.7): retried like a refused connect.

**Trailers.** From an HTTP/2 client to an h2c backend and back, trailers pass
(`headers.check_trailers` both ways, counted against the header limits). To an HTTP/1.1
backend a request's trailers are dropped, as chunked trailers are today; an HTTP/1.1
backend's chunked trailers are dropped by `http1.response`, so an HTTP/2 client gets none.
A gRPC answer's `grpc-status` is read from the trailers (or the trailers-only headers)
with `grpc.grpc_status`; `grpc.is_bad` makes the exchange *bad* for the judge and the
statistics, and `splitter_grpc_responses_total{route,pool,grpc_status}` counts it. When
splitter fails a gRPC request itself, the stream gets `grpc.trailers_only` instead of a
JSON body.

**Limits.** SETTINGS_MAX_CONCURRENT_STREAMS 128 (h2 refuses more; the guard counts the
refusals as resets); SETTINGS_MAX_HEADER_LIST_SIZE and h2's HPACK decoder bounded by
`max_header_bytes`, then `headers.request_head` applies section 4a's limits to the decoded
list (431, 414, 400, answered on the stream, which ends; the connection goes on). The
flood guard ends the connection before h2 reads a frame that breaks a budget, so a flood
costs the frames it took to detect it and never slows other connections. Flow control:
a stream's window is reopened only as its backend takes the bytes, and a stream's
response is read from the backend only while the client's window and a per-stream
high-water allow: a slow stream stalls itself, with bounded memory. Deadlines: the header
deadline runs from accept until the first HEADERS (with the TLS handshake, as today), the
body idle gap per stream, the keep-alive idle once no stream is open (then GOAWAY).

**Health checks.** An `h2c` pool's backends are probed with `grpc.health.v1.Health/Check`
(`probe`, to come: one h2 connection per probe, `grpc.health_request_fields` and
`grpc.HEALTH_REQUEST` out, `grpc.judge_health` on what comes back) instead of `GET
health_check.path`; SERVING is up, anything else or no answer within
`health_check.timeout` is down.

**Shutdown** (section 4b). On SIGTERM each connection sends GOAWAY with the highest
stream id it took (RFC 9113 6.8), so the client retries later streams elsewhere; the
streams in flight finish within `shutdown.grace`; then the connection closes.

Modules
-------
- `headers`: request header lists into `RequestHead`s, response heads into h2 lists, and
  trailers, with RFC 9113's rules and section 4a's limits.
- `grpc`: gRPC's content types, statuses, `grpc-message`, the trailers-only failure, the
  health check's bytes and verdict.
- `guard`: the flood guard, counts in and verdict out.
- To come: `connection` (the asyncio shell of a client connection), `stream` (the
  per-stream `Downstream`), `upstream` (h2c backend connections shared by streams),
  `probe` (the gRPC health check's shell). They will import `h2`; these three do not.
"""
