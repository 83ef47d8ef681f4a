"""Add messages to both catalogs (services/locale/*.po), keeping them sorted.

Input on stdin, one message a line: ``msgid<TAB>zh-CN text[<TAB>en text]`` (the English
defaults to the msgid). ``python -m tests.message_ids`` lists what is missing::

    printf '%s\t%s\n' "node {code} is closed" "节点 {code} 已撤销" | python scripts/add-messages.py
"""

import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

LOC = Path(__file__).resolve().parent.parent / "services" / "locale"
pairs = [line.rstrip("\n").split("\t") for line in sys.stdin if line.strip()]
for stem, idx in (("zh_CN", 1), ("en", 2)):
    path = LOC / f"{stem}.po"
    head = path.read_text().split('msgid ""')[0]
    with path.open("rb") as f:
        cat = read_po(f, locale=stem)
    for p in pairs:
        text = p[idx] if len(p) > idx and p[idx] else p[0]
        cat.add(p[0], text)
    import io

    buf = io.BytesIO()
    write_po(buf, cat, width=0, omit_header=False, sort_output=True)
    body = buf.getvalue().decode()
    body = body[body.index('msgid ""') :]
    import re

    body = re.sub(
        r'"(Report-Msgid-Bugs-To|POT-Creation-Date|PO-Revision-Date|Last-Translator|Language-Team): .*\\n"\n',
        "",
        body,
    )
    path.write_text(head + body)
