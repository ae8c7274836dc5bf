"""Attachment readers: one module per format, called by guard.inspect.extract.

A reader is a function `read(ex, att, depth)`: it reads `att.data` and adds to the
extraction `ex` (readers.extraction.Extraction) texts, tables, problems and inner file
names, within `ex.limits` and the message's budget. It does not raise for bad input: it
adds a problem ("parse_error", "encrypted", "too_large"...) or raises LimitHit, and the
dispatcher turns any other exception into a parse_error. A file inside the attachment
(an archive member, an embedded object) goes back to the dispatcher through
`ex.run(inner, depth + 1)`.

Formats: plaintext (text, HTML), csvfile (CSV, TSV), pdf, eml (attached messages),
archive (zip), documents (docx, pptx, odt), xlsx (xlsx, xlsm, xlsb, ods), calamine (xls,
and the workbooks the sampling reader declines), worddoc (Word 97-2003 .doc), msgfile
(Outlook .msg). Shared parts: limits and extraction (what every reader gets),
ziparchive (zips in memory), package (OOXML/ODF parts and embedded objects), ooxml (the
fast XML readers' common rules), wordml (text of a docx/pptx part), sheetml,
sharedstrings and cellvalues (the sampling xlsx reader).

How to add a reader:
1. a module here with `read(ex, att, depth)` (or, for a zip package,
   `read(ex, zf, att, depth)`), using `ex.text`, `ex.table`, `ex.problem`,
   `ex.inner_name`, and `ex.member_stream` / `ex.charged` for bytes taken out of a
   container, so the limits hold;
2. in guard.inspect.extract: a kind in detect_kind() (magic bytes first, then the
   extension and content type) and the reader in READERS; for a zip package, a test on
   the member names in _package_reader(); for an OLE compound file, on the stream
   names in _read_ole();
3. tests in tests/inspect/test_extract.py: a sample file, its text and tables, and a
   broken one that ends as a problem, not an exception.
"""
