"""Workbooks through calamine, which reads every cell: Excel 97-2003 (.xls), .xlsb,
OpenDocument spreadsheets (.ods), and the xlsx files the sampling reader declines."""

from __future__ import annotations

import io

from guard.inspect.readers.cellvalues import cell_str
from guard.inspect.readers.extraction import Extraction, trim_row
from guard.mail.message import Attachment


def read_workbook(ex: Extraction, att: Attachment) -> None:
    import python_calamine

    try:
        wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(att.data))
    except python_calamine.PasswordError:
        ex.problem("encrypted", att.where, "password-protected workbook")
        return
    names = list(wb.sheet_names)
    if len(names) > ex.limits.max_sheets:
        ex.problem("too_large", att.where,
                   f"{len(names)} sheets; first {ex.limits.max_sheets} read")
        names = names[: ex.limits.max_sheets]
    texts: list[str] = []
    for name in names:
        rows: list[list[str]] = []
        try:
            sheet = wb.get_sheet_by_name(name)
        except python_calamine.CalamineError as e:
            ex.problem("parse_error", f"{att.where}", f"sheet {name!r}: {e}")
            continue
        truncated = False
        for row in sheet.iter_rows():
            # str cells inline: this loop runs once per cell (a million of them)
            cells = trim_row([v.strip() if type(v) is str else cell_str(v) for v in row])
            if not cells:
                continue
            ex.cells += len(cells)
            if ex.cells > ex.limits.max_cells:
                truncated = True
                break
            rows.append(cells)
        ex.table(att.where, rows)
        texts.append("\n".join("\t".join(r) for r in rows))
        if truncated:
            ex.problem("too_large", att.where,
                       f"cell limit {ex.limits.max_cells} reached in sheet {name!r}")
            break
    ex.text(att.where, "\n\n".join(t for t in texts if t))
