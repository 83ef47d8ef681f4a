"""The message catalog: problem titles, details and field messages in zh-CN and en.

The code raises its messages in English, as it always has (``ProblemError(..., f"node {code}
not found")``, ``InvalidValue("code", "must be 12 digits")``); the catalog translates them on
the way out. Its message ids are those English texts, with ``{name}`` where the code puts a
value in: ``{what} not found (or outside your scope)``. A message is looked up exactly, then
against the templates; the values a template captures are themselves translated when they
are catalog messages (an action named inside "… needs one of the roles", a reason inside
"field: reason"), else kept as they are (codes, numbers).

The catalogs are gettext ``.po`` files under ``services/locale/`` (one per language, the same
ids in each), read with Babel at start-up. Moving a new English message into the catalog is
one entry in each file; tests/unit/test_messages.py finds every message the code raises and
fails on one that has no entry in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
#: language tag → catalog file stem
LANGUAGES = {"zh-CN": "zh_CN", "en": "en"}
DEFAULT_LANGUAGE = "zh-CN"

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
#: messages answered untranslated since start-up (bounded); the test suite asserts none
_misses: set[str] = set()
_MAX_MISSES = 1000


def _template_regex(msgid: str) -> re.Pattern[str]:
    parts = []
    last = 0
    seen: set[str] = set()
    for m in _PLACEHOLDER.finditer(msgid):
        parts.append(re.escape(msgid[last : m.start()]))
        name = m.group(1)
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
        seen.add(name)
        last = m.end()
    parts.append(re.escape(msgid[last:]))
    return re.compile("^" + "".join(parts) + "$", re.DOTALL)


@dataclass
class Catalog:
    """One language's messages: exact ids and placeholder templates."""

    language: str
    exact: dict[str, str] = field(default_factory=dict)
    templates: list[tuple[re.Pattern[str], str]] = field(default_factory=list)

    def add(self, msgid: str, msgstr: str) -> None:
        if _PLACEHOLDER.search(msgid):
            self.templates.append((_template_regex(msgid), msgstr))
        else:
            self.exact[msgid] = msgstr

    def finish(self) -> None:
        # the template with the most literal text wins: "node {code} not found" before
        # "{what} not found"
        self.templates.sort(key=lambda t: -len(_PLACEHOLDER.sub("", t[0].pattern)))

    def lookup(self, text: str, depth: int = 0) -> str | None:
        """The translation of ``text``, or None when the catalog does not know it."""
        found = self.exact.get(text)
        if found is not None:
            return found
        if depth > 3:
            return None
        for pattern, msgstr in self.templates:
            m = pattern.match(text)
            if m is None:
                continue
            values = {k: (self.lookup(v, depth + 1) or v) for k, v in m.groupdict().items()}
            return msgstr.format(**values)
        return None

    def translate(self, text: str) -> str:
        found = self.lookup(text) or self.lookup(text.strip())
        if found is None:
            if len(_misses) < _MAX_MISSES:
                _misses.add(text[:200])
            return text
        return found


@cache
def catalog(language: str) -> Catalog:
    stem = LANGUAGES[language]
    with (LOCALE_DIR / f"{stem}.po").open("rb") as f:
        po = read_po(f, locale=stem)
    result = Catalog(language)
    for message in po:
        if message.id and isinstance(message.id, str):
            result.add(message.id, str(message.string or message.id))
    result.finish()
    return result


def negotiate(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """The best of our languages for an ``Accept-Language`` header (RFC 9110 q-values)."""
    if not accept_language:
        return default
    choices: list[tuple[float, int, str]] = []
    for i, item in enumerate(accept_language.split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        tag = tag.strip().lower()
        if tag == "*":
            language = default
        elif tag.startswith("zh"):
            language = "zh-CN"
        elif tag.startswith("en"):
            language = "en"
        else:
            continue
        if q > 0:
            choices.append((-q, i, language))
    return min(choices)[2] if choices else default


def translate(text: str, language: str) -> str:
    return catalog(language).translate(text)


def untranslated() -> frozenset[str]:
    """Messages the catalog did not know when they were answered (at most 1000 kept)."""
    return frozenset(_misses)
