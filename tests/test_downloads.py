"""The download guard (`reelflow.netguard`) and the downloads built on it, over real HTTP.

A small HTTP server on 127.0.0.1 serves videos, pages, redirects and oversized bodies. Every
client here connects through a spy network backend that refuses (by failing the test) any
connection to a non-loopback address, and resolves names with a fake resolver, so nothing leaves
the machine: refusals of private or foreign addresses are checked by asserting that no lookup or
connection happened at all, and "the connection goes to the checked address" by a backend that
records where it was asked to connect and then fails without connecting.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpcore
import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.downloads import download
from activities.media import MediaActivities
from activities.persist import PersistActivities
from activities.records import RecordActivities
from reelflow.db.engine import Database
from reelflow.emulator.render import render_mp4
from reelflow.netguard import (
    VIDEO,
    VIDEO_OR_IMAGE,
    DownloadRefused,
    GuardedNetworkBackend,
    HostAllowlist,
    address_problem,
    guarded_client,
    redact_url,
)
from reelflow.providers.errors import ProviderRejected
from reelflow.providers.veo import VeoProvider
from reelflow.storage import LocalStore
from reelflow.types import MediaJobInput, PersistInput

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
CLIP = b"\0\0\0\x18ftypmp42" + b"x" * 2000
# Distinct bytes everywhere, so a batch written twice, lost or out of order changes the body.
BIG = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(11 * 1024 * 1024 // 32 + 7))
SECRET = "X-Amz-Signature=topsecret&X-Amz-Credential=AKIDEXAMPLE"
REPLICATE_HOSTS = ["replicate.delivery", "*.replicate.delivery"]


# The server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[str]
    real_video: bytes

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: clients here hang up on purpose, mid-body."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        path, _, query = self.path.partition("?")
        params = {key: values[0] for key, values in parse_qs(query).items()}
        if path == "/clip.mp4":
            self._send(200, CLIP, "video/mp4")
        elif path == "/real.mp4":
            self._send(200, self.server.real_video, "video/mp4")
        elif path == "/octet.mp4" or path == "/octet":
            self._send(200, CLIP, "application/octet-stream")
        elif path == "/page":
            self._send(200, b"<html>hello</html>", "text/html; charset=utf-8")
        elif path == "/image.png":
            self._send(200, PNG, "image/png")
        elif path == "/redirect":
            self._redirect(params["to"])
        elif path.startswith("/chain/"):
            left = int(path.removeprefix("/chain/"))
            if left:
                self._redirect(f"/chain/{left - 1}")
            else:
                self._send(200, CLIP, "video/mp4")
        elif path == "/huge":
            # Claims a terabyte; sends a little, then hangs up.
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(b"\0" * 1024)
            self.close_connection = True
        elif path == "/big.mp4":
            self._send(200, BIG, "video/mp4")
        elif path == "/unsized":
            # No Content-Length: 3 MiB in chunks, so only counting can stop it.
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * 65536
            for _ in range(48):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    video = tmp_path_factory.mktemp("video") / "real.mp4"
    render_mp4(video, prompt="guarded", seconds=0.5)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    httpd.real_video = video.read_bytes()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def origin(server: _Server) -> str:
    """The server's origin, e.g. `http://127.0.0.1:43121`; requests are forgotten per test."""
    server.requests.clear()
    return f"http://127.0.0.1:{server.server_address[1]}"


# The network


class LoopbackOnly(httpcore.AsyncNetworkBackend):
    """Connects like httpcore does, but only to loopback addresses; records every connection."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connections.append((host, port))
        assert ipaddress.ip_address(host).is_loopback, f"test tried to connect to {host}"
        return await self._inner.connect_tcp(host, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class Recorder(httpcore.AsyncNetworkBackend):
    """Records where it is asked to connect, then fails without connecting anywhere."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connections.append((host, port))
        raise httpcore.ConnectError(f"(test) not connecting to {host}")


class FakeDNS:
    """A resolver with fixed answers (a list per lookup, for rebinding); unknown names fail."""

    def __init__(self, answers: dict[str, list[list[str]]] | None = None) -> None:
        self.answers = answers or {}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host in self.answers and self.answers[host]:
            return self.answers[host].pop(0)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


class Net:
    """A guarded client whose network is a `LoopbackOnly` backend and a `FakeDNS`."""

    def __init__(
        self,
        *,
        trusted: Iterable[str] = (),
        dns: FakeDNS | None = None,
        inner: LoopbackOnly | Recorder | None = None,
    ) -> None:
        self.dns = dns or FakeDNS()
        self.inner = inner or LoopbackOnly()
        self.http = guarded_client(
            network=GuardedNetworkBackend(
                trusted_origins=trusted, resolve=self.dns, inner=self.inner
            ),
            timeout=5,
        )

    @property
    def connections(self) -> list[tuple[str, int]]:
        return self.inner.connections


@pytest.fixture
async def nets() -> AsyncIterator[list[Net]]:
    """Closes the clients a test makes."""
    made: list[Net] = []
    yield made
    for net in made:
        await net.http.aclose()


async def fetch(
    net: Net,
    url: str,
    tmp_path: Path,
    *,
    allowed: HostAllowlist,
    max_bytes: int = 10**6,
    noun: str = "input",
) -> tuple[bytes, str]:
    """Download through the activity code (heartbeats and all); the body and its type."""
    spool = tmp_path / "spool"
    fetched = await ActivityEnvironment().run(
        download,
        net.http,
        url,
        spool,
        allowed=allowed,
        accept=VIDEO,
        max_bytes=max_bytes,
        noun=noun,
    )
    body = spool.read_bytes()
    assert fetched.size == len(body) and fetched.sha256 == hashlib.sha256(body).hexdigest()
    return body, fetched.content_type


async def refusal(
    net: Net, url: str, tmp_path: Path, *, allowed: HostAllowlist, max_bytes: int = 10**6
) -> ApplicationError:
    """The non-retryable error downloading `url` fails with; nothing may have been written."""
    with pytest.raises(ApplicationError) as caught:
        await fetch(net, url, tmp_path, allowed=allowed, max_bytes=max_bytes)
    assert caught.value.non_retryable, caught.value
    return caught.value


# Allowed origins, over real HTTP


async def test_an_explicitly_allowed_origin_is_downloaded_over_http(
    origin: str, server: _Server, nets: list[Net], tmp_path: Path
) -> None:
    net = Net(trusted=[origin])
    nets.append(net)
    allowed = HostAllowlist("media inputs", origins=[origin])

    body, content_type = await fetch(net, f"{origin}/clip.mp4", tmp_path, allowed=allowed)

    assert (body, content_type) == (CLIP, "video/mp4")
    assert server.requests == ["/clip.mp4"]
    assert net.connections == [("127.0.0.1", server.server_address[1])]
    assert net.dns.lookups == []  # an allowed origin is connected to as it is


async def test_a_body_of_many_batches_is_spooled_whole_and_in_order(
    origin: str, nets: list[Net], tmp_path: Path
) -> None:
    # Bigger than the spool writer's batches and the connection's reads, and not a multiple.
    net = Net(trusted=[origin])
    nets.append(net)
    allowed = HostAllowlist("media inputs", origins=[origin])

    body, _ = await fetch(net, f"{origin}/big.mp4", tmp_path, allowed=allowed, max_bytes=len(BIG))

    assert body == BIG


async def test_octet_stream_takes_its_type_from_the_extension(
    origin: str, nets: list[Net], tmp_path: Path
) -> None:
    net = Net(trusted=[origin])
    nets.append(net)
    allowed = HostAllowlist("media inputs", origins=[origin])

    _, content_type = await fetch(net, f"{origin}/octet.mp4", tmp_path, allowed=allowed)
    assert content_type == "video/mp4"

    error = await refusal(net, f"{origin}/octet", tmp_path, allowed=allowed)
    assert error.type == "DownloadRefused"
    assert "application/octet-stream, not a video" in str(error)


async def test_a_redirect_chain_within_the_allowlist_is_followed_up_to_five_hops(
    origin: str, server: _Server, nets: list[Net], tmp_path: Path
) -> None:
    net = Net(trusted=[origin])
    nets.append(net)
    allowed = HostAllowlist("media inputs", origins=[origin])

    body, _ = await fetch(net, f"{origin}/chain/5", tmp_path, allowed=allowed)
    assert body == CLIP
    assert server.requests == [f"/chain/{n}" for n in range(5, -1, -1)]

    error = await refusal(net, f"{origin}/chain/6", tmp_path, allowed=allowed)
    assert error.type == "DownloadFailed"
    assert "more than 5 redirects" in str(error)


# Refused before any lookup or connection


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://10.0.0.1/clip.mp4", "10.0.0.1 is a private address"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::1]:8080/clip.mp4", "::1 is a loopback address"),
        ("https://127.0.0.1/clip.mp4", "127.0.0.1 is a loopback address"),
        ("https://[::ffff:10.0.0.5]/clip.mp4", "::ffff:10.0.0.5 is a private address"),
        ("https://0.0.0.0/clip.mp4", "0.0.0.0 is an unspecified address"),
        ("https://[fe80::1]/clip.mp4", "fe80::1 is a link-local address"),
        ("https://224.0.0.1/clip.mp4", "224.0.0.1 is a multicast address"),
        ("https://100.64.0.1/clip.mp4", "100.64.0.1 is a non-public address"),
        ("https://240.0.0.1/clip.mp4", "240.0.0.1 is a reserved address"),
    ],
)
async def test_a_private_address_is_refused_without_connecting(
    url: str, problem: str, nets: list[Net], tmp_path: Path
) -> None:
    net = Net()
    nets.append(net)
    # Any https host is allowed: only the address rule can refuse these.
    error = await refusal(net, url, tmp_path, allowed=HostAllowlist.any_host("media inputs"))

    assert error.type == "DownloadRefused"
    assert f"download refused: {problem}" in str(error)
    assert net.dns.lookups == [] and net.connections == []


async def test_a_host_name_that_resolves_to_a_private_address_is_refused_without_connecting(
    nets: list[Net], tmp_path: Path
) -> None:
    dns = FakeDNS(
        {
            "cdn.test": [["10.0.0.5"]],
            "mixed.test": [["93.184.215.14", "169.254.169.254"]],
            "mapped.test": [["::ffff:127.0.0.1"]],
        }
    )
    net = Net(dns=dns)
    nets.append(net)
    allowed = HostAllowlist("media inputs", ["cdn.test", "mixed.test", "mapped.test"])

    for host, problem in [
        ("cdn.test", "cdn.test resolves to 10.0.0.5, a private address"),
        ("mixed.test", "mixed.test resolves to 169.254.169.254, a link-local address"),
        ("mapped.test", "mapped.test resolves to ::ffff:127.0.0.1, a loopback address"),
    ]:
        error = await refusal(net, f"https://{host}/v.mp4?{SECRET}", tmp_path, allowed=allowed)
        assert error.type == "DownloadRefused"
        assert error.message == f"download refused: {problem} (https://{host}/v.mp4)"

    assert dns.lookups == ["cdn.test", "mixed.test", "mapped.test"]
    assert net.connections == []


async def test_localhost_resolved_for_real_is_refused_without_connecting(tmp_path: Path) -> None:
    spy = LoopbackOnly()
    http = guarded_client(network=GuardedNetworkBackend(inner=spy), timeout=5)
    try:
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(
                download,
                http,
                "https://localhost/clip.mp4",
                tmp_path / "spool",
                allowed=HostAllowlist("media inputs", ["localhost"]),
                accept=VIDEO,
                max_bytes=100,
            )
    finally:
        await http.aclose()
    assert caught.value.type == "DownloadRefused"
    assert "localhost resolves to" in str(caught.value)
    assert "a loopback address" in str(caught.value)
    assert spy.connections == []


async def test_the_connection_goes_to_the_address_that_was_checked(
    nets: list[Net], tmp_path: Path
) -> None:
    # Each connection resolves once and connects to what that lookup returned, so an answer
    # that changes between lookups (DNS rebinding) is caught at the lookup that returns it.
    dns = FakeDNS(
        {"cdn.test": [["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"], ["10.0.0.7"]]}
    )
    recorder = Recorder()
    net = Net(dns=dns, inner=recorder)
    nets.append(net)
    allowed = HostAllowlist("media inputs", ["cdn.test"])

    with pytest.raises(ApplicationError) as caught:
        await fetch(net, "https://cdn.test/clip.mp4", tmp_path, allowed=allowed)
    assert caught.value.type == "DownloadFailed" and not caught.value.non_retryable
    assert recorder.connections == [
        ("93.184.215.14", 443),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", 443),
    ]

    rebound = await refusal(net, "https://cdn.test/clip.mp4", tmp_path, allowed=allowed)
    assert "cdn.test resolves to 10.0.0.7, a private address" in str(rebound)
    assert dns.lookups == ["cdn.test", "cdn.test"]
    assert len(recorder.connections) == 2  # nothing more: the private answer was never dialled


async def test_a_host_not_on_the_allowlist_is_refused_without_a_lookup(
    nets: list[Net], tmp_path: Path
) -> None:
    net = Net()
    nets.append(net)
    allowed = HostAllowlist("replicate outputs", REPLICATE_HOSTS)

    for url, problem in [
        ("https://evil.example/out.mp4", "host evil.example is not allowed for replicate outputs"),
        ("https://replicate.delivery.evil.example/x", "host replicate.delivery.evil.example is"),
        ("https://notreplicate.delivery/x", "host notreplicate.delivery is not allowed"),
        ("https://replicate.delivery@evil.example/x", "host evil.example is not allowed"),
        ("http://replicate.delivery/x", "allowed for replicate outputs over https on port 443"),
        ("https://replicate.delivery:8443/x", "over https on port 443 only"),
        ("ftp://replicate.delivery/x", "only http and https URLs can be downloaded, not ftp"),
        ("/relative.mp4", "not a relative URL"),
    ]:
        error = await refusal(net, url, tmp_path, allowed=allowed)
        assert error.type == "DownloadRefused"
        assert problem in str(error)
    assert net.dns.lookups == [] and net.connections == []


def test_host_rules_match_subdomains_paths_and_normalised_names() -> None:
    fal = HostAllowlist("fal outputs", ["fal.media", "*.fal.media", "storage.example/fal/"])
    for url in [
        "https://fal.media/files/a.mp4",
        "https://v3.fal.media/files/a.mp4",
        "https://v3b.fal.media/files/b/a.mp4",
        "https://V3.FAL.MEDIA./files/a.mp4",
        "https://storage.example/fal/a.mp4",
    ]:
        fal.check(url)
    for url, rule in [
        ("https://storage.example/other/a.mp4", "host"),
        ("https://storage.example/fal/..%2fother/a.mp4", "host"),
        ("https://storage.example/falx/a.mp4", "host"),
        ("https://evilfal.media/a.mp4", "host"),
    ]:
        with pytest.raises(DownloadRefused) as caught:
            fal.check(url)
        assert caught.value.rule == rule


@pytest.mark.parametrize(
    "entry", ["*", "*.com", "http://x.test", "cdn.test:8443", "a.*.test", "x y", "[::1"]
)
def test_malformed_host_entries_are_refused_at_startup(entry: str) -> None:
    with pytest.raises(ValueError):
        HostAllowlist("x", [entry])


@pytest.mark.parametrize(
    "entry", ["127.0.0.1:3001", "ftp://x.test", "http://u:p@x.test", "http://*.x.test"]
)
def test_malformed_origins_are_refused_at_startup(entry: str) -> None:
    with pytest.raises(ValueError):
        HostAllowlist("x", origins=[entry])


def test_an_allowed_origin_is_exact_in_scheme_port_and_path() -> None:
    store = HostAllowlist("media inputs", origins=["http://127.0.0.1:3000/files"])
    store.check("http://127.0.0.1:3000/files/executions/e/j/output-0.mp4")
    for url, problem in [
        ("http://127.0.0.1:3000/api/executions", "127.0.0.1 is a loopback address"),
        ("http://127.0.0.1:3000/filesystem", "127.0.0.1 is a loopback address"),
        ("https://127.0.0.1:3000/files/x.mp4", "127.0.0.1 is a loopback address"),
        ("http://127.0.0.1:3001/files/x.mp4", "127.0.0.1 is a loopback address"),
        ("http://localhost:3000/files/x.mp4", "host localhost is not allowed"),
    ]:
        with pytest.raises(DownloadRefused, match=problem):
            store.check(url)


def test_addresses_embedding_ipv4_are_judged_by_the_ipv4_address() -> None:
    def problem(text: str) -> str | None:
        return address_problem(ipaddress.ip_address(text))

    assert problem("::ffff:10.0.0.1") == "private"
    assert problem("::ffff:8.8.8.8") is None
    assert problem("2002:a9fe:a9fe::1") == "link-local"  # 6to4 of 169.254.169.254
    assert problem("64:ff9b::7f00:1") == "loopback"  # NAT64 of 127.0.0.1
    assert problem("fc00::1") == "private"
    assert problem("2606:4700:4700::1111") is None


# Redirects


async def test_a_redirect_out_of_the_allowlist_is_refused_before_following_it(
    origin: str, server: _Server, nets: list[Net], tmp_path: Path
) -> None:
    net = Net(trusted=[origin])
    nets.append(net)
    allowed = HostAllowlist("replicate outputs", REPLICATE_HOSTS, origins=[origin])
    other_port = f"http://127.0.0.1:{server.server_address[1] + 1}/clip.mp4"

    for target, problem in [
        (
            "https://evil.example/v.mp4?sig=topsecret",
            "redirect to https://evil.example/v.mp4 leaves the allowed hosts for replicate "
            "outputs: host evil.example is not allowed for replicate outputs",
        ),
        (
            "http://169.254.169.254/latest/meta-data/",
            "redirect to http://169.254.169.254/latest/meta-data/ leaves the allowed hosts for "
            "replicate outputs: 169.254.169.254 is a link-local address",
        ),
        (other_port, f"redirect to {other_port} leaves the allowed hosts"),
        ("http://replicate.delivery/v.mp4", "over https on port 443 only"),
    ]:
        server.requests.clear()
        url = str(httpx.URL(f"{origin}/redirect", params={"to": target}))
        error = await refusal(net, url, tmp_path, allowed=allowed)
        assert error.type == "DownloadRefused"
        assert problem in str(error)
        assert "topsecret" not in str(error)
        assert len(server.requests) == 1  # the redirect itself, never its target
    assert net.dns.lookups == []
    assert {host for host, _ in net.connections} == {"127.0.0.1"}


# Sizes and types


async def test_a_content_length_over_the_cap_is_refused_before_the_body(
    origin: str, nets: list[Net], tmp_path: Path
) -> None:
    net = Net(trusted=[origin])
    nets.append(net)
    error = await refusal(
        net,
        f"{origin}/huge",
        tmp_path,
        allowed=HostAllowlist("media inputs", origins=[origin]),
        max_bytes=10**6,
    )
    assert error.type == "InputTooLarge"
    assert error.message == (
        f"input {origin}/huge is larger than 1000000 bytes (Content-Length: {10**12})"
    )
    assert not (tmp_path / "spool").exists()


async def test_a_body_without_content_length_is_cut_off_at_the_cap(
    origin: str, nets: list[Net], tmp_path: Path
) -> None:
    net = Net(trusted=[origin])
    nets.append(net)
    error = await refusal(
        net,
        f"{origin}/unsized",
        tmp_path,
        allowed=HostAllowlist("media inputs", origins=[origin]),
        max_bytes=1024 * 1024,
    )
    assert error.type == "InputTooLarge"
    assert "is larger than 1048576 bytes" in str(error)
    assert (tmp_path / "spool").stat().st_size <= 1024 * 1024


async def test_a_page_is_refused_before_anything_is_written(
    origin: str, nets: list[Net], tmp_path: Path
) -> None:
    net = Net(trusted=[origin])
    nets.append(net)
    error = await refusal(
        net,
        f"{origin}/page?{SECRET}",
        tmp_path,
        allowed=HostAllowlist("media inputs", origins=[origin]),
    )
    assert error.type == "DownloadRefused"
    assert error.message == (
        f"download refused: the content is text/html, not a video ({origin}/page)"
    )
    assert not (tmp_path / "spool").exists()


async def test_no_message_shows_a_query_string_or_credentials(
    origin: str, nets: list[Net], tmp_path: Path
) -> None:
    dns = FakeDNS({"private.test": [["10.1.2.3"]]})
    net = Net(trusted=[origin], dns=dns)
    nets.append(net)
    allowed = HostAllowlist("media inputs", ["private.test"], origins=[origin])
    redirect_away = str(
        httpx.URL(f"{origin}/redirect", params={"to": f"https://evil.example/x?{SECRET}"})
    )

    for url in [
        f"https://user:hunter2@evil.example/x.mp4?{SECRET}",  # host
        f"https://private.test/x.mp4?{SECRET}",  # address
        f"{redirect_away}&{SECRET}",  # redirect
        f"{origin}/page?{SECRET}",  # type
        f"{origin}/huge?{SECRET}",  # size
        f"{origin}/missing.mp4?{SECRET}",  # gone
    ]:
        with pytest.raises(ApplicationError) as caught:
            await fetch(net, url, tmp_path, allowed=allowed)
        for secret in ("topsecret", "AKIDEXAMPLE", "hunter2", "user:"):
            assert secret not in str(caught.value), caught.value
    assert redact_url(f"https://u:p@cdn.test:8443/a/b.mp4?{SECRET}#frag") == (
        "https://cdn.test:8443/a/b.mp4"
    )


# The activities and Veo use the same guard


class PublicProvider:
    """Just enough of a Provider for persist: public output URLs, no headers."""

    name = "replicate"

    def download_headers(self, url: str) -> dict[str, str]:
        return {}


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "files", "http://api.test/files")


async def test_persist_stores_an_output_from_an_allowed_origin_and_refuses_other_hosts(
    origin: str, server: _Server, store: LocalStore, nets: list[Net], db: Database
) -> None:
    net = Net(trusted=[origin])
    nets.append(net)
    persist = PersistActivities(
        http=net.http,
        store=store,
        providers={"replicate": PublicProvider()},  # type: ignore[dict-item]
        allowed_hosts={
            "replicate": HostAllowlist("replicate outputs", REPLICATE_HOSTS, origins=[origin])
        },
        max_output_bytes=10**7,
        records=RecordActivities(db=db),
    )

    result = await ActivityEnvironment().run(
        persist.persist, PersistInput("j1", "e1", "replicate", [f"{origin}/real.mp4"])
    )
    (output,) = result.outputs
    assert (output.content_type, output.bytes) == ("video/mp4", len(server.real_video))

    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            persist.persist,
            PersistInput("j2", "e1", "replicate", [f"https://evil.example/out.mp4?{SECRET}"]),
        )
    assert caught.value.type == "DownloadRefused" and caught.value.non_retryable
    assert caught.value.message == (
        "download refused: host evil.example is not allowed for replicate outputs "
        "(https://evil.example/out.mp4)"
    )
    assert not (store.root / "executions" / "e1" / "j2").exists()


async def test_persist_refuses_an_output_that_is_neither_video_nor_image(
    origin: str, store: LocalStore, nets: list[Net], db: Database
) -> None:
    net = Net(trusted=[origin])
    nets.append(net)
    persist = PersistActivities(
        http=net.http,
        store=store,
        providers={"replicate": PublicProvider()},  # type: ignore[dict-item]
        allowed_hosts={"replicate": HostAllowlist("replicate outputs", origins=[origin])},
        max_output_bytes=10**7,
        records=RecordActivities(db=db),
    )
    with pytest.raises(ApplicationError, match="text/html, not a video or an image") as caught:
        await ActivityEnvironment().run(
            persist.persist, PersistInput("j1", "e1", "replicate", [f"{origin}/page"])
        )
    assert caught.value.non_retryable
    assert VIDEO_OR_IMAGE.allows("image/png") and not VIDEO_OR_IMAGE.allows("text/html")


async def test_media_refuses_an_input_at_a_metadata_address_without_connecting(
    store: LocalStore, nets: list[Net]
) -> None:
    net = Net()
    nets.append(net)
    media = MediaActivities(
        http=net.http,
        store=store,
        allowed_hosts=HostAllowlist("media inputs", ["cdn.example"]),
        max_input_bytes=10**7,
    )
    job = MediaJobInput(
        job_record_id="j1",
        execution_id="e1",
        input_urls=["http://169.254.169.254/latest/meta-data/iam/clip.mp4"],
        params={},
    )
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(media.concat, job)

    assert caught.value.type == "DownloadRefused" and caught.value.non_retryable
    assert "169.254.169.254 is a link-local address" in str(caught.value)
    assert net.dns.lookups == [] and net.connections == []


async def test_veo_fetches_its_input_image_through_the_same_guard(
    origin: str, server: _Server, nets: list[Net]
) -> None:
    net = Net(trusted=[origin])
    nets.append(net)
    created: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        created.append(request)
        return httpx.Response(200, json={"name": "models/veo-3.0-generate-001/operations/op1"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(api)) as api_http:
        veo = VeoProvider(
            http=api_http,
            api_base="https://generativelanguage.test",
            api_key="key",
            image_http=net.http,
            image_hosts=HostAllowlist("Veo input images", origins=[origin]),
        )
        await veo.create(
            model_path="veo-3.0-generate-001",
            inputs={"prompt": "x", "image": f"{origin}/image.png"},
            webhook_url=None,
        )
        assert len(created) == 1
        assert server.requests == ["/image.png"]

        metadata = str(
            httpx.URL(
                f"{origin}/redirect", params={"to": "http://169.254.169.254/computeMetadata/v1/"}
            )
        )
        for url, problem in [
            (metadata, "169.254.169.254 is a link-local address"),
            ("https://evil.example/a.png", "host evil.example is not allowed for Veo input"),
        ]:
            with pytest.raises(ProviderRejected, match="input image") as caught:
                await veo.create(
                    model_path="veo-3.0-generate-001",
                    inputs={"prompt": "x", "image": url},
                    webhook_url=None,
                )
            assert problem in str(caught.value)
        assert len(created) == 1  # no generation started with a refused image
