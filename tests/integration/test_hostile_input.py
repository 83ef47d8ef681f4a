"""Hostile input: every bad request gets a clear 4xx problem+json, never a 5xx (issue 7).

Endpoints are discovered from the served OpenAPI document, so a new endpoint is covered by
the generic tests here (bodies, path codes, query values, page sizes) without edits.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any
from urllib.parse import quote

import asyncpg
import msgspec
import pytest

from infra import directory
from services.ratelimit import TokenBuckets
from tests.reliability import (
    PROBLEM_JSON,
    assert_problem,
    extra_app,
    fill_path,
    is_api,
    operations,
    query_defaults,
    scratch_database,
    stuck_projections,
    workflow_bodies,
    workflow_paths,
)
from tests.support import Tree, auth, build_tree, fresh_county_code, post_ok

pytestmark = pytest.mark.fuzz


@pytest.fixture(scope="module")
async def doc(client: Any) -> dict[str, Any]:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200, r.text[:2000]
    return dict(r.json())


@pytest.fixture(scope="module")
async def tree(client: Any, jwt: Any) -> Tree:
    return await build_tree(client, jwt, streets=2, communities=2, units=1)


def not_5xx(r: Any, where: str) -> None:
    assert r.status_code < 500, f"{where}: {r.status_code} {r.text[:500]}"
    if r.status_code >= 400:
        assert_problem(r, where=where)


class Findings:
    """Collects every failed expectation of a sweep, so one run reports all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.checked = 0

    def check(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        self.checked += 1
        try:
            fn(*args, **kwargs)
        except AssertionError as exc:
            self.failures.append(str(exc).splitlines()[0][:400])

    def assert_none(self) -> None:
        assert self.checked > 0
        assert not self.failures, f"{len(self.failures)} of {self.checked}:\n" + "\n".join(
            self.failures
        )


# -- sizes -----------------------------------------------------------------------------


async def test_body_over_the_limit_is_413_problem(client: Any, jwt: Any, ctx: Any, tree: Tree):
    admin = auth(jwt, tree.county, "admin")
    limit = ctx.settings.max_body_bytes
    body = b'{"code":"' + b"9" * (limit + 10) + b'"}'
    r = await client.post(
        "/v1/nodes", content=body, headers={**admin, "content-type": "application/json"}
    )
    assert_problem(r, 413)


async def asgi_request(
    app: Any, method: str, path: str, headers: dict[str, str], chunks: list[bytes]
) -> tuple[int, dict[str, str], bytes]:
    """Call the ASGI app directly: the body arrives in ``chunks`` with no Content-Length."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": True} for c in chunks
    ]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the app must not wait for more than was sent
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await asyncio.wait_for(app(scope, receive, send), 30)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return (
        start["status"],
        {k.decode().lower(): v.decode() for k, v in start["headers"]},
        body,
    )


async def test_chunked_body_without_content_length_is_413_problem(
    app: Any, jwt: Any, ctx: Any, tree: Tree
):
    admin = auth(jwt, tree.county, "admin")
    limit = ctx.settings.max_body_bytes
    chunks = [b'{"code":"'] + [b"9" * 65536] * (limit // 65536 + 2) + [b'"}']
    status, headers, body = await asgi_request(
        app,
        "POST",
        "/v1/nodes",
        {**admin, "content-type": "application/json", "transfer-encoding": "chunked"},
        chunks,
    )
    assert status == 413, body[:300]
    assert headers["content-type"].startswith(PROBLEM_JSON)
    problem = msgspec.json.decode(body)
    assert problem["status"] == 413 and problem["detail"]


async def test_page_size_over_500_is_400_on_every_list(client: Any, jwt: Any, doc: Any, tree: Tree):
    admin = auth(jwt, tree.county, "admin")
    lists = [op for op in operations(doc, "GET") if is_api(op) and op.query("limit")]
    assert lists, "no list endpoint with ?limit= in the OpenAPI document"
    for op in lists:
        url = fill_path(op.path, tree.county)
        for bad in ("501", "0", "-1", "99999999999999999999999", "ten", "1.5"):
            params = {**query_defaults(op, tree.county), "limit": bad}
            r = await client.get(url, params=params, headers=admin)
            assert_problem(r, 400, where=f"{op} limit={bad}")
        ok = await client.get(
            url, params={**query_defaults(op, tree.county), "limit": "500"}, headers=admin
        )
        not_5xx(ok, f"{op} limit=500")


# -- bodies ----------------------------------------------------------------------------

DEEP = 50_000

HOSTILE_BODIES: dict[str, bytes] = {
    "deep object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep array": b"[" * DEEP + b"]" * DEEP,
    "deep value": b'{"name":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "invalid utf-8": b'{"code":"\xff\xfe\xc0\xaf","name":"\xed\xa0\x80"}',
    "truncated": b'{"code":"33010',
    "not an object": b"[1,2,3]",
    "null": b"null",
    "empty": b"",
    "unknown fields": b'{"__proto__":{"admin":true},"zzz_unknown":1,"constructor":null}',
    "absurd numbers": b'{"code":1e999,"name":-99999999999999999999999999999,"kind":NaN}',
    "nul in strings": b'{"code":"\\u0000","name":"a\\u0000b","reason":"\\u0000"}',
    "lone surrogate": b'{"code":"\\ud800","name":"\\udfff"}',
    "duplicate keys": b'{"code":"1","code":"2","code":{"x":1}}',
}


async def test_every_post_rejects_hostile_bodies(client: Any, jwt: Any, doc: Any, tree: Tree):
    admin = auth(jwt, tree.county, "admin")
    posts = [op for op in operations(doc, "POST") if is_api(op) and op.has_body]
    assert any(op.path == "/v1/nodes" for op in posts)
    target = tree.communities[tree.streets[1]][1]  # nothing here may change it
    found = Findings()
    for op in posts:
        url = fill_path(op.path, target)
        for name, body in HOSTILE_BODIES.items():
            r = await client.post(
                url,
                content=body,
                headers={
                    **admin,
                    "content-type": "application/json",
                    "idempotency-key": uuid.uuid4().hex,
                },
            )
            found.check(assert_problem, r, where=f"{op} with {name}")
    found.assert_none()
    r = await client.get(f"/v1/nodes/{target}", headers=admin)
    assert r.status_code == 200 and r.json()["version"] == 1, r.text


async def test_wrong_content_type_is_4xx(client: Any, jwt: Any, tree: Tree):
    """A body that is valid JSON for the endpoint is still refused when it is not sent as
    JSON; the control request proves the body itself would be accepted."""
    admin = auth(jwt, tree.county, "admin")
    community = tree.communities[tree.streets[0]][0]

    def body(n: int) -> bytes:
        return json.dumps(
            {
                "code": f"{community}G{n:02d}",
                "name": "网格",
                "kind": "grid",
                "parent_code": community,
            }
        ).encode()

    ctypes = (
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    )
    for n, ctype in enumerate(ctypes, start=1):
        r = await client.post(
            "/v1/nodes", content=body(n), headers={**admin, "content-type": ctype}
        )
        assert 400 <= r.status_code < 500, (ctype, r.status_code, r.text)
        assert_problem(r, where=f"content-type {ctype}")
        r = await client.get(f"/v1/nodes/{community}G{n:02d}", headers=admin)
        assert r.status_code == 404, (ctype, "the node was registered anyway", r.text)
    control = await client.post(
        "/v1/nodes", content=body(99), headers={**admin, "content-type": "application/json"}
    )
    assert control.status_code == 201, control.text


# -- paths -----------------------------------------------------------------------------

HOSTILE_CODES = [
    "..",
    "%2e%2e",
    "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "..%5C..%5Cwindows",
    "%C0%AE%C0%AE",  # overlong UTF-8 for ".."
    "%00",
    "330106000000%00",
    "a%00b",
    "%FF%FE",
    "%ED%A0%80",  # an encoded surrogate: not UTF-8
    quote("' OR '1'='1"),
    quote("1; DROP TABLE events; --"),
    quote("330106000000' --"),
    quote("%"),
    quote("_"),
    "x" * 5000,
    quote("北山社区"),
    "%20",
]


async def test_hostile_codes_in_paths_are_4xx(client: Any, jwt: Any, doc: Any, tree: Tree):
    admin = auth(jwt, tree.county, "admin")
    coded = [
        op
        for op in operations(doc)
        if is_api(op) and any("code" in p for p in op.path_params) and op.method in ("GET", "POST")
    ]
    assert coded, "no endpoint takes a code in its path"
    found = Findings()
    for op in coded:
        for code in HOSTILE_CODES:
            url = fill_path(op.path, code)
            if op.method == "GET":
                r = await client.get(url, headers=admin)
            else:
                r = await client.post(url, json={"reason": "x", "name": "x"}, headers=admin)
            found.check(assert_problem, r, where=f"{op} code={code[:40]}")
    found.assert_none()


async def test_hostile_ids_in_paths_are_4xx(client: Any, jwt: Any, doc: Any, tree: Tree):
    admin = auth(jwt, tree.county, "admin")
    with_ids = [
        op
        for op in operations(doc)
        if is_api(op)
        and op.method in ("GET", "POST", "DELETE")
        and any("code" not in p for p in op.path_params)
    ]
    found = Findings()
    for op in with_ids:
        for ident in ("not-a-uuid", "%00", "..%2F..", "0" * 300, str(uuid.uuid4()), "-1"):
            url = fill_path(op.path, tree.county, ident=ident)
            r = await client.request(op.method, url, json={}, headers=admin)
            found.check(assert_problem, r, where=f"{op} id={ident}")
    found.assert_none()


# -- query values ------------------------------------------------------------------------

INTEGERS = ["-1", "-9223372036854775809", "9223372036854775808", "1e9999", "NaN", "0x10", "١٢"]
DATES = ["0001-01-01", "9999-12-31", "-5000-01-01", "2025-13-45", "99999-01-01", "2025-02-30"]
DATETIMES = [
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2025-01-01T25:61:61Z",
    "not a time",
    "2025-01-01T00:00:00+99:00",
]
STRINGS = ["' OR 1=1 --", "\x00", "%", "_", "x" * 5000, "北山", "\ud800"]


def _query_values(param: dict[str, Any]) -> list[str]:
    schema = param.get("schema", {})
    variants = [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]
    kinds: set[str] = set()
    for v in variants:
        t = v.get("type")
        kinds.update(t if isinstance(t, list) else [t] if t else [])
    formats = {v.get("format") for v in variants}
    if "integer" in kinds or "number" in kinds:
        return INTEGERS
    if "date" in formats:
        return DATES
    if "date-time" in formats:
        return DATETIMES
    if "boolean" in kinds:
        return ["maybe", "2", ""]
    return STRINGS


async def test_hostile_query_values_are_never_5xx(client: Any, jwt: Any, doc: Any, tree: Tree):
    admin = auth(jwt, tree.county, "admin")
    found = Findings()
    for op in operations(doc, "GET"):
        if not is_api(op):
            continue
        url = fill_path(op.path, tree.county)
        base = query_defaults(op, tree.county)
        for param in op.params:
            if param.get("in") != "query" or param["name"] == "min_position":
                continue  # min_position: its own test (a large valid one waits 5 s)
            for value in _query_values(param):
                safe = value.encode("utf-8", "surrogatepass").decode("latin-1")
                r = await client.get(url, params={**base, param["name"]: safe}, headers=admin)
                found.check(not_5xx, r, f"{op} ?{param['name']}={value[:30]!r}")
    found.assert_none()


async def test_absurd_min_position_is_400(client: Any, jwt: Any, doc: Any, tree: Tree):
    admin = auth(jwt, tree.county, "admin")
    for op in operations(doc, "GET"):
        if not is_api(op) or not op.query("min_position"):
            continue
        url = fill_path(op.path, tree.county)
        for bad in ("-1", "9223372036854775808", "1" * 40, "abc"):
            r = await client.get(
                url, params={**query_defaults(op, tree.county), "min_position": bad}, headers=admin
            )
            assert_problem(r, 400, where=f"{op} min_position={bad}")


async def test_feed_cursor_and_headers_out_of_range(client: Any, jwt: Any, tree: Tree):
    admin = auth(jwt, tree.county, "admin")
    for after in ("-1", "9223372036854775808", "1" * 40):
        r = await client.get("/v1/feed", params={"after": after}, headers=admin)
        assert_problem(r, 400, where=f"feed after={after}")
    r = await client.get("/v1/feed", params={"after": "9223372036854775807"}, headers=admin)
    assert r.status_code == 200 and r.json()["items"] == [], r.text
    for bad in ("abc", "-5", "1" * 40):
        r = await client.get(
            "/v1/feed", headers={**admin, "accept": "text/event-stream", "last-event-id": bad}
        )
        assert_problem(r, 400, where=f"Last-Event-ID {bad}")


async def test_bad_command_headers_are_400(client: Any, jwt: Any, tree: Tree):
    admin = auth(jwt, tree.county, "admin")
    body = {"name": "改名"}
    url = f"/v1/nodes/{tree.streets[0]}/rename"
    r = await client.post(url, json=body, headers={**admin, "idempotency-key": "k" * 201})
    assert_problem(r, 400)
    r = await client.post(url, json=body, headers={**admin, "if-match": '"one"'})
    assert_problem(r, 400)
    r = await client.post(url, json=body, headers={**admin, "if-match": '"' + "9" * 40 + '"'})
    assert_problem(r, 412)
    r = await client.post(
        url, json=body, headers={**admin, "x-correlation-id": "'; DROP TABLE events; --"}
    )
    assert r.status_code == 200, r.text


# -- values that look dangerous are just data ----------------------------------------------


async def test_sql_looking_names_are_stored_verbatim(client: Any, jwt: Any, tree: Tree):
    admin = auth(jwt, tree.county, "admin")
    community = tree.communities[tree.streets[0]][0]
    for i, name in enumerate(
        ["Robert'); DROP TABLE events;--", "' OR '1'='1", "$1 $$ \\x00 %s %n", "<script>x</script>"]
    ):
        code = f"G{community}-{i}"
        r = await client.post(
            "/v1/nodes",
            json={"code": code, "name": name, "kind": "grid", "parent_code": community},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        got = await client.get(
            f"/v1/nodes/{code}?min_position={r.json()['position']}", headers=admin
        )
        assert got.status_code == 200 and got.json()["name"] == name, got.text


async def test_unknown_fields_and_wrong_types_are_400(client: Any, jwt: Any, tree: Tree):
    admin = auth(jwt, tree.county, "admin")
    community = tree.communities[tree.streets[0]][0]
    good = {"code": f"G{community}-9", "name": "网格", "kind": "grid", "parent_code": community}
    for bad in (
        {**good, "root_id": str(uuid.uuid4())},
        {**good, "name": 5},
        {**good, "name": ""},
        {**good, "name": "名" * 201},
        {**good, "code": None},
        {**good, "kind": ["grid"]},
    ):
        r = await client.post("/v1/nodes", json=bad, headers=admin)
        body = assert_problem(r, 400, 422)
        assert body.get("errors") or body["detail"]


# -- database errors -------------------------------------------------------------------------


async def test_cancelled_query_is_503_problem(
    client: Any, jwt: Any, ctx: Any, tree: Tree, monkeypatch
):
    async def slow(conn: asyncpg.Connection, code: str) -> Any:
        await conn.execute("SELECT pg_sleep(5)")
        raise AssertionError("the statement timeout did not fire")

    async with extra_app(ctx, statement_timeout_ms=200) as slow_client:
        monkeypatch.setattr(directory, "find_by_code", slow)
        r = await slow_client.get(
            f"/v1/nodes/{tree.county}", headers=auth(jwt, tree.county, "viewer")
        )
    body = assert_problem(r, 503)
    assert "cancel" in body["detail"] and int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        FileNotFoundError(2, "No such file or directory: '/tmp/.s.PGSQL.5432'"),
        TimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CrashShutdownError("terminating connection because of crash of another process"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.ConnectionFailureError("connection failure"),
        asyncpg.InterfaceError("pool is closing"),
        asyncpg.InterfaceError("cannot call Connection.fetchrow(): connection is closed"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_database_away_errors_are_503_problem(
    client: Any, jwt: Any, tree: Tree, monkeypatch, error: Exception
):
    async def away(conn: asyncpg.Connection, code: str) -> Any:
        raise error

    monkeypatch.setattr(directory, "find_by_code", away)
    r = await client.get(f"/v1/nodes/{tree.county}", headers=auth(jwt, tree.county, "viewer"))
    assert_problem(r, 503)
    assert int(r.headers["retry-after"]) >= 1


async def test_ready_is_503_without_a_pool_and_200_with_it(client: Any, ctx: Any):
    pool = ctx.pool
    try:
        ctx.pool = None
        r = await client.get("/health/ready")
        assert r.status_code == 503 and r.headers.get("retry-after"), r.text
        r = await client.get("/v1/nodes/000000000000", headers={"authorization": "Bearer x"})
        assert r.status_code == 401  # authentication comes first
    finally:
        ctx.pool = pool
    assert (await client.get("/health/ready")).status_code == 200


# -- rate limiting ---------------------------------------------------------------------------


def test_token_buckets_refill_and_isolate_keys():
    now = [0.0]
    buckets = TokenBuckets(60, capacity=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("a")
    assert 0.9 < wait <= 1.0  # 60 a minute: one a second
    assert buckets.take("b") == 0.0  # other principals have their own bucket
    now[0] += 1.0
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0.0
    many = TokenBuckets(60, capacity=1, clock=lambda: now[0], max_keys=10)
    for i in range(50):
        assert many.take(f"k{i}") == 0.0
    assert len(many._buckets) <= 10


async def test_rate_limit_is_per_principal_with_retry_after(ctx: Any, jwt: Any, tree: Tree):
    viewer = auth(jwt, tree.county, "viewer", sub="limited")
    other_scope = auth(jwt, tree.streets[0], "viewer", sub="limited")
    other_sub = auth(jwt, tree.county, "viewer", sub="someone-else")
    url = f"/v1/nodes/{tree.county}"
    async with extra_app(ctx, rate_limit_per_minute=5) as limited:
        statuses = [(await limited.get(url, headers=viewer)).status_code for _ in range(5)]
        assert statuses == [200] * 5
        r = await limited.get(url, headers=viewer)
        body = assert_problem(r, 429)
        assert body["type"].endswith("/rate-limited")
        assert 1 <= int(r.headers["retry-after"]) <= 12
        # a freshly signed token of the same principal shares the bucket
        again = auth(jwt, tree.county, "viewer", sub="limited")
        assert (await limited.get(url, headers=again)).status_code in (200, 429)
        # other principals are not affected, nor are unauthenticated requests counted
        street = f"/v1/nodes/{tree.streets[0]}"
        assert (await limited.get(street, headers=other_scope)).status_code == 200
        assert (await limited.get(url, headers=other_sub)).status_code == 200
        assert (await limited.get(url)).status_code == 401
        assert (await limited.get("/health/live")).status_code == 200
        # a forged token naming the principal does not drain its bucket either
        forged = {"authorization": "Bearer " + "e30.eyJzdWIiOiJvdGhlciJ9.sig"}
        for _ in range(10):
            assert (await limited.get(url, headers=forged)).status_code == 401


async def test_rate_limit_zero_turns_it_off(ctx: Any, jwt: Any, tree: Tree):
    viewer = auth(jwt, tree.county, "viewer", sub="unlimited")
    async with extra_app(ctx, rate_limit_per_minute=0) as unlimited:
        results = await asyncio.gather(
            *(unlimited.get("/health/live", headers=viewer) for _ in range(30))
        )
        assert {r.status_code for r in results} == {200}


async def test_limits_of_a_fresh_tenant_do_not_leak_statuses(client: Any, jwt: Any):
    """A root code that is not registered yet answers 401 (scope missing), never 5xx."""
    county = fresh_county_code()
    r = await client.get(f"/v1/nodes/{county}", headers=auth(jwt, county, "admin"))
    assert_problem(r, 401)
    await post_ok(
        client,
        "/v1/nodes",
        {"code": county, "name": "区", "kind": "county", "parent_code": None},
        auth(jwt, county, "admin"),
    )
    assert r.headers["content-type"].startswith(PROBLEM_JSON)


async def test_far_dates_and_absurd_numbers_in_workflow_bodies(
    server_url: str, ctx: Any, jwt: Any, doc: Any
):
    """Valid workflow bodies with one field made extreme: a 2xx or a 4xx, never a 5xx, and
    nothing accepted may stop a projection (a poison event halts it for every tenant).

    Runs on a scratch database with its own projector, so a poison event found here does not
    take the session's read models down with it.
    """
    async with (
        scratch_database(server_url) as url,
        extra_app(ctx, database_url=url, run_projector=True, rate_limit_per_minute=0) as client,
    ):
        tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
        found = await _far_values(client, jwt, doc, tree)
        stuck = await stuck_projections(url)
    found.assert_none()
    assert not stuck, f"accepted input that a projection cannot apply (poison): {stuck}"


async def _far_values(client: Any, jwt: Any, doc: Any, tree: Tree) -> Findings:
    admin = auth(jwt, tree.county, "admin")
    community = tree.communities[tree.streets[0]][0]
    paths = workflow_paths(doc)
    extremes: dict[str, list[Any]] = {
        "date": ["0001-01-01", "9999-12-31", "1900-02-29", "2024-02-30", "-0001-01-01"],
        "datetime": [
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-12:00",
            "0001-01-01T00:00:00+14:00",
            "2025-01-01T00:00:00",  # no offset
        ],
        "number": [-1, 0, -(2**63), 2**63, 10**30, 1e308, -1e308, 0.5],
    }
    found = Findings()
    for n, path in enumerate(paths):
        body = workflow_bodies(community, tree.units[0], 1 + n)[path]
        fields = {"due_at": "datetime", "starts_on": "date", "ends_on": "date", "due_on": "date"}
        candidates = [(k, kind) for k, kind in fields.items() if k in body]
        candidates.append(("phone", "number"))
        if path == "/v1/issues":
            candidates.append(("due_at", "datetime"))
        for key, kind in candidates:
            for value in extremes[kind]:
                r = await client.post(path, json={**body, key: value}, headers=admin)
                found.check(not_5xx, r, f"POST {path} {key}={value!r}")
    # numbers in the follow-up commands of whatever aggregates exist
    for op in operations(doc, "POST"):
        if not is_api(op) or not op.has_body or "code" in op.path:
            continue
        url = fill_path(op.path, community)
        for value in extremes["number"]:
            for key in ("delta", "hours", "index", "respond_within_minutes", "rating"):
                r = await client.post(url, json={key: value}, headers=admin)
                found.check(not_5xx, r, f"POST {op.path} {key}={value!r}")
    found.checked += 1  # nothing to send when no workflow endpoint exists yet
    return found
