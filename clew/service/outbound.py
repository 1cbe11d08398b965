"""Outbound HTTP that cannot be pointed at the inside of the network (SSRF).

A webhook URL is chosen by a user, and the deliverer runs next to the database, the object
store and the cloud metadata service. So every destination is checked on the *address clew
actually connects to*: the host is resolved when the connection is opened, every address it
resolves to must be public (not private, loopback, link-local, multicast, reserved,
unspecified, shared or otherwise non-global, IPv4-mapped IPv6 judged by its IPv4 address), and
the socket is opened to that checked address, so DNS answering differently between a check and
the connect (rebinding) changes nothing. Spellings such as ``2130706433``, ``0177.0.0.1``,
``0x7f.1`` or ``127.1`` are resolved by the system exactly as they would be connected to, so
they are judged as the loopback address they are. Redirects are never followed, proxies from
the environment are never used, and a TLS certificate is still checked against the URL's name.

Operators allow inside networks on purpose with ``CLEW_WEBHOOK_ALLOWED_NETWORKS`` (comma-
separated addresses or CIDR networks, e.g. ``10.20.0.0/16``), read at each connect.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from clew.errors import InvalidInputError

ALLOWED_ENV = "CLEW_WEBHOOK_ALLOWED_NETWORKS"
MAX_URL_LENGTH = 2000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedDestination(httpcore.ConnectError):
    """A connection refused before it was opened: the address is not public and not allowed."""


@dataclass(frozen=True)
class AllowList:
    """Inside networks an operator lets webhooks reach; empty (the default) allows none."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        networks = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise InvalidInputError(
                    f"{ALLOWED_ENV} entry {item!r} is not an address or network; write e.g. "
                    "10.20.0.0/16 or 127.0.0.1."
                ) from None
        return cls(tuple(networks))

    @classmethod
    def from_environment(cls) -> AllowList:
        return cls.parse(os.environ.get(ALLOWED_ENV, ""))

    def allows(self, address: IPAddress) -> bool:
        return any(
            address in network for network in self.networks if network.version == address.version
        )


def refusal(address: IPAddress, allowed: AllowList) -> str | None:
    """Why ``address`` may not be connected to (a short phrase), or None when it may."""
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    judged: IPAddress = mapped or address
    if allowed.allows(address) or allowed.allows(judged):
        return None
    for what, flagged in (
        ("an unspecified", judged.is_unspecified),
        ("a loopback", judged.is_loopback),
        ("a link-local", judged.is_link_local),
        ("a multicast", judged.is_multicast),
        ("a reserved", judged.is_reserved),
        ("a private", judged.is_private),
    ):
        if flagged:
            return f"{what} address" + (f" (IPv4-mapped {mapped})" if mapped else "")
    return None if judged.is_global else "a non-public address"


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, as the system resolves it for a connect."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise httpcore.ConnectError(f"{host} does not resolve ({error})") from None
    return list(
        dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found)
    )


def check_destination(host: str, port: int, allowed: AllowList) -> list[IPAddress]:
    """The addresses of ``host``, all of them public or allowed; else ``RefusedDestination``."""
    addresses = resolve(host, port)
    for address in addresses:
        why = refusal(address, allowed)
        if why is not None:
            raise RefusedDestination(
                f"{host} resolves to {address}, {why}; clew sends webhooks to public addresses "
                f"only unless {ALLOWED_ENV} allows it"
            )
    return addresses


def check_url(url: str, allowed: AllowList) -> str:
    """``url`` as it will be called, refused in one sentence unless it is an http(s) URL without
    credentials whose host resolves to public (or allowed) addresses only."""
    parsed = _parse(url)
    try:
        check_destination(parsed.host, parsed.port or _default_port(parsed), allowed)
    except httpcore.ConnectError as error:
        raise InvalidInputError(f"webhook URL {url} is refused: {error}.") from None
    return str(parsed)


def client(allowed: AllowList | None = None, timeout_s: float = 10.0) -> httpx.Client:
    """An ``httpx.Client`` whose every connection is checked and pinned (see the module), that
    follows no redirect and ignores proxy settings in the environment."""
    return httpx.Client(
        transport=PinnedTransport(allowed),
        follow_redirects=False,
        trust_env=False,
        timeout=timeout_s,
    )


class PinnedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, resolving and checking the host itself, then connecting to
    the checked address (the allow-list is read per connect when none is given)."""

    def __init__(self, allowed: AllowList | None = None) -> None:
        self._allowed = allowed

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        allowed = self._allowed if self._allowed is not None else AllowList.from_environment()
        failure: httpcore.ConnectError | None = None
        for address in check_destination(host, port, allowed):
            try:
                return super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as error:
                failure = error
        raise failure or httpcore.ConnectError(f"{host} has no address")


class PinnedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` over ``PinnedBackend``: TLS still verifies the URL's host name,
    since httpcore hands that name (not the pinned address) to the TLS handshake."""

    def __init__(self, allowed: AllowList | None = None) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=20,
            max_keepalive_connections=5,
            network_backend=PinnedBackend(allowed),
        )


def _parse(url: str) -> httpx.URL:
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise InvalidInputError(
            f"a webhook URL must be text of at most {MAX_URL_LENGTH} characters."
        )
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise InvalidInputError(f"webhook URL {url!r} does not parse ({error}).") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInputError(
            f"webhook URL {url!r} must be an http:// or https:// URL with a host."
        )
    if parsed.userinfo:
        raise InvalidInputError(
            "a webhook URL may not carry a user name or password (clew lists URLs to admins); "
            "check the Clew-Signature header in the receiver instead."
        )
    if parsed.fragment:
        raise InvalidInputError(f"webhook URL {url!r} may not have a #fragment.")
    return parsed


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80
