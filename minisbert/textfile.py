"""Reading texts from a file: its lines or sentences, in its encoding, refusing binary input.

The command line reads its texts through here (`read_texts`), and so does the streaming
encoder (streaming.py), a block at a time: one sentence rule and one rule for what looks
binary serve both.
"""

from __future__ import annotations

import codecs
import re
import sys
from pathlib import Path

from .errors import InputFileError

# Where a sentence ends: after 。．！？ (and any closing brackets), as the demo splits; after
# . ! ? only before a space or the line end, so "3.14", "v2.1" and "example.com" stay whole.
SENTENCE_END = re.compile(r"[。．！？]+[」』）)\"']*|[.!?]+[\"')\]]*(?=\s|$)")


def split_sentences(line: str) -> list[str]:
    pieces, start = [], 0
    for m in SENTENCE_END.finditer(line):
        pieces.append(line[start:m.end()])
        start = m.end()
    pieces.append(line[start:])
    return [p.strip() for p in pieces if p.strip()]


# What "looks binary" means: a NUL character anywhere (no text format has one), or more than
# BINARY_SHARE of the characters being control characters other than tab, line feed, vertical
# tab, form feed and carriage return (C0 and C1, including ESC and DEL). Text, even a log with
# colour codes, stays far below 10 %; bytes of an image or an archive read as latin-1 are
# about a quarter control characters. Checked on the decoded text, so UTF-16 text is no NUL.
# Bytes that do not decode are checked too, one character per byte, but only for C0 controls:
# 0x80-0x9F are letters in Shift-JIS, GBK or cp1252, control characters only in latin-1.
CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
C0_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
BINARY_SHARE = 0.10


def binary_reason(text: str, control: re.Pattern = CONTROL) -> str | None:
    """Why `text` looks like the content of a binary file, or None if it looks like text."""
    if "\x00" in text:
        return "it holds NUL characters"
    controls = len(text) - len(control.sub("", text))
    if controls > BINARY_SHARE * len(text):
        return (f"{controls / len(text):.0%} of its characters are control characters (text has "
                f"at most {BINARY_SHARE:.0%})")
    return None


def refuse_binary(source: str, reason: str, encoding: str | None) -> InputFileError:
    wide = encoding.lower().replace("-", "").replace("_", "").startswith(("utf16", "utf32"))
    utf16 = "NUL" in reason and not wide
    return InputFileError(
        f"{source} looks like a binary file, not text: {reason}. Pass a text file, one text per "
        "line" + ("; if it is UTF-16 text (Windows \"Unicode\"), pass --encoding utf-16." if utf16
                  else "."))


def read_texts(path: str, split: str = "lines", encoding: str | None = None) -> list[str]:
    """The texts of a file (path "-": standard input): its non-blank lines, or the sentences of
    those lines. encoding None means UTF-8, with or without a byte order mark. Input that looks
    binary (see binary_reason) is refused, whatever the encoding."""
    source = "standard input" if path == "-" else path
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    skip = 0
    if encoding is None:
        encoding = "utf-8"
        if data.startswith(codecs.BOM_UTF8):
            skip = len(codecs.BOM_UTF8)  # Notepad's BOM is not part of the first line
    try:
        text = data[skip:].decode(encoding)
    except LookupError:
        raise InputFileError(f"--encoding {encoding}: unknown encoding.") from None
    except UnicodeDecodeError as e:
        reason = binary_reason(data.decode("latin-1"), C0_CONTROL)  # a character per byte
        if reason:
            raise refuse_binary(source, reason, encoding) from None
        bad = data[skip + e.start:skip + e.start + 4].hex(" ")
        raise InputFileError(
            f"{source}: not valid {encoding} at byte {skip + e.start} ({bad} …); pass the file's "
            "encoding with --encoding, e.g. --encoding cp932 (Shift-JIS) or --encoding latin-1."
        ) from None
    reason = binary_reason(text)
    if reason:
        raise refuse_binary(source, reason, encoding)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    texts = lines if split == "lines" else [s for line in lines for s in split_sentences(line)]
    if not texts:
        raise InputFileError(f"{source}: no text to search (every line is blank).")
    return texts
