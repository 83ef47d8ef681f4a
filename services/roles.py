"""Roles a token may carry, and which roles may do what."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    UNIT = "unit"
    INSPECTOR = "inspector"
    ADMIN = "admin"
    INTEGRATOR = "integrator"


ALL_ROLES = frozenset(Role)
#: may read read models and aggregates of their subtree.
READERS = ALL_ROLES
#: may change the hierarchy and run workflows in their subtree.
WRITERS = frozenset({Role.OPERATOR, Role.ADMIN})
#: may act as the assignee side of work (accept, resolve, report progress).
ASSIGNEES = frozenset({Role.OPERATOR, Role.ADMIN, Role.UNIT})
#: may verify, reject or reopen rectifications and read the audit trail in full.
INSPECTORS = frozenset({Role.INSPECTOR, Role.ADMIN})
#: may follow the feed and manage webhooks.
INTEGRATORS = frozenset({Role.INTEGRATOR, Role.ADMIN})
#: may import division codes, re-drive dead letters, close over a dissatisfied callback.
ADMINS = frozenset({Role.ADMIN})
