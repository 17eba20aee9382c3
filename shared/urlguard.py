"""Which webhook URLs the service may call (SSRF guard): https only, and never a name that resolves
to loopback, private, link-local, metadata or other non-public addresses, unless a setting lists it.

Checked when an endpoint is registered and again before every delivery attempt, whose connection
then goes to exactly the addresses checked (worker/webhooks.py), because DNS can change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from yarl import URL

from shared.errors import BadRequest
from shared.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2000


class UrlRefused(BadRequest):
    """An endpoint URL the service will not call; the message says why."""


async def resolve(host: str, port: int) -> list[str]:
    """The addresses a name resolves to now (tests replace this to stand in for DNS)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def endpoint_url(raw: str, settings: Settings) -> URL:
    """The URL, when its form is one the service may call: https (http only by setting), a host,
    no credentials in it."""
    if len(raw) > MAX_URL_LENGTH:
        raise UrlRefused(f"url longer than {MAX_URL_LENGTH} characters")
    try:
        url = URL(raw)
    except (ValueError, TypeError) as err:
        raise UrlRefused(f"not a URL: {err}") from err
    allowed = ("https", "http") if settings.webhook_allow_http else ("https",)
    if url.scheme not in allowed:
        raise UrlRefused(f"url must use {' or '.join(allowed)}")
    if not url.host or url.user is not None or url.password is not None:
        raise UrlRefused("url must name a host and carry no credentials")
    if url.port is None:
        raise UrlRefused("url has no port")
    return url


def _allowed(settings: Settings) -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names, networks = set(), []
    for part in (p.strip() for p in settings.webhook_allowed_hosts.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            names.add(part.lower().rstrip("."))
    return names, networks


def refusal(address: str, settings: Settings) -> str | None:
    """Why the service must not connect to this address (None: it may)."""
    ip: IpAddress = ipaddress.ip_address(address.split("%", 1)[0])
    _, networks = _allowed(settings)
    if any(ip in network for network in networks):
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    checked = mapped or ip
    if checked.is_loopback:
        return f"{address} is a loopback address"
    if checked.is_link_local:
        return f"{address} is link-local (cloud metadata lives there)"
    if checked.is_private:
        return f"{address} is a private address"
    if not checked.is_global or checked.is_multicast:
        return f"{address} is not a public address"
    return None


async def checked_addresses(url: URL, settings: Settings) -> list[str]:
    """The addresses the URL's host resolves to, all of them allowed; else UrlRefused."""
    host, port = url.host or "", url.port or 443
    names, _ = _allowed(settings)
    try:
        addresses = [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        try:
            addresses = await resolve(host, port)
        except OSError as err:
            raise UrlRefused(f"{host} does not resolve: {err}") from err
    if not addresses:
        raise UrlRefused(f"{host} does not resolve")
    if host.lower().rstrip(".") in names:
        return addresses
    for address in addresses:
        reason = refusal(address, settings)
        if reason is not None:
            raise UrlRefused(f"{host} is refused: {reason}")
    return addresses
