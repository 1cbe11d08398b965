"""Outbound requests cannot reach inside addresses: checked on the address connected to.

The receiver is a real ``http.server`` on 127.0.0.1. Each spelling of that address must be
refused when the connection is opened, before any byte reaches it; DNS answering a public
address when a subscription is made and 127.0.0.1 when its delivery connects (rebinding) must
not get through; an allowed name must be connected to at exactly the address that was checked.
Name resolution is the system's own, except where a test makes a name resolve differently on
purpose, by wrapping ``socket.getaddrinfo`` for that one made-up name.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_webhooks import Receiver, run_receiver

from clew.errors import InvalidInputError
from clew.service import outbound
from clew.service.outbound import AllowList

pytestmark = pytest.mark.backend_independent
NOTHING_ALLOWED = AllowList()
LOOPBACK_ALLOWED = AllowList.parse("127.0.0.1/32")
REFUSED = r"address( \(IPv4-mapped 127\.0\.0\.1\))?; clew sends webhooks to public addresses"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver on 127.0.0.1; no allow-list unless the test passes one."""
    yield from run_receiver()


def resolving(monkeypatch: pytest.MonkeyPatch, name: str, *answers: str) -> list[str]:
    """Make ``name`` resolve to ``answers`` in turn (the last one from then on); every other
    name resolves as usual. Returns the log of lookups of ``name``."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        address = answers[min(len(lookups), len(answers) - 1)]
        lookups.append(address)
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "a loopback address"),
        ("0.0.0.0", "an unspecified address"),
        ("10.0.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("192.168.0.1", "a private address"),
        ("100.64.0.1", "a non-public address"),
        ("169.254.169.254", "a link-local address"),
        ("224.0.0.251", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("::1", "a loopback address"),
        ("::", "an unspecified address"),
        ("fe80::1", "a link-local address"),
        ("fc00::1", "a private address"),
        ("ff02::1", "a multicast address"),
        ("::ffff:127.0.0.1", "a loopback address (IPv4-mapped 127.0.0.1)"),
        ("::ffff:169.254.169.254", "a link-local address (IPv4-mapped 169.254.169.254)"),
    ],
)
def test_inside_addresses_are_refused_and_public_ones_are_not(address: str, why: str) -> None:
    assert outbound.refusal(ipaddress.ip_address(address), NOTHING_ALLOWED) == why
    for public in ("93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"):
        assert outbound.refusal(ipaddress.ip_address(public), NOTHING_ALLOWED) is None


def test_the_allow_list_opens_exactly_its_networks() -> None:
    allowed = AllowList.parse(" 10.20.0.0/16, 127.0.0.1 ,fd00::/8")
    assert outbound.refusal(ipaddress.ip_address("10.20.3.4"), allowed) is None
    assert outbound.refusal(ipaddress.ip_address("::ffff:10.20.3.4"), allowed) is None
    assert outbound.refusal(ipaddress.ip_address("fd12::1"), allowed) is None
    assert outbound.refusal(ipaddress.ip_address("10.21.0.1"), allowed) == "a private address"
    assert outbound.refusal(ipaddress.ip_address("127.0.0.2"), allowed) == "a loopback address"
    with pytest.raises(InvalidInputError, match=r"entry .10\.0\.0\.0/33. is not an address"):
        AllowList.parse("10.0.0.0/33")


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "127.1", "127.0.1", "0"]
)
def test_every_spelling_of_loopback_is_refused_at_connect_time(
    receiver: Receiver, host: str
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    with (
        outbound.client(NOTHING_ALLOWED) as http,
        pytest.raises(httpx.ConnectError, match="clew sends webhooks to public addresses only"),
    ):
        http.post(f"http://{host}:{port}/hook", content=b"{}")
    assert receiver.received == []


def test_ipv6_loopback_and_mapped_addresses_are_refused_at_connect_time() -> None:
    for url in ("http://[::1]:9/", "http://[::ffff:127.0.0.1]:9/", "http://[fe80::1]:9/"):
        with (
            outbound.client(NOTHING_ALLOWED) as http,
            pytest.raises(httpx.ConnectError, match=REFUSED),
        ):
            http.get(url)


def test_an_octal_address_is_refused_as_a_url_that_does_not_parse() -> None:
    with pytest.raises(InvalidInputError, match="does not parse"):
        outbound.check_url("http://0177.0.0.1/hook", NOTHING_ALLOWED)


def test_dns_rebinding_between_the_check_and_the_connect_gets_nowhere(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """Public when the URL is checked, loopback when the delivery connects: refused at the
    connect, on the address it would have reached."""
    port = receiver.url.rsplit(":", 1)[1]
    lookups = resolving(monkeypatch, "hooks.rebind.test", "93.184.216.34", "127.0.0.1")
    url = f"http://hooks.rebind.test:{port}/hook"
    assert outbound.check_url(url, NOTHING_ALLOWED) == url
    with (
        outbound.client(NOTHING_ALLOWED) as http,
        pytest.raises(httpx.ConnectError, match=r"resolves to 127\.0\.0\.1, a loopback address"),
    ):
        http.post(url, content=b"{}")
    assert lookups == ["93.184.216.34", "127.0.0.1"] and receiver.received == []


def test_a_name_resolving_to_one_inside_address_among_public_ones_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = socket.getaddrinfo

    def two_answers(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "mixed.test":
            return real(host, port, *args, **kwargs)
        return real("93.184.216.34", port, *args, **kwargs) + real("10.0.0.8", port)

    monkeypatch.setattr(socket, "getaddrinfo", two_answers)
    with pytest.raises(InvalidInputError, match=r"resolves to 10\.0\.0\.8, a private address"):
        outbound.check_url("https://mixed.test/hook", NOTHING_ALLOWED)


def test_the_connection_goes_to_the_checked_address_with_the_names_host_header(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    lookups = resolving(monkeypatch, "hooks.pinned.test", "127.0.0.1")
    with outbound.client(LOOPBACK_ALLOWED) as http:
        assert http.post(f"http://hooks.pinned.test:{port}/hook", content=b"{}").status_code == 200
    (item,) = receiver.received
    assert item.headers["Host"] == f"hooks.pinned.test:{port}" and lookups == ["127.0.0.1"]


def test_environment_proxies_are_not_used(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """A proxy would connect for clew, past every check: outbound requests ignore them."""
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.setenv("ALL_PROXY", "http://10.9.9.9:3128")
    with outbound.client(LOOPBACK_ALLOWED) as http:
        assert http.post(f"{receiver.url}/hook", content=b"{}").status_code == 200
    assert len(receiver.received) == 1
