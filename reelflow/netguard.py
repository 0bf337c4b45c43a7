"""The guard in front of every URL reelflow downloads on someone else's say-so.

Provider outputs, media inputs taken from a user's plan and Veo's input image are URLs reelflow
did not choose. Fetching one must not reach the worker's own network (a cloud metadata service,
a database, the API's internal routes), must not wander off to arbitrary hosts, and must not
fill the disk. Every such fetch goes through this module, which checks three times:

1. Before the first request, `HostAllowlist.check`: http(s) only; the URL must match one of the
   purpose's rules; a literal IP address must be public.
2. At every redirect hop, `open_checked` (which follows redirects itself, at most
   `MAX_REDIRECTS`): the same check on the new URL.
3. At connection time, in the client `guarded_client` builds: the host is resolved once, every
   address it resolves to must be public, and the connection goes to an address that was just
   checked. Checking and connecting use the same lookup, so a DNS answer that changes between a
   check and a connect (DNS rebinding) cannot reach a private address.

Rules come in two forms:

- Host rules, e.g. `replicate.delivery`, `*.fal.media` (subdomains only, not the apex) or
  `storage.googleapis.com/falserverless/` (with a path prefix): https on port 443 only, and only
  ever to public addresses.
- Origin rules, e.g. `http://127.0.0.1:3001` or `http://127.0.0.1:3000/files/`: one exact
  scheme, host and port (and optional path prefix). They are the only way to allow plain http or
  a private address, which is what the provider emulator in dev and tests needs; production keeps
  none but the object store's own public base.

Sizes and content types are checked as early as the response allows: a `Content-Length` over the
cap is refused before the body is read (`open_checked`), a body that grows past it while streaming
is cut off (`iter_capped`), and a `Content-Type` can be checked against `ContentTypes` before
anything is written (`check_content_type`).

Every refusal raises `DownloadRefused`, whose message names the rule that was broken and the URL
without its query string or credentials (`redact_url`): a presigned URL's signature is in its
query, and messages end up in logs, Temporal history and the status API.
"""

from __future__ import annotations

import ipaddress
import mimetypes
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx

__all__ = [
    "IMAGE",
    "MAX_REDIRECTS",
    "VIDEO",
    "VIDEO_OR_IMAGE",
    "ContentTypes",
    "DownloadRefused",
    "GuardedNetworkBackend",
    "HeadersFor",
    "HostAllowlist",
    "Resolver",
    "address_problem",
    "check_content_type",
    "content_type_of",
    "guarded_client",
    "iter_capped",
    "open_checked",
    "redact_url",
    "split_list",
]

MAX_REDIRECTS: Final = 5
"""Redirect hops followed before giving up."""

READ_BYTES: Final = 1024 * 1024
"""Most bytes one read of a guarded connection takes from its socket buffer: httpcore asks for
64 KiB at a time, and at that size its per-read overhead, not the network, bounds a big
download."""

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_MAX_SHOWN_URL: Final = 300
# Percent-encoded dots and slashes in a path could climb out of a path prefix on a server that
# decodes them; a path-prefixed rule does not match such a path.
_ENCODED_TRAVERSAL: Final = re.compile(r"%2e|%2f|%5c|\\", re.IGNORECASE)

Rule = Literal["url", "host", "address", "redirect", "redirects", "size", "type"]
"""Which rule a refused download broke:

- `url`: not an http(s) URL, malformed, or plain http to a host that is only allowed over https
- `host`: the host (or path) is not on the allowlist
- `address`: the host is, or resolves to, an address that is not public
- `redirect`: a redirect points somewhere the first URL could not have gone
- `redirects`: more than `MAX_REDIRECTS` redirects
- `size`: the body is larger than the cap
- `type`: the content type is not one the caller accepts
"""

HeadersFor = Callable[[str], Mapping[str, str]]
"""Headers to send to a URL (a provider's `download_headers`), asked again at every hop."""

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves a host name and port to IP addresses (strings), like `getaddrinfo`."""


class DownloadRefused(Exception):
    """A download broke the policy: the host, an address, a redirect, the size or the type.

    Retrying cannot help. `str()` is the full message, e.g. `download refused: host evil.example
    is not allowed for replicate outputs (https://evil.example/out.mp4)`.
    """

    def __init__(self, reason: str, *, rule: Rule, url: str = "") -> None:
        """Create the error.

        Args:
            reason: What was wrong, e.g. `10.0.0.5 is a private address`.
            rule: Which rule was broken.
            url: The URL concerned, already passed through `redact_url` ("" if not known).
        """
        self.reason = reason
        """What was wrong, without the URL."""
        self.rule: Rule = rule
        """Which rule was broken."""
        self.url = url
        """The URL concerned, without query string or credentials ("" if not known)."""
        super().__init__(f"download refused: {reason}" + (f" ({url})" if url else ""))

    def at(self, url: str) -> DownloadRefused:
        """The same refusal, naming `url` (redacted here) if it names no URL yet."""
        if self.url:
            return self
        return DownloadRefused(self.reason, rule=self.rule, url=redact_url(url))


def redact_url(url: str) -> str:
    """`url` without credentials, query string or fragment, shortened: safe for messages.

    Presigned URLs carry their signature in the query string, and a URL may carry a password in
    its userinfo; neither may reach logs, Temporal history or API responses.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.netloc.rpartition("@")[2]
    shown = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path
    if len(shown) > _MAX_SHOWN_URL:
        shown = shown[: _MAX_SHOWN_URL - 1] + "…"
    return shown


def split_list(text: str) -> list[str]:
    """The entries of a comma- or whitespace-separated setting, e.g. `"a.test, *.b.test"`."""
    return [entry for entry in re.split(r"[,\s]+", text) if entry]


# Addresses


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of non-public address `address` is (`"private"`, …), or None if it is public.

    IPv6 addresses that embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, 6to4 `2002::/16`,
    NAT64 `64:ff9b::/96`) are judged by the IPv4 address they lead to.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_problem(embedded)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# Allowlists


@dataclass(frozen=True)
class _Rule:
    origin: bool
    """An origin rule (exact scheme and port, may be private) rather than a host rule."""
    scheme: str
    host: str
    """Lowercase, without a trailing dot; for a wildcard, the suffix after `*.`."""
    wildcard: bool
    port: int
    path: str
    """Path prefix ending in `/`; `/` matches every path."""

    def matches_name(self, host: str) -> bool:
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host

    def matches_path(self, raw_path: str) -> bool:
        if self.path == "/":
            return True
        return raw_path.startswith(self.path) and not _ENCODED_TRAVERSAL.search(raw_path)

    def __str__(self) -> str:
        host = f"*.{self.host}" if self.wildcard else self.host
        if ":" in host:
            host = f"[{host}]"
        if self.origin:
            return f"{self.scheme}://{host}:{self.port}{self.path}"
        return host + (self.path if self.path != "/" else "")


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".")


def _path_prefix(path: str) -> str:
    if not path:
        return "/"
    return path if path.endswith("/") else path + "/"


def _host_rule(entry: str) -> _Rule:
    """`host`, `*.host`, `[v6]` or `1.2.3.4`, optionally followed by a path prefix."""
    if "://" in entry:
        raise ValueError(
            f"{entry!r} is an origin, not a host: exact origins (which may use http or a private "
            "address) are allowed with DOWNLOAD_ALLOWED_ORIGINS"
        )
    host, slash, path = entry.partition("/")
    wildcard = host.startswith("*.")
    name = host[2:] if wildcard else host
    if name.startswith("[") and name.endswith("]") and not wildcard:
        name = name[1:-1]
        if not isinstance(_ip(name), ipaddress.IPv6Address):
            raise ValueError(f"{entry!r} is not a valid IPv6 address")
    elif not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?", name):
        raise ValueError(
            f"{entry!r} is not a host name: expected e.g. cdn.example.com or *.example.com, "
            "with no port (host entries mean https on port 443)"
        )
    if wildcard and "." not in name.rstrip("."):
        raise ValueError(f"{entry!r} is too broad: a wildcard needs a domain with a dot")
    return _Rule(
        origin=False,
        scheme="https",
        host=_normal_host(name),
        wildcard=wildcard,
        port=443,
        path=_path_prefix(slash + path),
    )


def _origin_rule(entry: str) -> _Rule:
    """`scheme://host[:port][/path/prefix/]`."""
    try:
        parts = urlsplit(entry)
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{entry!r} is not an origin: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{entry!r} is not an origin: expected e.g. http://127.0.0.1:3001")
    if parts.username is not None or parts.query or parts.fragment or "*" in parts.hostname:
        raise ValueError(
            f"{entry!r} is not an origin: no credentials, query, fragment or wildcard allowed"
        )
    return _Rule(
        origin=True,
        scheme=scheme,
        host=_normal_host(parts.hostname),
        wildcard=False,
        port=port or _DEFAULT_PORTS[scheme],
        path=_path_prefix(parts.path),
    )


class HostAllowlist:
    """Where one kind of download may fetch from.

    Args:
        purpose: What the downloads are, for messages: `replicate outputs`, `media inputs`.
        hosts: Host rules: `host`, `*.host` (subdomains only), optionally with a path prefix
            (`storage.googleapis.com/falserverless/`). They match https on port 443 only, and
            the guarded client connects to them only at public addresses.
        origins: Origin rules: `scheme://host[:port][/path/]`. The exact origin may be reached
            over http and at a private address (e.g. the emulator on 127.0.0.1 in dev).

    Raises:
        ValueError: an entry is malformed, or a host entry is an origin (or the other way round).
    """

    def __init__(self, purpose: str, hosts: Iterable[str] = (), *, origins: Iterable[str] = ()):
        self.purpose = purpose
        """What the downloads are, for messages."""
        self._hosts = tuple(_host_rule(entry.strip()) for entry in hosts if entry.strip())
        self._origins = tuple(_origin_rule(entry.strip()) for entry in origins if entry.strip())
        self._any_host = False

    @classmethod
    def any_host(cls, purpose: str) -> HostAllowlist:
        """An allowlist of every https host on port 443, for callers given no allowlist.

        Only the scheme, the port and literal addresses are checked here; whether a host name
        resolves to a public address is up to the client (`guarded_client` checks it).
        """
        allowlist = cls(purpose)
        allowlist._any_host = True
        return allowlist

    def __repr__(self) -> str:
        rules = ", ".join(str(rule) for rule in (*self._hosts, *self._origins))
        if self._any_host:
            rules = "any https host"
        return f"HostAllowlist({self.purpose!r}: {rules or 'nothing'})"

    def check(self, url: str) -> None:
        """Refuse `url` unless this allowlist allows it.

        Only what the URL itself shows is checked: a literal IP address must be public (unless
        its exact origin is allowed), but a host name is resolved and checked by the guarded
        client when it connects.

        Raises:
            DownloadRefused: the URL is not an http(s) URL (`url`), uses http where https is
                required (`url`), is a non-public literal address (`address`) or matches no rule
                (`host`).
        """
        shown = redact_url(url)
        try:
            parsed = httpx.URL(url)
            raw_host = parsed.raw_host.decode("ascii")
        except (httpx.InvalidURL, UnicodeDecodeError):
            raise DownloadRefused("not a valid URL", rule="url", url=shown) from None
        scheme = parsed.scheme
        if scheme not in _DEFAULT_PORTS or not raw_host:
            raise DownloadRefused(
                f"only http and https URLs can be downloaded, not {scheme or 'a relative URL'}",
                rule="url",
                url=shown,
            )
        host = _normal_host(raw_host)
        port = parsed.port or _DEFAULT_PORTS[scheme]
        raw_path = parsed.raw_path.decode("ascii").partition("?")[0] or "/"
        for rule in self._origins:
            exact = rule.scheme == scheme and rule.port == port and rule.matches_name(host)
            if exact and rule.matches_path(raw_path):
                return
        address = _ip(host)
        problem = address_problem(address) if address is not None else None
        if problem is not None:
            raise DownloadRefused(f"{host} is {_a(problem)} address", rule="address", url=shown)
        if not self._any_host:
            named = [rule for rule in self._hosts if rule.matches_name(host)]
            if not named:
                raise DownloadRefused(
                    f"host {host} is not allowed for {self.purpose}", rule="host", url=shown
                )
            if not any(rule.matches_path(raw_path) for rule in named):
                raise DownloadRefused(
                    f"the path {raw_path} on {host} is not allowed for {self.purpose}",
                    rule="host",
                    url=shown,
                )
        if scheme != "https" or port != 443:
            raise DownloadRefused(
                f"{host} is allowed for {self.purpose} over https on port 443 only",
                rule="url",
                url=shown,
            )


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


# Content types


@dataclass(frozen=True)
class ContentTypes:
    """The content types a kind of download accepts, by MIME type prefix."""

    description: str
    """How messages name them: `a video`."""
    prefixes: tuple[str, ...]
    """Accepted prefixes, e.g. `("video/",)`."""

    def allows(self, content_type: str) -> bool:
        """Whether `content_type` (a bare MIME type) is acceptable."""
        return content_type.startswith(self.prefixes)


VIDEO: Final = ContentTypes("a video", ("video/",))
"""Media inputs: concat and thumbnail take videos."""
IMAGE: Final = ContentTypes("an image", ("image/",))
"""Veo's input image."""
VIDEO_OR_IMAGE: Final = ContentTypes("a video or an image", ("video/", "image/"))
"""Provider outputs."""


def content_type_of(response: httpx.Response, url: str) -> str:
    """The body's MIME type: the declared one, else (when missing or `application/octet-stream`)
    guessed from the extension of the final URL's path, or of `url`'s."""
    declared = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream":
        return declared
    for candidate in (str(response.url), url):
        guessed, _ = mimetypes.guess_type(urlsplit(candidate).path)
        if guessed:
            return guessed
    return "application/octet-stream"


def check_content_type(response: httpx.Response, url: str, accept: ContentTypes) -> str:
    """The body's MIME type (see `content_type_of`), if `accept` allows it.

    Raises:
        DownloadRefused: the type is not acceptable (`type`).
    """
    content_type = content_type_of(response, url)
    if not accept.allows(content_type):
        raise DownloadRefused(
            f"the content is {content_type}, not {accept.description}",
            rule="type",
            url=redact_url(url),
        )
    return content_type


# Requests


def _no_headers(url: str) -> Mapping[str, str]:
    return {}


@asynccontextmanager
async def open_checked(
    http: httpx.AsyncClient,
    url: str,
    *,
    allowed: HostAllowlist,
    max_bytes: int,
    headers_for: HeadersFor = _no_headers,
) -> AsyncIterator[httpx.Response]:
    """GET `url`, following redirects within `allowed`, and yield the final streamed response.

    Each hop is checked against `allowed` before it is requested and gets only the headers
    `headers_for` gives for its own URL (httpx would carry custom headers, such as Veo's API key,
    across a redirect to another host). A successful final response whose `Content-Length` is
    over `max_bytes` is refused before its body is read. The status is not checked otherwise:
    callers map 4xx and 5xx to their own errors.

    Args:
        http: The client; use `guarded_client` so connections are checked too.
        url: What to fetch.
        allowed: Where this kind of download may go.
        max_bytes: Bodies larger than this are refused.
        headers_for: Headers for each hop's URL.

    Raises:
        DownloadRefused: a URL, redirect, address or the declared size broke the policy.
        httpx.HTTPError: the request failed (network, timeout, protocol).
    """
    allowed.check(url)
    current = url
    response: httpx.Response | None = None
    for _ in range(MAX_REDIRECTS + 1):
        request = http.build_request("GET", current, headers=headers_for(current))
        try:
            response = await http.send(request, stream=True, follow_redirects=False)
        except DownloadRefused as refused:
            raise refused.at(current) from None
        if not response.is_redirect:
            break
        await response.aclose()
        try:
            target = str(response.url.join(response.headers["location"]))
        except httpx.InvalidURL:
            raise DownloadRefused(
                "redirect to an invalid URL", rule="redirect", url=redact_url(current)
            ) from None
        try:
            allowed.check(target)
        except DownloadRefused as refused:
            raise DownloadRefused(
                f"redirect to {redact_url(target)} leaves the allowed hosts for "
                f"{allowed.purpose}: {refused.reason}",
                rule="redirect",
                url=redact_url(current),
            ) from None
        current = target
        response = None
    if response is None:
        raise DownloadRefused(
            f"more than {MAX_REDIRECTS} redirects", rule="redirects", url=redact_url(url)
        )
    try:
        declared = _content_length(response)
        if response.is_success and declared is not None and declared > max_bytes:
            raise DownloadRefused(
                f"larger than {max_bytes} bytes (Content-Length: {declared})",
                rule="size",
                url=redact_url(url),
            )
        yield response
    finally:
        await response.aclose()


def _content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def iter_capped(
    response: httpx.Response, *, max_bytes: int, url: str
) -> AsyncIterator[bytes]:
    """The (decoded) body of `response` in chunks as they arrive, refused once it grows
    past `max_bytes` (so a missing or false `Content-Length`, or a compression bomb, cannot
    fill the disk).

    Raises:
        DownloadRefused: the body is larger than `max_bytes` (`size`).
        httpx.HTTPError: reading failed.
    """
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise DownloadRefused(
                f"larger than {max_bytes} bytes", rule="size", url=redact_url(url)
            )
        yield chunk


# The client


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _BulkReads(httpcore.AsyncNetworkStream):
    """A connection whose reads take up to `READ_BYTES` of what the socket has buffered."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max(max_bytes, READ_BYTES), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _BulkReads(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to public addresses.

    `connect_tcp` resolves the host once, refuses if any of its addresses is not public, and
    connects to those very addresses (by IP, so the inner backend does no lookup of its own).
    TLS is unaffected: httpcore still verifies the certificate against the URL's host name.
    Hosts and ports of `trusted_origins` are connected to as they are, private or not.

    Args:
        trusted_origins: Origins (`scheme://host:port`, a path is ignored) whose connections
            may go to private addresses.
        resolve: The resolver; `anyio.getaddrinfo` by default (tests pass a fake).
        inner: The backend that makes the connections; httpcore's AnyIO backend by default.
    """

    def __init__(
        self,
        *,
        trusted_origins: Iterable[str] = (),
        resolve: Resolver = _getaddrinfo,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._trusted = frozenset(
            (rule.host, rule.port) for rule in map(_origin_rule, trusted_origins)
        )
        self._resolve = resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve, check, then connect to a checked address.

        Raises:
            DownloadRefused: the host is, or resolves to, an address that is not public.
            httpcore.ConnectError: the name does not resolve, or no address accepts.
            httpcore.ConnectTimeout: resolving or connecting took longer than `timeout`.
        """
        if (_normal_host(host), port) in self._trusted:
            return _BulkReads(
                await self._inner.connect_tcp(
                    host,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            )
        addresses = await self._lookup(host, port, timeout)
        for address in addresses:
            problem = address_problem(ipaddress.ip_address(address))
            if problem is not None:
                said = f"{host} is" if address == host else f"{host} resolves to {address},"
                raise DownloadRefused(f"{said} {_a(problem)} address", rule="address")
        error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return _BulkReads(
                    await self._inner.connect_tcp(
                        address,
                        port,
                        timeout=timeout,
                        local_address=local_address,
                        socket_options=socket_options,
                    )
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as failed:
                error = failed
        raise error

    async def _lookup(self, host: str, port: int, timeout: float | None) -> list[str]:
        try:
            with anyio.fail_after(timeout):
                return [address.partition("%")[0] for address in await self._resolve(host, port)]
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as error:
            raise httpcore.ConnectError(f"{host} does not resolve: {error}") from None

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refuse: downloads never go to a Unix socket."""
        raise DownloadRefused("Unix sockets are not allowed", rule="address")

    async def sleep(self, seconds: float) -> None:
        """Sleep with the inner backend."""
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with its connection pool rebuilt around a guarded backend."""

    def __init__(self, network: httpcore.AsyncNetworkBackend) -> None:
        super().__init__(trust_env=False)
        # httpx offers no way to give its pool a network backend, so the pool it built is
        # replaced by one like it (httpx's default limits) that has ours. No proxy, ever: a
        # proxy would make the connection, and the address checks would see only the proxy.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=network,
        )


def guarded_client(
    *,
    trusted_origins: Iterable[str] = (),
    timeout: float | httpx.Timeout = 30.0,
    network: GuardedNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """An HTTP client for downloads: it connects only to public addresses (see
    `GuardedNetworkBackend`), never follows redirects by itself, ignores proxy environment
    variables and does not retry (Temporal does).

    Args:
        trusted_origins: Origins whose connections may go to private addresses, e.g. the
            emulator's `http://127.0.0.1:3001`; give the same ones to the `HostAllowlist`s.
        timeout: httpx timeouts.
        network: A backend to use instead of one built from `trusted_origins` (for tests).
    """
    if network is None:
        network = GuardedNetworkBackend(trusted_origins=trusted_origins)
    elif trusted_origins:
        raise ValueError("give trusted_origins to the network backend, not to both")
    return httpx.AsyncClient(
        transport=_GuardedTransport(network),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
