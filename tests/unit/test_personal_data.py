"""Personal data: validation (mainland mobile, GB 11643 ID), masking, identity keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidValue
from domain.personal_data import (
    ERASED,
    PersonalData,
    id_check_digit,
    identity_key,
    mask_id,
    mask_name,
    mask_phone,
    masked,
    normalize_id_number,
    normalize_phone,
    personal_data,
    revealed,
)

VALID_ID = "11010519491231002X"
VALID_ID_2 = "330106198506120015"


# -- masks ---------------------------------------------------------------------------------


def test_mask_phone() -> None:
    assert mask_phone("13812341234") == "138****1234"


def test_mask_id() -> None:
    assert mask_id("330106198506121234") == "330106********1234"
    assert mask_id(VALID_ID) == "110105********002X"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("张三", "张*"), ("李小明", "李**"), ("欧阳娜娜", "欧***"), ("阿依古丽·买买提", "阿*******"),
     ("王", "*"), ("", "")],
)
def test_mask_name(name: str, expected: str) -> None:
    assert mask_name(name) == expected


def test_masks_of_short_values_hide_everything() -> None:
    assert mask_phone("1234") == "****"
    assert mask_id("12345") == "*****"


def test_masked_view_and_erased_view() -> None:
    person = PersonalData(name="张三", phone="13812341234", id_number=VALID_ID)
    assert masked(person) == PersonalData("张*", "138****1234", "110105********002X")
    assert masked(PersonalData("张三", "13812341234", None)).id_number is None
    assert revealed(person) is person
    assert masked(None) == PersonalData(ERASED, ERASED, ERASED)
    assert revealed(None) == PersonalData(ERASED, ERASED, ERASED)


@given(st.from_regex(r"\A1[0-9]{10}\Z"))
def test_mask_phone_keeps_prefix_suffix_and_length(phone: str) -> None:
    m = mask_phone(phone)
    assert len(m) == 11 and m[:3] == phone[:3] and m[-4:] == phone[-4:] and m[3:7] == "****"


# -- phone ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("13812341234", "13812341234"), ("138 1234 1234", "13812341234"),
     ("138-1234-1234", "13812341234"), ("+8613812341234", "13812341234"),
     (" 19912345678 ", "19912345678")],
)
def test_phone_normalised(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "1381234123", "138123412345", "23812341234", "1381234123a", "０１２３",
            "010-12345678", "+85213812341234", "1٣٨١٢٣٤١٢٣٤", "１３８１２３４１２３４"],
)
def test_bad_phone_refused(raw: str) -> None:
    with pytest.raises(InvalidValue) as e:
        normalize_phone(raw)
    assert e.value.field == "phone"
    assert "11 digits" in e.value.reason


# -- ID-card number ------------------------------------------------------------------------


def test_check_digit_known_values() -> None:
    assert id_check_digit("11010519491231002") == "X"
    assert id_check_digit("33010619850612001") == "5"


def test_id_normalised_and_optional() -> None:
    assert normalize_id_number(VALID_ID.lower()) == VALID_ID
    assert normalize_id_number(f"  {VALID_ID_2} ") == VALID_ID_2
    assert normalize_id_number(None) is None
    assert normalize_id_number("   ") is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("110105194912310021", "check digit"), ("11010519491231002", "18 characters"),
     ("11010519491231002XX", "18 characters"), ("1101051949123100AX", "18 characters"),
     ("X10105194912310021", "18 characters"), ("١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", "18 characters")],
)
def test_bad_id_refused(raw: str, reason: str) -> None:
    with pytest.raises(InvalidValue) as e:
        normalize_id_number(raw)
    assert e.value.field == "id_number"
    assert reason in e.value.reason


@given(st.from_regex(r"\A[0-9]{17}\Z"))
def test_any_body_with_its_check_digit_is_valid_and_others_are_not(body: str) -> None:
    digit = id_check_digit(body)
    assert normalize_id_number(body + digit) == body + digit
    for wrong in "0123456789X":
        if wrong != digit:
            with pytest.raises(InvalidValue):
                normalize_id_number(body + wrong)


def test_check_digit_needs_17_digits() -> None:
    with pytest.raises(ValueError):
        id_check_digit("123")
    with pytest.raises(ValueError):
        id_check_digit("١١٠١٠٥١٩٤٩١٢٣١٠٠٢")


# -- the whole value -----------------------------------------------------------------------


def test_personal_data_validates_all_fields() -> None:
    p = personal_data("  张三 ", "138 1234 1234", VALID_ID.lower())
    assert p == PersonalData(name="张三", phone="13812341234", id_number=VALID_ID)
    with pytest.raises(InvalidValue) as e:
        personal_data("  ", "13812341234")
    assert e.value.field == "name"
    with pytest.raises(InvalidValue) as e:
        personal_data("张" * 51, "13812341234")
    assert e.value.field == "name"


def test_identity_key_prefers_id_number() -> None:
    assert identity_key(PersonalData("张三", "13812341234", VALID_ID)) == f"id:{VALID_ID}"
    assert identity_key(PersonalData("张三", "13812341234", None)) == "phone:13812341234"
    # the same person typed twice with different formatting gets the same key
    a = personal_data("张三", "+86 138-1234-1234")
    b = personal_data("张三 ", "13812341234")
    assert identity_key(a) == identity_key(b)
