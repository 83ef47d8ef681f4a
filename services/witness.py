"""``civic witness``: one round of a witness against a civic-ledger server over HTTP.

Fetch the root's fresh checkpoint, check it against the last one this witness cosigned
(``civic_verify.witness``), post the cosignature, keep the state. The log's key is the one
given (``--log-key``, a note verifier key), else the one recorded in the state, else the
server's published key on first use (recorded, and said so).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from civic_verify.note import parse_vkey
from civic_verify.witness import (
    Refused,
    WitnessState,
    check_and_cosign,
    load_or_create_key,
    raw_public,
)


@dataclass
class WitnessResult:
    origin: str
    size: int
    line: str
    first_use: bool


async def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200 and response.status_code != 201:
        raise Refused(f"{what}: HTTP {response.status_code} {response.text[:200]}")
    body: dict[str, Any] = response.json()
    return body


async def witness_once(
    client: httpx.AsyncClient,
    *,
    token: str,
    node: str,
    key_path: Path,
    name: str,
    state_path: Path,
    log_vkey: str | None = None,
    now: int | None = None,
) -> WitnessResult:
    """Check and cosign the node's root's current checkpoint; raises Refused."""
    headers = {"Authorization": f"Bearer {token}"}
    state = WitnessState.load(state_path)
    key = load_or_create_key(key_path)
    first_use = False
    vkey_text = log_vkey or state.log_vkey
    if vkey_text is None:
        published = await _json(await client.get("/v1/audit/public-key"), "the public key")
        vkey_text = str(published["vkey"])
        first_use = True
    log_name, _, log_key = parse_vkey(vkey_text)
    cp = await _json(
        await client.get("/v1/audit/checkpoint", params={"node": node}, headers=headers),
        "the checkpoint",
    )

    async def fetch_proof(first: int, second: int) -> dict[str, object]:
        return await _json(
            await client.get(
                "/v1/audit/consistency",
                params={"node": node, "from": str(first), "to": str(second)},
                headers=headers,
            ),
            "the consistency proof",
        )

    note = str(cp["note"])
    # the served note may carry other witnesses' lines: the check needs the log's only
    line = await check_and_cosign(
        state,
        note,
        log_name=log_name,
        log_key=log_key,
        hash_algorithm=str(cp.get("hash_algorithm", "sha256")),
        fetch_proof=fetch_proof,
        name=name,
        key=key,
        now=int(time.time()) if now is None else now,
    )
    await _json(
        await client.post(
            "/v1/audit/cosignatures",
            json={
                "note": note,
                "cosignature": line,
                "public_key": base64.b64encode(raw_public(key)).decode(),
            },
            headers=headers,
        ),
        "posting the cosignature",
    )
    state.log_vkey = vkey_text
    state.save(state_path)
    return WitnessResult(str(cp["origin"]), int(cp["tree_size"]), line, first_use)
