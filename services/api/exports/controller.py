"""The export routes: one per list, each the same handler on its own ``Export``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get
from litestar.di import Provide
from litestar.types import Guard

from services.api.exports.ledgers import ISSUES, MEMBERS, PAIRINGS
from services.api.exports.stream import Exporting, provide_export

# the ledger's OpenAPI operation: a file in one of two media types, by ``format``
from services.api.findings import SpreadsheetOperation as FileOperation
from services.api.guards import needs
from services.roles import READERS


def _export(path: str, summary: str, description: str, guard: Guard) -> Any:
    """The route of an export: a file as an attachment, for every reading role."""
    return get(
        path,
        operation_class=FileOperation,
        summary=summary,
        description=description,
        response_description="the file (XLSX or CSV), as an attachment",
        guards=[guard],
    )


class ExportController(Controller):
    path = "/v1"
    tags = ["exports"]
    #: the parameters every export takes (?node=, ?format=, ?min_position=)
    dependencies = {"export": Provide(provide_export, sync_to_thread=False)}

    @_export(
        "/issues/export",
        "Export the issues (工单台账) of a subtree as XLSX or CSV",
        "One row per issue, oldest first, Chinese headers, instants in China time. "
        "XLSX: frozen header, real dates, A4 landscape; CSV: UTF-8 with BOM. Both streamed. "
        "Roles: every reading role (a unit principal: the issues assigned or escalated to it).",
        needs(READERS, "exporting issues"),
    )
    async def issues(self, export: Exporting) -> Response[Any]:
        return await export.answer(ISSUES)

    @_export(
        "/pairings/export",
        "Export the pairings (结对共建台账) of a subtree as XLSX or CSV",
        "One row per pairing (its communities' and its units'), in signing order, "
        "commitments listed in one cell. Roles: every reading role.",
        needs(READERS, "exporting pairings"),
    )
    async def pairings(self, export: Exporting) -> Response[Any]:
        return await export.answer(PAIRINGS)

    @_export(
        "/members/export",
        "Export the in-service members (双报到党员名册) of a subtree as XLSX or CSV",
        "One row per member (current community or home unit in the subtree), in "
        "registration order. Name, mobile and ID number masked unless the caller is an admin; "
        "an admin's export records every member shown in clear (see /v1/audit/reveals; "
        "reason: X-Reveal-Reason). Roles: every reading role.",
        needs(READERS, "exporting members"),
    )
    async def members(self, export: Exporting) -> Response[Any]:
        return await export.answer(MEMBERS)
