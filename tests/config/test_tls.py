"""The `tls` section and a pool's `tls` (docs/configuration.md#tls, #https-backends)."""

from __future__ import annotations

from typing import Any

import pytest

from splitter.config import TLS, BackendTLS, CertificatePair, ConfigError, parse


def config(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "listen": "127.0.0.1:8443",
        "pools": {"blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]}},
    }
    data.update(changes)
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(data, env={})
    return [str(p) for p in caught.value.problems]


def test_tls_section() -> None:
    tls = {"certificates": [{"cert": "a.crt", "key": "a.key"}, {"cert": "b.crt", "key": "b.key"}]}
    parsed = parse(config(tls=tls), env={}).tls
    assert parsed == TLS(
        (CertificatePair("a.crt", "a.key"), CertificatePair("b.crt", "b.key")), min_version="1.2"
    )
    assert parse(config(tls={**tls, "min_version": "1.3"}), env={}).tls.min_version == "1.3"  # type: ignore[union-attr]
    assert parse(config(tls={**tls, "min_version": 1.3}), env={}).tls.min_version == "1.3"  # type: ignore[union-attr]
    assert parse(config(), env={}).tls is None


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        ({}, "tls.certificates: must list at least one {cert: FILE, key: FILE}"),
        ({"certificates": []}, "tls.certificates: must list at least one"),
        ({"certificates": [{"cert": "a.crt"}]}, "tls.certificates[0].key: is required"),
        ({"certificates": [{"cert": "a", "key": "b", "chain": "c"}]}, "tls.certificates[0]"),
        ({"certificates": [{"cert": "a", "key": "b"}], "min_version": "1.1"}, "tls.min_version"),
        ({"certificates": [{"cert": "a", "key": "b"}], "ciphers": "ALL"}, "tls"),
        ("yes", "tls"),
    ],
)
def test_a_bad_tls_section_names_its_path(tls: Any, expected: str) -> None:
    found = problems(config(tls=tls))
    assert any(p.startswith(expected) for p in found), found


def test_https_backends_and_a_pool_tls() -> None:
    pools = {
        "blue": {
            "weight": 1,
            "backends": ["https://api.internal", "https://10.0.0.1:8443"],
            "tls": {"ca": "/etc/ca.pem"},
        },
        "green": {"weight": 0, "backends": ["https://green.internal"]},
        "canary": {"weight": 0, "backends": ["https://x.internal"], "tls": {"verify": False}},
    }
    route = parse(config(pools=pools), env={}).routes[0]
    blue, green, canary = route.pools
    assert [(b.host, b.port, b.tls) for b in blue.backends] == [
        ("api.internal", 443, BackendTLS(ca="/etc/ca.pem")),
        ("10.0.0.1", 8443, BackendTLS(ca="/etc/ca.pem")),
    ]
    assert green.backends[0].tls == BackendTLS()  # verified against the system's CAs
    assert canary.backends[0].tls == BackendTLS(verify=False)


def test_a_pool_tls_that_cannot_apply_is_an_error() -> None:
    pools = {"blue": {"weight": 1, "backends": ["http://127.0.0.1:1"], "tls": {"ca": "c.pem"}}}
    assert problems(config(pools=pools)) == [
        "pools.blue.tls: applies to https:// backends, and this pool has none"
    ]
    pools = {
        "blue": {
            "weight": 1,
            "backends": ["https://127.0.0.1:1"],
            "tls": {"ca": "c.pem", "verify": False},
        }
    }
    assert problems(config(pools=pools)) == [
        "pools.blue.tls.verify: verify: false with a ca: the ca would not be used"
    ]
