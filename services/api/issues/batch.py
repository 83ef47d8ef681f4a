"""/v1/issues:batch — the bulk import for platforms that push work orders (12345 hotline).

The handler decodes the items one by one itself, so one malformed item fails alone; each
item is an ``IssueCreate`` with its own Idempotency-Key and runs in its own transaction.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.openapi.spec import Operation

from services.api.deps import POSITION_HEADER, Caller, Ctx, command_request
from services.api.guards import needs
from services.api.issues.batch_keys import batch_remember, batch_replay
from services.api.issues.schemas import BatchItemResult, BatchResult, BatchSummary
from services.commands import issues as cmd
from services.commands.issues import BatchItem
from services.commands.session import CommandRequest, run_command
from services.problems import FieldError, ProblemError, handle_exception
from services.roles import WRITERS, Role

#: who may push work orders in bulk: the dispatching roles and platform integrations.
IMPORTERS = WRITERS | frozenset({Role.INTEGRATOR})
MAX_BATCH_ITEMS = 500
#: a full batch of long Chinese descriptions is a few MB; single requests keep the app limit.
MAX_BATCH_BYTES = 8 * 1024 * 1024
#: batch items run this many at a time (each in its own transaction).
BATCH_CONCURRENCY = 4


class IssueBatch(msgspec.Struct, forbid_unknown_fields=True):
    """The request body as the OpenAPI document shows it."""

    items: Annotated[list[BatchItem], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ITEMS)]


class _BatchEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    items: list[msgspec.Raw]


def _batch_request_body() -> dict[str, Any]:
    """The batch's request schema, inlined (the handler decodes items one by one itself)."""
    (schema,), components = msgspec.json.schema_components([IssueBatch], ref_template="{name}")

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                return inline(components[node["$ref"]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"required": True, "content": {"application/json": {"schema": inline(schema)}}}


@dataclass
class _BatchOperation(Operation):
    """Describes the request body the handler reads itself (so one bad item fails alone)."""

    def to_schema(self) -> dict[str, Any]:
        schema = super().to_schema()
        schema["requestBody"] = _batch_request_body()
        return schema


_FIELD = re.compile(r"at `\$\.([A-Za-z_]+)")


def _bad_body(detail: str, field: str = "body") -> ProblemError:
    return ProblemError(
        400,
        "Bad Request",
        detail,
        slug="validation",
        errors=[FieldError(field=field, message=detail)],
    )


def _invalid(exc: msgspec.ValidationError) -> ProblemError:
    """A 400 naming the field msgspec's message points at."""
    match = _FIELD.search(str(exc))
    return _bad_body(str(exc), match[1] if match else "body")


def _decode_items(body: bytes) -> list[msgspec.Raw]:
    try:
        envelope = msgspec.json.decode(body, type=_BatchEnvelope)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise _bad_body(f"the body is not valid JSON: {exc}") from None
    count = len(envelope.items)
    if count > MAX_BATCH_ITEMS:
        raise ProblemError(
            413,
            "Content Too Large",
            f"a batch holds at most {MAX_BATCH_ITEMS} items (got {count}); split it",
            slug="batch-too-large",
            errors=[FieldError(field="items", message=f"at most {MAX_BATCH_ITEMS} items")],
        )
    if count == 0:
        raise _bad_body("items must hold at least one work order", "items")
    return envelope.items


class IssueBatchController(Controller):
    path = "/v1/issues:batch"
    tags = ["issues"]

    @post(
        "/",
        status_code=200,
        summary="Import work orders in bulk (12345 hotline, 一网统管): IssueReported per item",
        description=(
            f"Up to {MAX_BATCH_ITEMS} items (more: 413). Each item has its own idempotency_key "
            "and runs in its own transaction: a retried batch re-creates nothing (the item "
            "answers 200 instead of 201), the same key with a different item answers 422, and "
            "one bad item (400 malformed, 404 node outside your scope, 409, 422) fails alone. "
            "The answer is 200 with one result per item, in order: {index, status, id, version, "
            "position} or {index, status, error: problem}. Roles: operator, admin or integrator; "
            "every item's node must lie in the caller's scope."
        ),
        operation_class=_BatchOperation,
        request_max_body_size=MAX_BATCH_BYTES,
        operation_id="importIssues",
        guards=[needs(IMPORTERS, "importing work orders")],
    )
    async def import_batch(
        self, request: Request[Any, Any, Any], ctx: Ctx, principal: Caller
    ) -> Response[BatchResult]:
        batch_request = await command_request(request)
        replay = await batch_replay(ctx, principal, batch_request)
        if replay is not None:
            status, body = replay
            return Response(
                content=msgspec.json.decode(body, type=BatchResult),
                status_code=status,
                headers={"Idempotent-Replayed": "true"},
            )
        raws = _decode_items(batch_request.body)
        results: list[BatchItemResult | None] = [None] * len(raws)
        # Items sharing a key run in order (the first creates, the next replays); other keys
        # run side by side, a few at a time.
        groups: dict[str, list[int]] = {}
        items: dict[int, BatchItem] = {}
        for index, raw in enumerate(raws):
            try:
                item = msgspec.json.decode(raw, type=BatchItem)
            except msgspec.ValidationError as exc:
                results[index] = _failed(request, index, _invalid(exc), None)
                continue
            items[index] = item
            groups.setdefault(item.idempotency_key, []).append(index)
        gate = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def run_group(indexes: list[int]) -> None:
            async with gate:
                for index in indexes:
                    results[index] = await _one(
                        request, ctx, principal, batch_request, index, items[index]
                    )

        await asyncio.gather(*(run_group(g) for g in groups.values()))
        done = [r for r in results if r is not None]
        positions = [r.position for r in done if r.status == 201 and r.position is not None]
        answer = BatchResult(
            items=done,
            summary=BatchSummary(
                created=sum(1 for r in done if r.status == 201),
                replayed=sum(1 for r in done if r.status == 200),
                failed=sum(1 for r in done if r.status >= 400),
            ),
            position=max(positions) if positions else None,
        )
        await batch_remember(ctx, principal, batch_request, 200, msgspec.json.encode(answer))
        headers = {POSITION_HEADER: str(answer.position)} if answer.position is not None else {}
        return Response(content=answer, status_code=200, headers=headers)


async def _one(
    request: Request[Any, Any, Any],
    ctx: Ctx,
    principal: Caller,
    batch: CommandRequest,
    index: int,
    item: BatchItem,
) -> BatchItemResult:
    item_request = CommandRequest(
        method="POST",
        path="/v1/issues:batch#item",
        body=msgspec.json.encode(item),
        # A namespace of its own: an item key never collides with a request's key.
        idempotency_key=f"issues:batch:{item.idempotency_key}",
        correlation_id=batch.correlation_id,
    )
    report = item.command()
    try:
        outcome = await run_command(ctx, principal, item_request, lambda s: cmd.report(s, report))
    except Exception as exc:
        return _failed(request, index, exc, item)
    changed = msgspec.json.decode(outcome.body, type=cmd.IssueChanged)
    return BatchItemResult(
        index=index,
        status=200 if outcome.replayed else outcome.status,
        idempotency_key=item.idempotency_key,
        external_id=item.external_id,
        id=changed.id,
        version=changed.version,
        position=changed.position,
    )


def _failed(
    request: Request[Any, Any, Any], index: int, exc: Exception, item: BatchItem | None
) -> BatchItemResult:
    problem_response = handle_exception(request, exc)
    problem = msgspec.json.decode(problem_response.content)
    problem["instance"] = f"{request.url.path}#/items/{index}"
    return BatchItemResult(
        index=index,
        status=problem_response.status_code or 500,
        idempotency_key=item.idempotency_key if item else None,
        external_id=item.external_id if item else None,
        error=problem,
    )
