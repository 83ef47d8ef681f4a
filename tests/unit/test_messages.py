"""The message catalog: every message the code raises has zh-CN and en, and lookups work."""

from __future__ import annotations

from babel.messages.pofile import read_po

from services.messages import LANGUAGES, LOCALE_DIR, catalog, negotiate, translate
from tests.message_ids import all_messages, missing


def _ids(language: str) -> dict[str, str]:
    with (LOCALE_DIR / f"{LANGUAGES[language]}.po").open("rb") as f:
        return {str(m.id): str(m.string) for m in read_po(f) if m.id}


def test_every_language_has_the_same_ids_each_translated():
    zh, en = _ids("zh-CN"), _ids("en")
    assert set(zh) == set(en)
    assert all(zh.values()) and all(en.values())
    for msgid, text in zh.items():
        # a translation puts back only values its message captures (it may leave one out:
        # msgspec's type names mean nothing to a reader of Chinese)
        assert set(_names(text)) <= set(_names(msgid)), msgid
        assert set(_names(en[msgid])) <= set(_names(msgid)), msgid


def _names(template: str) -> list[str]:
    import re

    return re.findall(r"\{([a-z_][a-z0-9_]*)\}", template)


def test_no_message_the_code_raises_lacks_a_translation():
    assert len(all_messages()) > 150  # the scanner finds the code's messages at all
    for language in LANGUAGES:
        gaps = missing(language)
        assert not gaps, (
            f"{len(gaps)} messages lack a {language} entry (run python -m tests.message_ids "
            f"{language}):\n" + "\n".join(f"{t!r} at {w[0]}" for t, w in sorted(gaps.items()))
        )


def test_templates_translate_with_their_values_and_nested_messages():
    assert translate("must be in the future", "zh-CN") == "截止时间须晚于当前时间"
    assert (
        translate("node 330106001000 not found (or outside your scope)", "zh-CN")
        == "未找到节点 330106001000（或不在您的管辖范围内）"
    )
    assert (
        translate("registering a node needs one of the roles: admin, operator", "zh-CN")
        == "登记节点须具备以下角色之一：admin, operator"
    )
    assert translate("due_at: must be in the future", "zh-CN") == "due_at：截止时间须晚于当前时间"
    assert translate("Object contains unknown field `colour`", "en") == "unknown field colour"
    # something the catalog does not know it does not pretend to (translate() then answers
    # it as raised, and records it for the end-of-session check)
    assert catalog("zh-CN").lookup("an entirely new message") is None
    assert catalog("en").lookup("an entirely new message") is None


def test_accept_language_negotiation():
    assert negotiate(None) == "zh-CN"
    assert negotiate("") == "zh-CN"
    assert negotiate("en") == "en"
    assert negotiate("en-US,en;q=0.9") == "en"
    assert negotiate("zh-Hans-CN, en;q=0.5") == "zh-CN"
    assert negotiate("fr, en;q=0.4, zh;q=0.8") == "zh-CN"
    assert negotiate("fr") == "zh-CN"
    assert negotiate("fr", "en") == "en"
    assert negotiate("en;q=0, zh;q=0.1") == "zh-CN"
    assert negotiate("en;q=abc") == "zh-CN"
