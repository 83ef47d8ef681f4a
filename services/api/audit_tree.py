"""/v1/audit consistency proofs, evidence bundles and witness cosignatures (the per-root
transparency tree: ``infra.audit.tree``; its math and note format: ``civic_verify``).

The tree covers a whole root tenant; a caller scoped below the root reads its hashes (no
content) and sizes, which tie the subtree's events to the signed root. Reads run in the
caller's scoped, read-only transaction; a cosignature is stored in a scoped one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, get, post
from litestar.di import Provide
from litestar.openapi.spec import Operation
from litestar.params import JSONBody, QueryParameter
from litestar.response import Stream

from civic_verify.hashing import by_name
from civic_verify.note import (
    CheckpointBody,
    NoteError,
    parse_signature_line,
    sign_note,
    split_note,
    verify_cosignature,
    verify_note,
    vkey,
)
from civic_verify.tlog import verify_consistency
from infra.audit.checkpoints import (
    Checkpoint,
    Cosignature,
    latest_tree_checkpoint,
    origin_of,
)
from infra.audit.cosignatures import (
    MAX_COSIGNATURES_PER_SIZE,
    StoredCosignature,
    count_cosignatures,
    insert_cosignature,
)
from infra.audit.evidence import bundle_chunks
from infra.audit.signing import b64, key_id, unb64
from infra.audit.tree import TreeUnavailable, consistency_proof, root_at, tree_state
from infra.database import scoped_transaction
from services.api.audit import CheckpointerDep, NodeParam, provide_checkpointer
from services.api.deps import Caller, Ctx, read_scope
from services.api.guards import needs
from services.api.history import AUDITORS, MAX_BIGINT, bad_request, subtree_node
from services.checkpoints import Checkpointer
from services.problems import ProblemError, not_found

HexHash = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
#: a consistency proof of a tree of 2^63 leaves has at most 2 * 63 hashes
MAX_PROOF_HASHES = 130
MAX_NOTE = 8192

TreeRef = Annotated[
    str | None,
    QueryParameter(
        required=False,
        max_length=64,
        description="A tree size (leaves), or an RFC 3339 instant: the newest stored "
        "checkpoint taken at or before it.",
    ),
]


class TreeHead(msgspec.Struct):
    size: int
    root: str  # lowercase hex
    #: the tree at that size in a C2SP signed note (signed by this log's key)
    note: str
    #: when the head comes from a stored checkpoint: its id and time
    checkpoint_id: int | None = None
    at: str | None = None


class ConsistencyProof(msgspec.Struct):
    origin: str
    hash_algorithm: str
    from_: TreeHead = msgspec.field(name="from")
    to: TreeHead = msgspec.field(name="to")
    #: RFC 9162 consistency proof, lowercase hex, in RFC order
    proof: list[str] = msgspec.field(default_factory=list)


class TreeHeadIn(msgspec.Struct, forbid_unknown_fields=False):
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_BIGINT)]
    root: HexHash
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE)] | None = None


class ConsistencyIn(msgspec.Struct, forbid_unknown_fields=False):
    """A proof as ``GET /v1/audit/consistency`` returned it (extra fields are ignored)."""

    from_: TreeHeadIn = msgspec.field(name="from")
    to: TreeHeadIn = msgspec.field(name="to")
    proof: Annotated[list[HexHash], msgspec.Meta(max_length=MAX_PROOF_HASHES)]
    hash_algorithm: Annotated[str, msgspec.Meta(max_length=16)] | None = None
    origin: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class ConsistencyVerdict(msgspec.Struct):
    #: the proof shows the tree of ``to`` extends the tree of ``from``
    consistent: bool
    #: each note (when given) is signed by this log and names that size and root
    from_signed: bool | None
    to_signed: bool | None
    #: the tree this server holds now still has that root at ``to.size``
    matches_stored: bool
    details: list[str]


class _ZipOperation(Operation):
    """The bundle's 200 is a file: documented as binary so generated clients answer bytes."""

    def to_schema(self) -> dict[str, Any]:
        schema = super().to_schema()
        schema["responses"]["200"]["content"] = {
            "application/zip": {"schema": {"type": "string", "format": "binary"}}
        }
        return schema


class CosignatureIn(msgspec.Struct, forbid_unknown_fields=True):
    #: the checkpoint note as served (the log's signature line; other lines are ignored)
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NOTE)]
    #: the witness's C2SP tlog-cosignature/v1 line over the note's body
    cosignature: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    #: the witness's raw Ed25519 public key, base64
    public_key: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def unprocessable(detail: str, slug: str = "unprocessable") -> ProblemError:
    return ProblemError(422, "Unprocessable Content", detail, slug=slug)


def _note(checkpointer: Checkpointer, root_id: UUID, size: int, root: bytes) -> str:
    log_name = checkpointer.ctx.settings.log_name
    body = CheckpointBody(origin_of(log_name, root_id), size, root).text()
    signer = checkpointer.signer
    return sign_note(body, log_name, signer.public_key_raw(), signer.sign)


def _parse_ref(name: str, value: str) -> int | datetime:
    if value.isdigit():
        size = int(value)
        if size > MAX_BIGINT:
            raise bad_request(name, "a tree size is at most 2^63 - 1")
        return size
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(name, "a tree size or an RFC 3339 instant") from None
    if at.tzinfo is None:
        raise bad_request(name, "give the instant with an offset, e.g. +08:00")
    return at


async def _head(
    conn: asyncpg.Connection,
    checkpointer: Checkpointer,
    root_id: UUID,
    ref: int | datetime,
    current: int,
    field: str,
) -> TreeHead:
    h = by_name(checkpointer.ctx.store.hasher.name)
    if isinstance(ref, int):
        if ref > current:
            raise unprocessable(
                f"{field}: the tree has {current} leaves so far", slug="beyond-the-tree"
            )
        root = await root_at(conn, root_id, h, ref)
        return TreeHead(size=ref, root=root.hex(), note=_note(checkpointer, root_id, ref, root))
    stored = await latest_tree_checkpoint(conn, root_id, current, ref)
    if stored is None or stored.note is None or stored.tree_size is None:
        raise not_found(f"a stored checkpoint at or before {field}")
    return TreeHead(
        size=stored.tree_size,
        root=stored.tree_root or "",
        note=stored.note,
        checkpoint_id=stored.id,
        at=stored.at,
    )


class AuditTreeController(Controller):
    path = "/v1/audit"
    tags = ["audit"]
    dependencies = {
        "checkpointer": Provide(provide_checkpointer, sync_to_thread=False),
    }

    @get(
        "/consistency",
        summary="Proof that a later tree of the root extends an earlier one",
        description=(
            "`from` and `to` are tree sizes or instants (the newest stored checkpoint taken at "
            "or before); `to` defaults to the tree as built now. The proof (RFC 9162) has "
            "O(log n) hashes; both heads come with C2SP signed notes. The tree covers the "
            "node's root tenant. Roles: inspector, admin, operator."
        ),
        guards=[needs(AUDITORS, "proving consistency")],
    )
    async def consistency(
        self,
        ctx: Ctx,
        principal: Caller,
        checkpointer: CheckpointerDep,
        from_: Annotated[str, QueryParameter(name="from", max_length=64)],
        node: NodeParam = None,
        to: TreeRef = None,
    ) -> ConsistencyProof:
        first_ref = _parse_ref("from", from_)
        second_ref = None if to is None else _parse_ref("to", to)
        hasher = ctx.store.hasher.name
        async with read_scope(ctx, principal) as (conn, scope):
            target = await subtree_node(conn, scope, node)
            state = await tree_state(conn, target.root_id, hasher)
            h = by_name(state.hash_algorithm)
            try:
                if second_ref is None:
                    second = TreeHead(
                        size=state.size,
                        root=state.root.hex(),
                        note=_note(checkpointer, target.root_id, state.size, state.root),
                    )
                else:
                    second = await _head(
                        conn, checkpointer, target.root_id, second_ref, state.size, "to"
                    )
                first = await _head(
                    conn, checkpointer, target.root_id, first_ref, second.size, "from"
                )
                proof = await consistency_proof(conn, target.root_id, h, first.size, second.size)
            except TreeUnavailable as exc:
                raise unprocessable(str(exc), slug="tree-unavailable") from None
        return ConsistencyProof(
            origin=origin_of(ctx.settings.log_name, target.root_id),
            hash_algorithm=state.hash_algorithm,
            from_=first,
            to=second,
            proof=[p.hex() for p in proof],
        )

    @post(
        "/consistency/verify",
        status_code=200,
        summary="Check a consistency proof (and its notes) against this log",
        description=(
            "`consistent`: the RFC 9162 proof holds between the two (size, root) heads; "
            "`from_signed`/`to_signed`: the notes, when given, are signed by this log's key and "
            "name those heads; `matches_stored`: this server's tree still has `to.root` at "
            "`to.size`. Roles: inspector, admin, operator."
        ),
        guards=[needs(AUDITORS, "verifying a consistency proof")],
    )
    async def verify_consistency(
        self,
        data: JSONBody[ConsistencyIn],
        ctx: Ctx,
        principal: Caller,
        checkpointer: CheckpointerDep,
        node: NodeParam = None,
    ) -> ConsistencyVerdict:
        details: list[str] = []
        try:
            h = by_name(data.hash_algorithm or ctx.store.hasher.name)
        except ValueError:
            raise bad_request("hash_algorithm", "sha256 or sm3") from None
        consistent = verify_consistency(
            h,
            data.from_.size,
            data.to.size,
            bytes.fromhex(data.from_.root),
            bytes.fromhex(data.to.root),
            [bytes.fromhex(p) for p in data.proof],
        )
        details.append(
            "the proof holds" if consistent else "the proof does not tie the two heads together"
        )
        async with read_scope(ctx, principal) as (conn, scope):
            target = await subtree_node(conn, scope, node)
            origin = origin_of(ctx.settings.log_name, target.root_id)
            signed = [
                _note_names(checkpointer, head, origin, label, details)
                for head, label in ((data.from_, "from"), (data.to, "to"))
            ]
            state = await tree_state(conn, target.root_id, ctx.store.hasher.name)
            matches = False
            if data.to.size <= state.size:
                try:
                    now_root = await root_at(conn, target.root_id, h, data.to.size)
                except TreeUnavailable:
                    now_root = b""
                matches = now_root.hex() == data.to.root
        details.append(
            "this server's tree still has that root at that size"
            if matches
            else "this server's tree does not have that root at that size"
        )
        return ConsistencyVerdict(
            consistent=consistent,
            from_signed=signed[0],
            to_signed=signed[1],
            matches_stored=matches,
            details=details,
        )

    @get(
        "/evidence",
        summary="Evidence bundle (zip): a subtree's events, checkpoint, proofs and key",
        media_type="application/zip",
        operation_class=_ZipOperation,
        description=(
            "Streams a zip (format civic-evidence/v1): events.ndjson (the canonical bytes as "
            "hashed, in tree order, with the root's other leaves as subtree hashes), the signed "
            "checkpoint (spine and C2SP note), a consistency proof from the latest stored "
            "checkpoint, the public key and a manifest. Check it offline with `civic-verify "
            "BUNDLE.zip --key <trusted key>`. Roles: inspector, admin, operator."
        ),
        guards=[needs(AUDITORS, "taking an evidence bundle")],
    )
    async def evidence(
        self, ctx: Ctx, principal: Caller, checkpointer: CheckpointerDep, node: NodeParam = None
    ) -> Stream:
        # The node and the heavy-read budget are checked before the answer starts, so a bad
        # node is still a 404 and a busy server a 503 (not a cut-off zip).
        async with read_scope(ctx, principal, heavy=True) as (conn, scope):
            target = await subtree_node(conn, scope, node)

        async def chunks() -> AsyncIterator[bytes]:
            async with read_scope(ctx, principal, heavy=True) as (conn, scope):
                node_now = await subtree_node(conn, scope, target.code)
                checkpoint = await checkpointer.take(conn, node_now)
                consistency = await _bundle_consistency(
                    conn, checkpointer, node_now.root_id, checkpoint
                )
                state = await tree_state(conn, node_now.root_id, ctx.store.hasher.name)
                async for chunk in bundle_chunks(
                    conn,
                    node_now,
                    checkpoint,
                    _public_key(checkpointer),
                    consistency,
                    tree_algorithm=state.hash_algorithm,
                ):
                    yield chunk

        filename = f"evidence-{target.code}.zip"
        return Stream(
            chunks(),
            media_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
            },
        )

    @post(
        "/cosignatures",
        status_code=201,
        summary="A witness's cosignature of a checkpoint note (C2SP tlog-cosignature/v1)",
        description=(
            "The note must be one this log signed, of the caller's root, naming a size and "
            "root this server's tree has; the cosignature must verify under `public_key`. "
            "Stored cosignatures are served with checkpoints of that tree size (their lines "
            "appended to the note). Roles: inspector, admin, operator."
        ),
        guards=[needs(AUDITORS, "cosigning a checkpoint")],
    )
    async def cosign(
        self,
        data: JSONBody[CosignatureIn],
        ctx: Ctx,
        principal: Caller,
        checkpointer: CheckpointerDep,
    ) -> Cosignature:
        log_name = ctx.settings.log_name
        try:
            checkpoint = verify_note(data.note, log_name, checkpointer.signer.public_key_raw())
            body, _ = split_note(data.note)
            line = parse_signature_line(data.cosignature)
            public_key = unb64(data.public_key)
            signed_at = verify_cosignature(body, data.cosignature, line.name, public_key)
        except (NoteError, ValueError) as exc:
            raise unprocessable(f"not a valid cosignature of this log's note: {exc}") from None
        async with (
            ctx.db.acquire() as conn,
            scoped_transaction(
                conn,
                principal.scope,
                statement_timeout_ms=ctx.settings.statement_timeout_ms,
                cache=ctx.scopes,
            ) as (_, scope),
        ):
            if checkpoint.origin != origin_of(log_name, scope.root_id):
                raise unprocessable("the note is another root's log", slug="another-log")
            state = await tree_state(conn, scope.root_id, ctx.store.hasher.name)
            if checkpoint.size > state.size:
                raise unprocessable("the note names a size beyond this tree")
            h = by_name(state.hash_algorithm)
            if await root_at(conn, scope.root_id, h, checkpoint.size) != checkpoint.root:
                raise unprocessable("the note's root is not this tree's at that size")
            if await count_cosignatures(conn, scope.root_id, checkpoint.size) >= (
                MAX_COSIGNATURES_PER_SIZE
            ):
                raise ProblemError(
                    409,
                    "Conflict",
                    "this tree size has all the cosignatures it keeps",
                    slug="too-many-cosignatures",
                )
            stored = StoredCosignature(
                checkpoint.size,
                checkpoint.root,
                line.name,
                public_key,
                signed_at,
                data.cosignature.rstrip("\n") + "\n",
            )
            await insert_cosignature(conn, scope.root_id, stored, principal.subject)
        return Cosignature(
            witness=line.name, public_key=data.public_key, time=signed_at, line=stored.line
        )


def _note_names(
    checkpointer: Checkpointer, head: TreeHeadIn, origin: str, label: str, details: list[str]
) -> bool | None:
    if head.note is None:
        return None
    settings = checkpointer.ctx.settings
    try:
        body = verify_note(head.note, settings.log_name, checkpointer.signer.public_key_raw())
    except NoteError as exc:
        details.append(f"{label}: {exc}")
        return False
    ok = body.origin == origin and body.size == head.size and body.root.hex() == head.root
    details.append(
        f"{label}: the note is signed by this log"
        + ("" if ok else " but names another log, size or root")
    )
    return ok


async def _bundle_consistency(
    conn: asyncpg.Connection, checkpointer: Checkpointer, root_id: UUID, checkpoint: Checkpoint
) -> dict[str, Any] | None:
    """The proof from the newest stored checkpoint (if visible) to the bundle's tree."""
    size = checkpoint.tree_size or 0
    stored = await latest_tree_checkpoint(conn, root_id, size)
    if stored is None or stored.tree_size is None:
        return None
    h = by_name(checkpointer.ctx.store.hasher.name)
    proof = await consistency_proof(conn, root_id, h, stored.tree_size, size)
    return {
        "from": {
            "size": stored.tree_size,
            "root": stored.tree_root,
            "note": stored.note,
            "checkpoint_id": stored.id,
            "at": stored.at,
        },
        "to": {"size": size, "root": checkpoint.tree_root, "note": checkpoint.note},
        "proof": [p.hex() for p in proof],
    }


def _public_key(checkpointer: Checkpointer) -> dict[str, Any]:
    signer = checkpointer.signer
    raw = signer.public_key_raw()
    name = checkpointer.ctx.settings.log_name
    return {
        "algorithm": signer.algorithm,
        "key_id": key_id(raw),
        "public_key": b64(raw),
        "pem": signer.public_key_pem(),
        "hash_algorithm": checkpointer.ctx.store.hasher.name,
        "note_key_name": name,
        "vkey": vkey(name, raw),
    }
