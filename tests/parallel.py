"""Requests that really run at the same time against a test application.

Litestar's ``AsyncTestClient`` runs the app on a blocking portal (its own thread and event
loop) and each request blocks the caller until it is answered, so ``asyncio.gather`` over
its calls runs them one after another. These helpers send each request from a thread of
their own; the app's loop then serves them concurrently, as a server would.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="parallel-http")


def send(client: Any, method: str, url: str, **kwargs: Any) -> asyncio.Future[httpx.Response]:
    """Start one request now; await the result later (``asyncio.gather`` them)."""
    request = client.build_request(method, url, **kwargs)

    def run() -> httpx.Response:
        response: httpx.Response = client._transport.handle_request(request)
        response.read()
        return response

    return asyncio.get_running_loop().run_in_executor(_THREADS, run)
