"""/v1/audit and /v1/events/{id}/proof — the tamper-evident trail for inspectors.

All reads run in the caller's scoped, read-only transaction: verification, checkpoints and
proofs see exactly the subtree row-level security lets the principal see. The SQL and the
hashing live in ``infra.audit`` (``verify``, ``checkpoints``, ``inclusion``); signatures in
``infra.audit.signing``; the offline checks clients can repeat in ``infra.audit.proof_checks``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from civic_verify.hashing import by_name
from civic_verify.note import NoteError, verify_note, vkey
from infra.audit.checkpoints import (
    Checkpoint,
    HeadCheck,
    heads_extend,
    latest_checkpoint_covering,
    list_checkpoints,
    origin_of,
    stored_checkpoint,
)
from infra.audit.cosignatures import with_cosignatures
from infra.audit.inclusion import (
    Proof,
    ProofUnavailable,
    build_proof,
    find_event,
    tree_inclusion,
)
from infra.audit.merkle import Head
from infra.audit.proof_checks import checkpoint_problems
from infra.audit.signing import b64, key_id
from infra.audit.tree import TreeUnavailable, root_at, tree_state
from infra.audit.verify import VerifyReport, verify_subtree
from services.api.deps import Caller, Ctx, read_scope
from services.api.guards import needs
from services.api.history import AUDITORS, MAX_BIGINT, aware, bad_request, subtree_node
from services.api.paging import MAX_LIMIT, Cursor, decode_cursor, encode_cursor
from services.checkpoints import Checkpointer
from services.problems import ProblemError, not_found

NodeParam = Annotated[
    str | None,
    QueryParameter(
        required=False,
        max_length=40,
        description="Root of the subtree (current or former code); default: the token's scope.",
    ),
]
HexHash = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
#: heads of a whole province fit; the request body limit applies first anyway.
MAX_HEADS = 200_000
MAX_LISTED_HEAD_FAILURES = 100
#: a checkpoint note with its cosignature lines
MAX_NOTE = 16_384


class PublicKeyView(msgspec.Struct):
    algorithm: str
    key_id: str
    #: base64 of the raw public key (32 bytes for Ed25519), as checkpoints carry it.
    public_key: str
    pem: str
    hash_algorithm: str
    #: the key name of checkpoint notes, and its C2SP verifier key (name+key id+key)
    note_key_name: str
    vkey: str


class HeadIn(msgspec.Struct, forbid_unknown_fields=True):
    node_id: Annotated[str, msgspec.Meta(max_length=64)]
    code: Annotated[str, msgspec.Meta(max_length=40)]
    seq: Annotated[int, msgspec.Meta(ge=0)]
    hash: HexHash


class CheckpointIn(msgspec.Struct, forbid_unknown_fields=True):
    """A checkpoint as ``GET /v1/audit/checkpoint`` (or the list) returned it."""

    node: Annotated[str, msgspec.Meta(max_length=40)]
    at: Annotated[str, msgspec.Meta(max_length=64)]
    root: HexHash
    heads: Annotated[list[HeadIn], msgspec.Meta(min_length=1, max_length=MAX_HEADS)]
    signature: Annotated[str, msgspec.Meta(max_length=512)]
    public_key: Annotated[str, msgspec.Meta(max_length=512)]
    algorithm: Annotated[str, msgspec.Meta(max_length=32)] = "ed25519"
    hash_algorithm: Annotated[str, msgspec.Meta(max_length=32)] = "sha256"
    key_id: str | None = None
    id: int | None = None
    origin: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    tree_size: Annotated[int, msgspec.Meta(ge=0)] | None = None
    tree_root: HexHash | None = None
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE)] | None = None
    cosignatures: Annotated[list[CheckpointCosignature], msgspec.Meta(max_length=100)] = []


class CheckpointCosignature(msgspec.Struct):
    witness: Annotated[str, msgspec.Meta(max_length=200)]
    public_key: Annotated[str, msgspec.Meta(max_length=64)]
    time: int
    line: Annotated[str, msgspec.Meta(max_length=512)]


class VerifyDetail(msgspec.Struct, omit_defaults=True):
    check: str  # signature | root | heads | head
    ok: bool
    detail: str
    node: str | None = None
    node_id: str | None = None
    seq: int | None = None


class CheckpointVerdict(msgspec.Struct):
    signature_valid: bool
    root_matches: bool
    extends: bool
    details: list[VerifyDetail]


class CheckpointPage(msgspec.Struct):
    items: list[Checkpoint]
    next_cursor: str | None


def provide_checkpointer(state: State) -> Checkpointer:
    checkpointer: Checkpointer = state.checkpointer
    return checkpointer


CheckpointerDep = NamedDependency[Checkpointer]


def _verdict(
    checkpoint: CheckpointIn, trusted_key: bytes, head_checks: list[HeadCheck]
) -> CheckpointVerdict:
    problems = checkpoint_problems(
        msgspec.to_builtins(checkpoint), trusted_public_key=b64(trusted_key)
    )
    details = [
        VerifyDetail(
            check="signature",
            ok="signature" not in problems,
            detail=problems.get("signature", f"signed by this server's key {key_id(trusted_key)}"),
        ),
        VerifyDetail(
            check="root",
            ok="root" not in problems,
            detail=problems.get(
                "root", f"the Merkle root over {len(checkpoint.heads)} heads matches"
            ),
        ),
    ]
    failed = [c for c in head_checks if not c.extends]
    details.append(
        VerifyDetail(
            check="heads",
            ok=not failed,
            detail=f"{len(head_checks) - len(failed)} of {len(head_checks)} heads are still on "
            "their chains",
        )
    )
    details.extend(
        VerifyDetail(
            check="head", ok=False, detail=c.detail, node=c.code, node_id=c.node_id, seq=c.seq
        )
        for c in failed[:MAX_LISTED_HEAD_FAILURES]
    )
    return CheckpointVerdict(
        signature_valid="signature" not in problems,
        root_matches="root" not in problems,
        extends=bool(head_checks) and not failed,
        details=details,
    )


class AuditController(Controller):
    path = "/v1"
    tags = ["audit"]
    dependencies = {
        "checkpointer": Provide(provide_checkpointer, sync_to_thread=False),
    }

    @get(
        "/audit/verify",
        summary="Recompute every hash chain of a subtree",
        description=(
            "Streams each node's events in chain order, recomputes content digests and links and "
            "compares them with the stored hashes and chain heads. `first_failure.reason`: "
            "altered (content no longer matches its hash), missing (a sequence number is absent, "
            "or the head is ahead of the last event), inserted (an event beyond the head, a "
            "duplicated sequence or link), broken_link (prev_hash is not the previous hash). "
            "Roles: inspector, admin, operator."
        ),
        operation_id="verifyAuditTrail",
        guards=[needs(AUDITORS, "verifying the audit trail")],
    )
    async def verify(self, ctx: Ctx, principal: Caller, node: NodeParam = None) -> VerifyReport:
        async with read_scope(ctx, principal, heavy=True) as (conn, scope):
            target = await subtree_node(conn, scope, node)
            return await verify_subtree(conn, target, ctx.store.hasher)

    @get(
        "/audit/checkpoint",
        summary="A fresh signed checkpoint of a subtree's chain heads",
        description=(
            "The chain head of every node of the subtree (path order), their Merkle root and an "
            "Ed25519 signature over {node, at, root}. Keep it: `POST /v1/audit/checkpoint/verify` "
            "tells later whether the chains still extend it. Roles: inspector, admin, operator."
        ),
        operation_id="readCheckpoint",
        guards=[needs(AUDITORS, "taking a checkpoint")],
    )
    async def checkpoint(
        self, ctx: Ctx, principal: Caller, checkpointer: CheckpointerDep, node: NodeParam = None
    ) -> Checkpoint:
        async with read_scope(ctx, principal, heavy=True) as (conn, scope):
            target = await subtree_node(conn, scope, node)
            taken = await checkpointer.take(conn, target)
            return (await with_cosignatures(conn, target.root_id, [taken]))[0]

    @get(
        "/audit/public-key",
        summary="The key that signs checkpoints (no authentication needed)",
        operation_id="readPublicKey",
    )
    async def public_key(self, checkpointer: CheckpointerDep) -> PublicKeyView:
        signer = checkpointer.signer
        raw = signer.public_key_raw()
        return PublicKeyView(
            algorithm=signer.algorithm,
            key_id=key_id(raw),
            public_key=b64(raw),
            pem=signer.public_key_pem(),
            hash_algorithm=checkpointer.ctx.store.hasher.name,
            note_key_name=checkpointer.ctx.settings.log_name,
            vkey=vkey(checkpointer.ctx.settings.log_name, raw),
        )

    @post(
        "/audit/checkpoint/verify",
        status_code=200,
        summary="Check a kept checkpoint: signature, Merkle root, and whether the chains extend it",
        description=(
            "`signature_valid`: signed by this server's key; `root_matches`: the root recomputed "
            "from the given heads; `extends`: for every head, the stored event at that node and "
            "seq still has that hash (nothing was rewritten since). Heads outside the caller's "
            "scope cannot be confirmed and count as not extending. Roles: inspector, admin, "
            "operator."
        ),
        guards=[needs(AUDITORS, "verifying a checkpoint")],
    )
    async def verify_checkpoint(
        self,
        data: JSONBody[CheckpointIn],
        ctx: Ctx,
        principal: Caller,
        checkpointer: CheckpointerDep,
    ) -> CheckpointVerdict:
        heads = [Head(node_id=h.node_id, code=h.code, seq=h.seq, hash=h.hash) for h in data.heads]
        async with read_scope(ctx, principal, heavy=True) as (conn, scope):
            checks = await heads_extend(conn, heads, ctx.store.hasher)
            note = (
                None
                if data.note is None
                else await _note_details(conn, checkpointer, scope.root_id, data)
            )
        verdict = _verdict(data, checkpointer.signer.public_key_raw(), checks)
        if note is not None:
            verdict.details.extend(note)
        return verdict

    @get(
        "/audit/checkpoints",
        summary="Stored (periodic) checkpoints of nodes in a subtree, newest first",
        description=(
            "Checkpoints are taken per root tenant every CIVIC_CHECKPOINT_INTERVAL seconds; "
            "`from`/`to` bound their time (inclusive/exclusive). Roles: inspector, admin, operator."
        ),
        operation_id="listCheckpoints",
        guards=[needs(AUDITORS, "listing checkpoints")],
    )
    async def checkpoints(
        self,
        ctx: Ctx,
        principal: Caller,
        node: NodeParam = None,
        from_: Annotated[
            datetime | None,
            QueryParameter(name="from", required=False, description="Taken at or after."),
        ] = None,
        to: Annotated[
            datetime | None, QueryParameter(required=False, description="Taken before.")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 50,
        cursor: Cursor = None,
    ) -> CheckpointPage:
        before: tuple[datetime, int] | None = None
        key = decode_cursor(cursor)
        if key is not None:
            try:
                before = (datetime.fromisoformat(key[0]), int(key[1]))
            except (IndexError, TypeError, ValueError):
                raise bad_request("cursor", "invalid cursor") from None
            if before[0].tzinfo is None or not 0 < before[1] <= MAX_BIGINT:
                raise bad_request("cursor", "invalid cursor")
        async with read_scope(ctx, principal) as (conn, scope):
            target = await subtree_node(conn, scope, node)
            items = await list_checkpoints(
                conn,
                target,
                since=aware("from", from_),
                until=aware("to", to),
                before=before,
                limit=limit + 1,
            )
            items = await with_cosignatures(conn, target.root_id, items)
        more = len(items) > limit
        items = items[:limit]
        return CheckpointPage(
            items=items, next_cursor=encode_cursor([items[-1].at, items[-1].id]) if more else None
        )

    @get(
        "/events/{event_id:uuid}/proof",
        summary="Inclusion proof: from one event to a signed checkpoint",
        description=(
            "The event's canonical bytes and hash, every later link of its node's chain up to "
            "the node's head in the checkpoint, the Merkle path from that head to the root, and "
            "the signed checkpoint: the latest stored one covering the event, else a fresh one "
            "of the caller's scope; `checkpoint=<id>` picks a stored one. Check it offline with "
            "infra.audit.proof_checks.verify_proof (docs/audit.md). Roles: inspector, admin, operator."
        ),
        operation_id="readProof",
        guards=[needs(AUDITORS, "proving an event")],
    )
    async def proof(
        self,
        event_id: FromPath[UUID],
        ctx: Ctx,
        principal: Caller,
        checkpointer: CheckpointerDep,
        checkpoint: Annotated[
            int | None,
            QueryParameter(
                required=False,
                ge=1,
                le=MAX_BIGINT,
                description="Id of a stored checkpoint to prove against.",
            ),
        ] = None,
    ) -> Proof:
        hasher = ctx.store.hasher
        async with read_scope(ctx, principal, heavy=True) as (conn, scope):
            found = await find_event(conn, scope.root_id, event_id, hasher)
            if found is None or not found.path.startswith(scope.path):
                raise not_found(f"event {event_id}")
            chosen: Any
            if checkpoint is not None:
                chosen = await stored_checkpoint(conn, scope.root_id, checkpoint)
                if chosen is None:
                    raise not_found(f"checkpoint {checkpoint}")
            else:
                chosen = await latest_checkpoint_covering(conn, scope.root_id, found.path)
                if chosen is None or not _covers(chosen, str(found.node_id), found.seq):
                    chosen = await checkpointer.take(conn, await subtree_node(conn, scope, None))
            try:
                proof = await build_proof(conn, found, chosen, hasher)
                return msgspec.structs.replace(
                    proof, tree=await tree_inclusion(conn, scope.root_id, found, chosen)
                )
            except ProofUnavailable as exc:
                raise ProblemError(
                    422, "Unprocessable Content", str(exc), slug="proof-unavailable"
                ) from None


async def _note_details(
    conn: asyncpg.Connection, checkpointer: Checkpointer, root_id: UUID, data: CheckpointIn
) -> list[VerifyDetail]:
    """The tree part of a checkpoint: its note is this log's, of the caller's root, names
    the checkpoint's tree, and this server's tree still has that root at that size."""
    log_name = checkpointer.ctx.settings.log_name
    try:
        body = verify_note(data.note or "", log_name, checkpointer.signer.public_key_raw())
    except NoteError as exc:
        return [VerifyDetail(check="note", ok=False, detail=str(exc))]
    if (
        body.origin != origin_of(log_name, root_id)
        or body.size != data.tree_size
        or (body.root.hex() != data.tree_root)
    ):
        return [VerifyDetail(check="note", ok=False, detail="the note names another tree")]
    details = [VerifyDetail(check="note", ok=True, detail="the note is signed by this log")]
    state = await tree_state(conn, root_id, checkpointer.ctx.store.hasher.name)
    try:
        same = (
            body.size <= state.size
            and await root_at(conn, root_id, by_name(state.hash_algorithm), body.size) == body.root
        )
    except TreeUnavailable:
        same = False
    details.append(
        VerifyDetail(
            check="tree",
            ok=same,
            detail=f"this server's tree {'still has' if same else 'does not have'} that root "
            f"at {body.size} leaves",
        )
    )
    return details


def _covers(checkpoint: Checkpoint, node_id: str, seq: int) -> bool:
    return any(h.node_id == node_id and h.seq >= seq for h in checkpoint.heads)
