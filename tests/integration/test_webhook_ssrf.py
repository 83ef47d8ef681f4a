"""Webhooks reach public addresses only (issue #13, item 2: SSRF).

Refused at subscription in every spelling, refused again at delivery on the address
actually connected (DNS rebinding), errors that do not tell open from closed ports, and
webhook URLs kept out of the logs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import httpx
import pytest

from infra.logging import configure_logging
from services.webhooks.addresses import (
    AddressPolicy,
    guarded_transport,
    literal_address,
    redacted,
    refused,
)
from services.webhooks.delivery import NO_ANSWER
from tests.integration.test_webhooks import SECRET, Receiver, serve_receiver
from tests.reliability import assert_problem, extra_app
from tests.support import auth, build_tree, post_ok

INTERNAL = [
    "http://127.0.0.1:5432/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hook",
    "http://localhost:8000/hook",
    "http://LOCALHOST./hook",
    "http://api.localhost/hook",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://0x7f000001:5432/",
    "http://0x7f.1/",
    "http://127.1:5432/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://127.0.0.1./",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[::]/",
    "http://0.0.0.0:8000/",
    "http://0/",
    "http://10.0.0.5/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://198.18.0.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "https://192.0.2.10/hook",
]


async def test_internal_addresses_are_refused_in_every_spelling(
    client: Any, jwt: Any, ctx: Any
) -> None:
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    integrator = auth(jwt, tree.county, "integrator")
    async with extra_app(ctx) as api:  # no CIVIC_WEBHOOK_ALLOW_HOSTS here
        details = set()
        for url in INTERNAL:
            r = await api.post(
                "/v1/webhooks", json={"url": url, "secret": SECRET}, headers=integrator
            )
            body = assert_problem(r, 422, where=url)
            assert body["errors"][0]["field"] == "url"
            details.add(body["detail"])
        # one text whatever the address, open port or closed: nothing to probe with
        assert len(details) == 1
        # public addresses are accepted (nothing is connected to at subscription)
        for url in ("https://93.184.215.14/hook?token=abc", "https://[2606:4700::1111]/hook"):
            r = await api.post(
                "/v1/webhooks", json={"url": url, "secret": SECRET}, headers=integrator
            )
            assert r.status_code == 201, (url, r.text)


async def test_allow_hosts_lets_a_named_internal_host_through(
    client: Any, jwt: Any, ctx: Any
) -> None:
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    integrator = auth(jwt, tree.county, "integrator")
    async with extra_app(ctx, webhook_allow_hosts=("hooks.corp", "10.1.2.3")) as api:
        for url, status in (
            ("http://10.1.2.3:8080/x", 201),
            ("http://hooks.corp./x", 201),
            ("http://10.1.2.4:8080/x", 422),
        ):
            r = await api.post(
                "/v1/webhooks", json={"url": url, "secret": SECRET}, headers=integrator
            )
            assert r.status_code == status, (url, r.text)


def test_literal_spellings() -> None:
    for spelling in ("127.1", "0x7f000001", "2130706433", "0177.0.0.1", "127.0.0.1.", "[::1]"):
        ip = literal_address(spelling)
        assert ip is not None and ip.is_loopback, spelling
    assert literal_address("example.org") is None


def test_urls_in_logs_lose_query_and_credentials() -> None:
    assert redacted("https://u:p@hooks.example.org:8443/in?token=s3cret#x") == (
        "https://hooks.example.org:8443/in"
    )
    configure_logging("DEBUG")
    try:
        assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    finally:
        configure_logging("WARNING")


async def test_delivery_checks_the_address_it_connects_to() -> None:
    """DNS rebinding: a name that resolves to a loopback address at delivery time is not
    connected to; allowed, the request goes to the resolved address under the name."""
    receiver = Receiver(fail_first=0)
    async with serve_receiver(receiver) as base:
        port = int(base.rsplit(":", 1)[1])

        async def rebinding(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]

        url = f"http://hooks.rebind.example:{port}/hook"
        guarded = httpx.AsyncClient(transport=guarded_transport(AddressPolicy(resolver=rebinding)))
        async with guarded:
            with pytest.raises(httpx.ConnectError) as caught:
                await guarded.post(url, content=b"{}")
            assert refused(caught.value)
        assert receiver.hits == []

        allowed = AddressPolicy(["hooks.rebind.example"], resolver=rebinding)
        async with httpx.AsyncClient(transport=guarded_transport(allowed)) as client:
            r = await client.post(
                url,
                content=b'{"type":"x"}',
                headers={"x-civic-event-id": "1", "x-civic-timestamp": str(int(time.time()))},
            )
        assert r.status_code == 401  # reached (unsigned), by the resolved address
        assert receiver.hits[0].headers["host"] == f"hooks.rebind.example:{port}"


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


async def test_last_error_does_not_tell_open_from_closed_ports(
    client: Any, jwt: Any, ctx: Any
) -> None:
    tree = await build_tree(client, jwt, streets=1, communities=1, units=0)
    admin = auth(jwt, tree.county, "admin")
    # a port that is open but speaks no HTTP, and one that is closed
    silent = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    open_port = silent.sockets[0].getsockname()[1]
    try:
        ids = []
        for port in (open_port, _closed_port()):
            created = await post_ok(
                client,
                "/v1/webhooks",
                {"url": f"http://127.0.0.1:{port}/hook", "secret": SECRET},
                admin,
            )
            ids.append(created["id"])
        await post_ok(
            client,
            "/v1/nodes",
            {
                "code": f"U{tree.county[:6]}777",
                "name": "新局",
                "kind": "unit",
                "parent_code": tree.county,
            },
            admin,
        )
        errors: dict[str, str | None] = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(errors) < 2:
            for wid in ids:
                r = await client.get(f"/v1/webhooks/{wid}", headers=admin)
                if r.json()["last_error"]:
                    errors[wid] = r.json()["last_error"]
            await asyncio.sleep(0.2)
    finally:
        for wid in ids:
            await client.delete(f"/v1/webhooks/{wid}", headers=admin)
        silent.close()
    assert list(errors.values()) == [NO_ANSWER, NO_ANSWER], errors
