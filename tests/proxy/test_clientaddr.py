"""The client's address: the trusted proxies and the X-Forwarded-For walk
(splitter.proxy.clientaddr), then the data path that resolves it (playbook, no sockets):
PROXY headers however they arrive, the header deadline, X-Forwarded-For to the backend,
`Observation.client_addr`; and passive ejection, which counts gateway failures only."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from splitter import config as config_mod
from splitter.proxy.clientaddr import TrustedProxies, canonical, parse_address
from splitter.proxy.proxyproto import V2_SIGNATURE
from splitter.state import build_live
from tests.playbook import BASE_CONFIG, Client, Playbook

OURS = TrustedProxies(["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"])
PEER = "10.0.0.1"  # a trusted proxy in front of splitter


# -- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:DB8:0:0::7", "2001:db8::7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client on a dual-stack listener
        ("::ffff:cb00:7107", "203.0.113.7"),
        ("::1", "::1"),
        ("203.0.113.07", ""),  # no octal, no shorthand, no names, no zones
        ("203.0.113", ""),
        ("localhost", ""),
        ("fe80::1%eth0", ""),
        ("", ""),
        ("1" * 100, ""),
        ("٣.٣.٣.٣", ""),  # Arabic-Indic digits
    ],
)
def test_addresses_have_one_canonical_text(text: str, expected: str) -> None:
    assert canonical(text) == expected


@given(st.text(max_size=60))
def test_any_text_is_an_address_or_not_and_never_an_error(text: str) -> None:
    family, _ = parse_address(text)
    if family:
        assert canonical(canonical(text)) == canonical(text)


@given(st.ip_addresses())
def test_canonical_text_matches_the_standard_library(address) -> None:
    mapped = getattr(address, "ipv4_mapped", None)
    assert canonical(str(address)) == str(mapped or address)
    assert canonical(address.exploded) == str(mapped or address)


def test_membership_of_each_family_at_the_edges() -> None:
    def trusted(text: str) -> bool:
        return OURS.lookup(text)[1]

    assert trusted("10.0.0.0") and trusted("10.255.255.255") and trusted("::ffff:10.1.2.3")
    assert not trusted("11.0.0.0") and not trusted("9.255.255.255")
    assert trusted("192.0.2.1") and not trusted("192.0.2.2")
    assert trusted("2001:db8:ffff::1") and not trusted("2001:db9::1")
    assert not trusted("::a00:1")  # 10.0.0.1 as an IPv4-compatible (not mapped) address
    assert not trusted("-")  # a peer that is not an IP address (a Unix socket)
    assert OURS.lookup("-") == ("-", False)
    assert OURS.lookup("::FFFF:10.0.0.1") == ("10.0.0.1", True)
    assert TrustedProxies(["0.0.0.0/0"]).lookup("203.0.113.7")[1]
    assert not TrustedProxies(["0.0.0.0/0"]).lookup("2001:db8::1")[1]
    assert not TrustedProxies().lookup("127.0.0.1")[1]


_networks = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)),
).map(lambda pair: ipaddress.ip_network(f"{pair[0]}/{pair[1]}", strict=False))


_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


@given(_networks, st.ip_addresses())
@example(ipaddress.ip_network("::ffff:0:0/96"), ipaddress.ip_address("0.0.0.0"))
@example(ipaddress.ip_network("::ffff:10.0.0.0/104"), ipaddress.ip_address("10.1.2.3"))
def test_membership_is_the_standard_librarys(network, address) -> None:
    trusted = TrustedProxies([str(network)])
    mapped = getattr(address, "ipv4_mapped", None)
    # An IPv4-mapped IPv6 network is the IPv4 network it maps (a dual-stack listener sees
    # IPv4 clients as ::ffff:a.b.c.d), as the config normalises it.
    if network.version == 6 and network.prefixlen >= 96 and network.subnet_of(_MAPPED):
        network = ipaddress.ip_network(
            f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}"
        )
    expected = (mapped or address) in network if (mapped or address).version == network.version \
        else False  # fmt: skip
    assert trusted.lookup(str(address))[1] == expected


def test_the_cache_of_peers_stays_bounded() -> None:
    trusted = TrustedProxies(["10.0.0.0/8"])
    for i in range(20_000):
        trusted.lookup(str(ipaddress.IPv4Address(0x0B000000 + i)))
    assert len(trusted._cache) <= 4096


# -- the X-Forwarded-For walk ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("xff", "client"),
    [
        (b"203.0.113.7", "203.0.113.7"),
        # The rightmost address that is not ours is the client; what is left of it is not read.
        (b"198.51.100.66, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (b"10.9.9.9, 203.0.113.7", "203.0.113.7"),  # a spoofed "trusted" address on the left
        (b"1.1.1.1,203.0.113.7,10.0.0.2,192.0.2.1", "203.0.113.7"),
        # Several X-Forwarded-For headers are read as one list, in order.
        (b"198.51.100.66, 203.0.113.7, 10.0.0.3", "203.0.113.7"),
        # Every entry ours: the leftmost is the client.
        (b"10.0.0.3, 10.0.0.2", "10.0.0.3"),
        # A malformed entry stops the walk: the last address read is the client.
        (b"203.0.113.7, unknown", PEER),
        (b"203.0.113.7, unknown, 10.0.0.2", "10.0.0.2"),
        (b"203.0.113.7, 10.0.0.2, 999.1.1.1", PEER),
        (b"203.0.113.7, 10.0.0.2 10.0.0.3", PEER),
        (b"203.0.113.7, _gazonk", PEER),
        (b"203.0.113.7, \xff\xfe", PEER),
        # Empty list elements and optional whitespace are skipped.
        (b" 203.0.113.7 ,, \t10.0.0.2 ,", "203.0.113.7"),
        (b"", PEER),
        (b" , ", PEER),
        # Ports, and IPv6 in brackets, as some balancers write them.
        (b"203.0.113.7:4711, 10.0.0.2:443", "203.0.113.7"),
        (b"[2001:db9::7]:4711, [2001:db8::2]", "2001:db9::7"),
        (b"2001:DB9::7, 2001:db8::2", "2001:db9::7"),
        (b"::ffff:203.0.113.7", "203.0.113.7"),
        (b"203.0.113.7:99999", PEER),
        (b"203.0.113.7:", PEER),
        (b"[203.0.113.7]", PEER),
        (b"[2001:db9::7", PEER),
        (b"[2001:db9::7]x", PEER),
    ],
)
def test_the_walk_from_the_right_finds_the_client(xff: bytes, client: str) -> None:
    assert OURS.client(xff, PEER) == client


_untrusted_v4 = st.integers(0x0B000000, 0xBF000000).map(lambda n: str(ipaddress.IPv4Address(n)))
_ours = st.integers(0x0A000000, 0x0AFFFFFF).map(lambda n: str(ipaddress.IPv4Address(n)))
_junk = st.text(st.characters(codec="latin-1"), max_size=30).map(lambda t: t.encode("latin-1"))


@given(st.lists(_junk, max_size=8), _untrusted_v4, st.lists(_ours, max_size=5))
def test_nothing_a_client_writes_left_of_its_address_changes_the_verdict(
    spoofed: list[bytes], client: str, hops: list[str]
) -> None:
    """The client sends any X-Forwarded-For it likes; our proxies append its address and
    their own: the client found is the address our first proxy saw."""
    xff = b", ".join([*spoofed, client.encode(), *(h.encode() for h in hops)])
    assert OURS.client(xff, PEER) == client


@given(st.binary(max_size=300))
def test_any_header_value_gives_the_peer_or_an_address_in_it(xff: bytes) -> None:
    client = OURS.client(xff, PEER)
    assert client == PEER or canonical(client) == client


# -- the data path: PROXY headers, X-Forwarded-For, the observation --------------------------

GET = b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 198.51.100.66\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
V1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 8080\r\n"
V2_LOCAL = V2_SIGNATURE + b"\x20\x00\x00\x00"


def _serve(pb: Playbook, client: Client, data: bytes) -> list[bytes]:
    """Send `data`, answer the request: the X-Forwarded-For the backend got."""
    client.send(data)
    backend = pb.accept() if pb.waiting else next(b for b in pb.opened if not b.closed)
    backend.received.clear()  # a reused connection: this request only
    xff = backend.header(b"x-forwarded-for")
    backend.reply(OK)
    assert [r.status for r in client.responses()] == [200]
    return xff


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_request_says() -> None:
    pb = Playbook()
    client = pb.client(peer="::ffff:203.0.113.7")
    assert _serve(pb, client, GET) == [b"198.51.100.66, ::ffff:203.0.113.7"]  # as before
    [ex] = pb.observed
    assert ex.client_addr == "203.0.113.7"


def test_from_a_trusted_proxy_the_rightmost_address_not_ours_is_the_client() -> None:
    pb = Playbook(trusted_proxies=["10.0.0.0/8"])
    client = pb.client(peer="10.0.0.1")
    request = GET.replace(b"198.51.100.66", b"6.6.6.6, 203.0.113.7, 10.0.0.2")
    assert _serve(pb, client, request) == [b"6.6.6.6, 203.0.113.7, 10.0.0.2, 10.0.0.1"]
    client.send(GET.replace(b"X-Forwarded-For: 198.51.100.66\r\n", b""))  # none: the proxy
    backend = pb.opened[0]
    backend.take()
    backend.reply(OK)
    assert [ex.client_addr for ex in pb.observed] == ["203.0.113.7", "10.0.0.1"]


def test_a_proxy_protocol_header_names_the_client_and_x_forwarded_for_gets_it() -> None:
    pb = Playbook(proxy_protocol=True)
    client = pb.client(peer="10.0.0.1")  # the balancer
    assert _serve(pb, client, V1 + GET) == [b"198.51.100.66, 203.0.113.7"]
    [ex] = pb.observed
    assert ex.client_addr == "203.0.113.7"
    assert ex.conn.peer == b"10.0.0.1"  # the access log's "client": the connection's peer


def test_a_proxy_header_in_single_bytes_then_the_request_in_the_same_packet() -> None:
    pb = Playbook(proxy_protocol=True)
    client = pb.client(peer="10.0.0.1")
    for i in range(len(V1) - 1):
        client.send(V1[i : i + 1])
        assert not pb.waiting and not client.closed
    assert _serve(pb, client, V1[-1:] + GET) == [b"198.51.100.66, 203.0.113.7"]


def test_a_local_command_is_the_balancers_own_connection() -> None:
    pb = Playbook(proxy_protocol=True)
    client = pb.client(peer="10.0.0.1")
    assert _serve(pb, client, V2_LOCAL + GET) == [b"198.51.100.66, 10.0.0.1"]
    assert pb.observed[0].client_addr == "10.0.0.1"


def test_a_proxy_source_in_trusted_proxies_is_walked_like_a_peer() -> None:
    pb = Playbook(proxy_protocol=True, trusted_proxies=["198.51.100.0/24"])  # a CDN's edge
    client = pb.client(peer="10.0.0.1")
    header = b"PROXY TCP4 198.51.100.9 10.0.0.1 56324 8080\r\n"
    request = GET.replace(b"198.51.100.66", b"6.6.6.6, 203.0.113.7")
    assert _serve(pb, client, header + request) == [b"6.6.6.6, 203.0.113.7, 198.51.100.9"]
    assert pb.observed[0].client_addr == "203.0.113.7"


@pytest.mark.parametrize(
    "data",
    [
        GET,  # no header at all
        b"PROXY TCP4 203.0.113.7 10.0.0.1 1\r\n" + GET,  # malformed
        b"PROXY TCP4 " + b"9" * 120,  # no end within 107 bytes
        V2_SIGNATURE + b"\x21\x11\xff\xff",  # claims 65535 bytes of TLVs
        b"\x16\x03\x01\x00\xa5\x01\x00",  # TLS
    ],
)
def test_a_connection_without_a_valid_header_is_closed_unanswered(data: bytes) -> None:
    pb = Playbook(proxy_protocol=True)
    client = pb.client(peer="10.0.0.1")
    client.send(data)
    assert client.closed and client.take() == b""
    assert not pb.waiting and pb.observed == []
    client.send(GET)  # nothing more is read
    assert not pb.waiting


def test_a_header_that_never_completes_is_closed_at_the_header_deadline() -> None:
    pb = Playbook(proxy_protocol=True, limits={"header_timeout": "2s"})
    client = pb.client(peer="10.0.0.1")
    client.send(V1[:20])
    pb.advance(1.5)
    client.send(V1[20:30])  # trickling bytes do not extend the deadline
    assert not client.closed
    pb.advance(1.0)
    assert client.closed and client.take() == b""  # no 408: no HTTP was spoken
    assert pb.observed == []


def test_the_first_requests_deadline_still_runs_from_accept() -> None:
    pb = Playbook(proxy_protocol=True, limits={"header_timeout": "2s"})
    client = pb.client(peer="10.0.0.1")
    client.send(V1)
    pb.advance(1.5)
    client.send(GET[:10])
    pb.advance(1.0)
    [response] = client.responses()
    assert response.status == 408 and client.closed


def test_without_proxy_protocol_a_proxy_header_is_just_a_bad_request() -> None:
    pb = Playbook()
    client = pb.client(peer="10.0.0.1")
    client.send(V1 + GET)
    [response] = client.responses()
    assert response.status == 400 and not pb.waiting


# -- passive ejection counts gateway failures only -------------------------------------------


def _answer(pb: Playbook, client: Client, status: int) -> None:
    client.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Splitter-Pool: green\r\n\r\n")
    backend = pb.accept() if pb.waiting else next(b for b in pb.opened if not b.closed)
    backend.take()
    backend.reply(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % status)


def test_application_errors_never_count_towards_ejection() -> None:
    pb = Playbook()
    green = pb.health.get("http://127.0.0.1:5002")
    client = pb.client()
    for status in [500, 501, 505, 599] * 5:
        _answer(pb, client, status)
    assert green.failures == 0 and green.up
    for status in (502, 503, 504, 500):  # an application's answer ends a run of failures
        _answer(pb, client, status)
    assert green.failures == 0 and green.up
    for status in (502, 503, 504, 502, 503):
        _answer(pb, client, status)
    assert not green.up  # ejected


def test_a_reload_applies_to_connections_accepted_after_it() -> None:
    pb = Playbook()
    before = pb.client(peer="10.0.0.1")
    config = config_mod.parse(
        {**BASE_CONFIG, "trusted_proxies": ["10.0.0.0/8"], "proxy_protocol": True}, env={}
    )
    pb.listener.swap(build_live(config, config.weights(), b"k" * 32, pb.health))
    after = pb.client(peer="10.0.0.1")
    request = GET.replace(b"198.51.100.66", b"203.0.113.7")
    _serve(pb, before, request)  # accepted before: no PROXY header, X-Forwarded-For not read
    assert pb.observed[-1].client_addr == "10.0.0.1"
    after.send(request)
    assert after.closed and not pb.waiting  # accepted after: a PROXY header is required
    last = pb.client(peer="10.0.0.1")
    _serve(pb, last, b"PROXY TCP4 10.0.0.2 10.0.0.1 1 2\r\n" + request)
    assert pb.observed[-1].client_addr == "203.0.113.7"  # 10.0.0.2 is trusted: walked
