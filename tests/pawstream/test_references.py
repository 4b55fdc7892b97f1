"""The reference resolver against real files and a real local HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pawstream.netpolicy import AddressPolicy
from pawstream.references import FILE_REFUSED, ReferenceFetcher, ReferencePolicy, file_uri
from pawstream.schemas import DeadLetterReason, EventError
from pawstream.settings import ReferenceSettings
from tests.support.images import jpeg_bytes
from tests.support.netstubs import (
    LoopbackOnlyNetwork,
    RecordingServer,
    SeenRequest,
    StubResolver,
    hostile_server,
    self_signed_tls,
)

IMG = jpeg_bytes(7, (32, 32))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    (r / "ok.jpg").write_bytes(IMG)
    (r / "big.bin").write_bytes(b"\0" * 5000)
    (tmp_path / "secret.jpg").write_bytes(IMG)
    (r / "escape.jpg").symlink_to(tmp_path / "secret.jpg")
    (r / "zero").symlink_to("/dev/zero")
    os.mkfifo(r / "fifo")
    return r


def refs(root: Path, **kw: object) -> ReferenceSettings:
    base: dict[str, object] = {
        "allowed_roots": [root],
        "file_max_bytes": 4096,
        "http_timeout_s": 1.0,
        "http_max_bytes": 4096,
    }
    base.update(kw)
    return ReferenceSettings.model_validate(base)


async def test_file_inside_root_is_read(root: Path) -> None:
    async with ReferenceFetcher(refs(root)) as f:
        assert await f.fetch(file_uri(root / "ok.jpg")) == IMG


# The same answer for a missing file and for one that exists but is not allowed: no existence oracle.
@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc/passwd",  # exists, outside the roots
        "file:///nonexistent/cat.jpg",  # missing, outside the roots
        "{root}/missing.jpg",  # missing, inside
        "{root}/escape.jpg",  # symlink out of the root
        "{root}/zero",  # device via symlink
        "{root}/ok.jpg/x",  # a file used as a folder
    ],
)
async def test_missing_and_forbidden_files_get_one_answer(root: Path, uri: str) -> None:
    uri = uri.replace("{root}", "file://" + str(root))
    async with ReferenceFetcher(refs(root)) as f:
        with pytest.raises(EventError) as info:
            await f.fetch(uri)
    assert info.value.reason is DeadLetterReason.REFERENCE
    assert info.value.message == FILE_REFUSED


@pytest.mark.parametrize(
    ("uri", "reason", "match"),
    [
        ("{root}/../secret.jpg", DeadLetterReason.REFERENCE, r"'\.\.'"),
        ("{root}/fifo", DeadLetterReason.REFERENCE, "not a regular file"),
        ("{root}/big.bin", DeadLetterReason.TOO_LARGE, "over the 4096"),
        ("{root}/ok%00.jpg", DeadLetterReason.REFERENCE, "NUL byte"),
        ("ftp://example.org/x.jpg", DeadLetterReason.REFERENCE, "scheme 'ftp'"),
        ("file://otherhost/etc/passwd", DeadLetterReason.REFERENCE, "must be local"),
    ],
)
async def test_file_references_are_confined(
    root: Path, uri: str, reason: DeadLetterReason, match: str
) -> None:
    uri = uri.replace("{root}", "file://" + str(root))
    async with ReferenceFetcher(refs(root)) as f:
        with pytest.raises(EventError, match=match) as info:
            await f.fetch(uri)
    assert info.value.reason is reason


def test_file_references_disabled_without_roots(root: Path) -> None:
    with pytest.raises(EventError, match="disabled"):
        ReferencePolicy(ReferenceSettings()).check(file_uri(root / "ok.jpg"))


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("http://[::1", "malformed"),
        ("http://a:99999/x.jpg", "invalid port"),
        ("http://a:-1/x.jpg", "invalid port"),
        ("http://\uff45xample.com/x.jpg", "malformed"),  # fullwidth e: NFKC would make it ASCII
        ("http://exa\u2100mple.com/x.jpg", "malformed"),  # U+2100 becomes 'a/c' under NFKC
        ("http://xn--zz/x.jpg", "malformed"),  # an invalid A-label
        ("http://" + "a" * 300 + "/x.jpg", "too long"),
        ("http://" + "a" * 64 + ".example/x.jpg", "too long"),
        ("http://2130706433/x.jpg", "non-canonical IPv4"),
        ("http://127.1/x.jpg", "non-canonical IPv4"),
        ("http://0x7f.0.0.1/x.jpg", "non-canonical IPv4"),
        ("http://a%20b/x.jpg", "characters a DNS name cannot have"),
        ("http://a b/x.jpg", "ambiguous host"),
        ("http://evil.example\\@10.0.0.1/x.jpg", "refused by policy"),  # both parsers see 10.0.0.1
        ("http://", "no host"),
        ("http:///x.jpg", "no host"),
        ("http://" + "x" * 9000, "over 8192"),
    ],
)
def test_malformed_urls_are_refused_cleanly(uri: str, match: str) -> None:
    with pytest.raises(EventError, match=match) as info:
        ReferencePolicy(ReferenceSettings()).check(uri)
    assert info.value.reason is DeadLetterReason.REFERENCE


def test_an_idn_host_that_is_already_normalised_is_accepted() -> None:
    assert ReferencePolicy(ReferenceSettings()).check("https://m\u00fcnchen.de/cat.jpg")


# Literal addresses are refused by check() alone (the API's 422), before anything is resolved.
NON_PUBLIC = [
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("fd00:ec2::254", "private"),  # ULA (AWS's IPv6 metadata address)
    ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.1.2.3", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "private"),  # reserved class E (Python counts it private)
    ("100.64.0.1", "non-global"),  # carrier-grade NAT
    ("192.0.2.1", "private"),  # documentation
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
    ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
    ("::7f00:1", "reserved"),  # deprecated IPv4-compatible form
    ("fec0::1", "site-local"),
]


@pytest.mark.parametrize(("address", "kind"), NON_PUBLIC)
def test_literal_non_public_addresses_are_refused_by_check(address: str, kind: str) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(EventError, match=f"refused by policy: it resolves to a {kind}"):
        ReferencePolicy(ReferenceSettings()).check(f"http://{host}:8080/x.jpg")


@pytest.mark.parametrize("host", ["127.0.0.1.", "10.1.2.3.", "169.254.169.254."])
def test_a_literal_address_with_a_trailing_dot_is_still_literal(host: str) -> None:
    # Resolvers read "127.0.0.1." as the address itself; the API must refuse it at once (422).
    with pytest.raises(EventError, match="refused by policy"):
        ReferencePolicy(ReferenceSettings()).check(f"http://{host}/x.jpg")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "cats.localhost"])
def test_localhost_names_are_loopback(host: str) -> None:
    with pytest.raises(EventError, match="loopback"):
        ReferencePolicy(ReferenceSettings()).check(f"http://{host}/x.jpg")
    allowed = ReferenceSettings(allowed_networks=["127.0.0.0/8", "::1/128"])
    assert ReferencePolicy(allowed).check(f"http://{host}/x.jpg")


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    # Decided on the address alone: nothing is sent to these public addresses.
    assert AddressPolicy([]).refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_open_exactly_their_networks() -> None:
    policy = AddressPolicy(["10.0.0.0/8", "127.0.0.0/8"])
    assert policy.refusal(ipaddress.ip_address("10.9.9.9")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None  # mapped form of an allowed one
    assert policy.refusal(ipaddress.ip_address("192.168.0.1")) == "private"
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) == "link-local"


def test_a_bad_cidr_stops_startup() -> None:
    with pytest.raises(ValidationError):
        ReferenceSettings(allowed_networks=["10.0.0.0/33"])


# check() is the API's and producer's gate: whatever the string, it refuses with EventError only.
_any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # lone surrogates too
_hosts = st.one_of(
    _any_text,
    st.sampled_from(["[::1", "[::1]", "127.0.0.1", "localhost", "a:99999", "a:-1", "xn--zz", "\uff45.com"]),
    st.from_regex(r"\[[0-9a-fA-F:.%]{0,20}\]?(:[0-9]{0,7})?", fullmatch=True),
)
_paths = st.one_of(_any_text, st.binary(max_size=30).map(lambda b: "/" + quote(b)))
_uris = st.one_of(
    _any_text,
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}{path}",
        st.sampled_from(["http", "https", "file", "HTTP", "ftp", ""]),
        _hosts,
        _paths,
    ),
    # Paths inside the allowed root reach the filesystem: NULs, odd bytes, symlinks, '..'.
    st.builds(lambda path: "file://{root}" + path, _paths),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uri=_uris)
def test_check_raises_only_event_errors(root: Path, uri: str) -> None:
    policy = ReferencePolicy(refs(root))
    with contextlib.suppress(EventError):  # anything else fails the test
        policy.check(uri.replace("{root}", str(root)))


# http(s): a local server that records what it was asked for, and a network that connects only to
# loopback and records every connect (see tests/support/netstubs.py).
LOOPBACK = ["127.0.0.0/8"]


@pytest.fixture
async def server() -> AsyncIterator[RecordingServer]:
    async with hostile_server(IMG, endless_chunk=b"\0" * 1024, endless_chunks=10_000) as srv:
        yield srv


@pytest.fixture
def network() -> LoopbackOnlyNetwork:
    return LoopbackOnlyNetwork()


def fetcher(
    root: Path, network: LoopbackOnlyNetwork, resolver: StubResolver | None = None, **kw: object
) -> ReferenceFetcher:
    return ReferenceFetcher(refs(root, **kw), resolver=resolver or StubResolver({}), network=network)


async def test_http_fetch_and_same_host_redirect(
    root: Path, server: RecordingServer, network: LoopbackOnlyNetwork
) -> None:
    base = server.url()
    async with fetcher(root, network, allowed_networks=LOOPBACK) as f:
        assert await f.fetch(f"{base}/ok") == IMG
        assert await f.fetch(f"{base}/redirect?to=/ok") == IMG
    assert server.paths == ["/ok", "/redirect", "/ok"]


@pytest.mark.parametrize(
    ("path", "reason", "match"),
    [
        ("/slow", DeadLetterReason.REFERENCE, "longer than"),
        ("/endless", DeadLetterReason.TOO_LARGE, "more than 4096 bytes"),
        ("/redirect?to=http://evil.example/x.jpg", DeadLetterReason.REFERENCE, "not in the allowed hosts"),
        ("/missing", DeadLetterReason.REFERENCE, "HTTP 404"),
    ],
)
async def test_http_limits(
    root: Path,
    server: RecordingServer,
    network: LoopbackOnlyNetwork,
    path: str,
    reason: DeadLetterReason,
    match: str,
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with fetcher(root, network, allowed_networks=LOOPBACK, http_allowed_hosts=["127.0.0.1"]) as f:
        with pytest.raises(EventError, match=match) as info:
            await f.fetch(f"{server.url()}{path}")
    assert info.value.reason is reason
    assert loop.time() - started < 3.0  # the 1 s deadline holds, with margin for a loaded machine


async def test_loopback_is_refused_by_default_without_a_connection(
    root: Path, server: RecordingServer, network: LoopbackOnlyNetwork
) -> None:
    async with fetcher(root, network) as f:
        with pytest.raises(EventError, match="refused by policy: it resolves to a loopback") as info:
            await f.fetch(f"{server.url()}/ok")
    assert info.value.reason is DeadLetterReason.REFERENCE
    assert network.connects == [] and server.seen == []


@pytest.mark.parametrize(("address", "kind"), NON_PUBLIC)
async def test_hostnames_resolving_to_non_public_addresses_are_never_connected(
    root: Path, network: LoopbackOnlyNetwork, address: str, kind: str
) -> None:
    resolver = StubResolver({"target.test": [address]})
    async with fetcher(root, network, resolver) as f:
        with pytest.raises(EventError, match=f"refused by policy: it resolves to a {kind}") as info:
            await f.fetch("http://target.test/x.jpg")
    # The message names the policy, not the address or a connection outcome: no scan oracle.
    assert address not in info.value.message
    assert resolver.lookups == ["target.test"] and network.connects == []


async def test_a_host_resolving_to_public_and_private_addresses_is_refused(
    root: Path, network: LoopbackOnlyNetwork
) -> None:
    resolver = StubResolver({"mixed.test": ["93.184.216.34", "10.0.0.7"]})
    async with fetcher(root, network, resolver) as f:
        with pytest.raises(EventError, match="private"):
            await f.fetch("https://mixed.test/x.jpg")
    assert network.connects == []


async def test_unresolvable_host_is_a_clean_refusal(root: Path, network: LoopbackOnlyNetwork) -> None:
    async with fetcher(root, network) as f:
        with pytest.raises(EventError, match=r"cannot resolve host 'nowhere\.test'"):
            await f.fetch("http://nowhere.test/x.jpg")
    assert network.connects == []


async def test_connection_is_pinned_to_the_checked_address_and_keeps_the_host_header(
    root: Path, server: RecordingServer, network: LoopbackOnlyNetwork
) -> None:
    port = server.ports["127.0.0.1"]
    resolver = StubResolver({"pinned.test": ["127.0.0.1"]})
    async with fetcher(root, network, resolver, allowed_networks=LOOPBACK) as f:
        assert await f.fetch(f"http://pinned.test:{port}/ok") == IMG
    assert resolver.lookups == ["pinned.test"]  # resolved once
    assert network.connects == [("127.0.0.1", port)]  # connected to the address that was checked
    assert server.seen == [SeenRequest("/ok", f"pinned.test:{port}")]  # Host stays the hostname


async def test_tls_sni_and_certificate_name_stay_the_hostname(
    root: Path, tmp_path: Path, network: LoopbackOnlyNetwork
) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(body=IMG)

    server_tls, client_tls, sni = self_signed_tls("pinned.test", tmp_path)
    srv = RecordingServer([web.get("/ok", ok)])
    await srv.start("127.0.0.1", ssl_context=server_tls)
    try:
        port = srv.ports["127.0.0.1"]
        resolver = StubResolver({"pinned.test": ["127.0.0.1"]})
        async with ReferenceFetcher(
            refs(root, allowed_networks=LOOPBACK), resolver=resolver, network=network, ssl_context=client_tls
        ) as f:
            assert await f.fetch(f"https://pinned.test:{port}/ok") == IMG
    finally:
        await srv.stop()
    assert sni == ["pinned.test"]  # and the certificate was verified for pinned.test, not 127.0.0.1
    assert network.connects == [("127.0.0.1", port)]
    assert srv.seen == [SeenRequest("/ok", f"pinned.test:{port}")]


async def test_loopback_allowed_only_for_the_configured_network(
    root: Path, server: RecordingServer, network: LoopbackOnlyNetwork
) -> None:
    async with fetcher(root, network, allowed_networks=["127.0.0.1/32"]) as f:
        assert await f.fetch(f"{server.url()}/ok") == IMG
        with pytest.raises(EventError, match="loopback"):
            await f.fetch(f"{server.url('127.0.0.2')}/secret")
    assert server.paths == ["/ok"]


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port2}/secret",  # a literal loopback address outside the allowed /32
        "http://sneaky.test:{port2}/secret",  # a name the stub resolver maps to 127.0.0.2
        "http://metadata.test/latest/meta-data",  # a name mapped to 169.254.169.254
        "http://[::ffff:127.0.0.2]:{port2}/secret",
        "file:///etc/passwd",
    ],
)
async def test_every_redirect_hop_is_checked_and_refused_targets_are_never_requested(
    root: Path, server: RecordingServer, network: LoopbackOnlyNetwork, target: str
) -> None:
    port1, port2 = server.ports["127.0.0.1"], server.ports["127.0.0.2"]
    target = target.replace("{port2}", str(port2))
    resolver = StubResolver({"sneaky.test": ["127.0.0.2"], "metadata.test": ["169.254.169.254"]})
    async with fetcher(root, network, resolver, allowed_networks=["127.0.0.1/32"]) as f:
        with pytest.raises(EventError, match=r"refused by policy|not an allowed http"):
            await f.fetch(f"{server.url()}/redirect?to={quote(target)}")
    assert server.paths == ["/redirect"]  # the target was never requested
    assert network.connects == [("127.0.0.1", port1)]
