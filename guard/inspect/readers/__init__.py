"""One reader per attachment format: bytes in, text and tables out."""
