"""A list filtered by a node code answers for a code the caller may not see exactly as for a
code that does not exist (404, the same problem document): no reader can tell which codes
exist outside its scope. Visible are the nodes of its subtree and those named by something
it can read (the unit its issue is assigned to)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.support import auth, build_tree, post_ok

#: every list parameter that takes a node code (and the path that does)
FILTERS = [
    "/v1/issues?node={}",
    "/v1/issues?assignee={}",
    "/v1/issues?escalated_to={}",
    "/v1/findings?node={}",
    "/v1/findings?responsible_unit={}",
    "/v1/findings/ledger?node={}&format=csv",
    "/v1/pairings?node={}",
    "/v1/members?node={}",
    "/v1/units/{}/registrations",
]


def _answer(r: Any, code: str) -> tuple[int, dict[str, Any]]:
    body = {k: v for k, v in r.json().items() if k != "request_id"}
    return r.status_code, {
        k: v.replace(code, "<code>") if isinstance(v, str) else v for k, v in body.items()
    }


async def test_codes_outside_the_scope_answer_like_unknown_codes(client, jwt, clock):
    tree = await build_tree(client, jwt, streets=2, communities=1, units=2)
    other = await build_tree(client, jwt, streets=1, communities=1, units=1)
    s1, s2 = tree.streets
    [c1], [c2] = tree.communities[s1], tree.communities[s2]
    viewer = auth(jwt, s1, "viewer")
    op = auth(jwt, c1, "operator")
    # what the viewer legitimately sees: an issue of its street assigned to a county unit
    issue = await post_ok(
        client,
        "/v1/issues",
        {"node_code": c1, "title": "违章搭建", "category": "城管", "source": "grid"},
        op,
    )
    due = (clock() + timedelta(days=1)).isoformat()
    assigned = await post_ok(
        client,
        f"/v1/issues/{issue['id']}/assign",
        {"assignee_code": tree.units[0], "due_at": due},
        op,
        200,
    )
    pos = assigned["position"]
    r = await client.get(f"/v1/issues?assignee={tree.units[0]}&min_position={pos}", headers=viewer)
    assert r.status_code == 200 and [i["id"] for i in r.json()["items"]] == [issue["id"]]

    unknown = f"U{tree.county[:6]}999"
    hidden = [
        tree.units[1],  # a county unit no visible record names
        s2,  # a sibling street
        c2,  # and its community
        other.county,  # another tenant
        other.units[0],
        other.communities[other.streets[0]][0],
    ]
    for template in FILTERS:
        expected = _answer(await client.get(template.format(unknown), headers=viewer), unknown)
        assert expected[0] == 404, (template, expected)
        for code in hidden:
            got = _answer(await client.get(template.format(code), headers=viewer), code)
            assert got == expected, (template, code, got, expected)
