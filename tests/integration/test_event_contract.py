"""The event contract: a JSON Schema per event type and version, served, referenced by every
CloudEvent, met by every stored event; and an AsyncAPI 3.0 document the reference parser
(``@asyncapi/parser`` from npm, pinned in tests/asyncapi/) accepts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from domain.registry import event_classes
from infra.event_schemas import catalogue
from tests.support import auth, build_tree

REPO = Path(__file__).resolve().parents[2]
PARSER_SOURCE = REPO / "tests" / "asyncapi"
PARSER_DIR = REPO / ".cache" / "asyncapi-parser"


async def test_every_event_type_and_version_has_a_served_schema(client):
    listed = (await client.get("/schema/events")).json()["items"]
    declared = {(name, version) for name, version, _ in catalogue(event_classes())}
    assert {(i["type"], i["version"]) for i in listed} == declared
    assert len(declared) >= 30
    for item in listed:
        path = item["schema_url"].split("://", 1)[1].split("/", 1)[1]
        r = await client.get("/" + path)
        assert r.status_code == 200, (item, r.text)
        schema = r.json()
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"] == item["schema_url"]
    missing = await client.get("/schema/events/NoSuchEvent/1")
    assert missing.status_code == 404


@pytest.mark.after_all
async def test_every_stored_event_validates_against_its_schema(client, pool):
    """Every event the whole session recorded (the ``after_all`` mark runs this last)."""
    tree = await build_tree(client, jwt_of(client), streets=1, communities=1, units=1)
    assert tree.last_position
    schemas: dict[tuple[str, int], Any] = {}
    checked: dict[str, int] = {}
    foreign: dict[str, int] = {}
    declared = {(name, version) for name, version, _ in catalogue(event_classes())}
    async with pool.acquire() as conn, conn.transaction():
        async for row in conn.cursor("SELECT type, schema_version, data::text FROM events"):
            key = (row["type"], row["schema_version"])
            if key not in declared:
                # rows tests insert straight into the table (the projection runner's probes):
                # no domain event, nothing the application could have recorded
                foreign[row["type"]] = foreign.get(row["type"], 0) + 1
                continue
            validator = schemas.get(key)
            if validator is None:
                r = await client.get(f"/schema/events/{key[0]}/{key[1]}")
                assert r.status_code == 200, f"no schema for stored {key}"
                validator = schemas[key] = jsonschema.Draft202012Validator(
                    r.json(), format_checker=jsonschema.FormatChecker()
                )
            errors = sorted(validator.iter_errors(json.loads(row["data"])), key=str)
            assert not errors, f"{key}: {errors[0].message} at {list(errors[0].path)}"
            checked[row["type"]] = checked.get(row["type"], 0) + 1
    print(
        f"\nvalidated stored events by type: {dict(sorted(checked.items()))}; "
        f"rows that are no domain event (inserted by tests): {foreign}"
    )
    assert not set(foreign) & {name for name, _ in declared}, "a declared type, unknown version"
    assert sum(checked.values()) > 0


def jwt_of(client: Any) -> Any:
    return client.app.state.ctx.jwt


async def test_feed_cloudevents_carry_their_dataschema(client, jwt):
    tree = await build_tree(client, jwt, streets=1, communities=1, units=1)
    r = await client.get("/v1/feed?after=0&limit=500", headers=auth(jwt, tree.county, "integrator"))
    items = r.json()["items"]
    assert items
    for ce in items:
        name = ce["streamtype"]
        assert ce["dataschema"].startswith("http"), ce
        path = "/" + ce["dataschema"].split("://", 1)[1].split("/", 1)[1]
        schema = (await client.get(path)).json()
        jsonschema.validate(ce["data"], schema)
        assert name


async def test_asyncapi_document_parses_with_the_reference_parser(client, tmp_path: Path):
    doc = (await client.get("/schema/asyncapi.json")).json()
    assert doc["asyncapi"].startswith("3.")
    assert {"feed", "webhook", "nats"} <= set(doc["channels"])
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm are not installed: the AsyncAPI parser cannot run (CI has node)")
    _install_parser(npm)
    source = tmp_path / "asyncapi.json"
    source.write_text(json.dumps(doc))
    result = _parse(node, source)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    errors = [d for d in report["diagnostics"] if d["severity"] == 0]
    assert report["parsed"] and not errors, errors[:10]
    declared = len(catalogue(event_classes()))
    assert report["messages"] >= declared and report["channels"] == 3


def _parse(node: str, source: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, str(PARSER_SOURCE / "parse.mjs"), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PARSER_DIR": str(PARSER_DIR), "PATH": str(Path(node).parent)},
    )


def _install_parser(npm: str) -> None:
    """``npm ci`` of the pinned lock file into .cache/ (once per lock file)."""
    lock = (PARSER_SOURCE / "package-lock.json").read_text()
    stamp = PARSER_DIR / ".lock-installed"
    if stamp.exists() and stamp.read_text() == lock:
        return
    PARSER_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(PARSER_SOURCE / name, PARSER_DIR / name)
    result = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=PARSER_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    stamp.write_text(lock)
