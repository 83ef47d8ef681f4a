"""Value objects of the tenant hierarchy: node kinds, codes and which kind may sit under which.

Statutory codes are the national 12-digit statistical division codes (e.g. county
330106000000, street 330106001000, community 330106001001). Grids and units get local
codes. The statistics bureau reissues codes on reorganisation, so a node keeps a stable
internal id and its former codes stay resolvable as aliases.

Codes are unique in the deployment, so a code one tenant may take is a code another cannot:
every code must lie in its own tenant's part of the code space (``check_root_code``,
``check_child_code``, ``check_kept_code``). A statutory code extends its parent's (a street
is its county's 6 digits + 3 + ``000``, a community its street's 9 + 3); a local code starts,
after at most one letter, with its root's 6-digit prefix (``U330106-JYJ``, ``330106U00001``,
``330106001001G01``). No tenant can then take, or probe for, another tenant's codes.
"""

from __future__ import annotations

import re
from enum import StrEnum

from domain.errors import InvalidValue


class NodeKind(StrEnum):
    PROVINCE = "province"
    CITY = "city"
    COUNTY = "county"
    STREET = "street"  # also 乡镇 (township); digits 7–9 tell 001–099 street from 100–199 town
    COMMUNITY = "community"  # also 村 (village); digits 10–12: 001–199 community, 200–399 village
    GRID = "grid"
    UNIT = "unit"


#: parent kind → kinds allowed directly beneath it.
ALLOWED_CHILDREN: dict[NodeKind, frozenset[NodeKind]] = {
    NodeKind.PROVINCE: frozenset({NodeKind.CITY, NodeKind.UNIT}),
    NodeKind.CITY: frozenset({NodeKind.COUNTY, NodeKind.UNIT}),
    NodeKind.COUNTY: frozenset({NodeKind.STREET, NodeKind.UNIT}),
    NodeKind.STREET: frozenset({NodeKind.COMMUNITY, NodeKind.UNIT}),
    NodeKind.COMMUNITY: frozenset({NodeKind.GRID}),
    NodeKind.GRID: frozenset(),
    NodeKind.UNIT: frozenset({NodeKind.UNIT}),  # a bureau's party branch under the bureau
}

#: kinds that may be a root tenant (a customer).
ROOT_KINDS = frozenset({NodeKind.PROVINCE, NodeKind.CITY, NodeKind.COUNTY})

_CODE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,39}$")
_STATUTORY = re.compile(r"^\d{12}$")


def parse_kind(value: str) -> NodeKind:
    try:
        return NodeKind(value)
    except ValueError:
        allowed = ", ".join(k.value for k in NodeKind)
        raise InvalidValue("kind", f"must be one of {allowed}") from None


def validate_code(code: str, kind: NodeKind, field: str = "code") -> str:
    """Check a node code. Administrative levels use 12-digit statutory codes."""
    if not _CODE.match(code):
        raise InvalidValue(
            field, "must be 1-40 characters of letters, digits, '-' or '_' (no spaces or '/')"
        )
    if kind in (
        NodeKind.PROVINCE,
        NodeKind.CITY,
        NodeKind.COUNTY,
        NodeKind.STREET,
        NodeKind.COMMUNITY,
    ) and not _STATUTORY.match(code):
        raise InvalidValue(field, f"a {kind.value} uses its 12-digit statistical division code")
    return code


def check_placement(parent_kind: NodeKind | None, kind: NodeKind) -> None:
    """Refuse a node under a parent of the wrong kind (a community directly under a county)."""
    if parent_kind is None:
        if kind not in ROOT_KINDS:
            raise InvalidValue(
                "parent_code",
                f"a {kind.value} cannot be a root; roots are province, city or county",
            )
        return
    if kind not in ALLOWED_CHILDREN[parent_kind]:
        raise InvalidValue(
            "parent_code", f"a {kind.value} cannot be placed under a {parent_kind.value}"
        )


#: statutory kinds → how many leading digits are the level's own (the rest are zeros).
STATUTORY_DIGITS: dict[NodeKind, int] = {
    NodeKind.PROVINCE: 2,
    NodeKind.CITY: 4,
    NodeKind.COUNTY: 6,
    NodeKind.STREET: 9,
    NodeKind.COMMUNITY: 12,
}
#: digits a local code (unit, grid) shares with its root: the root's first six.
LOCAL_PREFIX = 6
_LOCAL_PREFIX = re.compile(r"^[A-Za-z]?(\d{6})")


def root_prefix(root_code: str) -> str:
    """The digits every statutory code of a root's tenant starts with (a province's 2, a
    city's 4, a county's 6), read from the root's own code."""
    for digits in (2, 4):
        if root_code[digits:] == "0" * (12 - digits):
            return root_code[:digits]
    return root_code[:LOCAL_PREFIX]


def _statutory_level(code: str, kind: NodeKind, field: str) -> int:
    digits = STATUTORY_DIGITS[kind]
    if code[digits:] != "0" * (12 - digits):
        raise InvalidValue(
            field, f"a {kind.value} code has {digits} significant digits and ends in zeros"
        )
    return digits


def _check_local(code: str, kind: NodeKind, root_code: str, field: str) -> None:
    match = _LOCAL_PREFIX.match(code)
    if match is None or match.group(1) != root_code[:LOCAL_PREFIX]:
        raise InvalidValue(
            field,
            f"a {kind.value} code starts (after at most one letter) with its root's "
            f"{LOCAL_PREFIX}-digit prefix {root_code[:LOCAL_PREFIX]}",
        )


def check_root_code(code: str, kind: NodeKind, field: str = "code") -> None:
    """A root tenant's statutory code is its own prefix followed by zeros."""
    if kind in STATUTORY_DIGITS and _STATUTORY.match(code):
        _statutory_level(code, kind, field)


def check_child_code(
    code: str,
    kind: NodeKind,
    *,
    parent_kind: NodeKind,
    parent_code: str,
    root_code: str,
    field: str = "code",
) -> None:
    """A code given to a node under ``parent`` (registered, or moved with a new code) must
    extend the parent's statutory code, or for a local code carry the root's prefix (422)."""
    if kind not in STATUTORY_DIGITS:
        _check_local(code, kind, root_code, field)
        return
    if not _STATUTORY.match(code):
        raise InvalidValue(field, f"a {kind.value} uses its 12-digit statistical division code")
    digits = _statutory_level(code, kind, field)
    inherited = STATUTORY_DIGITS.get(parent_kind)
    if inherited is None:
        # placement keeps statutory nodes under statutory parents; say so if it did not
        raise InvalidValue(field, f"a {kind.value} sits under a statutory level, not a unit")
    if code[:inherited] != parent_code[:inherited]:
        raise InvalidValue(
            field,
            f"a {kind.value} code extends its {parent_kind.value}'s: it starts with "
            f"{parent_code[:inherited]}",
        )
    if code[inherited:digits] == "0" * (digits - inherited):
        raise InvalidValue(
            field, f"digits {inherited + 1}-{digits} of a {kind.value} code are not all zero"
        )


def check_kept_code(code: str, kind: NodeKind, *, root_code: str, field: str = "code") -> None:
    """A node that moves and keeps its code (until the bureau reissues it) must still lie in
    its root's part of the code space."""
    if kind not in STATUTORY_DIGITS:
        _check_local(code, kind, root_code, field)
        return
    prefix = root_prefix(root_code)
    if not code.startswith(prefix):
        raise InvalidValue(field, f"a {kind.value} code of this tenant starts with {prefix}")
