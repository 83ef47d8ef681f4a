"""Every message the code raises, found in its source, as catalog templates.

A call to one of ``MESSAGE_ARGS`` (the error types and the helpers that build problems) with
a literal or an f-string where the message goes yields that message, the f-string's values
as ``{name}``. ``python -m tests.message_ids`` prints the ones the catalogs lack, as ``.po``
entries to fill in (after a merge: run it, translate, paste into both files).
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("domain", "services", "projections", "infra")

#: callable name → (positional indexes, keyword names) that hold a message
MESSAGE_ARGS: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "ProblemError": ((1, 2), ("title", "detail")),
    "InvalidValue": ((1,), ("detail",)),
    "DomainError": ((0,), ("detail",)),
    "Conflict": ((0,), ("detail",)),
    "IllegalTransition": ((0,), ("detail",)),
    "forbidden": ((0,), ("detail",)),
    "not_found": ((0,), ("what",)),
    "not_caught_up": ((0,), ("what",)),
    "require": ((2,), ("action",)),
    "needs": ((1,), ("action",)),
    "FieldError": ((1,), ("message",)),
    "bad_request": ((1,), ("message",)),
    "_invalid": ((1,), ("message",)),
    "invalid_value": ((1,), ("message",)),
    "_bad_body": ((0,), ("detail",)),
    "_response": ((2, 3), ("title", "detail")),
    "AuthError": ((0,), ()),
    "ProofUnavailable": ((0,), ()),
    "unprocessable": ((0,), ("detail",)),
}

_PLACEHOLDER = re.compile(r"\{[a-z_][a-z0-9_]*\}")


def shape(template: str) -> str:
    """A template with its placeholder names erased, for comparing code and catalog."""
    return _PLACEHOLDER.sub("{}", template)


def _name_of(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id.lower().strip("_") or "value"
    if isinstance(node, ast.Attribute):
        return node.attr.lower().strip("_") or "value"
    if isinstance(node, ast.Subscript):
        return _name_of(node.value)
    if isinstance(node, ast.Call):
        return _name_of(node.func)
    return "value"


def template_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
            elif isinstance(part, ast.FormattedValue):
                out.append("{" + _name_of(part.value) + "}")
        return "".join(out)
    return None


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def messages_in(path: Path) -> Iterator[tuple[str, int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        spec = MESSAGE_ARGS.get(_callee(node) or "")
        if spec is None:
            continue
        positions, keywords = spec
        candidates = [node.args[i] for i in positions if i < len(node.args)]
        candidates += [k.value for k in node.keywords if k.arg in keywords]
        for arg in candidates:
            parts = [arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]
            for part in parts:
                template = template_of(part)
                # a bare placeholder is a value passed through ("{field}: {message}")
                if template and shape(template).strip("{}: ") != "":
                    yield str(path.relative_to(REPO)), node.lineno, template


def all_messages() -> dict[str, list[str]]:
    """template → where it is raised ("path:line")."""
    found: dict[str, list[str]] = {}
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*.py")):
            for where, line, template in messages_in(path):
                found.setdefault(template, []).append(f"{where}:{line}")
    return found


def missing(language: str) -> dict[str, list[str]]:
    from services.messages import catalog

    known = catalog(language)
    shapes = {shape(k) for k in known.exact} | {shape(msgid) for msgid in _template_ids(language)}
    return {t: w for t, w in all_messages().items() if shape(t) not in shapes}


def _template_ids(language: str) -> list[str]:
    from babel.messages.pofile import read_po

    from services.messages import LANGUAGES, LOCALE_DIR

    with (LOCALE_DIR / f"{LANGUAGES[language]}.po").open("rb") as f:
        return [str(m.id) for m in read_po(f) if m.id]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


if __name__ == "__main__":
    gaps = missing(sys.argv[1] if len(sys.argv) > 1 else "zh-CN")
    for template, where in sorted(gaps.items()):
        print(f"#: {' '.join(where[:3])}")
        print(f"msgid {_quote(template)}")
        print('msgstr ""\n')
    sys.exit(1 if gaps else 0)
