"""HTTP/2 and gRPC (section 14 of the contract): the pure parts, and the health probe.

HTTP/2 itself (frames, HPACK, flow-control windows, stream states) is the sans-IO `h2`
library's. What splitter adds on top lives in two places: here, the parts that need no
socket, each tested in-process; and in `splitter.proxy`, the shells that move bytes:

- `proxy.h2session`: a client connection that began with the HTTP/2 preface (h2c with
  prior knowledge, or h2 chosen by ALPN on the TLS listener): the flood guard first, then
  h2, then one `proxy.exchange.Exchange` per stream on a `proxy.h2stream.Stream`, so every
  rule of an HTTP/1.1 request holds for a stream with no second copy of it;
- `proxy.h2upstream` and `proxy.h2call`: the shared HTTP/2 connections to the backends of
  an `h2c` pool, one stream per request, as the exchange's upstream.

Modules here:

- `headers`: a stream's request header list checked (RFC 9113 8.2-8.3, section 4a's
  limits) into the `RequestHead` the HTTP/1.1 reader fills; HTTP/1.1 response heads into
  h2 header lists; trailers checked.
- `grpc`: gRPC's content types, the statuses that make a call bad, `grpc-message`, the
  trailers-only answer splitter gives when it fails a call, and the health check's bytes
  and verdict.
- `guard`: the flood accountant of a client connection (rapid reset, SETTINGS, PING,
  empty frames, PRIORITY, WINDOW_UPDATE, CONTINUATION), budgets with their sources.
- `encoder`: the HPACK encoder of splitter's HTTP/2 connections (no Huffman coding;
  fields new on every message never indexed).
- `probe`: the gRPC health check of an `h2c` pool's backend (`grpc.health.v1.Health/Check`
  on a new h2c connection), run by `control.health`.
"""
