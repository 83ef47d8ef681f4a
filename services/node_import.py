"""Building a county's tree from the statistics bureau's division-code table (统计用区划代码).

The file: CSV, UTF-8 (a byte-order mark is fine), a header row naming ``code`` and ``name``
(or 统计用区划代码 / 区划代码 / 代码 and 名称; "#" lines before it are a note and skipped) and optionally ``urban_rural_code`` (城乡分类代码,
three digits; checked, not stored), one row per division. Parents come from the codes
(6 + 3 + 3 digits): a street/town ``xxxxxxSSS000`` belongs to the county ``xxxxxx000000``, a
community/village ``xxxxxxSSSCCC`` to the street ``xxxxxxSSS000``.

``plan`` compares the file with the tree under the root as it stands and says, per row:

* unchanged — the code exists under its inferred parent with that name;
* renamed — the code exists, the name differs (NodeRenamed);
* a move — the code exists under another parent (NodeMoved to the inferred parent), or the
  code is new but exactly one node of the same kind and name under the root has a code that
  is no longer in the file (the bureau reissued it: NodeMoved with ``new_code`` to the
  inferred parent, so the old code stays an alias and history stays attributed);
* created — anything else (NodeRegistered);
* an error, with its line number (the header is line 1): the other rows still import.

``apply`` runs the plan's operations through the ordinary node commands (same checks, same
events, same directory updates), level by level (streets before the communities under
them), each in a savepoint so that one refused row leaves the others in.
Importing the same file again finds everything unchanged.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

import asyncpg

from domain.errors import DomainError
from infra.directory import DirectoryNode
from services.commands import nodes as node_commands
from services.commands.nodes import NodeCreate, NodeMove, NodeRename
from services.commands.session import CommandSession
from services.problems import ProblemError

#: the largest file accepted (bytes) and the most rows (a province's table is ~70k rows; a
#: county's a few hundred; import a city county by county)
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
MAX_NAME = 200
MOVE_REASON = "统计用区划代码调整（导入）"

Level = Literal["county", "street", "community"]
LEVEL_ORDER: tuple[Level, ...] = ("county", "street", "community")
_DIGITS12 = re.compile(r"[0-9]{12}")
_URBAN_RURAL = re.compile(r"[0-9]{3}")
HEADER_ALIASES = {
    "code": "code",
    "统计用区划代码": "code",
    "区划代码": "code",
    "代码": "code",
    "name": "name",
    "名称": "name",
    "urban_rural_code": "urban_rural_code",
    "城乡分类代码": "urban_rural_code",
    "城乡分类": "urban_rural_code",
}


class ImportFileError(ProblemError):
    """The file as a whole cannot be read (not UTF-8, no header, too many rows)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(
            status,
            "Payload Too Large" if status == 413 else "Unprocessable Content",
            detail,
            slug="import-too-large" if status == 413 else "invalid-import",
        )


@dataclass(frozen=True)
class Row:
    line: int
    code: str
    name: str
    level: Level
    #: the inferred parent's code (None for the root's own row)
    parent_code: str | None


@dataclass(frozen=True)
class LineError:
    line: int
    message: str


@dataclass(frozen=True)
class Rename:
    row: Row
    old_name: str


@dataclass(frozen=True)
class Move:
    row: Row
    #: the node's current code (the file's code is its new one, or the same)
    code: str
    from_parent: str | None


@dataclass
class Plan:
    unchanged: list[Row] = field(default_factory=list)
    renames: list[Rename] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    creations: list[Row] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)


# -- reading the file ---------------------------------------------------------------------------


def level_of(code: str) -> Level | None:
    if code[6:] == "000000":
        return "county"
    if code[9:] == "000":
        return "street" if code[6:9] != "000" else None
    return "community" if code[6:9] != "000" else None


def parse(data: bytes, root_code: str) -> tuple[list[Row], list[LineError]]:
    """The file's rows under ``root_code`` and the errors of the others, by line."""
    if len(data) > MAX_BYTES:
        raise ImportFileError(413, f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(422, f"the file is not UTF-8 (byte {exc.start})") from None
    # leading "#" lines are a note about the file (e.g. where its codes come from)
    lines = text.splitlines(keepends=True)
    skipped = 0
    while skipped < len(lines) and lines[skipped].startswith("#"):
        skipped += 1
    reader = csv.reader(io.StringIO("".join(lines[skipped:]), newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportFileError(422, f"line {skipped + 1}: {exc}") from None
    names = [HEADER_ALIASES.get(h.strip().lower(), "") for h in header or []]
    if "code" not in names or "name" not in names:
        raise ImportFileError(
            422, f"line {skipped + 1} must be a header naming the columns code and name"
        )
    at = {n: i for i, n in reversed(list(enumerate(names))) if n}
    root_level = level_of(root_code) if _DIGITS12.fullmatch(root_code) else None
    if root_level not in ("county", "street"):
        raise ImportFileError(422, "the root must be a county or street with a 12-digit code")
    prefix = root_code[:6] if root_level == "county" else root_code[:9]
    rows: list[Row] = []
    errors: list[LineError] = []
    seen: dict[str, int] = {}
    line = 1
    while True:
        start = skipped + reader.line_num + 1
        try:
            record = next(reader, None)
        except csv.Error as exc:
            errors.append(LineError(start, f"not valid CSV: {exc}"))
            break
        if record is None:
            break
        line = start
        if not any(v.strip() for v in record):
            continue  # blank line
        if len(rows) + len(errors) >= MAX_ROWS:
            raise ImportFileError(422, f"the file has more than {MAX_ROWS} rows")

        def cell(name: str, record: list[str] = record) -> str:
            i = at.get(name)
            return record[i].strip() if i is not None and i < len(record) else ""

        code, name, urban_rural = cell("code"), cell("name"), cell("urban_rural_code")
        level = level_of(code) if _DIGITS12.fullmatch(code) else None
        message = None
        if not _DIGITS12.fullmatch(code):
            message = "code must be 12 digits"
        elif level is None:
            message = "code is not a county, street or community code"
        elif not name or len(name) > MAX_NAME:
            message = f"name must be 1-{MAX_NAME} characters"
        elif urban_rural and not _URBAN_RURAL.fullmatch(urban_rural):
            message = "urban_rural_code must be 3 digits"
        elif code in seen:
            message = f"code {code} repeats line {seen[code]}"
        elif not code.startswith(prefix) or (level == root_level and code != root_code):
            message = f"code {code} is not under the root {root_code}"
        elif LEVEL_ORDER.index(level) < LEVEL_ORDER.index(root_level):
            message = f"code {code} is above the root {root_code}"
        if message is not None:
            errors.append(LineError(line, message))
            continue
        assert level is not None
        seen[code] = line
        parent = None
        if code != root_code:
            parent = f"{code[:6]}000000" if level == "street" else f"{code[:9]}000"
        rows.append(Row(line, code, name, level, parent))
    return rows, errors


# -- comparing with the tree --------------------------------------------------------------------

SUBTREE = """
SELECT id, root_id, code, name, kind, parent_id, path, closed, version FROM nodes
WHERE root_id = $1 AND path >= $2 AND path < $3
"""
TAKEN = "SELECT c FROM unnest($1::text[]) AS c WHERE civic_code_taken(c)"


async def plan(
    conn: asyncpg.Connection, root: DirectoryNode, rows: Sequence[Row], errors: Sequence[LineError]
) -> Plan:
    """What importing ``rows`` under ``root`` would do (reads only)."""
    existing = [
        DirectoryNode(**dict(r)) for r in await conn.fetch(SUBTREE, root.root_id, *root.bounds)
    ]
    by_code = {n.code: n for n in existing}
    code_of: dict[UUID, str] = {n.id: n.code for n in existing}
    in_file = {r.code for r in rows}
    # nodes whose code the file no longer has, by (kind, name): candidates for a reissued code
    vanished: dict[tuple[str, str], list[DirectoryNode]] = {}
    for n in existing:
        if n.code not in in_file and n.kind in ("street", "community"):
            vanished.setdefault((n.kind, n.name), []).append(n)
    out = Plan(errors=list(errors))
    known_parents = set(by_code) | in_file
    new_codes: list[Row] = []
    for row in sorted(rows, key=lambda r: (LEVEL_ORDER.index(r.level), r.line)):
        if row.parent_code is not None and row.parent_code not in known_parents:
            out.errors.append(LineError(row.line, f"parent {row.parent_code} is not known"))
            continue
        node = by_code.get(row.code)
        if node is not None:
            if node.kind != row.level:
                out.errors.append(LineError(row.line, f"code {row.code} is a {node.kind}"))
                continue
            parent = code_of.get(node.parent_id) if node.parent_id else None
            if row.parent_code is not None and parent != row.parent_code:
                out.moves.append(Move(row, node.code, parent))
            if node.name != row.name:
                out.renames.append(Rename(row, node.name))
            elif row.parent_code is None or parent == row.parent_code:
                out.unchanged.append(row)
            continue
        candidates = vanished.get((row.level, row.name), [])
        if len(candidates) == 1:
            old = candidates.pop()
            parent = code_of.get(old.parent_id) if old.parent_id else None
            out.moves.append(Move(row, old.code, parent))
            continue
        new_codes.append(row)
    moved_to = [m.row.code for m in out.moves if m.row.code != m.code]
    taken = {r["c"] for r in await conn.fetch(TAKEN, [r.code for r in new_codes] + moved_to)}
    for row in new_codes:
        if row.code in taken:
            out.errors.append(LineError(row.line, f"code {row.code} is already in use"))
        else:
            out.creations.append(row)
    for m in [m for m in out.moves if m.row.code != m.code and m.row.code in taken]:
        out.moves.remove(m)
        out.errors.append(LineError(m.row.line, f"code {m.row.code} is already in use"))
    out.errors.sort(key=lambda e: e.line)
    return out


# -- applying -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    line: int
    level: Level
    kind: Literal["move", "rename", "create"]
    run: Callable[[CommandSession], Awaitable[object]]


def operations(p: Plan) -> list[Operation]:
    """The plan's writes in the order they can happen: level by level (a street before the
    communities placed under it); within a level moves first (a renamed node answers to its
    new code then), renames, creations."""
    ops: list[Operation] = []
    for m in p.moves:
        new_code = m.row.code if m.row.code != m.code else None

        def move(s: CommandSession, m: Move = m, new_code: str | None = new_code) -> Any:
            command = NodeMove(
                new_parent_code=m.row.parent_code or "", reason=MOVE_REASON, new_code=new_code
            )
            return node_commands.move(s, m.code, command)

        ops.append(Operation(m.row.line, m.row.level, "move", move))
    for r in p.renames:

        def rename(s: CommandSession, row: Row = r.row) -> Any:
            return node_commands.rename(s, row.code, NodeRename(name=row.name))

        ops.append(Operation(r.row.line, r.row.level, "rename", rename))
    for c in p.creations:

        def create(s: CommandSession, row: Row = c) -> Any:
            command = NodeCreate(
                code=row.code, name=row.name, kind=row.level, parent_code=row.parent_code or ""
            )
            return node_commands.register_child(s, command)

        ops.append(Operation(c.line, c.level, "create", create))
    rank = {"move": 0, "rename": 1, "create": 2}
    ops.sort(key=lambda o: (LEVEL_ORDER.index(o.level), rank[o.kind], o.line))
    return ops


async def apply(session: CommandSession, ops: Sequence[Operation]) -> list[LineError]:
    """Run ``ops`` in this command's transaction, each in a savepoint: a refused one becomes
    its line's error and the others go on."""
    errors: list[LineError] = []
    conn = session.conn
    for op in ops:
        # (the command's transaction is begun by hand: savepoints by hand too)
        await conn.execute("SAVEPOINT node_import_row")
        try:
            await op.run(session)
        except (DomainError, ProblemError) as exc:
            await conn.execute("ROLLBACK TO SAVEPOINT node_import_row")
            errors.append(LineError(op.line, _message(exc)))
        else:
            await conn.execute("RELEASE SAVEPOINT node_import_row")
    return errors


def _message(exc: Exception) -> str:
    detail = getattr(exc, "detail", None)
    return str(detail or exc)
