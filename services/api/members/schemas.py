"""What the member reads answer: a member (personal data masked unless revealed), and a
unit's registration at a community."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from services.fields import MemberStatus


class MemberView(msgspec.Struct):
    id: UUID
    community_code: str
    home_unit_code: str
    grid_code: str | None
    status: MemberStatus
    name: str
    phone: str
    id_number: str | None
    #: name, phone and ID number are masked (the caller is not an admin)
    personal_data_masked: bool
    service_hours: float
    service_count: int
    points: int
    #: communities the member was registered at before (oldest first)
    former_community_codes: list[str]
    registered_at: datetime
    transferred_at: datetime | None
    deregistered_at: datetime | None
    erased_at: datetime | None
    updated_at: datetime
    version: int


class UnitRegistrationView(msgspec.Struct):
    id: UUID
    unit_code: str
    community_code: str
    registered_at: datetime
    version: int
