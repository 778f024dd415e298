"""Which webhook targets are allowed, checked when a subscription is saved and again at
every connect: https to public addresses only, unless the allowlist says otherwise.

The dispatcher resolves a target's name itself, checks every address it got and
connects to the checked one (TLS still verifies the certificate against the
name), so a DNS answer that changes between the check and the connect (DNS
rebinding) cannot point a delivery inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from classifier.config import ClassifierSettings
from classifier.errors import ClassifierError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
RESOLVE_TIMEOUT_SECONDS = 5.0


class TargetRefused(ClassifierError):
    status = 422
    slug = "webhook-target-refused"
    title = "This webhook target is not allowed"


@dataclass(frozen=True)
class TargetPolicy:
    """The allowlist: names and networks that may be private or loopback, and use http."""

    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]
    allow_private: bool

    @classmethod
    def of(cls, settings: ClassifierSettings) -> TargetPolicy:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for item in (p.strip().lower() for p in settings.webhook_allow_hosts.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.rstrip("."))
        return cls(frozenset(hosts), tuple(networks), settings.webhook_allow_private)

    def listed(self, host: str, address: IPAddress | None = None) -> bool:
        """The host name, or the address it resolved to, is on the allowlist."""
        if host.lower().rstrip(".") in self.hosts:
            return True
        return address is not None and any(address in n for n in self.networks)

    def check_url(self, url: str) -> tuple[str, str, int]:
        """(scheme, host, port) of an acceptable URL; TargetRefused naming the reason."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise TargetRefused(f"not a valid URL: {exc}") from exc
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("https", "http") or not host:
            raise TargetRefused("the URL must be https://host/...")
        if parts.username or parts.password:
            raise TargetRefused("the URL must not carry credentials; deliveries are signed")
        literal = _literal(host)
        if parts.scheme == "http" and not self.listed(host, literal):
            raise TargetRefused("only https targets are allowed (CLASSIFIER_WEBHOOK_ALLOW_HOSTS)")
        if literal is not None:
            self.check_address(host, literal)
        elif _local_name(host) and not self.listed(host):
            raise TargetRefused(f"{host} is a local name (CLASSIFIER_WEBHOOK_ALLOW_HOSTS)")
        return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)

    def check_address(self, host: str, address: IPAddress) -> None:
        """Refuse an address inside (loopback, link-local, private, reserved, ...) unless
        the host or address is allowlisted, or it is private and private is allowed."""
        if self.listed(host, address):
            return
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        inside = not address.is_global or address.is_multicast
        if not inside:
            return
        plain_private = address.is_private and not (
            address.is_loopback
            or address.is_link_local
            or address.is_reserved
            or address.is_unspecified
        )
        if plain_private and self.allow_private:
            return
        raise TargetRefused(
            f"{host} is (or resolves to) {address}, not a public address "
            "(CLASSIFIER_WEBHOOK_ALLOW_HOSTS, CLASSIFIER_WEBHOOK_ALLOW_PRIVATE)"
        )

    async def resolve(self, host: str, port: int) -> IPAddress:
        """The first address of `host`, every address it resolved to checked."""
        literal = _literal(host)
        if literal is not None:
            self.check_address(host, literal)
            return literal
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise TargetRefused(f"{host} does not resolve ({exc or 'timed out'})") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise TargetRefused(f"{host} does not resolve")
        for address in addresses:  # any inside address: the name is not trusted at all
            self.check_address(host, address)
        return addresses[0]


def _local_name(host: str) -> bool:
    return host == "localhost" or host.endswith((".localhost", ".local", ".internal"))


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that resolves and checks the host, then connects to that address.

    The request keeps its Host header and (for https) names the host in SNI and
    certificate verification, so only where the socket goes changes.
    """

    def __init__(self, policy: TargetPolicy, **transport: Any) -> None:
        self._policy = policy
        self._inner = httpx.AsyncHTTPTransport(**transport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        if request.url.scheme != "https" and not self._policy.listed(host, _literal(host)):
            raise TargetRefused("only https targets are allowed")
        address = await self._policy.resolve(host, port)
        request.url = request.url.copy_with(host=str(address))
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
