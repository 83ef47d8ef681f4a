"""Members across scopes: a transfer's destination must lie in the caller's scope (no PII
oracle, no moving people into a sibling street), and clear text is only for admins of the
member's community or a level above it — never for a unit's admin."""

from __future__ import annotations

from typing import Any

from tests.integration.test_members_api import person, register_body
from tests.support import auth, build_tree, post_ok


def _problem(r: Any) -> tuple[int, str, str]:
    body = r.json()
    return r.status_code, body["type"], body["detail"]


async def test_a_street_cannot_transfer_into_a_sibling_street(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    s1, s2 = tree.streets
    [a], [b] = tree.communities[s1], tree.communities[s2]
    op1, op2 = auth(jwt, s1, "operator"), auth(jwt, s2, "operator")
    resident = person()
    await post_ok(client, "/v1/members", register_body(tree, resident, community_code=b), op2)
    # S1 registers the same person (a guess) and someone unknown to S2, then tries moving both
    probe = await post_ok(
        client, "/v1/members", register_body(tree, resident, community_code=a), op1
    )
    other = await post_ok(
        client, "/v1/members", register_body(tree, person(), community_code=a), op1
    )
    answers = []
    for member in (probe, other):
        r = await client.post(
            f"/v1/members/{member['id']}/transfer", json={"to_community_code": b}, headers=op1
        )
        answers.append(_problem(r))
    unknown = await client.post(
        f"/v1/members/{other['id']}/transfer",
        json={"to_community_code": f"{s2[:9]}099"},
        headers=op1,
    )
    assert answers[0] == answers[1]
    assert answers[0][0] == 404 and _problem(unknown)[0] == 404
    async with pool.acquire() as conn:
        moved = await conn.fetchval(
            "SELECT count(*) FROM events WHERE type = 'MemberTransferred'"
            " AND stream_id = ANY($1::uuid[])",
            [probe["id"], other["id"]],
        )
    assert moved == 0
    # the county, whose scope holds both streets, makes the move (and gets the 409 for the
    # person already registered there, as it may know)
    county = auth(jwt, tree.county, "operator")
    r = await client.post(
        f"/v1/members/{probe['id']}/transfer", json={"to_community_code": b}, headers=county
    )
    assert r.status_code == 409, r.text
    await post_ok(
        client, f"/v1/members/{other['id']}/transfer", {"to_community_code": b}, county, 200
    )


async def test_a_units_admin_sees_its_members_masked(client, jwt, pool):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=1)
    [a] = tree.communities[tree.streets[0]]
    [unit] = tree.units
    who = person()
    m = await post_ok(
        client, "/v1/members", register_body(tree, who, community_code=a), auth(jwt, a, "admin")
    )
    pos = m["position"]
    unit_admin = auth(jwt, unit, "unit", "admin", sub="unit-admin")

    async def read(headers: dict[str, str]) -> Any:
        return await client.get(f"/v1/members/{m['id']}?min_position={pos}", headers=headers)

    r = await read(unit_admin)
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["personal_data_masked"] is True
    assert who["phone"] not in r.text and who["id_number"] not in r.text
    listed = await client.get(f"/v1/members?min_position={pos}", headers=unit_admin)
    assert listed.status_code == 200 and m["id"] in listed.text
    assert who["phone"] not in listed.text and who["id_number"] not in listed.text
    async with pool.acquire() as conn:
        reveals = await conn.fetchval(
            "SELECT count(*) FROM pii_reveals WHERE member_id = $1::uuid", m["id"]
        )
    assert reveals == 0
    # admins of the community, its street and its county read it in clear
    for scope in (a, tree.streets[0], tree.county):
        r = await read(auth(jwt, scope, "admin"))
        assert r.status_code == 200 and r.json()["phone"] == who["phone"], (scope, r.text)
    # a sibling street's admin does not even see it
    assert (await read(auth(jwt, tree.streets[1], "admin"))).status_code == 404
