"""One message as bytes and as text: parsing, charsets, addresses, header edits."""
