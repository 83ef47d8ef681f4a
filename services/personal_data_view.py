"""The one place the application handles members' personal information (PIPL).

Everything that turns request input into ``PersonalData``, derives its blind index, or
turns stored personal data back into a response goes through here:

* ``new_person``: validate and normalise name, mobile and ID-card number (422 otherwise);
* ``identity_hash``: the keyed HMAC (blind index) duplicate detection compares — never
  the plaintext;
* ``may_reveal``: clear text is for admins of the member's community or of a level above
  it — not for units (which see their own in-service members masked), nor for admins
  elsewhere in the tenant;
* ``person_view``: what a caller may see of stored personal data — masked (``张*``,
  ``138****1234``, ``330106********1234``) unless ``may_reveal`` allows it; an erased person
  reads as ``[erased]``.

The read model keeps the event's personal-data field verbatim (``rm_members.person``):
ciphertext sealed with the person's data key (``infra/pii_crypto.py``). ``person_view``
opens it with the wrapped key the read joined from ``person_keys``, in memory only, then
masks it unless the caller may see it in clear. No key (erased) reads ``[erased]``; a value that
does not open (altered ciphertext, wrong key) reads ``[unavailable]`` — never a 500.
``record_reveals`` writes the audit of clear-text reads (``pii_reveals``).
Nothing here logs, and callers must not log what they get from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
import structlog

from domain.personal_data import (
    PersonalData,
    identity_key,
    masked,
    personal_data,
    revealed,
)
from infra.database import Scope, scoped_transaction
from infra.pii_crypto import DecryptionFailed, is_sealed, open_with_wrapped
from infra.pii_keys import blind_index, index_key, master_key
from infra.settings import Settings
from services.auth import Principal
from services.context import AppContext

log = structlog.get_logger("civic.privacy")

#: what reads show when stored personal data exists but does not decrypt.
UNAVAILABLE = "[unavailable]"
#: the event field holding the person (sealed under this name).
PERSON_FIELD = "person"


class PersonView(msgspec.Struct):
    """Personal data as one caller may see it."""

    name: str
    phone: str
    id_number: str | None
    #: true when the values are masked (the caller is not an admin over the community)
    masked: bool
    #: true when clear text was shown (an admin's view of a readable person): audited
    revealed: bool = False


class _Stored(msgspec.Struct):
    name: str
    phone: str
    id_number: str | None = None


def new_person(name: str, phone: str, id_number: str | None) -> PersonalData:
    """Validated personal data from a request (raises ``InvalidValue`` → 422)."""
    return personal_data(name, phone, id_number)


def identity_hash(settings: Settings, person: PersonalData) -> bytes:
    """The blind index of "who this is" (ID-card number, else mobile): HMAC-SHA256."""
    return blind_index(index_key(settings), identity_key(person))


def may_reveal(principal: Principal, scope: Scope, community_path: str | None) -> bool:
    """Clear text only for an admin whose scope holds the member's (current) community: the
    community's own admins and those above it. A unit's scope never holds a community."""
    return (
        principal.is_admin
        and not scope.is_unit
        and community_path is not None
        and scope.contains_path(community_path)
    )


def _decode(stored: str | bytes | None, opened: bytes | None) -> PersonalData | None:
    data = opened if opened is not None else stored
    if data is None:
        return None
    value = msgspec.json.decode(data, type=_Stored | None)
    if value is None:
        return None
    return PersonalData(name=value.name, phone=value.phone, id_number=value.id_number)


def _unavailable(reveal: bool) -> PersonView:
    return PersonView(name=UNAVAILABLE, phone=UNAVAILABLE, id_number=UNAVAILABLE, masked=not reveal)


def person_view(
    stored: str | bytes | None,
    *,
    reveal: bool,
    settings: Settings,
    root_id: UUID,
    member_id: UUID,
    key_id: str | None,
    wrapped_key: bytes | None,
) -> PersonView:
    """The caller's view of a stored person (``None`` or no key = erased).

    ``stored`` is the read model's sealed value; ``key_id``/``wrapped_key`` the person's
    row of ``person_keys`` (``None`` once shredded); ``reveal``: ``may_reveal``'s answer
    for this caller and member.
    """
    try:
        sealed = msgspec.json.decode(stored) if stored is not None else None
        opened = None
        if is_sealed(sealed):
            opened = open_with_wrapped(
                master_key(settings),
                root_id=root_id,
                member_id=member_id,
                key_id=key_id,
                wrapped_key=wrapped_key,
                field_name=PERSON_FIELD,
                sealed=sealed,
            )
            if opened is None:  # the key is gone: crypto-shredded
                stored = None
        person = _decode(stored, opened)
    except (DecryptionFailed, msgspec.DecodeError, msgspec.ValidationError):
        log.warning("personal data does not decrypt", member_id=str(member_id))
        return _unavailable(reveal)
    shown = revealed(person) if reveal else masked(person)
    return PersonView(
        name=shown.name,
        phone=shown.phone,
        id_number=shown.id_number,
        masked=not reveal,
        revealed=reveal and person is not None,
    )


@dataclass(frozen=True)
class Reveal:
    """One person shown in clear to one caller."""

    member_id: UUID
    node_id: UUID


RECORD_REVEALS = """
INSERT INTO pii_reveals (root_id, node_id, member_id, revealed_at, actor, endpoint, reason,
                         request_id)
SELECT $1, CASE WHEN x.node_id IN (SELECT civic_scope_nodes()) THEN x.node_id ELSE $2 END,
       x.member_id, $3, $4, $5, $6, $7
FROM unnest($8::uuid[], $9::uuid[]) AS x(member_id, node_id)
"""

MAX_REASON = 500
#: why an admin reads personal data in clear (recorded with the reveal)
REASON_HEADER = "X-Reveal-Reason"


async def record_reveals(
    ctx: AppContext,
    principal: Principal,
    reveals: Sequence[Reveal],
    *,
    endpoint: str,
    request: Any,
) -> None:
    """Record clear-text reads in their own small write transaction, before the answer
    leaves (if this fails, the request fails: no unrecorded reveal). The reason is the
    request's ``X-Reveal-Reason`` header, when given."""
    if not reveals:
        return
    reason = request.headers.get(REASON_HEADER) or None
    request_id = request.scope.get("state", {}).get("request_id")
    at = ctx.clock()
    async with (
        ctx.db.acquire() as conn,
        scoped_transaction(
            conn,
            principal.scope,
            statement_timeout_ms=ctx.settings.statement_timeout_ms,
            cache=ctx.scopes,
        ) as (_, scope),
    ):
        await conn.execute(
            RECORD_REVEALS,
            scope.root_id,
            scope.node_id,
            at,
            f"{principal.subject}@{principal.scope}",
            endpoint,
            reason[:MAX_REASON] if reason else None,
            request_id if isinstance(request_id, str) else None,
            [r.member_id for r in reveals],
            [r.node_id for r in reveals],
        )
