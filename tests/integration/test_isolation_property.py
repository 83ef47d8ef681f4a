"""Tenant isolation, property-based (issue 7).

Hypothesis builds random small hierarchies with workflow aggregates in them (whichever of
pairings, issues, members and findings the served document has), picks random principals
(scope, role) and sends random requests to every GET operation of the OpenAPI document,
codes and ids drawn from this tenant, a foreign tenant and nowhere. Every code and id found
in a response body (JSON, CSV, XLSX, also inside strings such as CloudEvent sources) must be
one the principal may see:

* nodes of its subtree and the ancestors on its path;
* aggregates owned by a node of its subtree, and whatever their events name (an assignee
  unit elsewhere in the tenant, the community of a pairing);
* for a unit principal, also the aggregates that name a unit of its subtree (API.md).

Counts are bounded by what exists in the subtree (nothing foreign is counted). The same
requests then run against a build whose application-level subtree checks are bypassed (the
scope handed to the handlers covers everything), so row-level security alone must keep
foreign rows out; raw queries in a scoped transaction check every RLS table directly.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import re
import sys
import uuid
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from infra import database
from infra.database import scoped_transaction
from tests.reliability import (
    fill_path,
    is_api,
    long_or,
    operations,
    workflow_bodies,
    workflow_paths,
)
from tests.support import Tree, build_tree, fresh_county_code, post_ok, token

pytestmark = pytest.mark.fuzz

EXAMPLES = long_or(4, 40)
STATUSES: Counter[int] = Counter()  # over the module, printed by the last test
REQUESTS = long_or(30, 120)
ROLES = ("viewer", "operator", "unit", "inspector", "admin", "integrator")
STATS_BOUNDS = {
    "pairings": ("active", "pairing"),
    "members": ("registered", "member"),
    "issues": ("reported", "issue"),
    "rectifications": ("total", "finding"),
    "service_orders": ("requested", "service_order"),
    "surveys": ("households_visited", "survey"),
}
_TOKEN = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]*")


def tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(text))


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    id: str
    code: str
    root: str
    path: str
    kind: str

    @property
    def ancestors(self) -> list[str]:
        return [p for p in self.path.strip("/").split("/") if p]


@dataclasses.dataclass
class Universe:
    """Everything of the tenants under test, read from the store (system connection)."""

    nodes: dict[str, NodeInfo]  # by id
    streams: dict[str, tuple[str, str]]  # stream id → (owner node id, stream type)
    parties: dict[str, set[str]]  # stream id → party node ids
    mentions: dict[str, set[str]]  # stream id → tokens of its events' data

    @property
    def by_code(self) -> dict[str, NodeInfo]:
        return {n.code: n for n in self.nodes.values()}

    @property
    def all_tokens(self) -> set[str]:
        return set(self.nodes) | {n.code for n in self.nodes.values()} | set(self.streams)

    def subtree(self, node: NodeInfo) -> list[NodeInfo]:
        return [n for n in self.nodes.values() if n.path.startswith(node.path)]

    def allowed(self, scope_code: str) -> set[str]:
        scope = self.by_code[scope_code]
        inside = {n.id for n in self.subtree(scope)}
        visible_nodes = inside | set(scope.ancestors)
        streams = {s for s, (owner, _) in self.streams.items() if owner in inside}
        if scope.kind == "unit":
            party = {s for s, nodes in self.parties.items() if nodes & inside}
            streams |= party
            for s in party:  # the party stream's place in the tenant comes with it
                owner = self.nodes.get(self.streams[s][0]) if s in self.streams else None
                if owner is not None:
                    visible_nodes |= {owner.id, *owner.ancestors}
        allowed = set(visible_nodes) | streams
        allowed |= {self.nodes[i].code for i in visible_nodes if i in self.nodes}
        for s in streams:
            allowed |= self.mentions.get(s, set())
        return allowed

    def count_in_subtree(self, code: str, stream_type: str) -> int:
        node = self.by_code.get(code)
        if node is None:
            return 0
        inside = {n.id for n in self.subtree(node)}
        return sum(1 for owner, t in self.streams.values() if owner in inside and t == stream_type)


async def load_universe(pool: Any, roots: list[str]) -> Universe:
    async with pool.acquire() as conn:
        root_ids = [
            r["id"] for r in await conn.fetch("SELECT id FROM nodes WHERE code = ANY($1)", roots)
        ]
        rows = await conn.fetch(
            "SELECT id, code, root_id, path, kind FROM nodes WHERE root_id = ANY($1)", root_ids
        )
        nodes = {
            str(r["id"]): NodeInfo(str(r["id"]), r["code"], str(r["root_id"]), r["path"], r["kind"])
            for r in rows
        }
        events = await conn.fetch(
            "SELECT stream_id, node_id, stream_type, data::text AS data FROM events"
            " WHERE root_id = ANY($1)",
            root_ids,
        )
        party_rows = await conn.fetch(
            "SELECT stream_id, node_id FROM stream_parties WHERE root_id = ANY($1)", root_ids
        )
    streams: dict[str, tuple[str, str]] = {}
    mentions: dict[str, set[str]] = {}
    for e in events:
        sid = str(e["stream_id"])
        streams.setdefault(sid, (str(e["node_id"]), e["stream_type"]))
        found = mentions.setdefault(sid, set())
        for text in _strings(msgspec.json.decode(e["data"])):
            found |= tokens(text)
    parties: dict[str, set[str]] = {}
    for p in party_rows:
        parties.setdefault(str(p["stream_id"]), set()).add(str(p["node_id"]))
    return Universe(nodes, streams, parties, mentions)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def body_text(response: Any) -> str:
    """All text of a response body: JSON strings, CSV cells, the XML inside an XLSX."""
    content = bytes(response.content)
    if content.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            return "\n".join(
                z.read(n).decode("utf-8", "replace") for n in z.namelist() if n.endswith(".xml")
            )
    text = content.decode("utf-8", "replace")
    ctype = response.headers.get("content-type", "")
    if "json" in ctype:
        with contextlib.suppress(ValueError):
            return "\n".join(_strings(msgspec.json.decode(content)))
    if "csv" in ctype:
        return "\n".join(",".join(row) for row in csv.reader(io.StringIO(text)))
    return text


# -- building random tenants -------------------------------------------------------------

shapes = st.fixed_dictionaries(
    {
        "streets": st.lists(st.integers(0, 3), min_size=1, max_size=3),
        "units": st.integers(1, 2),
        "street_unit": st.booleans(),
        "grid": st.booleans(),
        "workflows": st.integers(0, 3).map(lambda n: n > 0),  # mostly with aggregates
    }
)


async def build_random(client: Any, jwt: Any, doc: dict[str, Any], shape: dict[str, Any]) -> Tree:
    county = fresh_county_code()
    admin = {"Authorization": f"Bearer {token(jwt, county, 'admin', sub='builder')}"}
    tree = Tree(county=county)

    async def node(code: str, kind: str, parent: str | None) -> None:
        r = await post_ok(
            client,
            "/v1/nodes",
            {"code": code, "name": f"{kind}{code[-4:]}", "kind": kind, "parent_code": parent},
            admin,
        )
        tree.last_position = max(tree.last_position, r["position"])

    await node(county, "county", None)
    for u in range(1, shape["units"] + 1):
        unit = f"U{county[:6]}{u:03d}"
        await node(unit, "unit", county)
        tree.units.append(unit)
    for s, communities in enumerate(shape["streets"], start=1):
        street = f"{county[:6]}{s:03d}000"
        await node(street, "street", county)
        tree.streets.append(street)
        tree.communities[street] = []
        if shape["street_unit"] and s == 1:
            unit = f"U{street[:9]}S"
            await node(unit, "unit", street)
            tree.units.append(unit)
        for c in range(1, communities + 1):
            community = f"{street[:9]}{c:03d}"
            await node(community, "community", street)
            tree.communities[street].append(community)
            if shape["grid"] and c == 1:
                await node(f"G{community}", "grid", community)
    if shape["workflows"]:
        await seed(client, admin, doc, tree, 1)
    return tree


async def caught_up(pool: Any, position: int, timeout: float = 10.0) -> None:
    """Wait (bounded) until every projection has passed ``position``; go on regardless.

    Reads then see the data; a projection that is stuck only makes its reads stale, which
    cannot hide a leak of what *is* there.
    """
    from projections.runner import wait_for_position

    async with pool.acquire() as conn:
        names = [r["name"] for r in await conn.fetch("SELECT name FROM projection_checkpoints")]
        await wait_for_position(conn, names, position, timeout=timeout)


async def seed(client: Any, admin: dict[str, str], doc: dict[str, Any], tree: Tree, n: int) -> int:
    """Workflow aggregates in every community (best effort: whatever endpoints exist)."""
    created = 0
    paths = workflow_paths(doc)
    communities = [c for cs in tree.communities.values() for c in cs]
    for i, community in enumerate(communities):
        unit = tree.units[i % len(tree.units)]
        for k in range(n):
            bodies = workflow_bodies(community, unit, k)
            for path in paths:
                r = await client.post(path, json=bodies[path], headers=admin)
                if 200 <= r.status_code < 300:
                    created += 1
                    position = r.json().get("position")
                    if isinstance(position, int):
                        tree.last_position = max(tree.last_position, position)
    return created


def all_codes(tree: Tree) -> list[str]:
    return [
        tree.county,
        *tree.streets,
        *(c for cs in tree.communities.values() for c in cs),
        *tree.units,
    ]


# -- requests ----------------------------------------------------------------------------


def get_operations(doc: dict[str, Any]) -> list[Any]:
    return [op for op in operations(doc, "GET") if is_api(op)]


def draw_request(
    data: Any, op: Any, own: list[str], codes: list[str], ids: list[str]
) -> tuple[str, dict[str, str]]:
    code = data.draw(st.one_of(st.sampled_from(own), st.sampled_from(codes)), label="code")
    ident = data.draw(st.sampled_from(ids), label="id")
    url = fill_path(op.path, code, ident=ident)
    params: dict[str, str] = {}
    for p in op.params:
        if p.get("in") != "query":
            continue
        name = p["name"]
        schema = p.get("schema", {})
        variants = [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]
        enum = next((v["enum"] for v in variants if "enum" in v), None)
        if name == "min_position":
            continue  # waited for once up front (caught_up)
        elif name == "limit":
            params[name] = str(data.draw(st.sampled_from([1, 2, 50, 500]), label="limit"))
        elif "code" in name or name == "node":
            if data.draw(st.booleans(), label=f"use {name}"):
                params[name] = data.draw(
                    st.one_of(st.sampled_from(own), st.sampled_from(codes)), label=name
                )
        elif name in ("after", "before"):
            continue
        elif enum and data.draw(st.booleans(), label=f"use {name}"):
            params[name] = str(data.draw(st.sampled_from(enum), label=name))
        elif p.get("required"):
            params[name] = code
    return url, params


def check_response(
    response: Any,
    *,
    allowed: set[str],
    universe_tokens: set[str],
    request_tokens: set[str],
    universe: Universe,
    principal_kind: str,
    where: str,
    allow_5xx: bool = False,
) -> list[str]:
    status = response.status_code
    if status >= 500 and not allow_5xx and status != 503:
        return [f"{where}: {status} {response.text[:300]}"]
    found = tokens(body_text(response))
    leaked = (found & universe_tokens) - allowed - request_tokens
    problems = [f"{where}: {status} leaks {sorted(leaked)[:8]}"] if leaked else []
    if 200 <= status < 300 and "json" in response.headers.get("content-type", ""):
        problems += check_counts(response.json(), universe, principal_kind, where)
    return problems


def check_counts(body: Any, universe: Universe, principal_kind: str, where: str) -> list[str]:
    """Stats bodies: no count exceeds what exists in that node's subtree."""
    if not isinstance(body, dict) or "code" not in body or principal_kind == "unit":
        return []
    problems = []
    for item in [body, *(body.get("children") or [])]:
        if not isinstance(item, dict):
            continue
        node = universe.by_code.get(str(item.get("code")))
        if node is None or node.kind == "unit":
            continue
        for group, (field, stream_type) in STATS_BOUNDS.items():
            figures = item.get(group)
            if isinstance(figures, dict) and isinstance(figures.get(field), int):
                bound = universe.count_in_subtree(node.code, stream_type)
                if figures[field] > bound:
                    problems.append(
                        f"{where}: {node.code} {group}.{field}={figures[field]} > {bound} "
                        "that exist in its subtree"
                    )
    return problems


async def sweep(
    client: Any,
    jwt: Any,
    doc: dict[str, Any],
    data: Any,
    universe: Universe,
    tree: Tree,
    foreign: Tree,
    *,
    allow_5xx: bool = False,
    directory_visible: bool = False,
) -> tuple[int, list[str]]:
    """``REQUESTS`` random GETs; with ``directory_visible`` the tenant's directory (node codes
    and ids of the same root, readable within the root by design) counts as allowed: that is
    what RLS alone can promise when the application's subtree check is gone."""
    ops = get_operations(doc)
    assert ops
    own = all_codes(tree)
    codes = [*own, *all_codes(foreign), "000000000000", "nosuchcode"]
    ids = [*universe.streams, *universe.nodes, str(uuid.uuid4())]
    universe_tokens = universe.all_tokens
    problems: list[str] = []
    sent = 0
    for _ in range(REQUESTS):
        scope = data.draw(st.sampled_from(own), label="scope")
        role = data.draw(st.one_of(st.just("admin"), st.sampled_from(ROLES)), label="role")
        op = data.draw(st.sampled_from(ops), label="operation")
        url, params = draw_request(data, op, own, codes, ids)
        headers = {"Authorization": f"Bearer {token(jwt, scope, role, sub='iso')}"}
        r = await client.get(url, params=params, headers=headers)
        sent += 1
        STATUSES[r.status_code] += 1
        request_tokens = tokens(url) | {t for v in params.values() for t in tokens(v)}
        allowed = universe.allowed(scope)
        if directory_visible:
            root = universe.by_code[scope].root
            allowed |= {
                t for n in universe.nodes.values() if n.root == root for t in (n.id, n.code)
            }
        problems += check_response(
            r,
            allowed=allowed,
            universe_tokens=universe_tokens,
            request_tokens=request_tokens,
            universe=universe,
            principal_kind=universe.by_code[scope].kind,
            where=f"{role}@{scope} GET {url} {params}",
            allow_5xx=allow_5xx,
        )
    return sent, problems


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def doc(client: Any) -> dict[str, Any]:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200, r.text[:500]
    return dict(r.json())


@pytest.fixture(scope="module")
async def foreign(client: Any, jwt: Any, doc: dict[str, Any]) -> Tree:
    """Another root tenant with data: nothing of it may ever show up."""
    tree = await build_tree(client, jwt, streets=2, communities=2, units=1)
    admin = {"Authorization": f"Bearer {token(jwt, tree.county, 'admin')}"}
    await seed(client, admin, doc, tree, 1)
    return tree


@contextlib.contextmanager
def app_checks_bypassed() -> Iterator[None]:
    """Handlers get a scope whose path covers every node: only RLS still filters."""
    original = database.scoped_transaction

    @contextlib.asynccontextmanager
    async def wide(conn: Any, scope_code: str, **kwargs: Any) -> AsyncIterator[Any]:
        async with original(conn, scope_code, **kwargs) as (c, scope):
            yield c, dataclasses.replace(scope, path="/")

    patched = []
    for module in list(sys.modules.values()):
        if getattr(module, "scoped_transaction", None) is original:
            patched.append(module)
            module.scoped_transaction = wide  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in patched:
            module.scoped_transaction = original  # type: ignore[attr-defined]


# -- the properties ------------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: every example builds a tenant
    suppress_health_check=list(HealthCheck),
)
@given(shape=shapes, data=st.data())
async def test_nothing_outside_the_subtree_is_returned(
    client: Any, jwt: Any, pool: Any, doc: dict[str, Any], foreign: Tree, shape: Any, data: Any
):
    tree = await build_random(client, jwt, doc, shape)
    await caught_up(pool, tree.last_position)
    universe = await load_universe(pool, [tree.county, foreign.county])
    sent, problems = await sweep(client, jwt, doc, data, universe, tree, foreign)
    assert sent == REQUESTS
    assert not problems, "\n".join(problems[:30])


@settings(
    max_examples=max(2, EXAMPLES // 2),
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: every example builds a tenant
    suppress_health_check=list(HealthCheck),
)
@given(shape=shapes, data=st.data())
async def test_row_level_security_alone_blocks_foreign_rows(
    client: Any, jwt: Any, pool: Any, doc: dict[str, Any], foreign: Tree, shape: Any, data: Any
):
    tree = await build_random(client, jwt, doc, shape)
    await caught_up(pool, tree.last_position)
    universe = await load_universe(pool, [tree.county, foreign.county])
    with app_checks_bypassed():
        # the bypass is real: a foreign code inside the tenant now passes the app's check
        sent, problems = await sweep(
            client, jwt, doc, data, universe, tree, foreign, allow_5xx=True, directory_visible=True
        )
    assert sent == REQUESTS
    assert not problems, "\n".join(problems[:30])
    await raw_sql_sweep(pool, universe, data, all_codes(tree))


async def raw_sql_sweep(pool: Any, universe: Universe, data: Any, scopes: list[str]) -> None:
    """SELECT * on every RLS table inside a scoped transaction: only allowed rows come back."""
    async with pool.acquire() as conn:
        tables = [
            r["relname"]
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relrowsecurity AND c.relkind = 'r' AND n.nspname = 'public'"
                "   AND has_table_privilege('civic_app', c.oid, 'SELECT')"
                " ORDER BY 1"
            )
        ]
        unguarded = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'root_id'"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relrowsecurity"
            "   AND has_table_privilege('civic_app', c.oid, 'SELECT')"
        )
        assert not unguarded, f"tenant tables readable without RLS: {[r[0] for r in unguarded]}"
        quals: dict[str, set[str]] = {}
        for r in await conn.fetch(
            "SELECT tablename, qual FROM pg_policies WHERE schemaname = 'public'"
        ):
            quals.setdefault(r["tablename"], set()).add(r["qual"] or "")
    # Support tables whose policy is the root alone (the directory, chain heads, parties,
    # identity and term indexes that commands consult): RLS separates tenants there and the
    # application confines reads to the subtree. Everything else must hold per subtree.
    root_only = {t for t, q in quals.items() if q == {"(root_id = civic_scope_root())"}}
    assert "events" in tables and "rm_nodes" in tables and "events" not in root_only
    for _ in range(3):
        scope_code = data.draw(st.sampled_from(scopes), label="raw scope")
        allowed = universe.allowed(scope_code)
        scope_root = universe.by_code[scope_code].root
        universe_tokens = universe.all_tokens
        async with pool.acquire() as conn, scoped_transaction(conn, scope_code):
            for table in tables:
                rows = await conn.fetch(f'SELECT to_jsonb(t)::text AS j FROM "{table}" t')
                for row in rows:
                    record = msgspec.json.decode(row["j"])
                    root = record.get("root_id")
                    if root is not None:
                        assert root == scope_root, f"{table} row of another root for {scope_code}"
                    if table in root_only:
                        continue
                    found = set()
                    for text in _strings(record):
                        found |= tokens(text)
                    leaked = (found & universe_tokens) - allowed
                    assert not leaked, f"{table} shows {scope_code} {sorted(leaked)[:5]}"


def test_checker_catches_a_leak():
    """The checker itself: a body naming a foreign code or id is flagged, allowed ones not."""

    class Fake:
        status_code = 200
        headers = {"content-type": "application/json"}

        def __init__(self, body: Any) -> None:
            self.content = msgspec.json.encode(body)

        def json(self) -> Any:
            return msgspec.json.decode(self.content)

    a = NodeInfo("a" * 8, "111111000000", "a" * 8, f"/{'a' * 8}/", "county")
    b = NodeInfo("b" * 8, "111111001000", "a" * 8, f"/{'a' * 8}/{'b' * 8}/", "street")
    c = NodeInfo("c" * 8, "111111002000", "a" * 8, f"/{'a' * 8}/{'c' * 8}/", "street")
    universe = Universe({n.id: n for n in (a, b, c)}, {"s" * 8: (c.id, "issue")}, {}, {})
    kw: dict[str, Any] = {
        "allowed": universe.allowed(b.code),
        "universe_tokens": universe.all_tokens,
        "request_tokens": set(),
        "universe": universe,
        "principal_kind": "street",
        "where": "t",
    }
    assert check_response(Fake({"path": [a.code, b.code]}), **kw) == []
    assert check_response(Fake({"source": f"/civic-ledger/{a.code}/{c.code}"}), **kw)
    assert check_response(Fake({"items": [{"subject": "s" * 8}]}), **kw)
    stats: dict[str, Any] = {"code": a.code, "issues": {"reported": 1}, "children": []}
    assert check_response(Fake(stats), **{**kw, "allowed": universe.allowed(a.code)}) == []
    stats["children"] = [{"code": b.code, "issues": {"reported": 1}}]
    assert check_response(Fake(stats), **{**kw, "allowed": universe.allowed(a.code)})


def test_isolation_statistics():
    """Not a check: shows the statuses the property tests saw (a sweep of only 4xx proves little)."""
    print(f"\nisolation sweeps: {sum(STATUSES.values())} requests, statuses {dict(STATUSES)}")
    if STATUSES:
        assert sum(v for k, v in STATUSES.items() if 200 <= k < 300) > 0


async def test_live_feed_streams_only_the_subtree(
    client: Any, jwt: Any, pool: Any, ctx: Any, doc: dict[str, Any], foreign: Tree
):
    """Server-Sent Events: while siblings and another tenant write, a stream carries only the
    principal's subtree (a second app instance whose streams end after 2 s)."""
    import asyncio

    from tests.reliability import extra_app

    shape = {"streets": [2, 1], "units": 1, "street_unit": True, "grid": True, "workflows": True}
    tree = await build_random(client, jwt, doc, shape)
    street, sibling = tree.streets[0], tree.streets[1]
    admin = {"Authorization": f"Bearer {token(jwt, tree.county, 'admin', sub='builder')}"}
    foreign_admin = {"Authorization": f"Bearer {token(jwt, foreign.county, 'admin')}"}
    scopes = [street, tree.communities[street][0], tree.units[-1]]

    async def writes() -> None:  # new events everywhere while the streams are open
        for i in range(6):
            await seed(
                client,
                admin,
                doc,
                Tree(tree.county, [sibling], {sibling: tree.communities[sibling]}, tree.units[:1]),
                1,
            )
            await client.post(
                f"/v1/nodes/{tree.communities[sibling][0]}/rename",
                json={"name": f"改名{i}"},
                headers=admin,
            )
            await client.post(
                f"/v1/nodes/{foreign.communities[foreign.streets[0]][0]}/rename",
                json={"name": f"外{i}"},
                headers=foreign_admin,
            )
            await asyncio.sleep(0.1)

    async with extra_app(
        ctx, feed_max_stream_seconds=2.0, feed_heartbeat_seconds=0.5, rate_limit_per_minute=0
    ) as live:

        async def stream(scope: str) -> tuple[str, str]:
            headers = {
                "Authorization": f"Bearer {token(jwt, scope, 'integrator', sub='sse')}",
                "Accept": "text/event-stream",
            }
            r = await live.get("/v1/feed", headers=headers, timeout=30)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("text/event-stream")
            return scope, r.text

        streamed, _ = await asyncio.gather(asyncio.gather(*(stream(s) for s in scopes)), writes())
    universe = await load_universe(pool, [tree.county, foreign.county])
    for scope, text in streamed:
        assert "data:" in text, f"{scope} streamed no event"
        leaked = (tokens(text) & universe.all_tokens) - universe.allowed(scope)
        assert not leaked, f"{scope} streamed {sorted(leaked)[:8]}"
