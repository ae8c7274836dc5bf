"""One message as bytes and as text: parsing, charsets, addresses, header edits.

    message.py     the parse: bytes → MessageView (view.py), after limits.py's scans
    headers.py     header values: unfolding, the subject, strict address lists
    headerscan.py  header fields found in the bytes, without a parse
    parts.py       a MIME part's file name, its text (HTML too), its defects
    textdecode.py  bytes → text, Japanese first; encodedwords.py: RFC 2047 words
    mimestash.py   long base64 bodies kept away from the line-by-line parser
    addresses.py   address forms (keys, domains); rewrite.py: header edits on the bytes
    replytext.py   a reason text as one SMTP reply line carries it
"""
