"""/v1/issues (work orders, 工单) and /v1/issues:batch (the bulk import).

* ``schemas`` — what the endpoints answer (``IssueView``, the batch's results);
* ``queries`` — the reads' SQL, a row as a view, the list's filters;
* ``controller`` — ``IssueController``: guards, then ``command.run(cmd.x, issue_id, data)``;
* ``batch`` and ``batch_keys`` — ``IssueBatchController``, its item decoding, and the
  batch request's own Idempotency-Key.

The request bodies are the commands, in ``services/commands/issues.py``.
"""

from services.api.issues.batch import IssueBatchController
from services.api.issues.controller import IssueController
from services.api.issues.queries import PROJECTIONS, SELECT_ISSUES, subtree

__all__ = [
    "PROJECTIONS",
    "SELECT_ISSUES",
    "IssueBatchController",
    "IssueController",
    "subtree",
]
