"""A client generated from the served OpenAPI document, as an integrator would make one.

``openapi-python-client`` generates into a temporary directory and must say nothing (no
warning: every operation's bodies, errors and headers parse); the generated package then
drives a short walk-through against the session's app, and its answers are typed models
(``NodeChanged``, ``NodeView``, ``Problem``), never strings.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import fresh_county_code, token

GENERATOR = Path(sys.executable).parent / "openapi-python-client"


CONFIG = Path(__file__).resolve().parents[2] / "examples" / "openapi-python-client.yaml"


def generate(doc: dict[str, Any], where: Path) -> tuple[str, Any]:
    source = where / "openapi.json"
    source.write_text(json.dumps(doc, ensure_ascii=False))
    result = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(source),
            "--meta",
            "none",
            "--config",
            str(CONFIG),
            "--output-path",
            str(where / "civic_client"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=where,
        # its post-generation hook formats the code with ruff, from the same environment
        env={**os.environ, "PATH": f"{GENERATOR.parent}:{os.environ.get('PATH', '')}"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    sys.path.insert(0, str(where))
    try:
        package = importlib.import_module("civic_client")
    finally:
        sys.path.remove(str(where))
    return output, package


async def test_generated_client_has_no_warnings_and_typed_answers(
    client: Any, jwt: Any, tmp_path: Path
):
    doc = (await client.get("/schema/openapi.json")).json()
    output, package = generate(doc, tmp_path)
    assert "warning" not in output.lower(), output

    from civic_client.api.nodes import create_node, read_node, rename_node
    from civic_client.models import NodeChanged, NodeCreate, NodeRename, NodeView, Problem

    county = fresh_county_code()
    street = county[:6] + "001000"
    api = package.AuthenticatedClient(
        base_url="http://testserver.local",
        token=token(jwt, county, "admin"),
        # the session's test client runs the app on the loop its pool lives on: borrow its
        # transport rather than a second ASGI bridge on this loop
        httpx_args={"transport": client._transport},
    )
    created = await create_node.asyncio(
        client=api, body=NodeCreate.from_dict({"code": county, "name": "示范区", "kind": "county"})
    )
    assert isinstance(created, NodeChanged), created
    made = await create_node.asyncio(
        client=api,
        body=NodeCreate.from_dict(
            {"code": street, "name": "示范街道", "kind": "street", "parent_code": county}
        ),
        idempotency_key=f"gen-{street}",
    )
    assert isinstance(made, NodeChanged), made
    view = await read_node.asyncio_detailed(code=street, client=api, min_position=made.position)
    assert view.status_code == 200
    assert isinstance(view.parsed, NodeView), view.parsed
    assert view.parsed.kind.value == "street" and view.parsed.path == [county, street]
    assert view.headers["etag"] == f'"{view.parsed.version}"'

    stale = await rename_node.asyncio_detailed(
        code=street, client=api, body=NodeRename(name="新名"), if_match='"99"'
    )
    assert stale.status_code == 412
    assert isinstance(stale.parsed, Problem) and stale.parsed.status == 412

    missing = await read_node.asyncio(code=county[:6] + "009000", client=api, accept_language="en")
    assert isinstance(missing, Problem), missing
    assert missing.status == 404 and "not found" in missing.detail
