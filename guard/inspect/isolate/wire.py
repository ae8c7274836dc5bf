"""How results cross the pipe from a worker without freezing the parent's event loop.

The parent unpickles results in an I/O thread, but pickle.loads is one C call that holds
the GIL, so a large result would freeze the event loop. Measured on a 14 MB CSV: 2.4 s
for a 400k-row table as lists of str, ~100 ms for decoding its text from UTF-8. So:
- big texts travel as UTF-8 bytes (unpickled by memcpy) and are decoded in slices;
- tables travel as one packed string each and are split back into rows by a Python
  loop. Both loops let the event loop take the GIL every few milliseconds.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any

from guard.inspect.extract import Extracted
from guard.inspect.gcpause import collections_paused
from guard.mail.message import MessageView, Table, TextChunk

_US = "\x1f"  # between cells
_RS = "\x1e"  # between rows
_SLICE = 256 * 1024

Wire = str | bytes


_TABLE_BATCH = 2000  # rows per packed batch


def _to_wire(text: str) -> Wire:
    return text.encode("utf-8", "surrogatepass") if len(text) > _SLICE else text


def _from_wire(data: Wire) -> str:
    """Decode in slices: each C call is short, so the event loop gets the GIL between.
    Texts are at most TEXT_CHUNK_CHARS long (split_text), so the final join is too."""
    if isinstance(data, str):
        return data
    decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")
    view = memoryview(data)
    parts = [decoder.decode(view[i : i + _SLICE]) for i in range(0, len(view), _SLICE)]
    parts.append(decoder.decode(b"", final=True))
    return "".join(parts)


def _pack_rows(rows: list[list[str]]) -> list[Wire]:
    batches: list[Wire] = []
    for b in range(0, len(rows), _TABLE_BATCH):
        out: list[str] = []
        for row in rows[b : b + _TABLE_BATCH]:
            line = _US.join(row)
            if line.count(_US) != len(row) - 1 or _RS in line:  # separators in a cell
                line = _US.join(c.replace(_US, " ").replace(_RS, " ") for c in row)
            out.append(line)
        batches.append(_to_wire(_RS.join(out)))
    return batches


def _unpack_rows(batches: list[Wire]) -> list[list[str]]:
    rows: list[list[str]] = []
    for batch in batches:
        rows.extend(line.split(_US) for line in _from_wire(batch).split(_RS))
    return rows


@dataclass
class Packed:
    """A MessageView or Extracted with its texts and tables in wire form."""

    shell: Any  # the object with texts (and tables) emptied
    texts: list[tuple[str, Wire]]
    tables: list[tuple[str, list[Wire], int]]  # where, packed rows, more_rows


def pack(obj: MessageView | Extracted) -> Packed:
    texts = [(t.where, _to_wire(t.text)) for t in obj.texts]
    tables = [(t.where, _pack_rows(t.rows), t.more_rows) for t in obj.tables]
    obj.texts, obj.tables = [], []
    return Packed(obj, texts, tables)


def unpack(packed: Packed) -> Any:
    obj = packed.shell
    obj.texts = [TextChunk(where, _from_wire(data)) for where, data in packed.texts]
    # Building 100k+ row lists would trigger several full (generation 2) collections,
    # each walking every object in the process with the GIL held (~50-100 ms apiece,
    # measured). The rows only reference str objects, which cannot form cycles.
    with collections_paused():
        obj.tables = [Table(where, _unpack_rows(data), more)
                      for where, data, more in packed.tables]
    return obj
