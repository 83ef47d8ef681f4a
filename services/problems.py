"""RFC 9457 problem details: every error leaves the API as application/problem+json."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any
from uuid import uuid4

import asyncpg
import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)

from domain.errors import Conflict, DomainError, IllegalTransition, InvalidValue
from infra.database import DatabaseUnavailable, ScopeNotFound
from infra.event_store import ConcurrencyError
from services.auth import AuthError
from services.messages import DEFAULT_LANGUAGE, negotiate, translate

log = structlog.get_logger("civic.api")

#: what Litestar's bare HTTP errors (whose detail only repeats the status) say instead
_STATUS_DETAIL = {
    404: "no such resource",
    405: "the method is not allowed here",
    413: "the request body is too large",
    415: "the body must be application/json",
    429: "too many requests; retry later",
}

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://civic-ledger.dev/problems/"


class FieldError(msgspec.Struct, omit_defaults=True):
    field: str
    message: str


class ProblemError(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug or title.lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}


def not_found(what: str) -> ProblemError:
    return ProblemError(404, "Not Found", f"{what} not found (or outside your scope)")


def not_caught_up(what: str) -> ProblemError:
    """Recorded, but the read model has not reached it yet: retry, or pass min_position."""
    return ProblemError(
        503,
        "Service Unavailable",
        f"the {what} is recorded but not yet readable; retry or pass min_position",
        slug="not-caught-up",
        headers={"Retry-After": "1"},
    )


def forbidden(detail: str) -> ProblemError:
    return ProblemError(403, "Forbidden", detail)


def invalid_value(field: str, message: str) -> ProblemError:
    """422 for one request field the handler itself refuses (as the domain's InvalidValue)."""
    return ProblemError(
        422,
        "Unprocessable Content",
        f"{field}: {message}",
        slug="invalid-value",
        errors=[FieldError(field=field, message=message)],
    )


def _response(
    request: Request[Any, Any, Any],
    status: int,
    title: str,
    detail: str,
    slug: str,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[bytes]:
    language = _language(request)
    body: dict[str, Any] = {
        "type": _TYPE_BASE + slug,
        "title": translate(title, language),
        "status": status,
        "detail": translate(detail, language),
        "instance": request.url.path,
    }
    if errors is not None:
        body["errors"] = [
            FieldError(field=e.field, message=translate(e.message, language)) for e in errors
        ]
    headers = {**(headers or {}), "Content-Language": language}
    state = request.scope.setdefault("state", {})
    request_id = state.get("request_id")
    if not request_id:
        # Routing failed before the request-context middleware ran (an unknown path): the
        # answer still carries an id to quote, in the body and the header alike.
        request_id = state["request_id"] = uuid4().hex
        headers["X-Request-ID"] = request_id
    body["request_id"] = request_id
    if extra:
        body.update(extra)
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _language(request: Request[Any, Any, Any]) -> str:
    settings = getattr(getattr(request.app.state, "ctx", None), "settings", None)
    default = negotiate(getattr(settings, "default_language", None) or DEFAULT_LANGUAGE)
    return negotiate(request.headers.get("accept-language"), default)


#: msgspec names the field it refuses inside the message, and the path to it after " - at"
_NAMED_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `([^`]+)`")
_AT_PATH = re.compile(r" - at `\$(?:\.([^`]*))?`$")


def _validation_errors(exc: ValidationException) -> list[FieldError]:
    errors: list[FieldError] = []
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict):
            key = str(item.get("key") or item.get("source") or "body")
            message = str(item.get("message", ""))
            at = _AT_PATH.search(message)
            if at is not None:
                message = message[: at.start()]
                key = at.group(1) or key
            named = _NAMED_FIELD.match(message)
            if named is not None and key in ("data", "body"):
                key = named.group(1)
            errors.append(FieldError(field=key, message=message))
    return errors


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, ProblemError):
        return _response(
            request,
            exc.status,
            exc.title,
            exc.detail,
            exc.slug,
            errors=exc.errors,
            headers=exc.headers,
            extra=exc.extra,
        )
    if isinstance(exc, AuthError | ScopeNotFound | NotAuthorizedException):
        detail = (
            str(exc)
            if not isinstance(exc, ScopeNotFound)
            else (f"the token's scope {exc.args[0]!r} does not exist or is closed")
        )
        if isinstance(exc, NotAuthorizedException):
            detail = exc.detail
        return _response(
            request,
            401,
            "Unauthorized",
            detail,
            "unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="civic-ledger"'},
        )
    if isinstance(exc, PermissionDeniedException):
        return _response(request, 403, "Forbidden", exc.detail, "forbidden")
    if isinstance(exc, InvalidValue):
        return _response(
            request,
            422,
            "Unprocessable Content",
            exc.detail,
            "invalid-value",
            errors=[FieldError(field=exc.field, message=exc.reason)],
        )
    if isinstance(exc, IllegalTransition):
        return _response(
            request,
            409,
            "Illegal Transition",
            exc.detail,
            "illegal-transition",
            extra={"current_state": exc.current_state},
        )
    if isinstance(exc, Conflict):
        return _response(request, 409, "Conflict", exc.detail, "conflict")
    if isinstance(exc, DomainError):
        return _response(request, 422, "Unprocessable Content", exc.detail, "domain-rule")
    if isinstance(exc, ConcurrencyError):
        return _response(
            request,
            409,
            "Conflict",
            "the aggregate was changed concurrently; reload and retry",
            "concurrency",
            extra={"current_version": exc.actual},
        )
    if isinstance(exc, ValidationException):
        errors = _validation_errors(exc)
        status = exc.status_code if 400 <= exc.status_code < 500 else 400
        return _response(
            request,
            status,
            "Bad Request",
            # Litestar's own detail echoes the URL ("Validation failed for GET /v1/…?…")
            "the request is not valid; see errors",
            "validation",
            errors=errors,
        )
    if isinstance(exc, HTTPException):
        status = exc.status_code
        title = {
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            413: "Content Too Large",
            415: "Unsupported Media Type",
            429: "Too Many Requests",
        }.get(status, "Error")
        detail = exc.detail
        if detail == title or detail == HTTPStatus(status).phrase:
            detail = _STATUS_DETAIL.get(status, detail)
        return _response(
            request,
            status,
            title,
            detail,
            title.lower().replace(" ", "-"),
            headers=dict(exc.headers or {}),
        )
    if isinstance(exc, RecursionError | UnicodeDecodeError):
        # Litestar decodes some bodies untyped first and lets these through: JSON nested
        # deeper than the recursion limit, bytes that are not UTF-8.
        detail = (
            "the request body nests too deeply"
            if isinstance(exc, RecursionError)
            else "the request is not valid UTF-8"
        )
        return _response(request, 400, "Bad Request", detail, "validation")
    if isinstance(exc, asyncpg.DataError | OverflowError) or (
        isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)
    ):
        # A value that validation let through but the database, the driver or date
        # arithmetic refuses (a NUL character, a number beyond 64 bits, a date near year 1 or
        # 9999): the client's input, not an outage. Validate at the edge; this is the net.
        log.warning("value out of range", error=repr(exc))
        return _response(
            request,
            400,
            "Bad Request",
            "a value in the request is out of range or cannot be stored "
            "(for example a number beyond 64 bits or a NUL character)",
            "validation",
        )
    if isinstance(
        exc,
        DatabaseUnavailable
        | OSError  # refused, reset, socket gone, connect timed out
        | asyncpg.PostgresConnectionError  # class 08: connection dropped or refused
        | asyncpg.CannotConnectNowError  # starting up, shutting down, in recovery
        | asyncpg.AdminShutdownError  # fast shutdown terminated our connection
        | asyncpg.CrashShutdownError
        | asyncpg.InterfaceError  # "connection is closed", "pool is closing"
        | asyncpg.InternalClientError  # protocol state lost with the connection mid-query
        | asyncpg.TooManyConnectionsError,
    ):
        log.warning("database unavailable", error=repr(exc))
        return _response(
            request,
            503,
            "Service Unavailable",
            "the database is unavailable; retry shortly",
            "unavailable",
            headers={"Retry-After": "2"},
        )
    if isinstance(exc, asyncpg.QueryCanceledError):
        return _response(
            request,
            503,
            "Service Unavailable",
            "the query took too long and was cancelled",
            "timeout",
            headers={"Retry-After": "5"},
        )
    log.exception("unhandled error", error=repr(exc))
    return _response(
        request,
        500,
        "Internal Server Error",
        "an unexpected error occurred; it has been logged",
        "internal",
    )
