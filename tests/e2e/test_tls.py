"""TLS end to end (contract section 13): the real splitter process on loopback with
certificates made by trustme, real clients (http.client, ssl sockets, sslyze), Flask
backends under gunicorn, plain and https.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import BackendFactory, SplitterFactory
from tests.e2e.test_metrics import scrape, scrape_when
from tests.support import (
    LOCALHOST,
    NO_HEALTH_DOWN,
    SplitterProc,
    http_request,
    run_cli,
    wait_until,
    write_config,
)

CA = trustme.CA()
SINCE = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
SOON = SINCE + datetime.timedelta(days=90)  # Mozilla's profile: at most 366 days


def issue(directory: Path, *names: str, ca: trustme.CA = CA) -> dict[str, str]:
    """A certificate pair for `names`, as files in `directory`: {cert, key}."""
    directory.mkdir(parents=True, exist_ok=True)
    leaf = ca.issue_cert(*names, not_before=SINCE, not_after=SOON)
    cert, key = directory / "tls.crt", directory / "tls.key"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return {"cert": str(cert), "key": str(key)}


def client_context(ca: trustme.CA = CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def ca_file(tmp_path: Path, ca: trustme.CA = CA) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def tls_connect(proc: SplitterProc, server_name: str | None, timeout: float = 5) -> ssl.SSLSocket:
    context = client_context()
    context.check_hostname = False
    sock = socket.create_connection((LOCALHOST, proc.proxy_port), timeout=timeout)
    return context.wrap_socket(sock, server_hostname=server_name)


def served_names(proc: SplitterProc, server_name: str | None) -> list[str]:
    with tls_connect(proc, server_name) as tls:
        cert = tls.getpeercert()
    assert cert is not None
    return [value for kind, value in cert["subjectAltName"] if kind == "DNS"]


def get(tls: ssl.SSLSocket, path: str = "/", host: str = "localhost") -> bytes:
    """One request on an open keep-alive connection; the whole response."""
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += tls.recv(65536)
    return data


def base(backend_url: str, certificates: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "tls": {"certificates": certificates},
        "pools": {"blue": {"weight": 100, "backends": [backend_url]}},
        "health_check": NO_HEALTH_DOWN,
        **extra,
    }


def expiry(result: Any) -> dict[str, float]:
    """The certificate expiry gauge's samples: name -> notAfter."""
    return {
        s.labels["name"]: s.value
        for s in result.samples
        if s.name == "splitter_tls_certificate_expiry_timestamp_seconds"
    }


def https_url(proc: SplitterProc, path: str = "/") -> str:
    return f"https://localhost:{proc.proxy_port}{path}"


def test_https_reaches_the_backend_with_forwarded_proto_and_a_secure_cookie(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    pair = issue(tmp_path / "tls", "localhost")
    proc = splitter_factory(
        base(three_pools["blue"].url, [pair], sticky={"secret": "s" * 32, "cookie": "sp"})
    )
    assert f"listening on https://{LOCALHOST}:{proc.proxy_port}" in proc.stderr_text()
    status, headers, body = http_request(
        https_url(proc, "/echo"),
        headers={"X-Forwarded-Proto": "http"},
        context=client_context(),
    )
    assert status == 200
    seen = dict(json.loads(body)["headers"])
    assert seen["X-Forwarded-Proto"] == "https"  # the client's own value does not pass
    assert "; Secure" in headers["set-cookie"]
    # HTTP/1.1 by ALPN, TLS 1.3 by default, with the expected names.
    with tls_connect(proc, "localhost") as tls:
        assert tls.selected_alpn_protocol() in (None, "http/1.1")
        assert tls.version() == "TLSv1.3"
        assert b"200 OK" in get(tls)
        assert b"200 OK" in get(tls)  # keep-alive over TLS


def test_sni_chooses_among_the_certificates(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    shop = issue(tmp_path / "shop", "shop.example.com")
    wild = issue(tmp_path / "wild", "*.api.example.com")
    proc = splitter_factory(base(three_pools["blue"].url, [shop, wild]))
    assert served_names(proc, "shop.example.com") == ["shop.example.com"]
    assert served_names(proc, "v2.api.example.com") == ["*.api.example.com"]
    assert served_names(proc, "deep.v2.api.example.com") == ["shop.example.com"]
    assert served_names(proc, None) == ["shop.example.com"]
    assert served_names(proc, "elsewhere.test") == ["shop.example.com"]
    assert expiry(scrape(proc))["*.api.example.com"] == pytest.approx(int(SOON.timestamp()), abs=1)


def kubelet_secret(mount: Path, version: str, *names: str) -> None:
    """Write a Secret's files the kubelet's way: a timestamped directory, then a new
    `..data` link renamed over the old one; tls.crt and tls.key link through `..data`."""
    issue(mount / f"..{version}", *names)
    os.symlink(f"..{version}", mount / "..data_tmp")
    os.rename(mount / "..data_tmp", mount / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (mount / name).is_symlink():
            os.symlink(f"..data/{name}", mount / name)


def test_a_secret_swap_reaches_new_handshakes_within_2s_and_open_connections_go_on(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    mount = tmp_path / "secret"
    mount.mkdir()
    kubelet_secret(mount, "v1", "v1.example.com")
    pair = {"cert": str(mount / "tls.crt"), "key": str(mount / "tls.key")}
    proc = splitter_factory(base(three_pools["blue"].url, [pair]))
    assert served_names(proc, None) == ["v1.example.com"]
    opened = tls_connect(proc, "v1.example.com")
    assert b"200 OK" in get(opened)

    kubelet_secret(mount, "v2", "v2.example.com")
    shutil.rmtree(mount / "..v1")
    changed = time.monotonic()
    wait_until(lambda: served_names(proc, None) == ["v2.example.com"], timeout=5, interval=0.05)
    assert time.monotonic() - changed < 2.0
    assert b"200 OK" in get(opened)  # the connection opened before goes on, as it was
    assert [v for k, v in opened.getpeercert()["subjectAltName"]] == ["v1.example.com"]  # type: ignore[index]
    opened.close()
    result = scrape_when(
        proc,
        lambda s: s.value("splitter_tls_reloads_total", result="success") == 1,
        "one successful reload",
    )
    assert result.value("splitter_tls_reloads_total", result="error") == 0
    assert list(expiry(result)) == ["v2.example.com"]


def test_a_broken_pair_keeps_the_old_certificate_logged_and_counted(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    pair = issue(tmp_path / "tls", "v1.example.com")
    proc = splitter_factory(base(three_pools["blue"].url, [pair]))
    other = issue(tmp_path / "other", "v2.example.com")
    shutil.copy(other["key"], pair["key"])  # a key that is not the certificate's
    scrape_when(
        proc,
        lambda s: s.value("splitter_tls_reloads_total", result="error") == 1,
        "one failed reload",
    )
    assert served_names(proc, None) == ["v1.example.com"]
    assert "does not match certificate" in proc.stderr_text()
    assert pair["key"] in proc.stderr_text()
    shutil.copy(other["cert"], pair["cert"])  # now the pair matches: it loads
    wait_until(lambda: served_names(proc, None) == ["v2.example.com"], timeout=5, interval=0.05)
    assert scrape(proc).value("splitter_tls_reloads_total", result="success") == 1


def test_a_reload_of_other_settings_is_not_refused_for_a_pair_being_rotated(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    pair = issue(tmp_path / "tls", "v1.example.com")
    config = base(three_pools["blue"].url, [pair])
    config["pools"]["green"] = {"weight": 0, "backends": [three_pools["green"].url]}
    proc = splitter_factory(config)
    shutil.copy(issue(tmp_path / "other", "v2.example.com")["key"], pair["key"])  # half done
    scrape_when(proc, lambda s: s.value("splitter_tls_reloads_total", result="error") == 1, "")
    assert proc.config is not None
    proc.config["pools"]["blue"]["weight"], proc.config["pools"]["green"]["weight"] = 0, 100
    write_config(proc.config_path, proc.config, atomic=True)
    wait_until(lambda: http_request(https_url(proc))[2] == b"green", timeout=5)
    assert served_names(proc, None) == ["v1.example.com"]  # the pair in force stays


def test_plain_http_on_the_tls_listener_gets_a_400_that_says_https(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    proc = splitter_factory(base(three_pools["blue"].url, [issue(tmp_path, "localhost")]))
    with socket.create_connection((LOCALHOST, proc.proxy_port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk  # until the close
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert b"https://" in body
    (length,) = [line for line in head.split(b"\r\n") if line.startswith(b"Content-Length:")]
    assert int(length.split(b":")[1]) == len(body)  # framed exactly: no client sees it cut


def test_the_handshake_counts_against_the_header_timeout(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    proc = splitter_factory(
        base(
            three_pools["blue"].url, [issue(tmp_path, "localhost")], limits={"header_timeout": "1s"}
        )
    )
    # Half a ClientHello (a TLS handshake record header and a few bytes), then silence.
    for payload in (b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
        with socket.create_connection((LOCALHOST, proc.proxy_port), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(payload)
            assert sock.recv(4096) == b""  # closed, nothing sent
            assert time.monotonic() - started < 3.0
    # A handshake that completes, then no request: the same deadline, from the accept.
    with tls_connect(proc, None, timeout=10) as tls:
        started = time.monotonic()
        data = tls.recv(4096)
        assert data == b"" or data.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 3.0


def test_https_backends_are_verified_and_their_connections_reused(
    tmp_path: Path, backend_factory: BackendFactory, splitter_factory: SplitterFactory
) -> None:
    backend_ca = trustme.CA()
    pair = issue(tmp_path / "backend", "localhost", LOCALHOST, ca=backend_ca)
    backend = backend_factory("blue", tls=(pair["cert"], pair["key"]), workers=1)
    assert backend.url.startswith("https://")
    config = {
        "pools": {
            "blue": {
                "weight": 100,
                "backends": [backend.url],
                "tls": {"ca": ca_file(tmp_path, backend_ca)},
            }
        },
        "health_check": {"path": "/healthz", "interval": "200ms", "timeout": "1s"},
    }
    proc = splitter_factory(config)
    ports = set()
    for _ in range(10):
        status, _, body = http_request(proc.proxy_url + "/echo")
        assert status == 200, body
        echoed = json.loads(body)
        assert echoed["pool"] == "blue"
        ports.add(echoed.get("remote_port"))
    assert len(ports) <= 2, ports  # kept alive: not a connection per request

    # The same backend, checked against the system's CAs only: refused, and said why.
    config["pools"]["blue"].pop("tls")
    untrusted = splitter_factory(config)
    status, _, _ = http_request(untrusted.proxy_url + "/")
    assert status in (502, 503)
    wait_until(lambda: "set the pool's tls.ca" in untrusted.stderr_text(), timeout=5)
    assert "certificate not trusted: unable to get local issuer certificate" in (
        untrusted.stderr_text()
    )

    # verify: false, when written, turns the check off.
    config["pools"]["blue"]["tls"] = {"verify": False}
    unverified = splitter_factory(config)
    assert http_request(unverified.proxy_url + "/")[0] == 200


def test_a_rotated_backend_ca_reaches_requests_and_a_missing_one_keeps_the_last(
    tmp_path: Path, backend_factory: BackendFactory, splitter_factory: SplitterFactory
) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    pair = issue(tmp_path / "backend", "localhost", LOCALHOST, ca=new_ca)
    backend = backend_factory("blue", tls=(pair["cert"], pair["key"]), workers=1)
    ca_path = tmp_path / "ca.pem"
    old_ca.cert_pem.write_to_path(str(ca_path))
    proc = splitter_factory(
        {
            "pools": {
                "blue": {"weight": 100, "backends": [backend.url], "tls": {"ca": str(ca_path)}}
            },
            "health_check": NO_HEALTH_DOWN,
            # each request below on a new backend connection: a context chosen anew
            "limits": {"upstream_idle_timeout": "100ms"},
        }
    )
    assert http_request(proc.proxy_url + "/")[0] == 502  # the backend's CA is not trusted yet
    new_ca.cert_pem.write_to_path(str(tmp_path / "ca.tmp"))
    os.replace(tmp_path / "ca.tmp", ca_path)  # rotated: no reload, no restart
    assert http_request(proc.proxy_url + "/")[0] == 200
    os.remove(ca_path)  # gone (a Secret between two versions): the last one that loaded
    time.sleep(0.6)  # the backend connection of the request above is closed by now
    assert http_request(proc.proxy_url + "/")[0] == 200
    wait_until(lambda: "the CA certificates loaded before stay in use" in proc.stderr_text())


def test_workers_each_serve_tls_and_reload(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    pair = issue(tmp_path / "tls", "v1.example.com")
    proc = splitter_factory(base(three_pools["blue"].url, [pair], workers=2))
    for _ in range(10):
        assert served_names(proc, None) == ["v1.example.com"]
    new = issue(tmp_path / "new", "v2.example.com")
    os.replace(new["key"], pair["key"])
    os.replace(new["cert"], pair["cert"])
    wait_until(lambda: served_names(proc, None) == ["v2.example.com"], timeout=5, interval=0.05)
    time.sleep(1.5)  # every worker has polled twice by now
    seen = {tuple(served_names(proc, None)) for _ in range(20)}  # spread over both workers
    assert seen == {("v2.example.com",)}
    status, _, _ = http_request(https_url(proc), context=client_context_for("v2.example.com"))
    assert status == 200


def client_context_for(name: str) -> ssl.SSLContext:
    context = client_context()
    context.check_hostname = False  # the URL says localhost; the name is checked above
    return context


def strict_pair(directory: Path, name: str) -> tuple[dict[str, str], str]:
    """A CA and a leaf for `name` as a public CA would issue them (ECDSA P-256, 90 days,
    subjectAltName not critical: trustme's is, which strict path validation refuses):
    ({cert, key}, the CA's file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def build(subject: str, issuer: x509.Name | None, key: Any, signer: Any, ca: bool) -> Any:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(SINCE)
            .not_valid_after(SOON)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), False
            )
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False
            )
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("splitter test CA", None, ca_key, ca_key, True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = build(name, ca_cert.subject, leaf_key, ca_key, False)
    pem = serialization.Encoding.PEM
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "strict.crt").write_bytes(leaf.public_bytes(pem) + ca_cert.public_bytes(pem))
    (directory / "strict.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "strict-ca.pem").write_bytes(ca_cert.public_bytes(pem))
    pair = {"cert": str(directory / "strict.crt"), "key": str(directory / "strict.key")}
    return pair, str(directory / "strict-ca.pem")


# sslyze's own bundled trust stores hold a certificate that newer cryptography warns of.
@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
def test_sslyze_finds_nothing_to_fix_for_mozilla_intermediate(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    from sslyze import ServerNetworkLocation, ServerScanRequest, ServerScanStatusEnum
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )
    from sslyze.plugins.certificate_info.implementation import CertificateInfoExtraArgument
    from sslyze.scanner.models import ScanCommandsExtraArguments
    from sslyze.scanner.scanner import Scanner

    pair, ca_path = strict_pair(tmp_path, "localhost")
    proc = splitter_factory(base(three_pools["blue"].url, [pair]))
    request = ServerScanRequest(
        server_location=ServerNetworkLocation("localhost", proc.proxy_port, ip_address=LOCALHOST),
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=Path(ca_path))
        ),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    assert result.scan_result is not None
    for command in SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER:
        attempt = getattr(result.scan_result, command.value)
        trace = "".join(attempt.error_trace.format()) if attempt.error_trace else ""
        assert attempt.result is not None, f"{command.value}: {attempt.error_reason} {trace}"
    try:
        check_server_against_tls_configuration(
            result, MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
        )
    except ServerNotCompliantWithTlsConfiguration as exc:
        pytest.fail(f"not Mozilla intermediate: {exc.issues}")
    scan = result.scan_result
    assert scan is not None
    curves = scan.elliptic_curves.result
    assert curves is not None
    assert sorted(c.name for c in curves.supported_curves) == ["X25519", "secp256r1", "secp384r1"]
    assert scan.tls_1_1_cipher_suites.result is not None
    assert not scan.tls_1_1_cipher_suites.result.accepted_cipher_suites
    assert scan.tls_compression.result is not None
    assert not scan.tls_compression.result.supports_compression
    renegotiation = scan.session_renegotiation.result
    assert renegotiation is not None
    assert not renegotiation.is_vulnerable_to_client_renegotiation_dos


def test_session_resumption_works(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    proc = splitter_factory(base(three_pools["blue"].url, [issue(tmp_path, "localhost")]))
    context = client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # a TLS 1.2 session: ticket or id
    with context.wrap_socket(
        socket.create_connection((LOCALHOST, proc.proxy_port)), server_hostname="localhost"
    ) as first:
        assert b"200 OK" in get(first)
        session = first.session
    with context.wrap_socket(
        socket.create_connection((LOCALHOST, proc.proxy_port)),
        server_hostname="localhost",
        session=session,
    ) as second:
        assert second.session_reused
        assert b"200 OK" in get(second)


def test_min_version_13_refuses_tls_12(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    config = base(three_pools["blue"].url, [issue(tmp_path, "localhost")])
    config["tls"]["min_version"] = "1.3"
    proc = splitter_factory(config)
    context = client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        context.wrap_socket(
            socket.create_connection((LOCALHOST, proc.proxy_port)), server_hostname="localhost"
        )
    with tls_connect(proc, "localhost") as tls:
        assert tls.version() == "TLSv1.3"


def test_a_config_reload_adds_a_certificate(
    tmp_path: Path,
    three_pools: dict,
    splitter_factory: SplitterFactory,  # type: ignore[type-arg]
) -> None:
    shop = issue(tmp_path / "shop", "shop.example.com")
    proc = splitter_factory(base(three_pools["blue"].url, [shop]))
    assert proc.config is not None
    api = issue(tmp_path / "api", "api.example.com")
    proc.config["tls"]["certificates"].append(api)
    write_config(proc.config_path, proc.config, atomic=True)
    wait_until(lambda: served_names(proc, "api.example.com") == ["api.example.com"], timeout=5)
    # A reload naming a file that does not load changes nothing.
    proc.config["tls"]["certificates"].append({"cert": str(tmp_path / "no.crt"), "key": api["key"]})
    write_config(proc.config_path, proc.config, atomic=True)
    wait_until(lambda: "no.crt" in proc.stderr_text(), timeout=5)
    assert served_names(proc, "api.example.com") == ["api.example.com"]


def test_check_and_run_name_bad_certificate_files(tmp_path: Path) -> None:
    good = issue(tmp_path / "good", "localhost")
    other = issue(tmp_path / "other", "localhost")
    old = CA.issue_cert(
        "old.example.com",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2020, 2, 1, tzinfo=datetime.UTC),
    )
    (tmp_path / "old.crt").write_bytes(old.cert_chain_pems[0].bytes())
    (tmp_path / "old.key").write_bytes(old.private_key_pem.bytes())
    cases = [
        ({"cert": good["cert"], "key": other["key"]}, "does not match certificate"),
        ({"cert": str(tmp_path / "missing.crt"), "key": good["key"]}, "cannot read certificate"),
        (
            {"cert": str(tmp_path / "old.crt"), "key": str(tmp_path / "old.key")},
            "expired on 2020-02-01",
        ),
    ]
    for pair, message in cases:
        config = {
            "listen": f"{LOCALHOST}:0",
            "admin": {"listen": f"{LOCALHOST}:0"},
            "state_file": str(tmp_path / "state.json"),
            "tls": {"certificates": [pair]},
            "pools": {"blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]}},
        }
        path = write_config(tmp_path / "splitter.yaml", config)
        checked = run_cli("check", "-c", str(path))
        assert checked.returncode == 2, checked
        assert "tls.certificates[0] (line" in checked.stderr and message in checked.stderr
        assert "Traceback" not in checked.stderr
        if "expired" in message:  # served with a warning: it is up to the operator
            continue
        ran = run_cli("run", "-c", str(path), timeout=20)
        assert ran.returncode == 2, ran
        assert message in ran.stderr and len(ran.stderr.strip().splitlines()) == 1
