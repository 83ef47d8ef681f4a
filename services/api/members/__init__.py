"""/v1/members (双报到) and /v1/units/{code}/registrations: the controllers services/app.py
registers, and what the member export (services/api/exports.py) reads with them."""

from services.api.members.controller import MemberController
from services.api.members.queries import LIST_MEMBERS, PROJECTIONS
from services.api.members.unit_registrations import UnitRegistrationController

__all__ = ["LIST_MEMBERS", "PROJECTIONS", "MemberController", "UnitRegistrationController"]
