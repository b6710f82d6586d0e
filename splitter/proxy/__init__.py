"""The data path: requests in, a pool and backend chosen, responses out.

    downstream.ClientConn --> exchange.Exchange --> policy.Policy (route, heads, failures)
      (bytes, deadlines,       (one request and         |
       pipelining)              its response: states)   +--> ejection.Ejector (passive health)
                                   |         \\
                                   |          +--> observation --> counters, stats, accesslog
                                   v
                        upstream.UpstreamConn + BackendConnections (keep-alive pools)

`listener.ProxyListener` accepts connections, runs the one sweep that enforces every
deadline, and is what exchanges and connections share. The HTTP/1.1 rules themselves
(bytes only, no asyncio) are in `splitter.http1`.
"""
