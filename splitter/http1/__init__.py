"""HTTP/1.1 as bytes: what the data path reads and writes, with no sockets and no asyncio.

- `request`: the client's side, read by llhttp (httptools): limits, checks, the head sent on.
- `response`: the backend's side, read by one scan of the head and a reader per framing
  (length, chunked, until close).
- `messages`: status lines, chunk framing, JSON error answers, request ids.
"""
