"""A real `redis-server` for the end-to-end tests of the shared store, on a free loopback
port, in a directory of its own, without persistence unless asked for.

    server = RedisServer(tmp_path / "redis")          # started; server.url, server.port
    server.client().get("splitter:secret")            # a redis-py client
    server.kill()                                     # SIGKILL
    server.start()                                    # again, on the same port

`password` adds `--requirepass`; `tls` (a `Certificates`) serves TLS only (no plain
port); `persist` keeps the data in an append-only file (fsynced at every write), so a
restart finds it again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import LOCALHOST, free_port

REDIS_SERVER = shutil.which("redis-server")


def need(program: str) -> None:
    """Skip a test when `program` is missing here; on CI (which installs it), fail."""
    if shutil.which(program) is None:
        message = f"{program} is not installed (apt-get install redis-server openssl)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


class Certificates:
    """A CA and a server certificate for 127.0.0.1 and localhost, made with openssl."""

    def __init__(self, directory: Path) -> None:
        need("openssl")
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = directory / "ca.pem"
        self.cert = directory / "server.pem"
        self.key = directory / "server.key"
        ca_key = directory / "ca.key"
        csr = directory / "server.csr"
        ext = directory / "san.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

        def run(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
            "-out", str(self.ca), "-days", "2", "-subj", "/CN=splitter test CA")  # fmt: skip
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
            "-out", str(csr), "-subj", "/CN=127.0.0.1")  # fmt: skip
        run("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(self.cert), "-days", "2",
            "-extfile", str(ext))  # fmt: skip


class RedisServer:
    def __init__(
        self,
        directory: Path,
        password: str | None = None,
        tls: Certificates | None = None,
        persist: bool = False,
    ) -> None:
        need("redis-server")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.tls = tls
        self.persist = persist
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"
        self.start()

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{LOCALHOST}:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        args = [
            REDIS_SERVER or "redis-server",
            "--bind", LOCALHOST,
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "always",
            "--logfile", str(self.log),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.tls is not None:
            args += [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no",
            ]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError, OSError):
                if self.client().ping():
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start:\n{self.log_text()}")
            time.sleep(0.05)

    def client(self) -> redis.Redis:
        kwargs: dict[str, Any] = {}
        if self.tls is not None:
            kwargs = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)}
        return redis.Redis(
            host=LOCALHOST, port=self.port, password=self.password, socket_timeout=5,
            decode_responses=False, **kwargs,
        )  # fmt: skip

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: nothing is saved, connections are cut."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM: a clean stop (the append-only file is complete)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
