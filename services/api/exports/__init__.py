"""Lists officials send upward (工单台账, 结对共建台账, 双报到党员名册) as XLSX or CSV:
``GET /v1/issues/export``, ``/v1/pairings/export``, ``/v1/members/export``
``?node=&format=xlsx|csv`` — the same rows the list endpoints show the caller (its subtree;
a unit principal the work that names its unit), in the order recorded.

Bounded memory however many rows: the rows come from a server-side cursor in chunks of
``FETCH`` and go straight into the file (``services.spreadsheets``: XLSX through openpyxl's
write-only temporary files, then streamed from a file; CSV streamed chunk by chunk). The node
is resolved before the first byte, so a 404 is still a problem+json answer.

Members: personal data is masked unless the caller is an admin; an admin's export shows it
in clear and every member so shown is recorded in ``pii_reveals`` (endpoint
``GET /v1/members/export``, reason from ``X-Reveal-Reason``) before the file — or, for a CSV,
before each chunk — leaves the server, exactly as a list read records its reveals.
"""

from services.api.exports.controller import ExportController

__all__ = ["ExportController"]
