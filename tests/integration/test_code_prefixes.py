"""No tenant can take, or probe for, another tenant's node codes: a code outside the
caller's own part of the code space is refused (422) whether or not it exists."""

from __future__ import annotations

from typing import Any

from tests.support import auth, build_tree, post_ok

PROBLEM = "application/problem+json"


def invalid(r: Any) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["errors"][0]["field"] in ("code", "new_code")
    return body


async def test_another_tenants_codes_can_be_neither_squatted_nor_probed(client, jwt):
    a = await build_tree(client, jwt, streets=1, communities=1, units=1)
    b = await build_tree(client, jwt, streets=1, communities=1, units=1)
    admin_a, admin_b = auth(jwt, a.county, "admin"), auth(jwt, b.county, "admin")
    a_street, b_street = a.streets[0], b.streets[0]
    a_free_community = f"{a_street[:9]}005"

    async def b_registers(code: str, kind: str, parent: str) -> Any:
        body = {"code": code, "name": "抢注", "kind": kind, "parent_code": parent}
        return await client.post("/v1/nodes", json=body, headers=admin_b)

    # Squatting: B takes a code of A's that A has not registered yet.
    invalid(await b_registers(a_free_community, "community", b_street))
    invalid(await b_registers(f"{a.county[:6]}002000", "street", b.county))
    invalid(await b_registers(f"U{a.county[:6]}-GAJ", "unit", b.county))
    await post_ok(
        client,
        "/v1/nodes",
        {"code": a_free_community, "name": "社区", "kind": "community", "parent_code": a_street},
        admin_a,
    )
    # Probing: A's existing codes and unused ones answer alike (never 409).
    taken = await b_registers(a.units[0], "unit", b.county)
    free = await b_registers(f"U{a.county[:6]}999", "unit", b.county)
    invalid(taken), invalid(free)
    assert {k: v for k, v in taken.json().items() if k not in ("request_id", "detail")} == {
        k: v for k, v in free.json().items() if k not in ("request_id", "detail")
    }
    assert taken.json()["detail"] == free.json()["detail"]
    taken = await b_registers(a.communities[a_street][0], "community", b_street)
    invalid(taken)
    assert "in use" not in taken.text

    # Inside its own space a tenant's duplicate is a 409, as before.
    r = await b_registers(b.units[0], "unit", b.county)
    assert r.status_code == 409, r.text


async def test_moves_give_codes_that_extend_the_new_parent(client, jwt):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=0)
    admin = auth(jwt, tree.county, "admin")
    s1, s2 = tree.streets
    [community] = tree.communities[s1]
    url = f"/v1/nodes/{community}/move"
    # a new code must extend the new street's, not the old one's or another county's
    for bad in (f"{s1[:9]}007", "110101001001", f"{s2[:9]}000"):
        body = {"new_parent_code": s2, "new_code": bad, "reason": "区划调整"}
        invalid(await client.post(url, json=body, headers=admin))
    moved = await post_ok(
        client,
        url,
        {"new_parent_code": s2, "new_code": f"{s2[:9]}007", "reason": "区划调整"},
        admin,
        200,
    )
    assert moved["code"] == f"{s2[:9]}007"
    # keeping the code (until the bureau reissues it) stays allowed within the root
    moved = await post_ok(
        client,
        f"/v1/nodes/{moved['code']}/move",
        {"new_parent_code": s1, "reason": "撤回"},
        admin,
        200,
    )
    assert moved["code"] == f"{s2[:9]}007"
