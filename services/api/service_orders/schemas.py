"""What the service-offer and service-order reads answer."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

import msgspec

OrderStatus = Literal["requested", "dispatched", "accepted", "completed", "evaluated", "cancelled"]


class OfferView(msgspec.Struct):
    id: UUID
    community_code: str
    provider_code: str | None
    member_id: UUID | None
    title: str
    category: str
    offered_at: datetime
    version: int


class OrderView(msgspec.Struct):
    id: UUID
    community_code: str
    title: str
    description: str
    offer_id: UUID | None
    due_on: date | None
    status: str
    member_id: UUID | None
    unit_code: str | None
    accept_by: datetime | None
    #: dispatched and not accepted by ``accept_by`` (ServiceOverdue recorded)
    overdue: bool
    dispatch_count: int
    summary: str | None
    hours: float | None
    rating: int | None
    comment: str | None
    points_awarded: int
    cancel_reason: str | None
    requested_at: datetime
    dispatched_at: datetime | None
    accepted_at: datetime | None
    completed_at: datetime | None
    evaluated_at: datetime | None
    cancelled_at: datetime | None
    version: int
    updated_at: datetime
