"""Node codes stay in their own tenant's part of the code space (no squatting, no probing)."""

from __future__ import annotations

import pytest

from domain.errors import InvalidValue
from domain.hierarchy import (
    NodeKind,
    check_child_code,
    check_kept_code,
    check_root_code,
    root_prefix,
)

K = NodeKind
COUNTY, STREET, COMMUNITY = "330106000000", "330106001000", "330106001001"


def child(
    code: str, kind: NodeKind, parent_kind: NodeKind, parent_code: str, root: str = COUNTY
) -> None:
    check_child_code(code, kind, parent_kind=parent_kind, parent_code=parent_code, root_code=root)


@pytest.mark.parametrize(
    ("code", "kind", "parent_kind", "parent_code"),
    [
        ("330106002000", K.STREET, K.COUNTY, COUNTY),
        ("330106101000", K.STREET, K.COUNTY, COUNTY),  # a town (乡镇)
        ("330106001002", K.COMMUNITY, K.STREET, STREET),
        ("330106001201", K.COMMUNITY, K.STREET, STREET),  # a village (村)
        ("U330106-JYJ", K.UNIT, K.COUNTY, COUNTY),
        ("330106U00001", K.UNIT, K.STREET, STREET),
        ("U330106001", K.UNIT, K.UNIT, "U330106"),
        ("330106001001G01", K.GRID, K.COMMUNITY, COMMUNITY),
        ("330106", K.UNIT, K.COUNTY, COUNTY),
    ],
)
def test_codes_inside_the_tenant_are_accepted(code, kind, parent_kind, parent_code):
    child(code, kind, parent_kind, parent_code)


@pytest.mark.parametrize(
    ("code", "kind", "parent_kind", "parent_code", "why"),
    [
        ("110101001005", K.COMMUNITY, K.STREET, STREET, "another county's community"),
        ("330106002001", K.COMMUNITY, K.STREET, STREET, "a sibling street's community"),
        ("330107001000", K.STREET, K.COUNTY, COUNTY, "another county's street"),
        ("330106001001", K.STREET, K.COUNTY, COUNTY, "a street code not ending in 000"),
        ("330106000000", K.STREET, K.COUNTY, COUNTY, "a street that is its county's code"),
        ("330106001000", K.COMMUNITY, K.STREET, STREET, "a community that is its street's code"),
        ("U110101-GAJ", K.UNIT, K.COUNTY, COUNTY, "another tenant's unit prefix"),
        ("UX330106", K.UNIT, K.COUNTY, COUNTY, "two letters before the prefix"),
        ("U-GAJ", K.UNIT, K.COUNTY, COUNTY, "no prefix at all"),
        ("G1", K.GRID, K.COMMUNITY, COMMUNITY, "a bare grid number"),
        ("110101001001G01", K.GRID, K.COMMUNITY, COMMUNITY, "another tenant's grid"),
        ("C-1", K.COMMUNITY, K.STREET, STREET, "not a statutory code"),
    ],
)
def test_codes_outside_the_tenant_are_refused(code, kind, parent_kind, parent_code, why):
    with pytest.raises(InvalidValue) as refused:
        child(code, kind, parent_kind, parent_code)
    assert refused.value.field == "code", why


def test_levels_above_a_county():
    province, city = "330000000000", "330100000000"
    check_root_code(province, K.PROVINCE)
    child(city, K.CITY, K.PROVINCE, province, root=province)
    child(COUNTY, K.COUNTY, K.CITY, city, root=province)
    child("U330000-SW", K.UNIT, K.PROVINCE, province, root=province)
    with pytest.raises(InvalidValue):
        child("320100000000", K.CITY, K.PROVINCE, province, root=province)
    with pytest.raises(InvalidValue):
        child("330200000000", K.COUNTY, K.CITY, city, root=province)
    assert [root_prefix(c) for c in (province, city, COUNTY)] == ["33", "3301", "330106"]


def test_a_root_code_is_its_prefix_followed_by_zeros():
    check_root_code(COUNTY, K.COUNTY)
    for code, kind in ((STREET, K.COUNTY), ("330106000000", K.CITY), ("330100000000", K.PROVINCE)):
        with pytest.raises(InvalidValue):
            check_root_code(code, kind)


def test_a_moved_node_may_keep_its_code_inside_its_root():
    check_kept_code(COMMUNITY, K.COMMUNITY, root_code=COUNTY)
    check_kept_code("U330106-JYJ", K.UNIT, root_code=COUNTY)
    check_kept_code(COMMUNITY, K.COMMUNITY, root_code="330000000000")  # a province root
    with pytest.raises(InvalidValue) as refused:
        check_kept_code("110101001001", K.COMMUNITY, root_code=COUNTY, field="new_code")
    assert refused.value.field == "new_code"
    with pytest.raises(InvalidValue):
        check_kept_code("U-GAJ", K.UNIT, root_code=COUNTY)
