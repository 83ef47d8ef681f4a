"""Value objects of the tenant hierarchy: node kinds, codes and which kind may sit under which.

Statutory codes are the national 12-digit statistical division codes (e.g. county
330106000000, street 330106001000, community 330106001001). Grids and units get local
codes. The statistics bureau reissues codes on reorganisation, so a node keeps a stable
internal id and its former codes stay resolvable as aliases.
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
