"""The one writer of every spreadsheet the server hands out (XLSX and CSV).

Officials forward these files upward and open them in Excel or WPS, so:

* XLSX (the workbook, its styles and the rows above the header by openpyxl; the body rows
  written as SpreadsheetML into a temporary file as they come and spliced into the saved
  sheet, which goes to another temporary file streamed out in chunks, so memory stays
  bounded however many rows): Chinese headers, an optional title row and scope/date line
  above the header, the header frozen and repeated on every printed page, an auto-filter,
  fixed column widths, wrapped text, dates and instants as real Excel dates, A4 landscape
  fitted to the page width.
* CSV: UTF-8 with a byte-order mark (Excel in China opens a CSV as UTF-8 only then), CRLF
  line ends, dates as YYYY-MM-DD and instants as YYYY-MM-DD HH:MM:SS (China time).

Formula injection (OWASP "CSV injection"): text that starts with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return would be run as a formula by a spreadsheet program (a finding
whose source is ``=HYPERLINK(...)`` became a live link). Such text is written as literal
text: in XLSX as a string cell (``t="inlineStr"``, never ``<f>``) with the quote-prefix style,
so editing the cell keeps it text too; in CSV prefixed by a single quote. Numbers stay
numbers (a negative number is not text).
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import tempfile
import zipfile
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import IO, Any, Literal
from urllib.parse import quote
from xml.sax.saxutils import escape

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import to_excel
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet.worksheet import Worksheet

from domain.refs import CHINA_TZ

CSV_BOM = "\ufeff"
#: Litestar appends "; charset=utf-8" to every text/* media type itself (once).
CSV_MEDIA_TYPE = "text/csv"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

#: the leading characters that make a spreadsheet program read text as a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: bytes per chunk when a saved workbook is streamed out.
CHUNK = 64 * 1024

Kind = Literal["text", "number", "percent", "date", "datetime"]


def looks_like_formula(text: str) -> bool:
    return text.startswith(FORMULA_STARTS)


@dataclass(frozen=True)
class Column:
    header: str
    #: width in Excel characters
    width: float
    kind: Kind = "text"
    centered: bool = False
    #: a truthy value is shown in bold red (e.g. days overdue)
    alarm: bool = False


def content_disposition(ascii_name: str, utf8_name: str) -> str:
    """An ASCII fallback name and the Chinese one as RFC 5987 ``filename*``."""
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in ascii_name)
    return f"attachment; filename=\"{safe}\"; filename*=UTF-8''{quote(utf8_name, safe='')}"


def china_local(at: datetime) -> datetime:
    """An instant as China wall-clock time without a zone (Excel has no time zones)."""
    return at.astimezone(CHINA_TZ).replace(tzinfo=None)


# -- CSV ---------------------------------------------------------------------------------


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return china_local(value).isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, str):
        return "'" + value if looks_like_formula(value) else value
    return str(value)


def csv_chunk(rows: Iterable[Sequence[Any]], *, header: Sequence[str] | None = None) -> bytes:
    """CSV lines for ``rows``; with ``header``, the byte-order mark and the header first."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    if header is not None:
        buf.write(CSV_BOM)
        writer.writerow([csv_value(h) for h in header])
    for row in rows:
        writer.writerow([csv_value(v) for v in row])
    return buf.getvalue().encode("utf-8")


# -- XLSX --------------------------------------------------------------------------------

_THIN = Side(style="thin", color="808080")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_WRAP_TOP = Alignment(wrap_text=True, vertical="top")
_CENTER_TOP = Alignment(horizontal="center", vertical="top", wrap_text=True)
_FORMATS: dict[Kind, str] = {
    "date": "yyyy-mm-dd",
    "datetime": "yyyy-mm-dd hh:mm",
    "percent": "0.0%",
}
_FONT = Font(name="宋体", size=10)
_ALARM_FONT = Font(name="宋体", size=10, color="C00000", bold=True)
_HEADER_FONT = Font(name="黑体", size=11, bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="D9E1F2")


def xml_safe(text: str) -> str:
    """Text an XLSX can hold: characters XML 1.0 forbids (most C0 controls) would make
    openpyxl refuse the whole file, so each becomes U+FFFD."""
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", text)


def text_cell(ws: WriteOnlyWorksheet, value: Any) -> WriteOnlyCell:
    """A cell for ``value``; formula-looking text stays literal text (see the module)."""
    if isinstance(value, datetime):
        value = china_local(value)
    elif isinstance(value, str):
        value = xml_safe(value)
    cell = WriteOnlyCell(ws, value=value)
    if isinstance(value, str) and looks_like_formula(value):
        cell.data_type = "s"
        cell.quotePrefix = True
    return cell


class XlsxSheet:
    """One worksheet built row by row; ``stream()`` saves it and yields the file's bytes."""

    def __init__(
        self,
        *,
        sheet: str,
        columns: Sequence[Column],
        title: str | None = None,
        info: str | None = None,
    ) -> None:
        self.columns = tuple(columns)
        self.workbook = Workbook(write_only=True)
        ws: WriteOnlyWorksheet = self.workbook.create_sheet(sheet)
        self.ws = ws
        self.rows = 0
        last = get_column_letter(len(self.columns))
        for i, column in enumerate(self.columns, 1):
            ws.column_dimensions[get_column_letter(i)].width = column.width
        self.header_row = 1 + (title is not None) + (info is not None)
        ws.freeze_panes = f"A{self.header_row + 1}"
        ws.print_title_rows = f"{self.header_row}:{self.header_row}"
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = Worksheet.PAPERSIZE_A4
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0
        ws.sheet_properties.pageSetUpPr.fitToPage = True
        row = 0
        if title is not None:
            row += 1
            cell = text_cell(ws, title)
            cell.font = Font(name="黑体", size=16, bold=True)
            cell.alignment = Alignment(horizontal="center", vertical="center")
            ws.row_dimensions[row].height = 30
            ws.append([cell])
            ws.merged_cells.add(f"A{row}:{last}{row}")
        if info is not None:
            row += 1
            cell = text_cell(ws, info)
            cell.font = _FONT
            cell.alignment = Alignment(horizontal="right", vertical="center")
            ws.append([cell])
            ws.merged_cells.add(f"A{row}:{last}{row}")
        header = []
        for column in self.columns:
            cell = text_cell(ws, column.header)
            cell.font = _HEADER_FONT
            cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
            cell.fill = _HEADER_FILL
            cell.border = _BORDER
            header.append(cell)
        ws.row_dimensions[self.header_row].height = 24
        ws.append(header)
        # The body rows are written as SpreadsheetML straight into a temporary file and
        # spliced into the saved sheet (``save_to_file``): openpyxl spends ~0.6 ms of CPU on a
        # 22-column row (a cell object, a style look-up and its pure-Python XML writer per
        # cell), a minute for 100k issues; formatting the row's XML here costs a fraction.
        # The cells' styles are registered in the workbook once per column: plain, alarm
        # (bold red) and literal text (quote prefix).
        self.styles = [
            (
                self._style_id(column, alarm=False),
                self._style_id(column, alarm=True),
                self._style_id(column, alarm=False, quote=True),
            )
            for column in self.columns
        ]
        self.letters = [get_column_letter(i) for i in range(1, len(self.columns) + 1)]
        self.body: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by save

    def _style_id(self, column: Column, *, alarm: bool, quote: bool = False) -> int:
        probe = WriteOnlyCell(self.ws, value=None)
        probe.border = _BORDER
        probe.alignment = _CENTER_TOP if column.centered else _WRAP_TOP
        probe.font = _ALARM_FONT if alarm else _FONT
        number_format = _FORMATS.get(column.kind)
        if number_format is not None:
            probe.number_format = number_format
        if quote:
            probe.quotePrefix = True
        style_id: int = probe.style_id
        return style_id

    def append(self, values: Sequence[Any]) -> None:
        self.rows += 1
        r = self.header_row + self.rows
        parts = [f'<row r="{r}">']
        for (plain, alarm, literal), column, letter, value in zip(
            self.styles, self.columns, self.letters, values, strict=True
        ):
            style = alarm if column.alarm and value else plain
            ref = f"{letter}{r}"
            if value is None or value == "":
                parts.append(f'<c r="{ref}" s="{style}"/>')
            elif isinstance(value, str):
                if looks_like_formula(value):
                    style = literal
                text = escape(xml_safe(value))
                parts.append(
                    f'<c r="{ref}" s="{style}" t="inlineStr"><is><t xml:space="preserve">'
                    f"{text}</t></is></c>"
                )
            elif isinstance(value, bool):
                parts.append(f'<c r="{ref}" s="{style}" t="b"><v>{int(value)}</v></c>')
            elif isinstance(value, datetime | date):
                local = china_local(value) if isinstance(value, datetime) else value
                parts.append(f'<c r="{ref}" s="{style}"><v>{to_excel(local)}</v></c>')
            elif isinstance(value, int | float):
                parts.append(f'<c r="{ref}" s="{style}"><v>{value!r}</v></c>')
            else:
                text = escape(xml_safe(str(value)))
                parts.append(f'<c r="{ref}" s="{style}" t="inlineStr"><is><t>{text}</t></is></c>')
        parts.append("</row>")
        self.body.write("".join(parts).encode("utf-8"))

    def extend(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self.append(row)

    def _finish(self) -> None:
        last_row = self.header_row + self.rows
        last_column = get_column_letter(len(self.columns))
        self.ws.auto_filter.ref = f"A{self.header_row}:{last_column}{last_row}"

    def save(self) -> bytes:
        """The whole workbook in memory (small sheets and tests)."""
        with self.save_to_file() as out:
            return out.read()

    def save_to_file(self) -> IO[bytes]:
        """The workbook in a temporary file (deleted when closed), positioned at its start:
        openpyxl's workbook with the body rows spliced into its sheet."""
        self._finish()
        skeleton = tempfile.TemporaryFile()  # noqa: SIM115 -- closed below
        out = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by the caller (stream)
        try:
            self.workbook.save(skeleton)
            skeleton.seek(0)
            self.body.seek(0)
            with (
                zipfile.ZipFile(skeleton) as zin,
                zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout,
            ):
                for item in zin.infolist():
                    data = zin.read(item.filename)
                    if not item.filename.startswith("xl/worksheets/sheet"):
                        zout.writestr(item.filename, data)
                        continue
                    at = data.rindex(b"</sheetData>")
                    entry = zipfile.ZipInfo(item.filename, date_time=item.date_time)
                    entry.compress_type = zipfile.ZIP_DEFLATED
                    with zout.open(entry, "w", force_zip64=True) as sheet:
                        sheet.write(data[:at])
                        shutil.copyfileobj(self.body, sheet, CHUNK)
                        sheet.write(data[at:])
            out.seek(0)
        except BaseException:
            out.close()
            raise
        finally:
            skeleton.close()
            self.body.close()
        return out

    async def stream(self) -> AsyncIterator[bytes]:
        """Save (off the event loop) and yield the file in chunks; the file is removed after."""
        out = await asyncio.to_thread(self.save_to_file)
        try:
            while chunk := await asyncio.to_thread(out.read, CHUNK):
                yield chunk
        finally:
            out.close()
