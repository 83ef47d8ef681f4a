"""Domain errors. The application maps each to an HTTP status; the domain only says what went wrong."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule the domain refuses."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidValue(DomainError):
    """A value is malformed for the domain (bad code, bad mobile number...). Maps to 422."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.reason = detail


class IllegalTransition(DomainError):
    """The command is not allowed in the aggregate's current state. Maps to 409."""

    def __init__(self, detail: str, *, current_state: str) -> None:
        super().__init__(detail)
        self.current_state = current_state


class Conflict(DomainError):
    """The command collides with existing facts (duplicate code, overlapping term). Maps to 409."""
