"""Which addresses webhooks may reach: public ones only (no SSRF into the cluster).

A subscriber chooses the URL, and the server POSTs signed events to it, so without a rule
any integrator could make the server talk to its own database port, the cloud metadata
service or anything else on the internal network, and read port states off the errors.

* At subscription: a host that *is* an internal address, in any spelling the resolver
  accepts (``127.1``, ``0x7f000001``, ``2130706433``, ``0177.0.0.1``, ``[::1]``,
  ``[::ffff:127.0.0.1]``, a trailing dot), a local name (``localhost``, ``*.local``...), or a
  name that resolves to one, is refused with 422.
* At delivery: the worker's HTTP client resolves the name once, checks every address, and
  connects to a checked address itself (TLS still verifies the name, the Host header still
  carries it). A name that resolved to a public address at subscription and to an internal
  one later (DNS rebinding) is refused then.
* ``CIVIC_WEBHOOK_ALLOW_HOSTS``: hosts (names or literal addresses, comma-separated) exempt
  from the rule, for receivers on the internal network on purpose (and the tests' receiver
  on 127.0.0.1).

Internal means not globally routable: loopback, private (RFC 1918, ULA), carrier-grade NAT,
link-local, multicast, reserved, unspecified, documentation and benchmark ranges; IPv6
forms that embed an IPv4 address (mapped, 6to4, Teredo, NAT64) are judged by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RESOLVE_TIMEOUT_SECONDS = 2.0
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_LOCAL_SUFFIXES = (".localhost", ".local", ".localdomain", ".internal", ".home.arpa")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(httpcore.ConnectError):
    """The host is, or resolves to, an address webhooks may not reach."""


def normalise_host(host: str) -> str:
    return host.strip().lower().strip("[]").rstrip(".")


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling ``inet_aton`` accepts."""
    host = normalise_host(host)
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone is not an escape
    if ":" in host or not host:
        return None
    try:
        packed = socket.inet_aton(host)  # 127.1, 0x7f000001, 2130706433, 0177.0.0.1
    except OSError:
        return None
    return ipaddress.IPv4Address(packed)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_internal(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_v4(ip)
        if embedded is not None:
            return is_internal(embedded)
    return (
        not ip.is_global
        or ip.is_multicast
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
    )


def is_local_name(host: str) -> bool:
    host = normalise_host(host)
    return host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES)


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressPolicy:
    def __init__(self, allow_hosts: Iterable[str] = (), resolver: Resolver | None = None) -> None:
        self.allow_hosts = frozenset(normalise_host(h) for h in allow_hosts if h.strip())
        self.resolver = resolver or system_resolver

    def allowed(self, host: str) -> bool:
        """Exempt from the rule (``CIVIC_WEBHOOK_ALLOW_HOSTS``)."""
        host = normalise_host(host)
        if host in self.allow_hosts:
            return True
        ip = literal_address(host)
        return ip is not None and str(ip) in self.allow_hosts

    def refuses_literally(self, host: str) -> bool:
        """Internal by its spelling alone (no resolution needed)."""
        if self.allowed(host):
            return False
        ip = literal_address(host)
        return is_local_name(host) if ip is None else is_internal(ip)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to: every address the name has, each checked."""
        ip = literal_address(host)
        if ip is not None:
            if is_internal(ip) and not self.allowed(host):
                raise AddressRefused("the host is an address webhooks may not reach")
            return [str(ip)]
        if is_local_name(host) and not self.allowed(host):
            raise AddressRefused("the host is an address webhooks may not reach")
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            addresses = await self.resolver(normalise_host(host), port)
        if not self.allowed(host) and any(
            is_internal(ipaddress.ip_address(a.split("%", 1)[0])) for a in addresses
        ):
            # all or nothing: a name with one internal address is refused as a whole
            raise AddressRefused("the host resolves to an address webhooks may not reach")
        return addresses

    async def check_url(self, url: str) -> bool:
        """At subscription: False when the URL's host is, or now resolves to, an internal
        address. A name that does not resolve now is accepted (delivery checks again)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if self.refuses_literally(host):
            return False
        if self.allowed(host) or literal_address(host) is not None:
            return True
        try:
            await self.resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        except AddressRefused:
            return False
        except (OSError, TimeoutError, UnicodeError):
            return True
        return True


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy allows, resolving each name exactly once."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.policy.resolve(host, port)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise httpcore.ConnectError("name resolution failed") from exc
        failure: Exception = httpcore.ConnectError("the name has no address")
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("webhooks are delivered over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_transport(policy: AddressPolicy) -> httpx.AsyncHTTPTransport:
    """httpx's transport with its connection pool on the guarded backend (httpx takes no
    network backend of its own; the pool is what its ``handle_async_request`` uses)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        network_backend=GuardedBackend(policy),
    )
    return transport


def refused(exc: BaseException) -> bool:
    """Whether an httpx error came from the policy (not from the network)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AddressRefused):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def redacted(url: str) -> str:
    """A webhook URL fit for a log line: scheme, host, port and path (no query, no
    credentials, no fragment: those may carry secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"
