"""Roles as Litestar guards: a route declares who may call it, before anything else runs.

``@post("/", guards=[needs(WRITERS, "reporting an issue")])`` answers 403 (problem+json, in
the caller's language) to a principal holding none of the roles, before the body is read.
The guard decodes the bearer token once per request and keeps the principal in the request's
scope, where the ``principal`` dependency finds it. Placement (is the caller's scope over the
issue's node?) needs the loaded aggregate and stays in the command handlers.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from services.auth import Principal, decode_token
from services.context import AppContext
from services.problems import forbidden
from services.roles import Role

#: where the decoded principal is kept in the ASGI scope's state for this request.
_PRINCIPAL = "civic_principal"


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The request's principal, decoded from its bearer token once (401 without a valid one)."""
    state = connection.scope.setdefault("state", {})
    principal: Principal | None = state.get(_PRINCIPAL)
    if principal is None:
        ctx: AppContext = connection.app.state.ctx
        principal = decode_token(ctx.jwt, connection.headers.get("authorization"))
        state[_PRINCIPAL] = principal
        # the request log names the subject (services/middleware.py reads this key)
        state["principal"] = principal.subject
    return principal


def require(principal: Principal, roles: frozenset[Role], action: str) -> None:
    """403 unless the principal holds one of ``roles`` (for checks a guard cannot make,
    such as a role needed only with one option of the body)."""
    if not principal.has_any(roles):
        allowed = ", ".join(sorted(r.value for r in roles))
        raise forbidden(f"{action} needs one of the roles: {allowed}")


def needs(roles: frozenset[Role], action: str) -> Guard:
    """A guard: the caller must hold one of ``roles``; ``action`` names it in the 403."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        require(principal_of(connection), roles, action)

    return guard
