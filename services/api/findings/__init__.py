"""/v1/findings: inspection findings and rectification (巡视整改), and the ledger export.

* ``schemas`` — ``FindingView``; ``queries`` — the reads' SQL, filters and row → view;
* ``controller`` — ``FindingController``: guards, then ``command.run(commands.x, id, data)``;
* ``ledger`` — writing the ledger (XLSX off the loop, CSV streamed); ``ledger_format`` —
  its columns, rows and files as the inspection office files them.

The request bodies are the commands, in ``services/commands/findings.py``.
"""

from services.api.findings.controller import FindingController
from services.api.findings.ledger import SpreadsheetOperation

__all__ = ["FindingController", "SpreadsheetOperation"]
