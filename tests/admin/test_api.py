"""The admin listener's request guard (splitter/admin/api.py `refusal`), without a server:
DNS rebinding (a foreign Host) and cross-site changes (a foreign Origin), docs/admin-api.md."""

from __future__ import annotations

import pytest

from splitter.admin.api import is_loopback_authority, refusal

LOOPBACK_HOSTS = [
    "localhost",
    "localhost:9901",
    "LOCALHOST:9901",
    "LocalHost",
    "127.0.0.1",
    "127.0.0.1:9901",
    "127.5.6.7",
    "127.255.255.255:1",
    "[::1]",
    "[::1]:9901",
    "[0:0:0:0:0:0:0:1]:9901",
]
FOREIGN_HOSTS = [
    "",
    " ",
    "evil.com",
    "evil.com:9901",
    "localhost.evil.com",
    "localhost.evil.com:9901",
    "127.0.0.1.evil.com",
    "127.0.0.1.evil.com:9901",
    "evil.localhost.com",
    "localhost.",
    "localhostx",
    "xlocalhost",
    "[::2]",
    "[::2]:9901",
    "[::1",
    "::1",
    "::1:9901",
    "[::ffff:127.0.0.1]",
    "[localhost]",
    "128.0.0.1",
    "126.255.255.255",
    "0.0.0.0",
    "10.0.0.1:9901",
    "127.1",
    "0x7f.0.0.1",
    "2130706433",
    "127.000.000.001",
    "localhost:",
    "localhost:9901:1",
    "localhost:99999999",
    "localhost:abc",
    "user@localhost",
    "localhost/evil",
    "localhost\x00",
    "\uff4cocalhost",  # a fullwidth l
    "127.0.0.1 evil.com",
]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_authorities(host: str) -> None:
    assert is_loopback_authority(host)


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_foreign_authorities(host: str) -> None:
    assert not is_loopback_authority(host)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_without_token_a_foreign_host_is_refused_whatever_the_method(
    method: str, host: str
) -> None:
    assert refusal(method, [host], [], token_set=False)
    assert refusal(method, [host], [f"http://{host}"], token_set=False)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_without_token_no_host_or_two_hosts_are_refused(method: str) -> None:
    assert refusal(method, [], [], token_set=False)
    assert refusal(method, ["127.0.0.1:9901", "127.0.0.1:9901"], [], token_set=False)
    assert refusal(method, ["127.0.0.1:9901", "evil.com"], [], token_set=False)


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE"])
@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_without_token_a_loopback_host_without_origin_is_served(method: str, host: str) -> None:
    assert refusal(method, [host], [], token_set=False) is None


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
@pytest.mark.parametrize("host", FOREIGN_HOSTS + LOOPBACK_HOSTS)
def test_with_token_any_host_is_served(method: str, host: str) -> None:
    assert refusal(method, [host], [], token_set=True) is None
    assert refusal(method, [], [], token_set=True) is None


def foreign_origins(host: str) -> list[str]:
    return [
        "null",
        "",
        "http://evil.com",
        f"https://{host}",
        f"http://{host}.evil.com",
        f"http://evil.com/{host}",
        f"http://{host}/",
        f"ws://{host}",
        "http://localhost:1",
        "http://127.0.0.1:1",
        f"http://{host}:1",
        f"http://user@{host}",
    ]


@pytest.mark.parametrize("token_set", [False, True])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("host", ["127.0.0.1:9901", "localhost:9901", "[::1]:9901", "localhost"])
def test_a_change_from_another_origin_is_refused(method: str, host: str, token_set: bool) -> None:
    for origin in foreign_origins(host):
        assert refusal(method, [host], [origin], token_set=token_set), origin
    # two Origin headers, even the right one twice
    assert refusal(method, [host], [f"http://{host}"] * 2, token_set=token_set)


@pytest.mark.parametrize("token_set", [False, True])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_change_from_its_own_origin_is_served(method: str, token_set: bool) -> None:
    for host in ("127.0.0.1:9901", "localhost:9901", "LOCALHOST:9901", "[::1]:9901", "localhost"):
        assert refusal(method, [host], [f"http://{host}"], token_set=token_set) is None
        assert refusal(method, [host], [f"HTTP://{host.upper()}"], token_set=token_set) is None


def test_with_token_a_change_from_another_site_is_refused_whatever_the_host() -> None:
    host = "splitter.example:9901"
    assert refusal("POST", [host], [f"http://{host}"], token_set=True) is None
    assert refusal("POST", [host], ["http://evil.example"], token_set=True)
    assert refusal("POST", [], ["http://evil.example"], token_set=True)  # no Host to match


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_reads_from_another_origin_are_served(method: str) -> None:
    """A GET changes nothing (and without CORS headers the page cannot read the answer)."""
    for origin in foreign_origins("127.0.0.1:9901"):
        assert refusal(method, ["127.0.0.1:9901"], [origin], token_set=False) is None
        assert refusal(method, ["evil.com"], [origin], token_set=True) is None
