"""The workflow registry the reliability, isolation and durability suites draw on
(``tests.reliability.workflow_bodies``): every body it holds is accepted as it stands, and
every creation endpoint it names is served. The suites skip what fails, so without this a
stale body would silently drop a workflow from all of them."""

from __future__ import annotations

from tests.reliability import workflow_bodies, workflow_paths
from tests.support import auth, build_tree


async def test_every_registered_workflow_body_is_accepted(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    community = tree.communities[tree.streets[0]][0]
    doc = (await client.get("/schema/openapi.json")).json()
    bodies = workflow_bodies(community, tree.units[0], 1)
    assert workflow_paths(doc) == list(bodies)
    admin = auth(jwt, tree.county, "admin")
    for path, body in bodies.items():
        r = await client.post(path, json=body, headers=admin)
        assert r.status_code == 201, (path, r.status_code, r.text)
