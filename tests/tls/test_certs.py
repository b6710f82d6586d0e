"""The certificate store in-process: loading and its errors, the SNI choice, reloads
(in-place writes, renames, a Kubernetes Secret's `..data` swap), expiry, the settings.

Handshakes here are real (OpenSSL through two memory BIOs), without sockets.
"""

from __future__ import annotations

import datetime
import os
import shutil
import ssl
import stat
import threading
import time
from pathlib import Path

import pytest
import trustme

from splitter.config import TLS, CertificatePair
from splitter.tls import check_config_files
from splitter.tls.certs import CertificateError, CertStore, check_files, load_pair
from splitter.tls.settings import GROUPS, server_context

CA = trustme.CA()


def write_pair(directory: Path, *names: str, ca: trustme.CA = CA, **kw: object) -> CertificatePair:
    directory.mkdir(parents=True, exist_ok=True)
    leaf = ca.issue_cert(*names, **kw)  # type: ignore[arg-type]
    cert, key = directory / "tls.crt", directory / "tls.key"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    for pem in leaf.cert_chain_pems[1:]:
        with open(cert, "ab") as f:
            f.write(pem.bytes())
    return CertificatePair(str(cert), str(key))


def handshake(
    store: CertStore,
    server_name: str | None,
    ca: trustme.CA = CA,
    client_ctx: ssl.SSLContext | None = None,
) -> ssl.SSLObject:
    """A TLS handshake against the store's front context; the client's view of it."""
    if client_ctx is None:
        client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client_ctx.check_hostname = False
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_name)
    server = store.front.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side, out, into in ((client, c_out, s_in), (server, s_out, c_in)):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            into.write(out.read())
        if client.version() and server.version():
            try:
                client.do_handshake()
                return client
            except ssl.SSLWantReadError:
                continue
    raise AssertionError("no handshake")


def names_seen(store: CertStore, server_name: str | None) -> list[str]:
    cert = handshake(store, server_name).getpeercert()
    assert cert is not None
    return [value for kind, value in cert["subjectAltName"] if kind == "DNS"]


def test_sni_chooses_exact_then_wildcard_then_the_first(tmp_path: Path) -> None:
    shop = write_pair(tmp_path / "shop", "shop.example.com")
    wild = write_pair(tmp_path / "wild", "*.example.com")
    api = write_pair(tmp_path / "api", "api.example.com", "API2.example.com")
    store = CertStore(TLS((shop, wild, api)))
    assert names_seen(store, "shop.example.com") == ["shop.example.com"]
    assert names_seen(store, "api.example.com") == ["api.example.com", "api2.example.com"]
    assert names_seen(store, "API2.EXAMPLE.COM.") == ["api.example.com", "api2.example.com"]
    assert names_seen(store, "other.example.com") == ["*.example.com"]
    # `*.` covers one label only: no match, the first certificate.
    assert names_seen(store, "a.b.example.com") == ["shop.example.com"]
    assert names_seen(store, "example.com") == ["shop.example.com"]
    assert names_seen(store, None) == ["shop.example.com"]
    assert names_seen(store, "unknown.test") == ["shop.example.com"]


def test_a_wildcard_does_not_cover_an_empty_label(tmp_path: Path) -> None:
    shop = write_pair(tmp_path / "shop", "shop.example.com")
    wild = write_pair(tmp_path / "wild", "*.example.com")
    store = CertStore(TLS((shop, wild)))
    wildcard = store.context_for("x.example.com")
    assert wildcard is not store.context_for(None)
    for name in (".example.com", ".example.com.", "..example.com"):
        assert store.context_for(name) is store.context_for(None), name


def test_an_exact_name_wins_over_an_earlier_wildcard(tmp_path: Path) -> None:
    wild = write_pair(tmp_path / "wild", "*.example.com")
    shop = write_pair(tmp_path / "shop", "shop.example.com")
    store = CertStore(TLS((wild, shop)))
    assert names_seen(store, "shop.example.com") == ["shop.example.com"]
    assert names_seen(store, "www.example.com") == ["*.example.com"]


def test_the_expiry_of_two_certificates_with_one_name_is_the_earlier(tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    later = write_pair(tmp_path / "a", "shop.example.com", not_after=now + datetime.timedelta(90))
    sooner = write_pair(tmp_path / "b", "shop.example.com", not_after=now + datetime.timedelta(9))
    (expiry,) = CertStore(TLS((later, sooner))).expiry()
    assert expiry[0] == "shop.example.com"
    assert abs(expiry[1] - (now + datetime.timedelta(9)).timestamp()) < 2


def test_the_settings_are_mozilla_intermediate() -> None:
    context = server_context("1.2")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert not context.options & ssl.OP_NO_TICKET
    suites = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert suites and all("ECDHE" in s and ("GCM" in s or "CHACHA20" in s) for s in suites)
    assert server_context("1.3").minimum_version == ssl.TLSVersion.TLSv1_3
    assert GROUPS == "X25519:P-256:P-384"


def test_the_client_chooses_the_suite(tmp_path: Path) -> None:
    store = CertStore(TLS((write_pair(tmp_path, "shop.example.com"),)))
    for first in ("ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES256-GCM-SHA384"):
        client = ssl.create_default_context()
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        client.set_ciphers(f"{first}:ECDHE-ECDSA-AES128-GCM-SHA256")
        cipher = handshake(store, None, client_ctx=client).cipher()
        assert cipher is not None and cipher[0] == first


def test_only_the_three_groups_are_accepted(tmp_path: Path) -> None:
    """A client that offers only X448 (in OpenSSL's default list, not in ours) fails."""
    store = CertStore(TLS((write_pair(tmp_path, "shop.example.com"),)))
    handshake(store, "shop.example.com")  # the default client offers X25519 first
    from splitter.tls.settings import set_groups

    original = ssl.create_default_context

    def only(group: str) -> ssl.SSLContext:
        context = original()
        assert set_groups(context, group)
        return context

    for group, ok in (("X448", False), ("P-521", False), ("P-384", True), ("P-256", True)):
        ssl.create_default_context = lambda g=group: only(g)  # type: ignore[misc]
        try:
            if ok:
                handshake(store, "shop.example.com")
            else:
                with pytest.raises(ssl.SSLError):
                    handshake(store, "shop.example.com")
        finally:
            ssl.create_default_context = original


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: os.remove(p.cert), "cannot read certificate"),
        (lambda p: Path(p.key).write_text("not a key"), "is not a PEM private key"),
        (lambda p: Path(p.cert).write_text("hello"), "is not a PEM certificate"),
    ],
)
def test_a_pair_that_does_not_load_names_its_file(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    pair = write_pair(tmp_path, "shop.example.com")
    damage(pair)
    with pytest.raises(CertificateError, match=message):
        load_pair(pair)
    (problem,) = check_files(TLS((pair,)))
    assert problem.path == "tls.certificates[0]"
    assert message in problem.message


def test_a_key_of_another_certificate_is_a_mismatch(tmp_path: Path) -> None:
    one = write_pair(tmp_path / "one", "one.example.com")
    two = write_pair(tmp_path / "two", "two.example.com")
    with pytest.raises(CertificateError, match="does not match certificate"):
        load_pair(CertificatePair(one.cert, two.key))


def test_an_encrypted_key_is_refused_without_a_prompt(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pair = write_pair(tmp_path, "shop.example.com")
    key = serialization.load_pem_private_key(Path(pair.key).read_bytes(), None)
    for form in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        encrypted = key.private_bytes(
            serialization.Encoding.PEM, form, serialization.BestAvailableEncryption(b"secret")
        )
        Path(pair.key).write_bytes(encrypted)
        with pytest.raises(CertificateError, match="is encrypted"):
            load_pair(pair)


def test_an_expired_certificate_is_reported_by_check_only(tmp_path: Path) -> None:
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    pair = write_pair(
        tmp_path, "old.example.com", not_before=old, not_after=old + datetime.timedelta(days=1)
    )
    assert check_files(TLS((pair,))) == []
    (problem,) = check_files(TLS((pair,)), expired=True)
    assert "expired on 2020-01-02" in problem.message
    store = CertStore(TLS((pair,)))  # a running splitter warns, and serves it
    assert store.expiry() == [("old.example.com", 1577923200.0)]


def poll_until_stable(store: CertStore) -> None:
    """Two polls: the first sees the change, the second loads it (files held still)."""
    store.poll()
    store.poll()


def test_an_in_place_write_is_reloaded_after_it_holds_still(tmp_path: Path) -> None:
    pair = write_pair(tmp_path, "v1.example.com")
    store = CertStore(TLS((pair,)))
    assert names_seen(store, None) == ["v1.example.com"]
    leaf = CA.issue_cert("v2.example.com")
    Path(pair.cert).write_bytes(leaf.cert_chain_pems[0].bytes())
    Path(pair.key).write_bytes(leaf.private_key_pem.bytes())
    store.poll()  # seen, not loaded yet: it may still be written
    assert names_seen(store, None) == ["v1.example.com"]
    store.poll()
    assert names_seen(store, None) == ["v2.example.com"]
    assert store.reloads == {"success": 1, "error": 0}


def test_a_half_written_pair_keeps_the_old_and_counts_one_error(tmp_path: Path) -> None:
    pair = write_pair(tmp_path, "v1.example.com")
    store = CertStore(TLS((pair,)))
    leaf = CA.issue_cert("v2.example.com")
    Path(pair.cert).write_bytes(leaf.cert_chain_pems[0].bytes())  # the key comes later
    for _ in range(5):
        store.poll()
    assert names_seen(store, None) == ["v1.example.com"]
    assert store.reloads == {"success": 0, "error": 1}  # the same files are not tried again
    Path(pair.key).write_bytes(leaf.private_key_pem.bytes())
    poll_until_stable(store)
    assert names_seen(store, None) == ["v2.example.com"]
    assert store.reloads == {"success": 1, "error": 1}


def test_a_kubernetes_secret_swap_is_reloaded(tmp_path: Path) -> None:
    """The kubelet's layout: tls.crt -> ..data/tls.crt, ..data -> ..2026_12_07_v1; an
    update writes a new timestamped directory and renames a new ..data link over the old."""
    mount = tmp_path / "secret"
    mount.mkdir()
    v1 = write_pair(mount / "..2026_12_07_v1", "v1.example.com")
    os.symlink("..2026_12_07_v1", mount / "..data")
    for name in ("tls.crt", "tls.key"):
        os.symlink(f"..data/{name}", mount / name)
    pair = CertificatePair(str(mount / "tls.crt"), str(mount / "tls.key"))
    store = CertStore(TLS((pair,)))
    assert names_seen(store, None) == ["v1.example.com"]

    write_pair(mount / "..2026_12_07_v2", "v2.example.com")
    os.symlink("..2026_12_07_v2", mount / "..data_tmp")
    os.rename(mount / "..data_tmp", mount / "..data")
    shutil.rmtree(Path(v1.cert).parent)
    poll_until_stable(store)
    assert names_seen(store, None) == ["v2.example.com"]
    assert store.expiry()[0][0] == "v2.example.com"


def test_a_rename_over_the_file_is_reloaded(tmp_path: Path) -> None:
    pair = write_pair(tmp_path / "live", "v1.example.com")
    store = CertStore(TLS((pair,)))
    new = write_pair(tmp_path / "staging", "v2.example.com")
    os.rename(new.key, pair.key)
    os.rename(new.cert, pair.cert)
    poll_until_stable(store)
    assert names_seen(store, None) == ["v2.example.com"]


def test_configure_keeps_what_did_not_change_and_is_all_or_nothing(tmp_path: Path) -> None:
    one = write_pair(tmp_path / "one", "one.example.com")
    two = write_pair(tmp_path / "two", "two.example.com")
    store = CertStore(TLS((one,)))
    first = store.entries[0]
    assert store.front is first.context  # one certificate: no SNI callback to go through
    store.configure(TLS((one, two)))
    front = store.front
    assert store.entries[0] is first and front is not first.context
    store.configure(TLS((one, two)))
    assert store.front is front  # the same settings: the same front, its tickets still good
    assert names_seen(store, "two.example.com") == ["two.example.com"]
    with pytest.raises(CertificateError):
        store.configure(TLS((two, CertificatePair(str(tmp_path / "no.crt"), two.key))))
    assert names_seen(store, "two.example.com") == ["two.example.com"]
    assert [e.name for e in store.entries] == ["one.example.com", "two.example.com"]
    store.configure(TLS((two,), min_version="1.3"))
    assert store.front is not front
    assert handshake(store, None).version() == "TLSv1.3"


def test_check_config_files_covers_backend_cas(tmp_path: Path) -> None:
    from splitter.config import parse

    config = parse(
        {
            "listen": "127.0.0.1:8080",
            "pools": {
                "blue": {
                    "weight": 1,
                    "backends": ["https://127.0.0.1:5001"],
                    "tls": {"ca": str(tmp_path / "missing.pem")},
                }
            },
        },
        env={},
    )
    (problem,) = check_config_files(config)
    assert problem.path == "pools.blue.tls.ca"
    assert "cannot read" in problem.message


def _fifo(path: str) -> None:
    os.remove(path)
    os.mkfifo(path)


def _directory(path: str) -> None:
    os.remove(path)
    os.mkdir(path)


def _loop(path: str) -> None:
    os.remove(path)
    os.symlink(path + ".other", path)
    os.symlink(path, path + ".other")


def _huge(path: str) -> None:
    with open(path, "ab") as f:
        f.write(b"#" * (2 << 20))


def _emptied(path: str) -> None:
    open(path, "wb").close()


@pytest.mark.parametrize("which", ["cert", "key"])
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_fifo, "is not a regular file"),
        (_directory, "is not a regular file"),
        (_loop, "Too many levels of symbolic links"),
        (_huge, "is larger than 1 MiB"),
        (_emptied, "is not a PEM"),
    ],
    ids=["fifo", "directory", "symlink-loop", "huge", "emptied"],
)
def test_a_file_put_out_of_shape_is_refused_at_once_and_the_old_pair_kept(  # type: ignore[no-untyped-def]
    tmp_path: Path, which: str, damage, message: str
) -> None:
    """Never blocks (a FIFO in the file's place would hold the event loop in open()), never
    reads more than 1 MiB, keeps the certificate in force, counts one error."""
    pair = write_pair(tmp_path, "v1.example.com")
    store = CertStore(TLS((pair,)))
    path = getattr(pair, which)
    damage(path)
    done = threading.Event()

    def unblock() -> None:  # if a FIFO was opened to be read, a writer lets it go
        if not done.wait(3) and stat_is_fifo(path):
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)

    watchdog = threading.Thread(target=unblock, daemon=True)
    watchdog.start()
    started = time.monotonic()
    with pytest.raises(CertificateError, match=message):
        load_pair(pair)
    poll_until_stable(store)
    done.set()
    assert time.monotonic() - started < 1.0
    assert names_seen(store, None) == ["v1.example.com"]
    assert store.reloads == {"success": 0, "error": 1}
    assert path in check_files(TLS((pair,)))[0].message


def stat_is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def test_a_backend_ca_file_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    from splitter.config import BackendTLS, parse
    from splitter.tls.backends import CAFileError, client_context

    path = str(tmp_path / "ca.pem")
    os.mkfifo(path)
    done = threading.Event()

    def unblock() -> None:  # if the FIFO was opened to be read, a writer lets it go
        if not done.wait(3):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(CAFileError, match="not a regular file"):
        client_context(BackendTLS(ca=path))
    config = parse(
        {
            "listen": "127.0.0.1:8080",
            "pools": {
                "blue": {"weight": 1, "backends": ["https://127.0.0.1:5001"], "tls": {"ca": path}}
            },
        },
        env={},
    )
    (problem,) = check_config_files(config)
    done.set()
    assert time.monotonic() - started < 1.0
    assert problem.path == "pools.blue.tls.ca" and "not a regular file" in problem.message
