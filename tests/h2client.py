"""A small blocking HTTP/2 client over a real socket, built on the `h2` library: the tests'
h2c and h2 (ALPN) client, and the base of their attackers (`send_raw` writes any bytes).

    client = H2Client(port)                      # h2c with prior knowledge
    sid = client.request("GET", "/", authority="shop.example")
    answer = client.response(sid)                # status, headers, body, trailers, reset
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

LOCALHOST = "127.0.0.1"
Field = tuple[bytes, bytes]


@dataclass
class Answer:
    """What came back on one stream."""

    status: int = 0
    headers: list[Field] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray, repr=False)  # the DATA so far
    trailers: list[Field] = field(default_factory=list)
    ended: bool = False  # END_STREAM came
    reset: int | None = None  # the RST_STREAM error code, when the stream was reset
    data_frames: int = 0  # DATA frames (an empty one after HEADERS with END_STREAM counts)
    ended_on_headers: bool = False  # the HEADERS frame itself carried END_STREAM

    @property
    def body(self) -> bytes:
        """The DATA received (kept in a bytearray: appending to bytes is quadratic)."""
        return bytes(self.received)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def headers_named(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def json(self) -> object:
        import json

        return json.loads(self.body)


@dataclass
class GoAway:
    last_stream_id: int
    error_code: int
    debug: bytes


class H2Client:
    """One HTTP/2 connection (see the module docstring)."""

    def __init__(
        self,
        port: int,
        host: str = LOCALHOST,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = 10.0,
        window: int | None = None,
        preface: bool = True,
    ) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.alpn: str | None = None
        if context is not None:
            context.set_alpn_protocols(["h2", "http/1.1"])
            raw = context.wrap_socket(raw, server_hostname=server_hostname)
            self.alpn = raw.selected_alpn_protocol()
        self.sock: socket.socket = raw
        self.timeout = timeout
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False
        )
        self.h2 = h2.connection.H2Connection(config=config)
        if window is not None:
            self.h2.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
        self.answers: dict[int, Answer] = {}
        self.goaway: GoAway | None = None
        self.buffer = b""
        self.closed = False
        self.auto_ack = True  # acknowledge received DATA at once (a reader that keeps up)
        self.remote_settings_seen = False
        if preface:
            self.h2.initiate_connection()
            self.flush()

    # -- sending ------------------------------------------------------------------------

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str,
        path: str,
        authority: str = "example.test",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        end: bool = True,
        scheme: str = "http",
    ) -> int:
        sid = self.h2.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", scheme.encode()),
            (b":path", path.encode()),
            (b":authority", authority.encode()),
        ]
        fields += [(k.encode(), v.encode()) for k, v in headers or []]
        self.answers[sid] = Answer()
        no_body = not body and end
        self.h2.send_headers(sid, fields, end_stream=no_body)
        if body:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True) -> None:
        """Send `body`, waiting for window as needed."""
        pos = 0
        while pos < len(body):
            window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if window <= 0:
                self.flush()
                self.read_once()
                continue
            chunk = body[pos : pos + window]
            pos += len(chunk)
            self.h2.send_data(sid, chunk, end_stream=end and pos >= len(body))
        if not body and end:
            self.h2.end_stream(sid)
        self.flush()

    def reset(self, sid: int, code: int = 8) -> None:
        self.h2.reset_stream(sid, code)
        self.flush()

    # -- receiving ----------------------------------------------------------------------

    def read_once(self, timeout: float | None = None) -> bool:
        """One read; False when the connection is closed."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return False
        data = self._take_goaway(data)
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return False
        for event in events:
            self._event(event)
        try:
            self.flush()
        except OSError:
            self.closed = True
            return False
        return True

    def _take_goaway(self, data: bytes) -> bytes:
        """Take GOAWAY frames out before h2 sees them: h2 refuses every frame after a
        GOAWAY, where a real client reads the streams it still has to their end."""
        self.buffer += data
        out = []
        buffer = self.buffer
        pos = 0
        while len(buffer) - pos >= 9:
            length = int.from_bytes(buffer[pos : pos + 3], "big")
            if len(buffer) - pos < 9 + length:
                break
            frame = buffer[pos : pos + 9 + length]
            if frame[3] == 7:  # GOAWAY
                payload = frame[9:]
                self.goaway = GoAway(
                    int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF,
                    int.from_bytes(payload[4:8], "big"),
                    bytes(payload[8:]),
                )
            else:
                out.append(frame)
            pos += 9 + length
        self.buffer = buffer[pos:]
        return b"".join(out)

    def _event(self, event: h2.events.Event) -> None:
        sid = getattr(event, "stream_id", 0)
        answer = self.answers.setdefault(sid, Answer()) if sid else None
        if isinstance(event, h2.events.ResponseReceived):
            assert answer is not None
            answer.headers = list(event.headers or [])
            for name, value in answer.headers:
                if name == b":status":
                    answer.status = int(value)
            answer.ended_on_headers = event.stream_ended is not None
        elif isinstance(event, h2.events.DataReceived):
            assert answer is not None
            answer.received += event.data or b""
            answer.data_frames += 1
            if self.auto_ack and event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.TrailersReceived):
            assert answer is not None
            answer.trailers = list(event.headers or [])
        elif isinstance(event, h2.events.StreamEnded):
            assert answer is not None
            answer.ended = True
        elif isinstance(event, h2.events.StreamReset):
            assert answer is not None
            answer.reset = int(event.error_code or 0)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.remote_settings_seen = True

    def response(self, sid: int, timeout: float | None = None) -> Answer:
        """Read until stream `sid` ends or is reset (or the connection closes)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        answer = self.answers.setdefault(sid, Answer())
        while not answer.done and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"stream {sid}: no complete answer")
            self.read_once(left)
        return answer

    def read_until_closed(self, timeout: float = 10.0) -> bool:
        """Read until the server closes the connection; True when it did in time."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self.read_once(left)
            except TimeoutError:
                return False
        return True

    def get(self, path: str, **kw: object) -> Answer:
        sid = self.request("GET", path, **kw)  # type: ignore[arg-type]
        return self.response(sid)

    def close(self) -> None:
        try:
            self.h2.close_connection()
            self.flush()
        except Exception:
            pass
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
