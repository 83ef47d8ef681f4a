"""Personal information of a registered member (PIPL 个人信息保护法) behind one module.

Everything that identifies a person travels as one ``PersonalData`` value, so the privacy
layer can encrypt exactly that field of ``MemberRegistered`` with the person's key and
crypto-shred it on erasure. This module validates it (mainland mobile, GB 11643 ID-card
number), masks it for responses, and derives the identity key that duplicate detection
hashes (the application keys it with HMAC; the plaintext key is never stored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.errors import InvalidValue
from domain.refs import clean_text

MAX_NAME = 50

#: what reads show in place of a shredded value.
ERASED = "[erased]"


class PersonalMarker:
    """Marks an event field holding personal information (``Annotated[T | None, PERSONAL]``)."""

    def __repr__(self) -> str:
        return "PERSONAL"


#: event fields typed ``PersonalData`` (or annotated with this) are encrypted per person in
#: the stored event (see ``infra/pii_crypto.py``); such fields must accept ``None``, what
#: they decode to once the person's key is shredded.
PERSONAL = PersonalMarker()

_MOBILE = re.compile(r"^1[0-9]{10}$")
_ID_BODY = re.compile(r"^[0-9]{17}[0-9X]$")
_ID_DIGITS = re.compile(r"^[0-9]{17}$")
_PHONE_SEPARATORS = re.compile(r"[\s-]")
#: GB 11643-1999 weights of the first 17 digits.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(frozen=True)
class PersonalData:
    """Name, mainland mobile and (optional) ID-card number of one person.

    Constructing it does not validate, so stored, masked or decrypted values load as they
    are; new input goes through ``personal_data(...)``.
    """

    name: str
    phone: str
    id_number: str | None


def personal_data(name: str, phone: str, id_number: str | None = None) -> PersonalData:
    """Validate and normalise new personal data (raises ``InvalidValue``)."""
    return PersonalData(
        name=clean_text("name", name, max_len=MAX_NAME),
        phone=normalize_phone(phone),
        id_number=normalize_id_number(id_number),
    )


def normalize_phone(phone: str, field: str = "phone") -> str:
    """A mainland mobile number: 11 digits starting with 1 (spaces, '-' and +86 tolerated)."""
    if not isinstance(phone, str):
        raise InvalidValue(field, "must be text")
    digits = _PHONE_SEPARATORS.sub("", phone)
    if digits.startswith("+86"):
        digits = digits[3:]
    if not _MOBILE.fullmatch(digits):
        raise InvalidValue(field, "must be a mainland mobile number: 11 digits starting with 1")
    return digits


def normalize_id_number(id_number: str | None, field: str = "id_number") -> str | None:
    """An 18-character resident ID-card number with a valid GB 11643 check digit, or None."""
    if id_number is None:
        return None
    if not isinstance(id_number, str):
        raise InvalidValue(field, "must be text")
    value = id_number.strip().upper()
    if not value:
        return None
    if not _ID_BODY.fullmatch(value):
        raise InvalidValue(field, "must be 18 characters: 17 digits and a check digit (0-9 or X)")
    if id_check_digit(value[:17]) != value[17]:
        raise InvalidValue(field, "the check digit does not match (GB 11643)")
    return value


def id_check_digit(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits of an ID-card number."""
    if not _ID_DIGITS.fullmatch(first17):
        raise ValueError("need exactly 17 digits")
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def identity_key(person: PersonalData) -> str:
    """What makes two registrations "the same person": the ID number, else the mobile.

    The application stores only a keyed hash (HMAC blind index) of this string.
    """
    if person.id_number:
        return f"id:{person.id_number}"
    return f"phone:{person.phone}"


def mask_phone(phone: str) -> str:
    """``13812341234`` → ``138****1234``."""
    if len(phone) < 8:
        return "*" * len(phone)
    return f"{phone[:3]}{'*' * (len(phone) - 7)}{phone[-4:]}"


def mask_id(id_number: str) -> str:
    """``330106199001011234`` → ``330106********1234`` (first 6, 8 stars, last 4)."""
    if len(id_number) < 11:
        return "*" * len(id_number)
    return f"{id_number[:6]}{'*' * (len(id_number) - 10)}{id_number[-4:]}"


def mask_name(name: str) -> str:
    """``张三`` → ``张*``; ``欧阳娜娜`` → ``欧***``: the first character stays."""
    if len(name) <= 1:
        return "*" * len(name)
    return name[0] + "*" * (len(name) - 1)


def masked(person: PersonalData | None) -> PersonalData:
    """The view every caller but an admin gets; an erased person reads as ``ERASED``."""
    if person is None:
        return PersonalData(name=ERASED, phone=ERASED, id_number=ERASED)
    return PersonalData(
        name=mask_name(person.name),
        phone=mask_phone(person.phone),
        id_number=mask_id(person.id_number) if person.id_number else None,
    )


def revealed(person: PersonalData | None) -> PersonalData:
    """The clear view (admin); an erased person still reads as ``ERASED``."""
    if person is None:
        return PersonalData(name=ERASED, phone=ERASED, id_number=ERASED)
    return person
